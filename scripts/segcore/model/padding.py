"""Any image side works for a same-padding U-Net: mirror-pad to the next multiple of ``2**depth`` for the
net, crop its outputs back.

A same-padding U-Net pools ``depth`` times, so it takes sides that are multiples of ``2**depth`` only
(:meth:`segcore.model.unet.UNet.output_size`). Training batches of other sizes (whole 101 px images, a
100 px patch on a depth-4 net) are padded at the bottom and right with their mirror image, the way
overlap-tile prediction (:mod:`segcore.model.overlap_tile`) extends a single tile past the image's end, and
the logits are cropped back to the batch's own size before the loss, so padded pixels never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from segcore.model.overlap_tile import reflect_indices


def padded_side(side: int, multiple: int) -> int:
    """The smallest positive multiple of ``multiple`` at least ``side``."""
    return max(multiple, math.ceil(side / multiple) * multiple)


def pad_to_multiple(images: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """``images`` (N, C, H, W) mirror-padded at the bottom and right to sides that are multiples of
    ``multiple``; returns (padded (N, C, H', W'), the original (H, W)).

    Reflection without repeating the border pixel (``np.pad(mode="reflect")``), repeated for pads longer
    than the side (any side works, even 1 px). Sides already a multiple come back as they are (no copy).
    """
    height, width = images.shape[-2:]
    new_height, new_width = padded_side(height, multiple), padded_side(width, multiple)
    padded = images
    if new_height != height:
        rows = torch.from_numpy(reflect_indices(0, new_height, height)).to(images.device)
        padded = padded.index_select(-2, rows)
    if new_width != width:
        cols = torch.from_numpy(reflect_indices(0, new_width, width)).to(images.device)
        padded = padded.index_select(-1, cols)
    if padded is not images and images.is_contiguous(memory_format=torch.channels_last):
        padded = padded.contiguous(memory_format=torch.channels_last)  # keep the layout the batch came in
    return padded, (int(height), int(width))


def crop_back(
    outputs: Tensor | Sequence[Tensor], size: tuple[int, int], padded: tuple[int, int]
) -> Tensor | list[Tensor]:
    """Crop the model's outputs for a padded batch back to the unpadded ``size`` (H, W).

    ``outputs``: logits (N, K, H', W') or a deep-supervision list whose later entries are downsampled by a
    power of two (an (N, K, H'/s, W'/s) output keeps its first ``ceil(H/s)`` x ``ceil(W/s)`` pixels: those
    covering at least one image pixel). ``padded``: (H', W'), the padded input's size. Returns the same
    structure (a tensor or a list).
    """

    def crop(output: Tensor) -> Tensor:
        scale_h = padded[0] // output.shape[-2]
        scale_w = padded[1] // output.shape[-1]
        return output[..., : math.ceil(size[0] / scale_h), : math.ceil(size[1] / scale_w)]

    if isinstance(outputs, Tensor):
        return crop(outputs)
    return [crop(output) for output in outputs]


def forward_padded(model: torch.nn.Module, images: Tensor) -> Tensor | list[Tensor]:
    """``model(images)`` for a batch of any size: a same-padding U-Net (``model.margin == 0``) runs on the
    batch mirror-padded to multiples of ``2**model.depth`` (:func:`pad_to_multiple`) and its outputs are
    cropped back (:func:`crop_back`); a valid-padding net (whose input sizes the sampler already chose) runs
    on the batch as it is. ``images``: (N, C, H, W) float; returns what the model returns.
    """
    if getattr(model, "margin", 0) != 0:
        return model(images)
    padded, size = pad_to_multiple(images, 2**model.depth)
    if padded is images:
        return model(images)
    return crop_back(model(padded), size, tuple(padded.shape[-2:]))
