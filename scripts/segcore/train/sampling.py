"""Where training patches are cut (uniform or around foreground) and the cheap online augmentation of a batch.

Foreground-aware sampling (nnU-Net's ``oversample_foreground_percent``): in a batch of ``n`` samples, the first
``ceil(fraction * n)`` patches are centred on a foreground pixel (a foreground class present in the image
drawn uniformly, then one of its pixels drawn uniformly), the others are placed uniformly. Batch order is a
random permutation, so which images get foreground patches changes every epoch. A centred window is shifted
to lie inside the image, which keeps the chosen pixel inside the patch. Sparse objects (a 5x5 nucleus in a
256x256 tile) are then seen in at least that share of patches instead of in a few per cent of them.

Online augmentation: per sample, a random horizontal and vertical flip (``flips``) and a random number of
quarter turns (``rot90``, square samples only), applied alike to image, mask and weight map. These are
exact (no interpolation) and cost a copy, on top of the elastic copies made offline.

Every random choice comes from the NumPy generator the caller passes (the epoch's), in a fixed order, so an
epoch stays a pure function of ``(seed, epoch)``; with ``fraction`` 0 and no online augmentation nothing
more is drawn than uniform corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def foreground_patch_count(batch_length: int, fraction: float) -> int:
    """How many of a batch's ``batch_length`` patches are centred on foreground: ``ceil(fraction * n)``
    (the share is never below ``fraction``; 1e-9 absorbs rounding, so 1/3 of 3 is 1, not 2)."""
    return min(batch_length, math.ceil(fraction * batch_length - 1e-9)) if fraction > 0 else 0


def uniform_corner(rng: np.random.Generator, height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of a ``size`` window drawn uniformly inside an ``height x width`` image (0 on a side the
    window covers whole; the sampler mirror-pads there)."""
    top = int(rng.integers(0, max(height - size, 0) + 1))
    left = int(rng.integers(0, max(width - size, 0) + 1))
    return top, left


class ForegroundPixels:
    """Per image, the flat indices (int32) of each foreground class's pixels, computed on first use.

    ``masks``: uint8 ``(H, W)`` class masks (0 = background). Memory: 4 bytes per foreground pixel.
    """

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks
        self._cache: dict[int, list[np.ndarray]] = {}

    def of_image(self, index: int) -> list[np.ndarray]:
        """One int32 array of flat pixel indices per foreground class present in image ``index``, by class."""
        if index not in self._cache:
            flat = self.masks[index].ravel()
            classes = np.unique(flat)
            self._cache[index] = [np.flatnonzero(flat == value).astype(np.int32) for value in classes if value != 0]
        return self._cache[index]


def foreground_corner(
    rng: np.random.Generator, pixels: list[np.ndarray], height: int, width: int, size: int
) -> tuple[int, int]:
    """(top, left) of a ``size`` window centred on a random foreground pixel, shifted inside the image.

    ``pixels``: :meth:`ForegroundPixels.of_image` of the image. Falls back to :func:`uniform_corner` when
    the image has no foreground or the window covers it whole (nothing to choose then).
    """
    if not pixels or (height <= size and width <= size):
        return uniform_corner(rng, height, width, size)
    chosen = pixels[int(rng.integers(len(pixels)))]
    row, col = divmod(int(chosen[int(rng.integers(chosen.size))]), width)
    top = min(max(row - size // 2, 0), max(height - size, 0))
    left = min(max(col - size // 2, 0), max(width - size, 0))
    return top, left


@dataclass(frozen=True)
class OnlineAugmentation:
    """Random flips and quarter turns per sample (module docstring); both off: batches pass unchanged."""

    flips: bool
    rot90: bool

    @property
    def active(self) -> bool:
        return self.flips or self.rot90

    def apply(
        self,
        rng: np.random.Generator,
        images: torch.Tensor,
        masks: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The batch with each sample transformed alike in all three tensors.

        ``images`` (N, C, h, w), ``masks`` (N, h, w), ``weights`` (N, h, w) or None; returns new tensors of
        the same shapes and dtypes. Draws, in this order: flips (N, 2) booleans when ``flips``, then (N,)
        quarter turns in 0..3 when ``rot90`` and ``h == w`` (non-square samples are not rotated).
        """
        if not self.active:
            return images, masks, weights
        count, square = images.shape[0], images.shape[-1] == images.shape[-2]
        flips = rng.integers(0, 2, size=(count, 2)).astype(bool) if self.flips else np.zeros((count, 2), bool)
        turns = rng.integers(0, 4, size=count) if self.rot90 and square else np.zeros(count, np.int64)
        tensors = [images, masks] + ([weights] if weights is not None else [])
        out = [tensor.clone() for tensor in tensors]
        for index in range(count):
            dims = [dim for dim, flip in zip((-1, -2), flips[index]) if flip]
            if not dims and turns[index] == 0:
                continue
            for source, target in zip(tensors, out):
                sample = source[index]
                if dims:
                    sample = torch.flip(sample, dims)
                if turns[index]:
                    sample = torch.rot90(sample, int(turns[index]), dims=(-2, -1))
                target[index] = sample
        return out[0], out[1], out[2] if weights is not None else None
