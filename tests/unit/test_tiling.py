"""Overlap-tile prediction and test-time augmentation, checked against whole-image runs of toy nets.

References are independent of the code under test: ``np.pad(mode="reflect")`` for the mirrored borders,
the model run once on the whole (padded) image with ``torch.softmax``, ``np.flip``/``np.rot90`` for TTA, and
hand-computed tile layouts and weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcore.model.overlap_tile import (
    axis_tiling,
    blend_weights,
    class_mask,
    predict_probabilities,
    reflect_indices,
    tile_starts,
)
from segcore.model.tta import tta_transforms

CHANNELS = 3
CLASSES = 3
TILE = 32
VALID_MARGIN = 3  # three unpadded 3x3 convolutions each lose one pixel per side
SAME_RADIUS = 2  # two padded 3x3 convolutions: each output pixel sees +-2 pixels


def _valid_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(CHANNELS, 6, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 6, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, CLASSES, 3),
    ).eval()


def _same_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(CHANNELS, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, CLASSES, 3, padding=1),
    ).eval()


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((CHANNELS, height, width), dtype=np.float32)


def _whole_image_softmax(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The reference: one forward pass on the whole image, softmax over classes; (K, H', W')."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(image))[None])
    return torch.softmax(logits, dim=1)[0].numpy()


def _mirror_pad(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    return np.pad(image, ((0, 0), (top, bottom), (left, right)), mode="reflect")


# --- geometry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "tile", "step", "expected"),
    [
        (100, 32, 24, [0, 24, 48, 68]),  # last start 72 would overrun: shifted back to 100 - 32
        (64, 32, 32, [0, 32]),
        (65, 32, 32, [0, 32, 33]),
        (32, 32, 8, [0]),
        (5, 32, 16, [0]),  # shorter than a tile: one tile running past the end
        (1, 1, 1, [0]),
    ],
)
def test_tile_starts_hand_computed(length, tile, step, expected):
    assert tile_starts(length, tile, step) == expected


@pytest.mark.parametrize(("length", "tile", "step"), [(10, 4, 0), (10, 4, 5), (0, 4, 2)])
def test_tile_starts_rejects_gaps_and_empty_axes(length, tile, step):
    with pytest.raises(ValueError, match="step"):
        tile_starts(length, tile, step)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("pad", [0, 1, 4, 13])
def test_reflect_indices_match_np_pad_reflect_even_for_pads_longer_than_the_axis(length, pad):
    axis = np.arange(10, 10 + length)
    padded = np.pad(axis, pad, mode="reflect")
    np.testing.assert_array_equal(axis[reflect_indices(-pad, length + 2 * pad, length)], padded)
    # Any window of the padded axis, e.g. one starting 3 pixels into it.
    window = padded[3:]
    np.testing.assert_array_equal(axis[reflect_indices(3 - pad, len(window), length)], window)


def test_blend_weights_hand_computed():
    np.testing.assert_allclose(blend_weights(6, 2, "linear"), [1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3])
    np.testing.assert_allclose(blend_weights(3, 0, "linear"), [1, 1, 1])
    gaussian = blend_weights(8, 2, "gaussian")  # sigma = 8 / 8 = 1, centre 3.5
    np.testing.assert_allclose(gaussian, np.exp(-0.5 * (np.arange(8) - 3.5) ** 2))
    with pytest.raises(ValueError, match="blend"):
        blend_weights(8, 2, "cosine")


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_axis_weights_sum_to_one_at_every_pixel(blend):
    tiling = axis_tiling(100, TILE, 0, 8, blend)
    assert tiling.starts == [0, 24, 48, 68]
    total = np.zeros(100)
    for start, weights in zip(tiling.starts, tiling.weights):
        total[start : start + len(weights)] += weights
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)
    assert all(weights.min() > 0 for weights in tiling.weights)


# --- valid-padding net: exact overlap-tile prediction ----------------------------------------------------


def test_toy_valid_net_loses_the_margin():
    output = _valid_net()(torch.zeros(2, CHANNELS, TILE, TILE))
    assert output.shape == (2, CLASSES, TILE - 2 * VALID_MARGIN, TILE - 2 * VALID_MARGIN)


@pytest.mark.parametrize(
    ("height", "width"),
    [
        (70, 53),  # larger than a tile, odd, non-square
        (26, 26),  # exactly one output tile
        (5, 7),  # smaller than a tile
        (2, 3),  # smaller than the margin: the mirror reflects repeatedly
        (1, 1),
    ],
)
@pytest.mark.parametrize(("overlap", "blend", "batch_size"), [(0, "gaussian", 8), (6, "linear", 3)])
def test_valid_net_tiles_equal_one_pass_on_the_mirror_padded_image(height, width, overlap, blend, batch_size):
    model, image = _valid_net(), _image(height, width)
    m = VALID_MARGIN
    expected = _whole_image_softmax(model, _mirror_pad(image, m, m, m, m))
    result = predict_probabilities(
        model,
        image,
        num_classes=CLASSES,
        tile_size=TILE,
        margin=m,
        overlap=overlap,
        blend=blend,
        batch_size=batch_size,
        device="cpu",
    )
    assert result.dtype == np.float32 and result.shape == (CLASSES, height, width)
    np.testing.assert_allclose(result, expected, atol=1e-5)
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_class_mask_is_argmax_of_whole_image_prediction():
    model, image = _valid_net(), _image(61, 97, seed=3)
    m = VALID_MARGIN
    expected = _whole_image_softmax(model, _mirror_pad(image, m, m, m, m)).argmax(axis=0)
    mask = class_mask(predict_probabilities(model, image, num_classes=CLASSES, tile_size=TILE, margin=m, device="cpu"))
    assert mask.dtype == np.uint8 and mask.shape == (61, 97)
    np.testing.assert_array_equal(mask, expected)


# --- same-padding net: blended tiles ---------------------------------------------------------------------


def _exact_pixels_along_axis(length: int, starts: list[int], radius: int) -> np.ndarray:
    """True where every tile covering the pixel sees its full receptive field (or the image border, which
    the whole-image pass zero-pads alike)."""
    exact = np.ones(length, dtype=bool)
    for start in starts:
        end = start + TILE
        for pixel in range(start, min(end, length)):
            near_cut_start = start > 0 and pixel - start < radius
            near_cut_end = end < length and end - 1 - pixel < radius
            exact[pixel] &= not (near_cut_start or near_cut_end)
    return exact


# Bounds near cuts: an unblended tile is off by up to ~0.046 within 2 pixels of its cut on this image; the
# gaussian keeps ~3e-4 of its weight at the tile edge, the linear ramp 1/9 (overlap 8).
@pytest.mark.parametrize(("blend", "near_cut_bound"), [("gaussian", 0.005), ("linear", 0.02)])
def test_same_net_blend_equals_whole_image_away_from_tile_cuts(blend, near_cut_bound):
    model, image = _same_net(), _image(100, 77, seed=1)
    expected = _whole_image_softmax(model, image)  # conv zero padding at the border, as in edge tiles
    result = predict_probabilities(
        model, image, num_classes=CLASSES, tile_size=TILE, overlap=8, blend=blend, device="cpu"
    )
    row_exact = _exact_pixels_along_axis(100, [0, 24, 48, 68], SAME_RADIUS)
    col_exact = _exact_pixels_along_axis(77, [0, 24, 45], SAME_RADIUS)
    exact = row_exact[:, None] & col_exact[None, :]
    assert 0.5 < exact.mean() < 1.0  # both kinds of pixel are present
    difference = np.abs(result - expected).max(axis=0)
    assert difference[exact].max() < 1e-5
    # Near a cut one tile lacks context, but the other tile covering the pixel dominates the blend.
    assert difference[~exact].max() < near_cut_bound
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


def test_same_net_one_tile_image_is_one_pass():
    model, image = _same_net(), _image(TILE, TILE, seed=2)
    result = predict_probabilities(model, image, num_classes=CLASSES, tile_size=TILE, overlap=8, device="cpu")
    np.testing.assert_allclose(result, _whole_image_softmax(model, image), atol=1e-5)


def test_same_net_small_image_is_mirror_padded_to_a_tile():
    model, image = _same_net(), _image(5, 7, seed=4)
    padded = _mirror_pad(image, 0, TILE - 5, 0, TILE - 7)  # pads longer than the image: repeated reflection
    expected = _whole_image_softmax(model, padded)[:, :5, :7]
    result = predict_probabilities(model, image, num_classes=CLASSES, tile_size=TILE, overlap=8, device="cpu")
    np.testing.assert_allclose(result, expected, atol=1e-5)


# --- test-time augmentation -----------------------------------------------------------------------------


def _symmetric_conv(symmetries: str) -> torch.nn.Module:
    """A padded 3x3 conv whose kernel is averaged over flips (``"flips"``) or all of D4 (``"d4"``), so the
    model commutes with those transforms (zero padding is symmetric too)."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(CHANNELS, CLASSES, 3, padding=1)
    kernel = conv.weight.detach()
    images = [kernel, kernel.flip(-1), kernel.flip(-2), kernel.flip(-2, -1)]
    if symmetries == "d4":
        images += [image.transpose(-2, -1) for image in images]
    with torch.no_grad():
        conv.weight.copy_(torch.stack(images).mean(dim=0))
    return conv.eval()


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_tta_with_an_equivariant_model_equals_no_tta(mode):
    model, image = _symmetric_conv(mode), _image(45, 39, seed=5)
    options = dict(num_classes=CLASSES, tile_size=TILE, overlap=8, device="cpu")
    plain = predict_probabilities(model, image, tta="none", **options)
    np.testing.assert_allclose(predict_probabilities(model, image, tta=mode, **options), plain, atol=1e-5)


def _numpy_d4_average(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Mean softmax over the 8 symmetries of the square, written with np.rot90/np.flip."""
    total = 0.0
    for flip in (False, True):
        for turns in range(4):
            view = np.rot90(np.flip(image, -1) if flip else image, turns, axes=(-2, -1))
            output = np.rot90(_whole_image_softmax(model, view), -turns, axes=(-2, -1))
            total = total + (np.flip(output, -1) if flip else output)
    return total / 8


def test_d4_tta_of_an_asymmetric_model_averages_the_eight_views():
    model, image = _same_net(), _image(TILE, TILE, seed=6)
    result = predict_probabilities(model, image, num_classes=CLASSES, tile_size=TILE, tta="d4", device="cpu")
    expected = _numpy_d4_average(model, image)
    np.testing.assert_allclose(result, expected, atol=1e-5)
    assert np.abs(expected - _whole_image_softmax(model, image)).max() > 1e-3  # TTA changed something
    np.testing.assert_allclose(result.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize(("mode", "count"), [("none", 1), ("flips", 4), ("d4", 8)])
def test_tta_transforms_are_distinct_and_invertible(mode, count):
    grid = torch.arange(16.0).reshape(1, 1, 4, 4)
    transforms = tta_transforms(mode)
    assert len(transforms) == count
    assert transforms[0].apply(grid).equal(grid)
    assert len({tuple(t.apply(grid).flatten().tolist()) for t in transforms}) == count
    for transform in transforms:
        assert transform.invert(transform.apply(grid)).equal(grid)


# --- argument checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(margin=16), "must exceed"),
        (dict(margin=3, overlap=26), "overlap"),
        (dict(margin=3, tta="rot"), "tta"),
        (dict(margin=3, blend="box"), "blend"),
        (dict(margin=2), "model output"),  # the net loses 3 pixels per side, not 2
        (dict(margin=3, num_classes=2), "model output"),
        (dict(margin=3, batch_size=0), "batch_size"),
    ],
)
def test_inconsistent_arguments_are_rejected(options, message):
    arguments = dict(num_classes=CLASSES, tile_size=TILE, device="cpu") | options
    with pytest.raises(ValueError, match=message):
        predict_probabilities(_valid_net(), _image(40, 40), **arguments)


def test_training_mode_model_and_bad_image_are_rejected():
    with pytest.raises(ValueError, match="eval mode"):
        predict_probabilities(
            _valid_net().train(), _image(40, 40), num_classes=CLASSES, tile_size=TILE, margin=3, device="cpu"
        )
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        predict_probabilities(
            _valid_net(), np.zeros((40, 40), np.float32), num_classes=CLASSES, tile_size=TILE, margin=3, device="cpu"
        )
