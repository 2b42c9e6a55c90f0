"""Validation during training: a bounded, seeded set of patches every epoch, whole images now and then.

Patch validation: ``count`` samples of the training sample size cut once from the validation images
(seeded by the run's seed alone, so every epoch scores the same patches) and scored in batches, as cheap
as a few training steps. Whole-image validation predicts every validation image by overlap-tile
prediction (any image size, valid-padding models too) and is the one that matches the test measure; it
runs every ``training.validation_every`` epochs and on the selected model at the end. Where every
validation image is exactly one prediction tile (a same-padding net, images of the tile's square size: the
default 128 px shapes), overlap-tile prediction is a plain forward pass, so whole-image validation runs as
batched forward passes of the stacked images instead (:func:`stacked_images`; the same numbers, about 4x
faster on the CPU than one image at a time).

Both give (loss, mean foreground Dice):

- loss: the training loss itself, with every pixel weight 1 (validation images have no weight maps, so a
  weight-map loss becomes its unweighted form; Dice and other terms are unchanged). For whole images it is
  computed from ``log p`` of the blended probabilities, which softmax maps back to ``p``, so every loss
  of :mod:`segcore.train.losses` applies. Patch losses are averaged over batches weighted by their size.
- Dice: per image (patch) the mean over foreground classes of ``2 TP / (2 TP + FP + FN)``, classes absent
  from truth and prediction skipped; then the mean over images with a value (NaN when none has one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from segcore.confusion import confusion_matrix, dice_per_class
from segcore.model.blocks import center_crop
from segcore.model.overlap_tile import class_mask, predict_probabilities
from segcore.model.padding import forward_padded
from segcore.train.data import BatchSampler, LabelledImages
from segcore.train.hardware import Hardware, to_device
from segcore.train.operating_point import ThresholdSearch

LossFunction = Callable[..., torch.Tensor]
# "auto" patch count: enough patches to cover the validation pixels once, at most this many.
AUTO_MAX_PATCHES = 64
# Mixed into the seed of the validation patches, so they are not the draws of any training epoch.
PATCH_STREAM = 0x7A11D


@dataclass(frozen=True)
class PatchSet:
    """Fixed validation samples: ``images`` float32 (N, C, h, w), ``masks`` int64 (N, h, w)."""

    images: torch.Tensor
    masks: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class Scores:
    """Validation ``loss`` and mean foreground ``dice`` (NaN when no image has a foreground class)."""

    loss: float
    dice: float


def mean_foreground_dice(truth: np.ndarray, prediction: np.ndarray, num_classes: int) -> float:
    """Mean Dice over classes 1..K-1 of two (H, W) integer masks, classes absent from both skipped; NaN if
    every foreground class is absent from both."""
    foreground = dice_per_class(confusion_matrix(truth, prediction, num_classes))[1:]
    return math.nan if np.all(np.isnan(foreground)) else float(np.nanmean(foreground))


def mean_of_defined(values: list[float]) -> float:
    """Mean of the non-NaN ``values``; NaN when there are none."""
    defined = [value for value in values if not math.isnan(value)]
    return float(np.mean(defined)) if defined else math.nan


def patch_count(requested: int | str, data: LabelledImages, side: int, validation_every: int) -> int:
    """Validation patches to cut: ``requested``, or for ``"auto"`` ``min(64, ceil(pixels / side**2))``,
    where ``pixels`` is the validation set's pixel count (every pixel covered about once; with whole
    images of ``side``, one patch per image up to 64) -- and 0 when whole images are validated every epoch
    anyway (``validation_every`` 1: the plan found that cheap), since patches would only add work."""
    if requested != "auto":
        return int(requested)
    if validation_every == 1:
        return 0
    pixels = sum(mask.size for mask in data.masks)
    return min(AUTO_MAX_PATCHES, math.ceil(pixels / (side * side)))


def draw_patches(data: LabelledImages, count: int, side: int, foreground_fraction: float, seed: int) -> PatchSet:
    """``count`` samples of ``side`` x ``side`` from ``data``, cut as training patches are.

    The images are taken in a seeded random order, cycling when ``count`` exceeds them; ``ceil(fraction *
    count)`` patches are centred on foreground (:mod:`segcore.train.sampling`). Images no larger than
    ``side`` are taken whole (mirror-padded up to it). Same ``seed``, same patches.
    """
    rng = np.random.default_rng([seed, PATCH_STREAM])
    order = np.resize(rng.permutation(len(data)), count)
    cycled = LabelledImages(
        [data.ids[i] for i in order], [data.images[i] for i in order], [data.masks[i] for i in order]
    )
    sampler = BatchSampler(cycled, batch_size=count, patch_size=side, foreground_fraction=foreground_fraction)
    images, masks, _ = next(iter(sampler.epoch(rng)))
    return PatchSet(images, masks)


def whole_images(data: LabelledImages, count: int, seed: int) -> PatchSet:
    """``count`` whole images of ``data`` (all of one size) in a seeded random order, cycling if needed."""
    rng = np.random.default_rng([seed, PATCH_STREAM])
    order = np.resize(rng.permutation(len(data)), count)
    images = torch.from_numpy(np.stack([data.images[i] for i in order]))
    return PatchSet(images, torch.from_numpy(np.stack([data.masks[i] for i in order]).astype(np.int64)))


def validation_patches(
    data: LabelledImages,
    requested: int | str,
    patch_size: int | None,
    train_shape: tuple[int, int],
    foreground_fraction: float,
    seed: int,
    validation_every: int,
) -> PatchSet | None:
    """The fixed validation samples of a run (``training.val_patches``); None for 0 (whole images only).

    ``patch_size``: the side of the training samples, None for whole training images of ``train_shape``.
    Whole-image training validates on whole validation images when they all have ``train_shape``, else
    on square crops of its longer side.
    """
    side = patch_size or max(train_shape)
    count = patch_count(requested, data, side, validation_every)
    if count == 0 or len(data) == 0:
        return None
    if patch_size is None and all(mask.shape == tuple(train_shape) for mask in data.masks):
        return whole_images(data, count, seed)
    return draw_patches(data, count, side, foreground_fraction, seed)


def stacked_images(data: LabelledImages, tile_size: int, margin: int) -> PatchSet | None:
    """Every validation image stacked, when each is exactly one overlap-tile prediction tile: a same-padding
    net (``margin`` 0) and images of ``tile_size`` x ``tile_size``; else None (predict image by image)."""
    if margin != 0 or not data.masks or any(mask.shape != (tile_size, tile_size) for mask in data.masks):
        return None
    images = torch.from_numpy(np.stack(data.images))
    return PatchSet(images, torch.from_numpy(np.stack(data.masks).astype(np.int64)))


def patch_scores(
    model: torch.nn.Module,
    patches: PatchSet,
    loss_function: LossFunction,
    num_classes: int,
    hardware: Hardware,
    batch_size: int,
    threshold_search: ThresholdSearch | None = None,
) -> Scores:
    """:class:`Scores` of ``model`` on ``patches``, forwarded in batches of ``batch_size`` in eval mode.

    ``threshold_search``: when given (two classes), every sample's foreground probability is added to it.
    """
    model.eval()
    use_autocast = hardware.autocast_dtype is not None
    loss_sum, dice_values = 0.0, []
    with torch.inference_mode():
        for start in range(0, len(patches), batch_size):
            images = to_device(patches.images[start : start + batch_size], hardware, hardware.channels_last)
            masks = to_device(patches.masks[start : start + batch_size], hardware)
            with torch.autocast(hardware.device.type, dtype=hardware.autocast_dtype, enabled=use_autocast):
                logits = forward_padded(model, images)  # any side: padded to 2**depth, cropped back
            logits = (logits[0] if isinstance(logits, list | tuple) else logits).float()
            ones = torch.ones(masks.shape, dtype=torch.float32, device=masks.device)
            loss_sum += float(loss_function(logits, masks, ones)) * masks.shape[0]
            predicted = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
            truth = center_crop(masks, tuple(logits.shape[-2:])).cpu().numpy().astype(np.uint8)
            dice_values += [mean_foreground_dice(t, p, num_classes) for t, p in zip(truth, predicted)]
            if threshold_search is not None:
                for probability, mask in zip(torch.softmax(logits, dim=1)[:, 1].cpu().numpy(), truth):
                    threshold_search.add(probability, mask)
    return Scores(loss_sum / max(len(patches), 1), mean_of_defined(dice_values))


def image_scores(
    model: torch.nn.Module,
    data: LabelledImages,
    loss_function: LossFunction,
    num_classes: int,
    tile_size: int,
    margin: int,
    device: torch.device,
    threshold_search: ThresholdSearch | None = None,
) -> Scores:
    """:class:`Scores` of ``model`` on the whole images of ``data`` by overlap-tile prediction, in float32.

    ``threshold_search``: when given (two classes), every image's foreground probability is added to it.
    """
    model.eval()
    loss_sum, pixels, dice_values = 0.0, 0, []
    for image, mask in zip(data.images, data.masks):
        probabilities = predict_probabilities(
            model, image, num_classes=num_classes, tile_size=tile_size, margin=margin, device=device
        )
        log_probabilities = torch.from_numpy(np.log(np.maximum(probabilities, 1e-12)))[None]
        target = torch.from_numpy(mask.astype(np.int64))[None]
        with torch.inference_mode():
            loss = float(loss_function(log_probabilities, target, torch.ones(target.shape)))
        loss_sum += loss * mask.size
        pixels += mask.size
        dice_values.append(mean_foreground_dice(mask, class_mask(probabilities), num_classes))
        if threshold_search is not None:
            threshold_search.add(probabilities[1], mask)
    return Scores(loss_sum / max(pixels, 1), mean_of_defined(dice_values))


@dataclass(frozen=True)
class Validation:
    """Everything validation needs besides the model: the validation images, the fixed patches (None:
    every epoch validates on whole images), the loss, the class count, the overlap-tile geometry of
    whole-image prediction, the hardware and the patch batch size. ``stacked``: the validation images
    stacked when whole-image validation can run batched (:func:`stacked_images`), set on creation."""

    data: LabelledImages
    patches: PatchSet | None
    loss_function: LossFunction
    num_classes: int
    tile_size: int
    margin: int
    hardware: Hardware
    batch_size: int
    stacked: PatchSet | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stacked", stacked_images(self.data, self.tile_size, self.margin))

    def on_images(self, model: torch.nn.Module, threshold_search: ThresholdSearch | None = None) -> Scores:
        """Scores on every whole validation image: batched (:attr:`stacked`) or by :func:`image_scores`."""
        if self.stacked is not None:
            return patch_scores(
                model, self.stacked, self.loss_function, self.num_classes, self.hardware, self.batch_size,
                threshold_search,
            )  # fmt: skip
        return image_scores(
            model, self.data, self.loss_function, self.num_classes, self.tile_size, self.margin,
            self.hardware.device, threshold_search,
        )  # fmt: skip

    def epoch_columns(self, model: torch.nn.Module, whole_images: bool) -> dict[str, float | None]:
        """One epoch's history columns ``val_loss``, ``val_dice`` (on the patches; on whole images when
        there are none) and ``image_val_loss``, ``image_val_dice`` (whole images when ``whole_images`` or
        when there are no patches, else None)."""
        images = self.on_images(model) if whole_images or self.patches is None else None
        if self.patches is None:
            every_epoch = images
        else:
            every_epoch = patch_scores(
                model, self.patches, self.loss_function, self.num_classes, self.hardware, self.batch_size
            )
        return {
            "val_loss": every_epoch.loss,
            "val_dice": every_epoch.dice,
            "image_val_loss": images.loss if images is not None else None,
            "image_val_dice": images.dice if images is not None else None,
        }
