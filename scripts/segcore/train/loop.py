"""The training loop: small functions for an epoch, validation, resuming, and the loop tying them together.

Optimiser Adam, learning rate by :mod:`segcore.train.schedules` (plateau, poly or cosine, linear warm-up),
optional gradient-norm clipping. After every epoch the model is validated (:mod:`segcore.train.validation`:
a fixed set of patches every epoch, whole images every ``validation_every`` epochs); the model of the epoch
with the best selection measure (``select_by``: highest validation Dice or lowest validation loss) is kept,
or the last epoch's with ``keep: last``; training stops early when that measure has not improved for
``early_stopping_patience`` epochs.

Every source of randomness is derived from ``(seed, epoch)``: batch order, patch positions and online
flips from a NumPy generator seeded with both, torch's generator (dropout) re-seeded at each epoch start, so
an epoch is a pure function of the state before it. That is why a resumed run needs no saved
random-generator state: after every epoch :func:`fit` saves the model, optimizer, schedule, gradient scaler
and :class:`Progress` (:mod:`segcore.train.checkpoint`), and a run restarted from that file trains the
remaining epochs exactly as an uninterrupted run would (bit for bit on the CPU; cuDNN kernels may differ in
the last bits). Device handling (autocast, channels-last, pinned copies): :mod:`segcore.train.hardware`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from segcore.io import InputError
from segcore.model.padding import forward_padded
from segcore.train.checkpoint import ResumeFile, load_state, save_state
from segcore.train.data import BatchSampler, LabelledImages
from segcore.train.hardware import (  # noqa: F401 - choose_hardware and the rest are imported from here too
    Hardware,
    autocast_dtype,
    choose_hardware,
    prefers_channels_last,
    to_device,
)
from segcore.train.schedules import LearningRateSchedule
from segcore.train.validation import PatchSet, Validation

log = logging.getLogger(__name__)
LossFunction = Callable[..., torch.Tensor]
# Selection measures and whether higher is better.
SELECTION_MEASURES = {"val_dice": True, "val_loss": False}


@dataclass(frozen=True)
class TrainSettings:
    """The loop's hyper-parameters: the config section ``training`` plus the top-level ``seed``.

    Every field is required: the defaults live in ``config/schema.yaml`` alone (the Snakefile fills them into
    the config before a script runs), so a second set here could only disagree with them. ``gradient_clip``:
    maximum L2 norm of all gradients together, None for no clipping; ``validation_every``: whole-image
    validation every that many epochs (and at the last planned epoch).
    """

    epochs: int
    batch_size: int
    learning_rate: float
    lr_factor: float
    lr_patience: int
    early_stopping_patience: int
    schedule: str
    warmup_epochs: int
    gradient_clip: float | None
    select_by: str
    keep: str
    validation_every: int
    seed: int

    @classmethod
    def from_config(cls, training: Mapping[str, Any], seed: int, **resolved: Any) -> TrainSettings:
        """The settings of a ``training`` config section (schema defaults already filled in) and ``seed``.

        ``resolved``: values that replace the section's (keys whose config value is ``"auto"``, resolved
        by the plan). Keys of the section that are not loop settings (``patch_size``, ``device``,
        sampling keys: read where the data and the device are prepared) are ignored. Raises
        :class:`segcore.io.InputError` naming every missing ``training.<key>``.
        """
        section = {**training, **resolved}
        names = [item.name for item in fields(cls) if item.name != "seed"]
        missing = [name for name in names if name not in section]
        if missing:
            raise InputError(f"config lacks {', '.join(f'training.{name}' for name in missing)}")
        return cls(**{name: section[name] for name in names}, seed=seed)


@dataclass
class Progress:
    """The loop's state after ``epoch`` completed epochs (0: none yet), besides model, optimizer, schedule.

    ``best_state``: the model's state dict at ``best_epoch`` (the initial weights before any);
    ``best_measure``: that epoch's selection measure (None before any epoch); ``history``: one row per
    completed epoch (see :func:`fit`).
    """

    best_state: dict[str, torch.Tensor]
    epoch: int = 0
    best_epoch: int = 0
    best_measure: float | None = None
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def optimiser_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loss: torch.Tensor,
    gradient_clip: float | None,
) -> None:
    """Backward pass and update, with the gradients' joint L2 norm clipped to ``gradient_clip`` (None: not).

    With float16 scaling the gradients are unscaled first, so the clip applies to their true norm; the
    scaler then skips the step as usual when they are not finite.
    """
    scaler.scale(loss).backward()
    if gradient_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), gradient_clip)
    scaler.step(optimizer)
    scaler.update()


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampler: BatchSampler,
    loss_function: LossFunction,
    rng: np.random.Generator,
    hardware: Hardware,
    progress_label: str = "",
    *,
    step_rates: Sequence[float] | None = None,
    gradient_clip: float | None = None,
) -> float:
    """One pass over the training set; returns the mean training loss over batches.

    ``step_rates``: the learning rate of each step (:meth:`LearningRateSchedule.begin_epoch`); None keeps
    the optimiser's. The loss is summed on the device and read once at the end: reading it every step
    would make the CPU wait for the GPU and stop the next batch's copy from overlapping the current step.
    """
    model.train()
    use_autocast = hardware.autocast_dtype is not None
    total, batches = torch.zeros((), device=hardware.device), 0
    for images, masks, weights in tqdm(
        sampler.epoch(rng), total=len(sampler), desc=progress_label, mininterval=15, leave=False
    ):
        images = to_device(images, hardware, channels_last=hardware.channels_last)
        masks = to_device(masks, hardware)
        weights = to_device(weights, hardware) if weights is not None else None
        if step_rates is not None:
            for group in optimizer.param_groups:
                group["lr"] = float(step_rates[batches])
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(hardware.device.type, dtype=hardware.autocast_dtype, enabled=use_autocast):
            # Sides that are not multiples of 2**depth are mirror-padded for the net and cropped back.
            loss = loss_function(forward_padded(model, images), masks, weights)
        optimiser_step(model, optimizer, scaler, loss, gradient_clip)
        total += loss.detach().float()
        batches += 1
    return float(total) / max(batches, 1)


def is_better(value: float, best: float | None, select_by: str) -> bool:
    """Whether selection measure ``value`` beats ``best`` (None: no epoch yet, anything beats it).

    A NaN value (no foreground anywhere in validation) never beats a number; a number beats a NaN best.
    """
    if best is None:
        return True
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if SELECTION_MEASURES[select_by] else value < best


def best_epoch_index(values: Sequence[float], select_by: str) -> int:
    """0-based index of the epoch :func:`fit` keeps among the epochs' selection ``values``: the first that
    beats every earlier one under :func:`is_better` and is not beaten later."""
    best_index, best = 0, None
    for index, value in enumerate(values):
        if is_better(float(value), best, select_by):
            best_index, best = index, float(value)
    return best_index


def model_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state dict (parameters and buffers), on the model's device."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def record_epoch(progress: Progress, row: dict[str, Any], model: torch.nn.Module, select_by: str) -> bool:
    """Add a finished epoch's history row to ``progress``; returns whether its ``row[select_by]`` is the best
    so far (then the model is snapshot as the best)."""
    progress.epoch = row["epoch"]
    progress.history.append(row)
    improved = is_better(row[select_by], progress.best_measure, select_by)
    if improved:
        progress.best_measure, progress.best_epoch = row[select_by], row["epoch"]
        progress.best_state = model_snapshot(model)
        progress.epochs_without_improvement = 0
    else:
        progress.epochs_without_improvement += 1
    return improved


def finished(progress: Progress, settings: TrainSettings) -> bool:
    """Whether every epoch has run or early stopping applies."""
    return progress.epoch >= settings.epochs or progress.epochs_without_improvement >= settings.early_stopping_patience


def whole_images_due(epoch: int, settings: TrainSettings) -> bool:
    """Whether ``epoch`` (1-based) validates on whole images: every ``validation_every``-th and the last."""
    return epoch % settings.validation_every == 0 or epoch == settings.epochs


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    scaler: torch.amp.GradScaler,
    progress: Progress,
) -> dict[str, Any]:
    """Everything a resumed run needs, as tensors and plain types (as :func:`restore_training` reads it)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "best_model": progress.best_state,
        "progress": {
            "epoch": progress.epoch,
            "best_epoch": progress.best_epoch,
            "best_measure": progress.best_measure,
            "epochs_without_improvement": progress.epochs_without_improvement,
            "history": progress.history,
        },
    }


def restore_training(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LearningRateSchedule,
    scaler: torch.amp.GradScaler,
) -> Progress:
    """Load a :func:`training_state` into the objects of a new run (in place); returns its progress.

    An empty scaler state (saved without float16 scaling) leaves the scaler at its defaults.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["scheduler"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    device = next(model.parameters()).device
    best_state = {name: tensor.to(device) for name, tensor in state["best_model"].items()}
    return Progress(best_state=best_state, **state["progress"])


def build_schedule(optimizer: torch.optim.Optimizer, settings: TrainSettings) -> LearningRateSchedule:
    """The learning-rate schedule of ``settings`` on ``optimizer``."""
    return LearningRateSchedule(
        optimizer, schedule=settings.schedule, learning_rate=settings.learning_rate, epochs=settings.epochs,
        warmup_epochs=settings.warmup_epochs, lr_factor=settings.lr_factor, lr_patience=settings.lr_patience,
        mode="max" if SELECTION_MEASURES[settings.select_by] else "min",
    )  # fmt: skip


def log_epoch(row: dict[str, Any], epochs: int, improved: bool) -> None:
    """One log line per epoch (the whole-image scores when that epoch has them)."""
    images = ""
    if row["image_val_loss"] is not None:
        images = f"  image_val_loss {row['image_val_loss']:.4f}  image_val_dice {row['image_val_dice']:.4f}"
    log.info(
        "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_dice %.4f%s  lr %.2e  %.1fs (validation %.1fs)%s",
        row["epoch"], epochs, row["train_loss"], row["val_loss"], row["val_dice"], images, row["learning_rate"],
        row["seconds"], row["validation_seconds"], "  (best)" if improved else "",
    )  # fmt: skip


def fit(
    model: torch.nn.Module,
    sampler: BatchSampler,
    val_data: LabelledImages,
    loss_function: LossFunction,
    settings: TrainSettings,
    hardware: Hardware,
    *,
    num_classes: int,
    tile_size: int,
    margin: int,
    resume: ResumeFile | None = None,
    val_patches: PatchSet | None = None,
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Train ``model`` and return (history rows, state dict of the kept epoch): the best epoch by
    ``settings.select_by``, or the last epoch run when ``settings.keep`` is ``"last"``.

    Each history row: epoch (1-based), train_loss, val_loss, val_dice (on ``val_patches``, or on the whole
    validation images when None), image_val_loss, image_val_dice (whole images; None on epochs without
    whole-image validation, :func:`whole_images_due`), learning_rate (the epoch's base rate, before
    warm-up), seconds (the whole epoch) and validation_seconds (its validation). Stops after
    ``settings.epochs`` epochs or when the selection measure has not improved for
    ``settings.early_stopping_patience`` epochs. With ``resume``, the state saved there (if any) is loaded
    first (:func:`segcore.train.checkpoint.load_state` refuses one of another run) and a new state is saved
    after every epoch; removing the file once the outputs are written is the caller's job.
    """
    model.to(hardware.device)
    if hardware.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    schedule = build_schedule(optimizer, settings)
    scaler = torch.amp.GradScaler(hardware.device.type, enabled=hardware.autocast_dtype == torch.float16)
    validation = Validation(
        val_data, val_patches, loss_function, num_classes, tile_size, margin, hardware, settings.batch_size
    )
    progress = Progress(best_state=model_snapshot(model))
    saved = load_state(resume.path, resume.fingerprint) if resume is not None else None
    if saved is not None:
        progress = restore_training(saved, model, optimizer, schedule, scaler)
        log.info("resuming from %s after epoch %d/%d", resume.path, progress.epoch, settings.epochs)
    while not finished(progress, settings):
        epoch = progress.epoch + 1
        started = time.perf_counter()
        learning_rate, step_rates = schedule.begin_epoch(epoch, len(sampler))
        torch.manual_seed(settings.seed * 100_003 + epoch)
        rng = np.random.default_rng([settings.seed, epoch])
        train_loss = train_epoch(
            model, optimizer, scaler, sampler, loss_function, rng, hardware, f"epoch {epoch}",
            step_rates=step_rates, gradient_clip=settings.gradient_clip,
        )  # fmt: skip
        validated = time.perf_counter()
        scores = validation.epoch_columns(model, whole_images_due(epoch, settings))
        schedule.end_epoch(scores[settings.select_by])
        now = time.perf_counter()
        row = {
            "epoch": epoch, "train_loss": train_loss, **scores, "learning_rate": learning_rate,
            "seconds": round(now - started, 3), "validation_seconds": round(now - validated, 3),
        }  # fmt: skip
        improved = record_epoch(progress, row, model, settings.select_by)
        if resume is not None:
            save_state(resume.path, training_state(model, optimizer, schedule, scaler, progress), resume.fingerprint)
        log_epoch(row, settings.epochs, improved)
        if progress.epochs_without_improvement >= settings.early_stopping_patience:
            log.info("early stopping: no improvement for %d epochs", settings.early_stopping_patience)
    kept = progress.best_state if settings.keep == "best" else model_snapshot(model)
    return progress.history, kept
