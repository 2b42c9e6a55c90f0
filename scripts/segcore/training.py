"""The training loop: small functions for one epoch, validation, and the loop that ties them together.

Optimiser Adam; learning rate reduced on a validation-loss plateau (ReduceLROnPlateau); early stopping on
the validation loss; the best model (lowest validation loss) is kept. Every source of randomness is derived
from ``(seed, epoch)``: batch order from a NumPy generator seeded with both, torch's generator (dropout)
re-seeded at each epoch start, so an epoch is a pure function of the state before it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from segcore.metrics import confusion_matrix, dice_per_class
from segcore.tiling import predict_probabilities
from segcore.trainset import BatchSampler, LabelledImages

log = logging.getLogger(__name__)
LossFunction = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class TrainSettings:
    """Training hyper-parameters (config section ``training``)."""

    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    lr_factor: float = 0.5
    lr_patience: int = 3
    early_stopping_patience: int = 10
    seed: int = 0


def select_device(requested: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``/``"cuda"`` force one (CUDA must exist)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(requested)


def prefers_channels_last(device: torch.device, patch_pixels: int) -> bool:
    """Whether the NHWC memory layout is the faster one for training.

    On CUDA it is (tensor cores). On CPU it speeds small images by 17-28 % but slows convolution backward
    on large images by 30-75 % (shared/notes/cpu-performance.md), so it is used up to 256x256 patches.
    """
    return device.type == "cuda" or patch_pixels <= 256 * 256


def train_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: BatchSampler,
    loss_function: LossFunction,
    rng: np.random.Generator,
    device: torch.device,
    channels_last: bool,
    progress_label: str = "",
) -> float:
    """One pass over the training set; returns the mean training loss over batches."""
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    non_blocking = device.type == "cuda"
    total, batches = 0.0, 0
    for images, masks, weights in tqdm(
        sampler.epoch(rng), total=len(sampler), desc=progress_label, mininterval=15, leave=False
    ):
        images = images.to(device, non_blocking=non_blocking).contiguous(memory_format=memory_format)
        masks = masks.to(device, non_blocking=non_blocking)
        weights = weights.to(device, non_blocking=non_blocking) if weights is not None else None
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(images), masks, weights)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        batches += 1
    return total / max(batches, 1)


def validation_scores(
    model: torch.nn.Module,
    data: LabelledImages,
    num_classes: int,
    tile_size: int,
    margin: int,
    device: torch.device,
) -> tuple[float, float]:
    """Validation loss and mean foreground Dice on whole images.

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
        cm = confusion_matrix(mask, probabilities.argmax(axis=0).astype(np.uint8), num_classes)
        foreground_dice = dice_per_class(cm)[1:]
        if not np.all(np.isnan(foreground_dice)):
            dice_values.append(float(np.nanmean(foreground_dice)))
    return nll_sum / max(pixels, 1), float(np.mean(dice_values)) if dice_values else math.nan


def fit(
    model: torch.nn.Module,
    sampler: BatchSampler,
    val_data: LabelledImages,
    loss_function: LossFunction,
    settings: TrainSettings,
    device: torch.device,
    *,
    num_classes: int,
    tile_size: int,
    margin: int,
    channels_last: bool,
) -> tuple[list[dict], dict]:
    """Train ``model`` and return (history rows, state dict of the best epoch by validation loss).

    Each history row: epoch (1-based), train_loss, val_loss, val_dice, learning_rate, seconds.
    Stops after ``settings.epochs`` epochs or when the validation loss has not improved for
    ``settings.early_stopping_patience`` epochs.
    """
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience
    )
    history: list[dict] = []
    best_loss, best_state, epochs_without_improvement = math.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        torch.manual_seed(settings.seed * 100_003 + epoch)
        rng = np.random.default_rng([settings.seed, epoch])
        train_loss = train_epoch(
            model, optimizer, sampler, loss_function, rng, device, channels_last, f"epoch {epoch}"
        )
        val_loss, val_dice = validation_scores(model, val_data, num_classes, tile_size, margin, device)
        scheduler.step(val_loss)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_dice": val_dice,
            "learning_rate": learning_rate,
            "seconds": round(time.perf_counter() - started, 3),
        }
        history.append(row)
        improved = val_loss < best_loss
        if improved:
            best_loss, best_state, epochs_without_improvement = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            epochs_without_improvement += 1
        log.info(
            "epoch %d/%d  train_loss %.4f  val_loss %.4f  val_dice %.4f  lr %.2e  %.1fs%s",
            epoch, settings.epochs, train_loss, val_loss, val_dice, learning_rate, row["seconds"],
            "  (best)" if improved else "",
        )  # fmt: skip
        if epochs_without_improvement >= settings.early_stopping_patience:
            log.info("early stopping: no validation-loss improvement for %d epochs", epochs_without_improvement)
            break
    return history, best_state
