"""Tests for segcore.model.padding: any side trains on a same-padding U-Net.

References: np.pad(mode="reflect") for the padding, the model run by hand on the np.pad-ded batch for the
forward pass, and slicing by hand for the crop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcore.config_schema import with_defaults
from segcore.model.padding import crop_back, forward_padded, pad_to_multiple, padded_side
from segcore.model.unet import build_model


def model(spec: dict, in_channels: int = 2, num_classes: int = 3):
    torch.manual_seed(0)
    return build_model(with_defaults("experiments.*.model", spec), in_channels, num_classes)


@pytest.mark.parametrize(("side", "multiple", "expected"), [(101, 16, 112), (112, 16, 112), (1, 16, 16), (17, 8, 24)])
def test_padded_side_is_the_next_multiple(side, multiple, expected):
    assert padded_side(side, multiple) == expected


@pytest.mark.parametrize(("height", "width"), [(101, 101), (5, 37), (1, 3), (16, 16)])
def test_pad_to_multiple_mirrors_like_numpy_at_the_bottom_and_right(height, width):
    images = torch.randn(2, 3, height, width, dtype=torch.float64)
    padded, size = pad_to_multiple(images, 16)
    assert size == (height, width)
    expected = images.numpy()
    for axis, side in ((2, height), (3, width)):
        pad = [(0, 0)] * 4
        pad[axis] = (0, padded_side(side, 16) - side)
        # np.pad's reflect needs a side of at least 2 to reflect about; a 1 px side repeats its pixel.
        expected = np.pad(expected, pad, mode="reflect" if side > 1 else "edge")
    np.testing.assert_array_equal(padded.numpy(), expected)
    assert torch.equal(crop_back(padded, size, tuple(padded.shape[-2:])), images)  # round trip
    if (height, width) == (16, 16):
        assert padded is images  # nothing to pad: no copy


def test_pad_keeps_a_channels_last_batch_channels_last():
    images = torch.randn(2, 3, 21, 21).contiguous(memory_format=torch.channels_last)
    padded, _ = pad_to_multiple(images, 8)
    assert padded.is_contiguous(memory_format=torch.channels_last)


def test_crop_back_keeps_the_pixels_covering_the_image_at_every_scale():
    outputs = [torch.zeros(1, 3, 112, 112), torch.zeros(1, 3, 56, 56), torch.zeros(1, 3, 28, 28)]
    cropped = crop_back(outputs, (101, 90), (112, 112))
    # ceil(101 / s) x ceil(90 / s) for s = 1, 2, 4
    assert [tuple(t.shape[-2:]) for t in cropped] == [(101, 90), (51, 45), (26, 23)]


def test_forward_padded_equals_the_model_on_the_padded_batch_cropped_back():
    net = model({"name": "unet", "widths": [4, 8, 16], "batchnorm": True}).eval()
    images = torch.randn(2, 2, 101, 37)
    with pytest.raises(ValueError, match="not a positive multiple of 4"):
        net(images)  # the bare net refuses the size
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (0, 3), (0, 3)), mode="reflect")
    with torch.no_grad():
        expected = net(torch.from_numpy(padded))[..., :101, :37]
        logits = forward_padded(net, images)
    assert logits.shape == (2, 3, 101, 37)
    torch.testing.assert_close(logits, expected)


def test_forward_padded_crops_deep_supervision_outputs_and_trains():
    net = model({"name": "unet", "widths": [4, 8, 16], "deep_supervision": True}).train()
    images = torch.randn(2, 2, 30, 30, requires_grad=True)
    outputs = forward_padded(net, images)
    assert [tuple(o.shape[-2:]) for o in outputs] == [(30, 30), (15, 15)]  # padded 32 -> 16 at level 1
    sum(o.sum() for o in outputs).backward()
    assert images.grad is not None and images.grad.shape == images.shape


def test_padded_pixels_do_not_reach_the_loss():
    """A loss on the cropped logits has no gradient with respect to the padded part of the net's output."""
    net = model({"name": "unet", "widths": [4, 8]}).train()
    images = torch.randn(1, 2, 13, 13)
    padded, size = pad_to_multiple(images, 2)
    logits = net(padded)
    logits.retain_grad()
    crop_back(logits, size, tuple(padded.shape[-2:])).sum().backward()
    assert torch.all(logits.grad[..., 13:, :] == 0) and torch.all(logits.grad[..., :, 13:] == 0)
    assert torch.all(logits.grad[..., :13, :13] == 1)


def test_valid_padding_nets_run_as_they_are():
    with torch.device("meta"):
        net = model({"name": "unet", "widths": [4, 8, 16], "padding": "valid"})
        # 104 is a valid input of a depth-2 valid net (output 64); forward_padded must not pad it.
        assert forward_padded(net, torch.empty(1, 2, 104, 104)).shape[-1] == 64
