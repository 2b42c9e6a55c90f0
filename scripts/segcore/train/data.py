"""Training and validation data held in memory, and seeded batch sampling from it.

The training set is read once (a few thousand small images fit in memory many times over); every batch is
then an index into arrays already in memory, so feeding data costs a small fraction of a training step.
Images of equal size are stacked into one tensor; with ``patch_size`` set, each batch element is a random
crop of that size (images smaller than the patch are mirror-padded first), so datasets of mixed image sizes
train on fixed-size patches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segcore.augment.border_target import border_target
from segcore.io import read_tiff
from segcore.plan.normalise import DTYPE_SCALING, Normalisation, normalise_image
from segcore.train.sampling import (
    ForegroundPixels,
    OnlineAugmentation,
    foreground_corner,
    foreground_patch_count,
    uniform_corner,
)


@dataclass
class LabelledImages:
    """Images with class masks and optional weight maps, index-aligned.

    images: float32 (C, H, W) each; masks: uint8 (H, W) each; weights: float32 (H, W) each, or None.
    """

    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    weights: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def channels(self) -> int:
        return self.images[0].shape[0]


def load_labelled_images(
    sample_dirs: Sequence[str | os.PathLike],
    ids: Sequence[str] | None = None,
    weight_dirs: Sequence[str | os.PathLike] | None = None,
    *,
    border_width: int | None = None,
    num_classes: int = 0,
    normalisation: Normalisation = DTYPE_SCALING,
) -> LabelledImages:
    """Read ``images/<id>.tif`` and ``masks/<id>.tif`` (and weight maps ``<id>.tif``) from sample folders.

    ``sample_dirs`` are canonical folders (or augmentation shard folders of the same layout); ``ids`` limits
    the selection (default: every image found), ``weight_dirs`` hold one weight map per id; images become
    float32 (C, H, W) by ``normalisation`` (:func:`segcore.plan.normalise.normalise_image`). Ids are returned
    sorted, so the order does not depend on the file system. With ``border_width`` the masks get the border
    class K = ``num_classes`` (the dataset's classes) from ``instances/<id>.tif``
    (:func:`segcore.augment.border_target.border_target`).
    """
    locations: dict[str, Path] = {}
    for folder in sample_dirs:
        for path in Path(folder, "images").glob("*.tif"):
            locations[path.stem] = Path(folder)
    wanted = sorted(locations) if ids is None else sorted(ids)
    missing = [sample_id for sample_id in wanted if sample_id not in locations]
    if missing:
        raise FileNotFoundError(f"no image for ids {missing[:5]} in {[str(d) for d in sample_dirs]}")
    weight_locations: dict[str, Path] = {}
    for folder in weight_dirs or []:
        for path in Path(folder).glob("*.tif"):
            weight_locations[path.stem] = path
    images, masks, weights = [], [], []
    for sample_id in wanted:
        folder = locations[sample_id]
        images.append(normalise_image(read_tiff(folder / "images" / f"{sample_id}.tif"), normalisation))
        mask = read_tiff(folder / "masks" / f"{sample_id}.tif").astype(np.uint8)
        if border_width is not None:
            instances = read_tiff(folder / "instances" / f"{sample_id}.tif")
            mask = border_target(mask, instances, border_width, num_classes)
        masks.append(mask)
        if weight_dirs is not None:
            if sample_id not in weight_locations:
                raise FileNotFoundError(f"no weight map for training sample {sample_id!r}")
            weights.append(read_tiff(weight_locations[sample_id]).astype(np.float32))
    return LabelledImages(list(wanted), images, masks, weights if weight_dirs is not None else None)


def _crop_or_pad(array: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """A (..., size, size) window of ``array`` (..., H, W); mirror-pads first where the image is smaller."""
    height, width = array.shape[-2:]
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h or pad_w:
        pad = [(0, 0)] * (array.ndim - 2) + [(0, pad_h), (0, pad_w)]
        array = np.pad(array, pad, mode="symmetric")
    return array[..., top : top + size, left : left + size]


class BatchSampler:
    """Seeded batches of (image, mask, weight) tensors from :class:`LabelledImages` held in memory.

    Without ``patch_size`` all images must share one size; they are stacked once and every batch is an
    index_select. With ``patch_size`` each batch element is a random ``patch_size`` crop, the first
    ``ceil(foreground_fraction * n)`` of a batch of n centred on foreground (:mod:`segcore.train.sampling`).
    ``augmentation`` flips and turns the samples of every batch (None: none).
    """

    def __init__(
        self,
        data: LabelledImages,
        batch_size: int,
        patch_size: int | None = None,
        *,
        foreground_fraction: float = 0.0,
        augmentation: OnlineAugmentation | None = None,
    ) -> None:
        self.data = data
        self.batch_size = batch_size
        self.patch_size = patch_size
        self.foreground_fraction = foreground_fraction
        self.augmentation = augmentation or OnlineAugmentation(flips=False, rot90=False)
        self.foreground = ForegroundPixels(data.masks)
        self.stacked = None
        if patch_size is None:
            shapes = {image.shape[1:] for image in data.images}
            if len(shapes) != 1:
                raise ValueError(
                    f"training images have {len(shapes)} different sizes; set training.patch_size to train on "
                    "fixed-size patches"
                )
            self.stacked = (
                torch.from_numpy(np.stack(data.images)),
                torch.from_numpy(np.stack(data.masks).astype(np.int64)),
                torch.from_numpy(np.stack(data.weights)) if data.weights is not None else None,
            )

    def __len__(self) -> int:
        """Batches per epoch (the last, smaller batch is kept)."""
        return -(-len(self.data) // self.batch_size)

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Yield one epoch of batches in an order drawn from ``rng``: (N, C, h, w) float32, (N, h, w) int64,
        (N, h, w) float32 or None."""
        order = rng.permutation(len(self.data))
        for start in range(0, len(order), self.batch_size):
            indices = order[start : start + self.batch_size]
            if self.stacked is not None:
                index = torch.from_numpy(indices)
                images, masks, weights = self.stacked
                batch = images[index], masks[index], None if weights is None else weights[index]
            else:
                batch = self._patches(indices, rng)
            yield self.augmentation.apply(rng, *batch)

    def corner(self, rng: np.random.Generator, index: int, centre_on_foreground: bool) -> tuple[int, int]:
        """(top, left) of a patch of image ``index``: around foreground or uniform."""
        height, width = self.data.masks[index].shape
        if centre_on_foreground:
            return foreground_corner(rng, self.foreground.of_image(index), height, width, self.patch_size)
        return uniform_corner(rng, height, width, self.patch_size)

    def _patches(self, indices: np.ndarray, rng: np.random.Generator):
        size = self.patch_size
        images, masks, weights = [], [], []
        on_foreground = foreground_patch_count(len(indices), self.foreground_fraction)
        for position, i in enumerate(indices):
            top, left = self.corner(rng, int(i), position < on_foreground)
            images.append(_crop_or_pad(self.data.images[i], top, left, size))
            masks.append(_crop_or_pad(self.data.masks[i], top, left, size))
            if self.data.weights is not None:
                weights.append(_crop_or_pad(self.data.weights[i], top, left, size))
        return (
            torch.from_numpy(np.stack(images)),
            torch.from_numpy(np.stack(masks).astype(np.int64)),
            torch.from_numpy(np.stack(weights)) if weights else None,
        )
