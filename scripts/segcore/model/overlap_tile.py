"""Overlap-tile prediction of arbitrarily large images with mirrored borders (U-Net paper, Fig. 2).

The image is covered by a grid of square tiles that the model sees one batch at a time, so memory beyond the
input image and the output probabilities is bounded by the batch, whatever the image size.

Geometry. A model maps an input tile of ``T = tile_size`` pixels to an output of ``S = T - 2 * margin``
pixels: ``margin = 0`` for same-padding nets, ``margin > 0`` for valid-padding (unpadded) nets whose output
loses ``margin`` pixels per side. Output tiles start every ``S - overlap`` pixels (see :func:`tile_starts`);
the input tile of the output tile starting at ``s`` spans ``[s - margin, s - margin + T)``. Pixels outside
the image are read from its mirror image (``np.pad(mode="reflect")``: the border pixel is not repeated,
reflections repeat for pads longer than the image), computed per tile with :func:`reflect_indices` instead
of padding the whole image. A same net's tiles lie inside the image along any axis at least a tile long,
so there the net's own padding handles the border exactly as in a whole-image pass; along a shorter axis
the single tile runs on into the mirror image.

Result. Tile probabilities are blended with a separable weight (:func:`blend_weights`), normalised so the
weights of all tiles covering a pixel sum to 1. For a valid net every tile's output is exact, so the result
equals running the model once on the whole mirror-padded image (``np.pad(image, margin, "reflect")``). For a
same net, pixels covered by one tile equal that tile's prediction and overlaps are a smooth blend.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from segcore.compute import select_device
from segcore.model.tta import probability_batches, tta_transforms

BLEND_MODES = ("gaussian", "linear")
# Gaussian blend width as a fraction of the tile's output size, as in nnU-Net: tile borders, where a
# same-padding net sees zero padding instead of context, get ~3e-4 of the centre's weight.
_GAUSSIAN_SIGMA_SCALE = 1.0 / 8.0
_ARGMAX_ROWS = 256


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels every ``step`` pixels covering ``[0, length)``.

    The last tile is shifted back to end exactly at ``length``, so no tile leaves the range unless
    ``length < tile`` (then the single start is 0 and the tile runs past the end). Example:
    ``tile_starts(100, 32, 24) == [0, 24, 48, 68]``. Raises ValueError unless ``1 <= step <= tile`` (larger
    steps would leave gaps) and ``length, tile >= 1``.
    """
    if length < 1 or tile < 1 or not 1 <= step <= tile:
        raise ValueError(f"need length, tile >= 1 and 1 <= step <= tile; got {length=}, {tile=}, {step=}")
    if length <= tile:
        return [0]
    count = -(-(length - tile) // step) + 1  # ceil division: enough tiles for the last one to reach the end
    return [min(index * step, length - tile) for index in range(count)]


def reflect_indices(start: int, count: int, length: int) -> np.ndarray:
    """Indices into an axis of ``length`` pixels for positions ``start .. start + count - 1``, mirrored.

    Positions outside ``[0, length)`` are reflected about the border pixels without repeating them, and
    repeatedly for positions farther out than the axis is long, i.e. ``x[reflect_indices(-p, n + 2p, n)]``
    equals ``np.pad(x, p, mode="reflect")`` for any ``p``. An axis of length 1 maps everything to 0.
    Returns int64 ``(count,)``.
    """
    positions = np.arange(start, start + count, dtype=np.int64)
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * (length - 1)  # reflect-padding is periodic: forward over the axis, then back
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - folded)


def blend_weights(size: int, overlap: int, blend: str) -> np.ndarray:
    """Positive float64 ``(size,)`` weight along one axis of a tile's output; the 2-D weight is the outer
    product of two of these.

    ``"gaussian"``: ``exp(-x^2 / 2 sigma^2)`` about the tile centre with ``sigma = size / 8``. ``"linear"``:
    a ramp from ``1 / (overlap + 1)`` at the tile's edge to 1 at ``overlap`` pixels in, so two tiles
    overlapping by exactly ``overlap`` cross-fade with weights summing to 1. Raises ValueError for another
    ``blend``.
    """
    position = np.arange(size, dtype=np.float64)
    if blend == "gaussian":
        sigma = size * _GAUSSIAN_SIGMA_SCALE
        return np.exp(-0.5 * ((position - (size - 1) / 2) / sigma) ** 2)
    if blend == "linear":
        distance_to_edge = np.minimum(position + 1, size - position)
        return np.minimum(1.0, distance_to_edge / (overlap + 1))
    raise ValueError(f"blend must be one of {', '.join(BLEND_MODES)}; got {blend!r}")


@dataclass(frozen=True)
class AxisTiling:
    """The tiles along one image axis.

    ``starts[i]``: first image pixel of output tile ``i``. ``inputs[i]``: the input tile's pixels along the
    axis, a ``slice`` when they lie inside the image, else reflected int64 indices. ``weights[i]``: float32
    blend weights of the output pixels inside the image (length ``min(S, length - starts[i])``), normalised
    so that, at every pixel, the weights of the tiles covering it sum to 1.
    """

    starts: list[int]
    inputs: list[slice | np.ndarray]
    weights: list[np.ndarray]


def axis_tiling(length: int, tile_size: int, margin: int, overlap: int, blend: str) -> AxisTiling:
    """Tile one image axis of ``length`` pixels; see the module docstring for the geometry."""
    output_size = tile_size - 2 * margin
    starts = tile_starts(length, output_size, output_size - overlap)
    inputs: list[slice | np.ndarray] = []
    for start in starts:
        first = start - margin
        if first >= 0 and first + tile_size <= length:
            inputs.append(slice(first, first + tile_size))
        else:
            inputs.append(reflect_indices(first, tile_size, length))
    raw_weights = blend_weights(output_size, overlap, blend)
    weight_sum = np.zeros(length, dtype=np.float64)
    for start in starts:
        covered = min(output_size, length - start)
        weight_sum[start : start + covered] += raw_weights[:covered]
    weights = []
    for start in starts:
        covered = min(output_size, length - start)
        weights.append((raw_weights[:covered] / weight_sum[start : start + covered]).astype(np.float32))
    return AxisTiling(starts, inputs, weights)


def _bounding_slice(pixels: slice | np.ndarray) -> tuple[slice, slice | np.ndarray]:
    """The image slice spanning an axis' tile pixels, and the pixels as positions within that slice."""
    if isinstance(pixels, slice):
        return pixels, slice(None)
    first = int(pixels.min())
    return slice(first, int(pixels.max()) + 1), pixels - first


def _extract_tile(image: np.ndarray, rows: slice | np.ndarray, cols: slice | np.ndarray, out: np.ndarray) -> None:
    """Copy the ``(C, T, T)`` tile of ``image`` at the given row/column slices or index arrays into ``out``.

    Reflected pixels are gathered one axis at a time from the view of the image's box the tile reads, never
    copying more than ``C * T * T`` values at once (``np.take`` copies a non-contiguous input whole, so it
    must not see more than the box). ``mode="clip"`` skips bounds checks (and the buffered copy of ``out``
    they force): the positions lie inside the box by construction.
    """
    row_box, box_rows = _bounding_slice(rows)
    col_box, box_cols = _bounding_slice(cols)
    box = image[:, row_box, col_box]
    if not isinstance(box_rows, slice):
        box = np.take(box, box_rows, axis=1, mode="clip")
    if isinstance(box_cols, slice):
        out[...] = box
    else:
        np.take(box, box_cols, axis=2, out=out, mode="clip")


TilePosition = tuple[int, int]  # (row tile index, column tile index)


def _tile_batches(
    image: np.ndarray, rows: AxisTiling, cols: AxisTiling, tile_size: int, batch_size: int
) -> Iterator[tuple[list[TilePosition], np.ndarray]]:
    """Yield row-major batches of tile positions and their float32 ``(n, C, T, T)`` input tiles.

    One buffer holds every batch, so the tiles must be used (or copied) before the next batch is requested;
    :func:`segcore.model.tta.probability_batches` runs or copies them when it launches a batch.
    """
    positions = [(row, col) for row in range(len(rows.starts)) for col in range(len(cols.starts))]
    buffer = np.empty((min(batch_size, len(positions)), image.shape[0], tile_size, tile_size), np.float32)
    for first in range(0, len(positions), batch_size):
        batch_positions = positions[first : first + batch_size]
        tiles = buffer[: len(batch_positions)]
        for slot, (row, col) in enumerate(batch_positions):
            _extract_tile(image, rows.inputs[row], cols.inputs[col], out=tiles[slot])
        yield batch_positions, tiles


def _add_weighted(
    probabilities: np.ndarray,
    positions: list[TilePosition],
    tile_probabilities: np.ndarray,
    rows: AxisTiling,
    cols: AxisTiling,
) -> None:
    """Add each ``(K, S, S)`` tile, cropped to the image and times its blend weight, into ``probabilities``
    ``(K, H, W)`` in place."""
    for (row, col), tile in zip(positions, tile_probabilities):
        row_weights, col_weights = rows.weights[row], cols.weights[col]
        top, left = rows.starts[row], cols.starts[col]
        height, width = len(row_weights), len(col_weights)
        weight = row_weights[:, None] * col_weights[None, :]
        probabilities[:, top : top + height, left : left + width] += tile[:, :height, :width] * weight


def _check_arguments(
    model: torch.nn.Module,
    image: np.ndarray,
    num_classes: int,
    tile_size: int,
    margin: int,
    overlap: int,
    batch_size: int,
) -> None:
    if model.training:
        raise ValueError("model must be in eval mode (call model.eval()) so every tile is predicted alike")
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"image must be a non-empty (C, H, W) array; got shape {image.shape}")
    if num_classes < 1 or batch_size < 1 or margin < 0:
        raise ValueError(
            f"need num_classes, batch_size >= 1, margin >= 0; got {num_classes=}, {batch_size=}, {margin=}"
        )
    output_size = tile_size - 2 * margin
    if output_size < 1:
        raise ValueError(f"tile_size ({tile_size}) must exceed 2 * margin ({2 * margin})")
    if not 0 <= overlap < output_size:
        raise ValueError(f"overlap must be in [0, tile output size {output_size}); got {overlap}")


def predict_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    num_classes: int,
    tile_size: int,
    margin: int = 0,
    overlap: int = 0,
    batch_size: int = 8,
    blend: str = "gaussian",
    tta: str = "none",
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Per-pixel class probabilities of ``image`` by overlap-tile prediction; float32 ``(K, H, W)``.

    ``model``: an eval-mode module mapping float32 ``(N, C, T, T)`` to ``(N, K, T - 2 * margin, same)``
    logits; it is moved to ``device`` (in place, as ``Module.to`` does). ``image``: float ``(C, H, W)``,
    any ``H, W >= 1`` (images smaller than a tile are mirror-padded). ``overlap``: pixels shared by
    neighbouring output tiles, blended by ``blend`` (``"gaussian"`` or ``"linear"``, :func:`blend_weights`);
    a valid net (``margin > 0``) needs none for a seamless result. ``tta``: ``"none"``, ``"flips"`` or
    ``"d4"`` (:func:`segcore.model.tta.tta_transforms`); probabilities are averaged over the transforms.
    ``device``: default CUDA when available, else CPU. The result sums to 1 over K at every pixel.
    Raises ValueError for inconsistent arguments or a model output of the wrong shape.
    """
    image = np.asarray(image, dtype=np.float32)
    _check_arguments(model, image, num_classes, tile_size, margin, overlap, batch_size)
    transforms = tta_transforms(tta)
    device = select_device("auto") if device is None else torch.device(device)
    _, height, width = image.shape
    output_size = tile_size - 2 * margin
    rows = axis_tiling(height, tile_size, margin, overlap, blend)  # raises for an unknown blend
    cols = axis_tiling(width, tile_size, margin, overlap, blend)

    probabilities = np.zeros((num_classes, height, width), dtype=np.float32)
    model.to(device)
    batches = _tile_batches(image, rows, cols, tile_size, batch_size)
    with torch.inference_mode():
        expected_shape = (num_classes, output_size, output_size)
        for positions, tile_probabilities in probability_batches(model, batches, transforms, device, expected_shape):
            _add_weighted(probabilities, positions, tile_probabilities, rows, cols)
    return probabilities


def class_mask(probabilities: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` argmax over K of float ``(K, H, W)`` probabilities; ties go to the lower class.

    Computed in row bands: argmax's int64 result for the whole image would cost 8 bytes per pixel.
    Raises ValueError for more than 256 classes (a uint8 mask cannot hold them).
    """
    num_classes = probabilities.shape[0]
    if num_classes > 256:
        raise ValueError(f"a uint8 class mask holds at most 256 classes; got {num_classes=}")
    mask = np.empty(probabilities.shape[1:], dtype=np.uint8)
    for top in range(0, mask.shape[0], _ARGMAX_ROWS):
        mask[top : top + _ARGMAX_ROWS] = probabilities[:, top : top + _ARGMAX_ROWS].argmax(axis=0)
    return mask
