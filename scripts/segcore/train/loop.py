"""The training loop: small functions for an epoch, validation, resuming, and the loop tying them together.

Optimiser Adam; learning rate reduced on a validation-loss plateau (ReduceLROnPlateau); early stopping on
the validation loss; the best model (lowest validation loss) is kept. Every source of randomness is derived
from ``(seed, epoch)``: batch order (and patch positions) from a NumPy generator seeded with both, torch's
generator (dropout) re-seeded at each epoch start, so an epoch is a pure function of the state before it.
That is why a resumed run needs no saved random-generator state: after every epoch :func:`fit` saves the
model, optimizer, scheduler, gradient scaler and :class:`Progress` (:mod:`segcore.train.checkpoint`), and a run
restarted from that file trains the remaining epochs exactly as an uninterrupted run would (bit for bit on
the CPU; cuDNN kernels may differ in the last bits).

Device handling: on CUDA, autocast to bfloat16 (float16 with a gradient scaler where bfloat16 is not
supported), channels-last layout, and batches copied from page-locked memory without blocking, so the copy of
one batch overlaps the kernels of the step before. On the CPU, float32 (low precision is about 150x slower
there) and channels-last only where it measures faster (:func:`prefers_channels_last`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from segcore.confusion import confusion_matrix, dice_per_class
from segcore.io import InputError
from segcore.model.overlap_tile import class_mask, predict_probabilities
from segcore.train.checkpoint import ResumeFile, load_state, save_state
from segcore.train.data import BatchSampler, LabelledImages

log = logging.getLogger(__name__)
LossFunction = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class TrainSettings:
    """The loop's hyper-parameters: the config section ``training`` plus the top-level ``seed``.

    Every field is required: the defaults live in ``config/schema.yaml`` alone (the Snakefile fills them into
    the config before a script runs), so a second set here could only disagree with them.
    """

    epochs: int
    batch_size: int
    learning_rate: float
    lr_factor: float
    lr_patience: int
    early_stopping_patience: int
    seed: int

    @classmethod
    def from_config(cls, training: Mapping[str, Any], seed: int) -> TrainSettings:
        """The settings of a ``training`` config section (schema defaults already filled in) and ``seed``.

        Keys of the section that are not loop settings (``patch_size``, ``device``: read where the data and
        the device are prepared) are ignored. Raises :class:`segcore.io.InputError` naming every missing
        ``training.<key>``.
        """
        names = [item.name for item in fields(cls) if item.name != "seed"]
        missing = [name for name in names if name not in training]
        if missing:
            raise InputError(f"config lacks {', '.join(f'training.{name}' for name in missing)}")
        return cls(**{name: training[name] for name in names}, seed=seed)


@dataclass(frozen=True)
class Hardware:
    """How batches meet the model: the device, the memory layout and the autocast dtype (None: float32)."""

    device: torch.device
    channels_last: bool
    autocast_dtype: torch.dtype | None = None


@dataclass
class Progress:
    """The loop's state after ``epoch`` completed epochs (0: none yet), besides model, optimizer, scheduler.

    ``best_state``: the model's state dict at the epoch of ``best_loss`` (the initial weights before any);
    ``history``: one row per completed epoch (see :func:`fit`).
    """

    best_state: dict[str, torch.Tensor]
    epoch: int = 0
    best_loss: float = math.inf
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def prefers_channels_last(device: torch.device, patch_pixels: int) -> bool:
    """Whether the NHWC memory layout is the faster one for training.

    On CUDA it is (tensor cores). On CPU it speeds small images by 17-28 % but slows convolution backward
    on large images by 30-75 % (shared/notes/cpu-performance.md), so it is used up to 256x256 patches.
    """
    return device.type == "cuda" or patch_pixels <= 256 * 256


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 on CUDA devices that support it, else float16 on CUDA; None (float32) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def choose_hardware(device: torch.device, patch_pixels: int) -> Hardware:
    """The layout and precision :func:`fit` uses on ``device`` for training samples of ``patch_pixels``."""
    return Hardware(device, prefers_channels_last(device, patch_pixels), autocast_dtype(device))


def to_device(tensor: torch.Tensor, hardware: Hardware, channels_last: bool = False) -> torch.Tensor:
    """``tensor`` on the training device (4-D tensors in channels-last layout if asked).

    On CUDA the batch is first page-locked, so the host-to-device copy runs asynchronously
    (``non_blocking``) and overlaps the kernels already queued.
    """
    if hardware.device.type == "cuda":
        tensor = tensor.pin_memory().to(hardware.device, non_blocking=True)
    else:
        tensor = tensor.to(hardware.device)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    sampler: BatchSampler,
    loss_function: LossFunction,
    rng: np.random.Generator,
    hardware: Hardware,
    progress_label: str = "",
) -> float:
    """One pass over the training set; returns the mean training loss over batches.

    The loss is summed on the device and read once at the end: reading it every step would make the CPU
    wait for the GPU and stop the next batch's copy from overlapping the current step.
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
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(hardware.device.type, dtype=hardware.autocast_dtype, enabled=use_autocast):
            loss = loss_function(model(images), masks, weights)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.detach().float()
        batches += 1
    return float(total) / max(batches, 1)


def validation_scores(
    model: torch.nn.Module,
    data: LabelledImages,
    num_classes: int,
    tile_size: int,
    margin: int,
    device: torch.device,
) -> tuple[float, float]:
    """Validation loss and mean foreground Dice on whole images, in float32.

    The loss is the unweighted cross-entropy ``mean(-log p[true class])`` over all pixels (weight maps exist
    only for training samples); Dice is averaged over foreground classes per image (classes absent from both
    truth and prediction skipped), then over images. Images are predicted by overlap-tile prediction, so any
    image size and valid-padding models work.
    """
    model.eval()
    nll_sum, pixels, dice_values = 0.0, 0, []
    for image, mask in zip(data.images, data.masks):
        probabilities = predict_probabilities(
            model, image, num_classes=num_classes, tile_size=tile_size, margin=margin, device=device
        )
        true_class_probability = np.take_along_axis(probabilities, mask[None].astype(np.intp), axis=0)
        nll_sum += float(-np.log(np.maximum(true_class_probability, 1e-12), dtype=np.float64).sum())
        pixels += mask.size
        cm = confusion_matrix(mask, class_mask(probabilities), num_classes)
        foreground_dice = dice_per_class(cm)[1:]
        if not np.all(np.isnan(foreground_dice)):
            dice_values.append(float(np.nanmean(foreground_dice)))
    return nll_sum / max(pixels, 1), float(np.mean(dice_values)) if dice_values else math.nan


def model_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's state dict (parameters and buffers), on the model's device."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def record_epoch(progress: Progress, row: dict[str, Any], model: torch.nn.Module) -> bool:
    """Add a finished epoch's history row to ``progress``; returns whether its validation loss is the best."""
    progress.epoch = row["epoch"]
    progress.history.append(row)
    improved = row["val_loss"] < progress.best_loss
    if improved:
        progress.best_loss, progress.best_state = row["val_loss"], model_snapshot(model)
        progress.epochs_without_improvement = 0
    else:
        progress.epochs_without_improvement += 1
    return improved


def finished(progress: Progress, settings: TrainSettings) -> bool:
    """Whether every epoch has run or early stopping applies."""
    return progress.epoch >= settings.epochs or progress.epochs_without_improvement >= settings.early_stopping_patience


def training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    scaler: torch.amp.GradScaler,
    progress: Progress,
) -> dict[str, Any]:
    """Everything a resumed run needs, as tensors and plain types (as :func:`restore_training` reads it)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "best_model": progress.best_state,
        "progress": {
            "epoch": progress.epoch,
            "best_loss": progress.best_loss,
            "epochs_without_improvement": progress.epochs_without_improvement,
            "history": progress.history,
        },
    }


def restore_training(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau,
    scaler: torch.amp.GradScaler,
) -> Progress:
    """Load a :func:`training_state` into the objects of a new run (in place); returns its progress.

    An empty scaler state (saved without float16 scaling) leaves the scaler at its defaults.
    """
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    device = next(model.parameters()).device
    best_state = {name: tensor.to(device) for name, tensor in state["best_model"].items()}
    return Progress(best_state=best_state, **state["progress"])


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
) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Train ``model`` and return (history rows, state dict of the best epoch by validation loss).

    Each history row: epoch (1-based), train_loss, val_loss, val_dice, learning_rate, seconds.
    Stops after ``settings.epochs`` epochs or when the validation loss has not improved for
    ``settings.early_stopping_patience`` epochs. With ``resume``, the state saved there (if any) is loaded
    first (:func:`segcore.train.checkpoint.load_state` refuses one of another run) and a new state is saved after
    every epoch; removing the file once the outputs are written is the caller's job.
    """
    model.to(hardware.device)
    if hardware.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience
    )
    scaler = torch.amp.GradScaler(hardware.device.type, enabled=hardware.autocast_dtype == torch.float16)
    progress = Progress(best_state=model_snapshot(model))
    saved = load_state(resume.path, resume.fingerprint) if resume is not None else None
    if saved is not None:
        progress = restore_training(saved, model, optimizer, scheduler, scaler)
        log.info("resuming from %s after epoch %d/%d", resume.path, progress.epoch, settings.epochs)
    while not finished(progress, settings):
        epoch = progress.epoch + 1
        started = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        torch.manual_seed(settings.seed * 100_003 + epoch)
        rng = np.random.default_rng([settings.seed, epoch])
        train_loss = train_epoch(model, optimizer, scaler, sampler, loss_function, rng, hardware, f"epoch {epoch}")
        val_loss, val_dice = validation_scores(model, val_data, num_classes, tile_size, margin, hardware.device)
        scheduler.step(val_loss)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_dice": val_dice,
            "learning_rate": learning_rate,
            "seconds": round(time.perf_counter() - started, 3),
        }
        improved = record_epoch(progress, row, model)
        if resume is not None:
            state = training_state(model, optimizer, scheduler, scaler, progress)
            save_state(resume.path, state, resume.fingerprint)
        log.info(
            "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_dice %.4f  lr %.2e  %.1fs%s",
            epoch, settings.epochs, train_loss, val_loss, val_dice, learning_rate, row["seconds"],
            "  (best)" if improved else "",
        )  # fmt: skip
        if progress.epochs_without_improvement >= settings.early_stopping_patience:
            log.info("early stopping: no improvement for %d epochs", settings.early_stopping_patience)
    return progress.history, progress.best_state
