"""Tests for segcore.model.unet, segcore.model.spec and segcore.model.blocks.

Expected sizes and parameter counts are worked out by hand in the tests (the paper's Fig. 1 arithmetic); the
572x572 network is checked on torch's meta device, which propagates shapes without computing anything. Model
sections get the schema's defaults from segcore.config_schema, as the Snakefile fills them; the per-key
checks of the section are tested in test_config_schema.py.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segcore.model.unet as unet
from segcore.config_schema import with_defaults
from segcore.io import InputError
from segcore.model.blocks import center_crop, make_upsampler
from segcore.model.spec import parse_model_spec
from segcore.model.unet import (
    UNet,
    count_parameters,
    prepare_for_inference,
    valid_input_size,
    valid_output_size,
)

TINY = {"name": "unet", "widths": [4, 8, 16]}


def build_model(spec: dict, in_channels: int, num_classes: int, where: str = "model") -> UNet:
    """segcore.model.unet.build_model of ``spec`` with the schema's defaults filled in."""
    return unet.build_model(with_defaults("experiments.*.model", spec), in_channels, num_classes, where=where)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _forward(spec: dict, size: tuple[int, int], in_channels: int = 3, num_classes: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(spec, in_channels, num_classes).eval()
    with torch.no_grad():
        return model(torch.rand(2, in_channels, *size))


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({"name": "unet_small"}, (32, 32)),
        ({"name": "unet_small"}, (48, 80)),
        ({"name": "unet_residual"}, (32, 48)),
        ({"name": "unet", "base_width": 4, "depth": 3}, (24, 40)),
        ({**TINY, "upsampling": "interp", "fusion": "add", "batchnorm": True}, (12, 20)),
        ({**TINY, "residual": True, "dropout": 0.3}, (8, 4)),
    ],
)
def test_same_padding_output_matches_input_size(spec: dict, size: tuple[int, int]) -> None:
    assert _forward(spec, size).shape == (2, 4, *size)


@pytest.mark.parametrize(
    ("spec", "input_side", "output_side"),
    [
        # depth 2, input 60: 60-4=56 /2=28, 28-4=24 /2=12, bottleneck 12-4=8, up 16-4=12, up 24-4=20.
        ({**TINY, "padding": "valid"}, 60, 20),
        # depth 2, input 44: 40 /2=20, 16 /2=8, 4, up 8-4=4, up 8-4=4.
        ({**TINY, "padding": "valid", "upsampling": "interp", "residual": True}, 44, 4),
        ({**TINY, "padding": "valid", "fusion": "add", "batchnorm": True}, 60, 20),
    ],
)
def test_valid_padding_output_size_by_hand(spec: dict, input_side: int, output_side: int) -> None:
    assert _forward(spec, (input_side, input_side)).shape == (2, 4, output_side, output_side)


def test_unet_original_maps_572_to_388_with_margin_92() -> None:
    with torch.device("meta"):
        model = build_model({"name": "unet_original"}, 1, 2)
        logits = model(torch.empty(1, 1, 572, 572))
    assert logits.shape == (1, 2, 388, 388)
    assert model.margin == 92 == (572 - 388) // 2
    assert model.output_size(572) == 388


def test_unet_original_parameter_count_matches_paper_formula() -> None:
    def conv(c_in: int, c_out: int, kernel: int) -> int:  # weights + biases, also for transposed conv
        return kernel * kernel * c_in * c_out + c_out

    contracting = conv(1, 64, 3) + conv(64, 64, 3)
    for width in (128, 256, 512, 1024):
        contracting += conv(width // 2, width, 3) + conv(width, width, 3)
    expanding = 0
    for width in (512, 256, 128, 64):
        expanding += conv(2 * width, width, 2) + conv(2 * width, width, 3) + conv(width, width, 3)
    expected = contracting + expanding + conv(64, 2, 1)
    with torch.device("meta"):
        model = build_model({"name": "unet_original"}, 1, 2)
    assert count_parameters(model) == expected
    assert abs(expected - 31.03e6) < 0.01e6


def test_unet_small_preset_widths() -> None:
    model = build_model({"name": "unet_small"}, 3, 4)
    assert model.config.widths == (32, 32, 64, 128, 256)
    assert model.encoder[0].body[0].out_channels == 32
    assert model.bottleneck.body[0].out_channels == 256
    assert model.margin == 0 and model.depth == 4


@pytest.mark.parametrize(
    "spec",
    [
        TINY,
        {**TINY, "batchnorm": True, "dropout": 0.2},
        {"name": "unet", "widths": [4, 4, 8], "residual": True, "batchnorm": True},
        {**TINY, "upsampling": "interp", "fusion": "add"},
        {**TINY, "deep_supervision": True, "deep_supervision_levels": 1},
    ],
)
def test_every_parameter_receives_a_gradient(spec: dict) -> None:
    torch.manual_seed(0)
    model = build_model(spec, 2, 3).train()
    outputs = model(torch.rand(2, 2, 16, 16))
    outputs = outputs if isinstance(outputs, list) else [outputs]
    sum(output.square().mean() for output in outputs).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_valid_padding_parameters_receive_gradients() -> None:
    model = build_model({**TINY, "padding": "valid", "residual": True}, 1, 2).train()
    model(torch.rand(1, 1, 44, 44)).sum().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_valid_size_helpers_by_hand() -> None:
    assert valid_output_size(572, 4) == 388
    assert valid_output_size(188, 4) == 4
    assert valid_output_size(60, 2) == 20
    assert valid_input_size(388, 4) == 572
    assert valid_input_size(389, 4) == 588  # next valid input: +2**4
    assert valid_input_size(1, 4) == 188
    assert valid_input_size(20, 2) == 60
    assert valid_input_size(21, 2) == 64
    for bad_size in (570, 573, 10):
        with pytest.raises(ValueError, match=str(bad_size)):
            valid_output_size(bad_size, 4)


def test_valid_input_size_is_the_smallest_by_brute_force() -> None:
    for depth in (1, 2, 3):
        valid = {}
        for size in range(1, 200):
            try:
                valid[size] = valid_output_size(size, depth)
            except ValueError:
                pass
        for wanted in range(1, 60):
            smallest = min(size for size, out in valid.items() if out >= wanted)
            assert valid_input_size(wanted, depth) == smallest, (depth, wanted)


def test_valid_output_size_agrees_with_the_layers_on_meta() -> None:
    for depth, side in ((1, 18), (3, 140), (3, 92)):
        with torch.device("meta"):
            model = build_model({"name": "unet", "base_width": 2, "depth": depth, "padding": "valid"}, 1, 1)
            logits = model(torch.empty(1, 1, side, side))
        assert logits.shape[-1] == valid_output_size(side, depth)
        assert (side - logits.shape[-1]) // 2 == model.margin


def test_same_padding_rejects_size_not_multiple_naming_it() -> None:
    model = build_model({"name": "unet_small"}, 1, 2)
    with pytest.raises(ValueError, match="100"):
        model(torch.rand(1, 1, 100, 96))
    with pytest.raises(ValueError, match="100"):
        model.output_size(100)


def test_deep_supervision_outputs_in_train_mode_only() -> None:
    model = build_model({"name": "unet", "base_width": 4, "depth": 3, "deep_supervision": True}, 1, 3)
    outputs = model.train()(torch.rand(2, 1, 32, 32))
    assert [tuple(output.shape) for output in outputs] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]
    single = model.eval()(torch.rand(2, 1, 32, 32))
    assert isinstance(single, torch.Tensor) and single.shape == (2, 3, 32, 32)
    one_head = build_model({**TINY, "deep_supervision": True, "deep_supervision_levels": 1}, 1, 3)
    assert len(one_head.train()(torch.rand(1, 1, 8, 8))) == 2


def test_fused_model_equals_unfused() -> None:
    torch.manual_seed(0)
    spec = {"name": "unet", "widths": [4, 8, 16], "batchnorm": True, "residual": True}
    model = build_model(spec, 2, 3).train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(torch.rand(2, 2, 16, 16) * 3 + 1)
    model.eval()
    images = torch.rand(2, 2, 16, 16)
    fused = prepare_for_inference(model)
    with torch.no_grad():
        torch.testing.assert_close(fused(images), model(images), atol=1e-5, rtol=1e-5)
    assert not any(isinstance(module, nn.BatchNorm2d) for module in fused.modules())
    assert any(isinstance(module, nn.BatchNorm2d) for module in model.modules())  # original untouched
    assert not fused.training


def test_interp_upsampler_equals_bilinear_then_conv() -> None:
    torch.manual_seed(0)
    upsampler = make_upsampler("interp", 3, 2)
    conv = upsampler[0]
    features = torch.rand(1, 3, 5, 7)
    reference = F.conv2d(
        F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False), conv.weight, conv.bias
    )
    with torch.no_grad():
        torch.testing.assert_close(upsampler(features), reference, atol=1e-6, rtol=1e-5)


def test_center_crop_by_hand() -> None:
    grid = torch.arange(36).reshape(1, 6, 6)
    assert center_crop(grid, (2, 2)).tolist() == [[[14, 15], [20, 21]]]
    odd = torch.arange(25).reshape(5, 5)
    assert center_crop(odd, (2, 3)).tolist() == [[6, 7, 8], [11, 12, 13]]
    with pytest.raises(ValueError, match="5x5"):
        center_crop(odd, (6, 2))


LEVELS = "model.deep_supervision_levels"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "unet", "widths": [4, 8], "depth": 2}, "model.widths: give either widths or base_width and depth"),
        ({"name": "unet", "base_width": 8}, "model.depth: needed together with base_width"),
        ({"name": "unet_residual", "depth": 2}, "model.base_width: needed together with depth"),
        (
            {**TINY, "deep_supervision": True, "deep_supervision_levels": 2},
            "model.deep_supervision_levels: 2 is not in 1..1",
        ),
        # null levels mean depth - 1, which is 0 for a depth-1 net: no decoder level below the top
        (
            {"name": "unet", "widths": [4, 8], "deep_supervision": True},
            "model.deep_supervision_levels: 0 is not in 1..0",
        ),
    ],
)
def test_cross_key_rules_raise_input_error_naming_key(spec: dict, message: str) -> None:
    with pytest.raises(InputError, match="^config key " + re.escape(message)):
        build_model(spec, 1, 2)


def test_error_names_caller_config_path() -> None:
    with pytest.raises(InputError, match=r"^config key experiments\.a\.model\.depth: "):
        build_model({"name": "unet", "base_width": 8}, 1, 2, where="experiments.a.model")


def test_deep_supervision_levels_are_ignored_without_deep_supervision() -> None:
    model = build_model({**TINY, "deep_supervision_levels": 5}, 1, 2)
    assert model.config.deep_supervision_levels == 0 and len(model.aux_heads) == 0


def test_a_section_without_its_defaults_is_refused_naming_the_key() -> None:
    with pytest.raises(KeyError, match="experiments.a.model lacks 'padding'.*with_defaults"):
        parse_model_spec({"name": "unet", "widths": [4, 8]}, "experiments.a.model")


def test_presets_and_fusion_channel_counts() -> None:
    residual = build_model({"name": "unet_residual"}, 3, 4)
    assert residual.config.residual and residual.config.batchnorm
    assert residual.config.widths == (32, 32, 64, 128, 256)
    concat = build_model(TINY, 1, 2)
    add = build_model({**TINY, "fusion": "add"}, 1, 2)
    assert concat.decoder[-1].block.body[0].in_channels == 8  # skip 4 + upsampled 4
    assert add.decoder[-1].block.body[0].in_channels == 4


def test_dropout_active_in_training_only() -> None:
    torch.manual_seed(0)
    model = build_model({**TINY, "dropout": 0.5}, 1, 2)
    images = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert not torch.equal(model.train()(images), model(images))
        torch.testing.assert_close(model.eval()(images), model(images))
