"""Max-unpooling upsampling (``experiments.<name>.model.upsampling: unpool``, SegNet style).

References: ``torch.nn.functional.max_unpool2d`` on a hand-built tensor with hand-written expected output,
a plain Python loop that places every value at its window's argmax (for the cropped valid-padding case),
numpy window maxima for "values land where the encoder's maximum was", and the eager model for TorchScript.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import segcore.model.unet as unet
from segcore.config_schema import with_defaults
from segcore.model.blocks import DecoderStep, MaxUnpoolUpsampler, make_upsampler, max_unpool_into
from segcore.model.unet import UNet, prepare_for_inference, valid_output_size

TINY = {"name": "unet", "widths": [4, 8, 16], "upsampling": "unpool"}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def build_model(spec: dict, in_channels: int, num_classes: int) -> UNet:
    """segcore.model.unet.build_model with the schema's defaults filled in, seeded."""
    torch.manual_seed(0)
    return unet.build_model(with_defaults("experiments.*.model", spec), in_channels, num_classes)


# --- the unpooling operation ---------------------------------------------------------------------------


def test_unpool_of_a_hand_built_tensor() -> None:
    # Window maxima at distinct positions: top-left window max at (1, 0), top-right at (0, 3),
    # bottom-left at (3, 1), bottom-right at (2, 2).
    image = torch.tensor(
        [
            [1.0, 0.0, 0.0, 5.0],
            [4.0, 2.0, 3.0, 1.0],
            [0.0, 1.0, 9.0, 0.0],
            [0.0, 6.0, 2.0, 8.0],
        ]
    )[None, None]
    pooled, indices = F.max_pool2d(image, 2, return_indices=True)
    assert pooled.flatten().tolist() == [4.0, 5.0, 6.0, 9.0]
    values = torch.tensor([[10.0, 20.0], [30.0, 40.0]])[None, None]
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.0, 20.0],
            [10.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 40.0, 0.0],
            [0.0, 30.0, 0.0, 0.0],
        ]
    )[None, None]
    torch.testing.assert_close(F.max_unpool2d(values, indices, 2), expected)
    torch.testing.assert_close(max_unpool_into(values, indices, [4, 4]), expected)


def _unpool_by_loop(values: np.ndarray, indices: np.ndarray, skip_width: int) -> np.ndarray:
    """Reference for the centred case: ``values`` (C, h, w) at pooled cells offset by ``(P - h) // 2``."""
    channels, height, width = values.shape
    top, left = (indices.shape[1] - height) // 2, (indices.shape[2] - width) // 2
    out = np.zeros((channels, 2 * height, 2 * width), values.dtype)
    for c in range(channels):
        for i in range(height):
            for j in range(width):
                row, col = divmod(int(indices[c, top + i, left + j]), skip_width)
                out[c, row - 2 * top, col - 2 * left] = values[c, i, j]
    return out


@pytest.mark.parametrize(("skip_size", "below_size"), [((12, 16), (6, 8)), ((12, 16), (2, 4)), ((20, 20), (6, 6))])
def test_unpool_matches_a_loop_for_centred_smaller_features(skip_size, below_size) -> None:
    torch.manual_seed(1)
    skip = torch.rand(2, 3, *skip_size)
    _, indices = F.max_pool2d(skip, 2, return_indices=True)
    values = torch.rand(2, 3, *below_size) + 1
    result = max_unpool_into(values, indices, list(skip_size))
    assert result.shape == (2, 3, 2 * below_size[0], 2 * below_size[1])
    for n in range(2):
        expected = _unpool_by_loop(values[n].numpy(), indices[n].numpy(), skip_size[1])
        np.testing.assert_array_equal(result[n].numpy(), expected)


def test_unpool_refuses_odd_or_negative_margins() -> None:
    _, indices = F.max_pool2d(torch.rand(1, 1, 12, 12), 2, return_indices=True)
    for size in ((5, 6), (8, 6)):  # odd margin; larger than the pooled map
        with pytest.raises(ValueError, match="cannot unpool"):
            max_unpool_into(torch.rand(1, 1, *size), indices, [12, 12])


def test_upsampler_is_a_1x1_convolution_then_max_unpool() -> None:
    torch.manual_seed(0)
    upsampler = make_upsampler("unpool", 6, 3)
    assert isinstance(upsampler, MaxUnpoolUpsampler)
    _, indices = F.max_pool2d(torch.rand(2, 3, 10, 14), 2, return_indices=True)
    below = torch.rand(2, 6, 5, 7)
    conv = upsampler.project
    reference = F.max_unpool2d(F.conv2d(below, conv.weight, conv.bias), indices, 2, output_size=[10, 14])
    with torch.no_grad():
        torch.testing.assert_close(upsampler(below, indices, [10, 14]), reference)


def test_decoder_step_needs_the_indices() -> None:
    step = DecoderStep(8, 4, "same", False, False, "unpool", "concat")
    with pytest.raises(ValueError, match="indices"):
        step(torch.rand(1, 8, 4, 4), torch.rand(1, 4, 8, 8))


def test_decoder_values_land_where_the_encoder_maximum_was() -> None:
    """The first decoder step's upsampled map is non-zero only at each 2x2 window's maximum of its skip."""
    model = build_model({**TINY, "widths": [4, 8]}, 1, 2).eval()
    captured: dict[str, torch.Tensor] = {}
    model.decoder[0].up.register_forward_hook(lambda module, args, out: captured.update(up=out))
    model.encoder[0].register_forward_hook(lambda module, args, out: captured.update(skip=out))
    with torch.no_grad():
        model(torch.rand(1, 1, 12, 16))
    skip = captured["skip"][0].numpy()
    window_max = skip.reshape(4, 6, 2, 8, 2).max(axis=(2, 4)).repeat(2, axis=1).repeat(2, axis=2)
    at_max = skip == window_max
    nonzero = captured["up"][0].numpy() != 0
    assert nonzero.any()
    assert not (nonzero & ~at_max).any()
    # one value per window at most
    assert nonzero.reshape(4, 6, 2, 8, 2).sum(axis=(2, 4)).max() <= 1


# --- the network ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (TINY, (16, 16)),
        (TINY, (12, 20)),  # pooled maps 3x5 at the bottom: odd sizes
        ({**TINY, "widths": [4, 8, 16, 32]}, (24, 40)),  # 3x5 at depth 3
        ({**TINY, "fusion": "add", "batchnorm": True, "residual": True}, (20, 12)),
    ],
)
def test_same_padding_output_size(spec: dict, size: tuple[int, int]) -> None:
    with torch.no_grad():
        logits = build_model(spec, 3, 4).eval()(torch.rand(2, 3, *size))
    assert logits.shape == (2, 4, *size)


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({**TINY, "padding": "valid"}, (44, 60)),
        ({**TINY, "padding": "valid", "residual": True}, (48, 52)),
        ({**TINY, "widths": [2, 4, 8, 16], "padding": "valid"}, (92, 108)),
    ],
)
def test_valid_padding_output_size_equals_transpose(spec: dict, size: tuple[int, int]) -> None:
    depth = len(spec["widths"]) - 1
    with torch.no_grad():
        logits = build_model(spec, 1, 2).eval()(torch.rand(1, 1, *size))
        transposed = build_model({**spec, "upsampling": "transpose"}, 1, 2).eval()(torch.rand(1, 1, *size))
    expected = tuple(valid_output_size(side, depth) for side in size)
    assert logits.shape[-2:] == expected == transposed.shape[-2:]


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        (TINY, 16),
        ({**TINY, "batchnorm": True, "residual": True, "fusion": "add"}, 16),
        ({**TINY, "deep_supervision": True}, 16),
        ({**TINY, "padding": "valid", "residual": True}, 44),
    ],
)
def test_every_parameter_receives_a_gradient(spec: dict, size: int) -> None:
    model = build_model(spec, 2, 3).train()
    outputs = model(torch.rand(2, 2, size, size))
    outputs = outputs if isinstance(outputs, list) else [outputs]
    sum(output.square().mean() for output in outputs).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_deep_supervision_shapes() -> None:
    model = build_model({**TINY, "widths": [4, 8, 16, 32], "deep_supervision": True}, 1, 3).train()
    outputs = model(torch.rand(2, 1, 32, 32))
    assert [tuple(output.shape) for output in outputs] == [(2, 3, 32, 32), (2, 3, 16, 16), (2, 3, 8, 8)]


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_one_training_step_decreases_the_loss(padding: str) -> None:
    model = build_model({**TINY, "padding": padding, "batchnorm": True}, 1, 2).train()
    size = 16 if padding == "same" else 44
    torch.manual_seed(2)
    images = torch.rand(4, 1, size, size)
    out_size = model.output_size(size)
    margin = (size - out_size) // 2
    # Learnable target: bright pixels are class 1.
    labels = (images[:, 0, margin : margin + out_size, margin : margin + out_size] > 0.5).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(F.cross_entropy(model(images), labels).item())
    assert losses[-1] < losses[0]


def test_fused_model_equals_unfused() -> None:
    model = build_model({**TINY, "batchnorm": True, "residual": True}, 2, 3).train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(torch.rand(2, 2, 16, 16) * 3 + 1)
    model.eval()
    images = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(prepare_for_inference(model)(images), model(images), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    ("spec", "size"),
    [
        ({**TINY, "deep_supervision": True}, 16),
        ({**TINY, "padding": "valid", "residual": True, "batchnorm": True}, 44),
        ({**TINY, "upsampling": "transpose"}, 16),
        ({**TINY, "upsampling": "interp", "fusion": "add"}, 16),
    ],
)
def test_torchscript_equals_eager(spec: dict, size: int) -> None:
    model = build_model(spec, 1, 2)
    scripted = torch.jit.script(model)
    images = torch.rand(2, 1, size, size)
    for mode in ("eval", "train"):
        getattr(model, mode)()
        getattr(scripted, mode)()
        torch.manual_seed(3)
        with torch.no_grad():
            expected = model(images)
            got = scripted(images)
        expected = expected if isinstance(expected, list) else [expected]
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("padding", "size"), [("same", 16), ("valid", 44)])
def test_channels_last_equals_contiguous(padding: str, size: int) -> None:
    """The training loop may switch CPU models to channels-last; the unpooling indices must still fit."""
    model = build_model({**TINY, "padding": padding, "batchnorm": True}, 3, 2).eval()
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expected = model(images)
        model = model.to(memory_format=torch.channels_last)
        got = model(images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
