"""The U-Net family: the network, its size arithmetic, and inference preparation.

:func:`build_model` turns a ``model`` config section (see :mod:`segcore.model.spec`) into a :class:`UNet`.
Input ``(N, C, H, W)`` float32, output logits ``(N, K, h, w)`` float32:

- same padding: ``h, w = H, W``; H and W must be multiples of ``2**depth`` (:meth:`UNet.output_size`).
- valid padding: every 3x3 convolution trims a pixel per side, so ``h = valid_output_size(H, depth)`` (572 ->
  388 for depth 4) and the output is the centre of the input, ``model.margin`` pixels in from each side.

With deep supervision a model in train mode returns ``[main, aux_1, ..., aux_L]``: ``aux_l`` comes from a 1x1
head on decoder level ``l`` (``2**l`` times coarser than ``main`` under same padding). In eval mode it always
returns the main tensor alone.

With ``upsampling="unpool"`` the encoder's poolings also return their argmax indices, and each decoder step
unpools with the indices of its level (:class:`segcore.model.blocks.MaxUnpoolUpsampler`); the sizes are those
of the other upsamplings under both paddings.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from segcore.model.blocks import ConvBlock, DecoderStep, init_he_normal
from segcore.model.spec import UNetConfig, parse_model_spec


def _simulate_valid(input_size: int, depth: int) -> int | None:
    """Output size of a valid-padding U-Net, or None if some pooling sees an odd size or a map vanishes."""
    size = int(input_size)
    for _ in range(depth):
        size -= 4  # two unpadded 3x3 convolutions
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= 4  # bottleneck block
    for _ in range(depth):
        size = 2 * size - 4  # up-sampling, then two convolutions
    return size if size >= 1 else None


def _valid_inputs(depth: int, start_bottleneck: int = 1) -> Iterator[int]:
    """Valid-padding input sizes in increasing order: ``2**depth * b + 2**(depth + 3) - 4`` for b >= 1.

    (Working back from a bottleneck output of b pixels: +4 per block, x2 per pooling.) The smallest few b give
    no output; callers skip them by checking with :func:`_simulate_valid`.
    """
    bottleneck = max(1, start_bottleneck)
    while True:
        yield 2**depth * bottleneck + 2 ** (depth + 3) - 4
        bottleneck += 1


def valid_output_size(input_size: int, depth: int) -> int:
    """Output side length of a valid-padding U-Net of ``depth`` poolings for an input of ``input_size``.

    Each level applies two unpadded 3x3 convolutions (-4 pixels) and every 2x2 pooling needs an even size, so
    ``valid_output_size(572, 4) == 388``. Raises ValueError naming the size and the next valid one when some
    pooling would see an odd size or the output would vanish.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    size = _simulate_valid(input_size, depth)
    if size is None:
        next_valid = next(
            candidate
            for candidate in _valid_inputs(depth, (int(input_size) - 2 ** (depth + 3)) // 2**depth)
            if candidate >= input_size and _simulate_valid(candidate, depth) is not None
        )
        raise ValueError(
            f"input size {input_size} is not valid for a valid-padding U-Net of depth {depth} (odd size at a "
            f"pooling, or no output left); the next valid size is {next_valid}"
        )
    return size


def valid_input_size(output_size: int, depth: int) -> int:
    """Smallest valid input size whose valid-padding output is at least ``output_size`` pixels.

    ``valid_input_size(388, 4) == 572``. An input of ``2**depth * b + 2**(depth + 3) - 4`` gives
    ``2**depth * (b - 4) + 4`` output pixels, so starting the search at ``b = output_size // 2**depth`` never
    skips the answer and the loop runs a few times at most.
    """
    if depth < 1 or output_size < 1:
        raise ValueError(f"depth and output size must be positive, got {depth}, {output_size}")
    for candidate in _valid_inputs(depth, output_size // 2**depth):
        size = _simulate_valid(candidate, depth)
        if size is not None and size >= output_size:
            return candidate
    raise AssertionError("unreachable: _valid_inputs is infinite")


class UNet(nn.Module):
    """Encoder-decoder with skip connections; architecture given by a :class:`UNetConfig`.

    Attributes: ``config``, ``depth``, ``margin`` (pixels cut from each side between input and output: 0 for
    same padding, 92 for the original 572 -> 388 network).
    """

    __constants__ = ["keep_indices"]  # see DecoderStep
    __jit_unused_properties__ = ["margin"]  # TorchScript cannot read the config dataclass

    def __init__(self, config: UNetConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be positive, got {in_channels}, {num_classes}")
        self.config = config
        self.depth = config.depth
        widths = config.widths
        block_args = (config.padding, config.batchnorm, config.residual)
        self.encoder = nn.ModuleList(
            ConvBlock(c_in, c_out, *block_args)
            for c_in, c_out in zip((in_channels, *widths[:-2]), widths[:-1], strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        # Unpooling decoders need the pooling's argmax positions; the other kinds skip computing them.
        self.keep_indices = config.upsampling == "unpool"
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.bottleneck = ConvBlock(widths[-2], widths[-1], *block_args)
        # Deepest step first, matching the order the forward pass runs them.
        self.decoder = nn.ModuleList(
            DecoderStep(widths[level + 1], widths[level], *block_args, config.upsampling, config.fusion)
            for level in reversed(range(self.depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(widths[level], num_classes, kernel_size=1)
            for level in range(1, config.deep_supervision_levels + 1)
        )
        init_he_normal(self)

    @property
    def margin(self) -> int:
        """Pixels between each input border and the output region: ``(input - output) // 2``."""
        if self.config.padding == "same":
            return 0
        # Input 2**d * b + 2**(d+3) - 4 minus output 2**d * (b - 4) + 4 (see _valid_inputs), halved.
        return (3 * 2 ** (self.depth + 2) - 8) // 2

    def output_size(self, input_size: int) -> int:
        """Output side length for an input side of ``input_size``; ValueError if the size is not accepted."""
        if self.config.padding == "valid":
            return valid_output_size(input_size, self.depth)
        multiple = 2**self.depth
        if input_size < multiple or input_size % multiple:
            raise ValueError(
                f"input size {input_size} is not a positive multiple of {multiple} (2**depth, depth "
                f"{self.depth}); the next multiple is {math.ceil(max(input_size, 1) / multiple) * multiple}"
            )
        return int(input_size)

    def forward(self, images: Tensor) -> Tensor | list[Tensor]:
        """``images`` ``(N, C, H, W)`` -> logits ``(N, K, h, w)``; a list with deep supervision in training.

        Raises ValueError naming the size when H or W is not accepted (see :meth:`output_size`).
        """
        if not torch.jit.is_scripting():  # the size arithmetic is plain Python; scripted models skip the check
            for side in images.shape[-2:]:
                self.output_size(int(side))
        skips = []
        pool_indices = []  # per level, only with unpooling
        features = images
        for block in self.encoder:
            features = block(features)
            skips.append(features)
            if self.keep_indices:
                features, indices = F.max_pool2d_with_indices(features, 2)
                pool_indices.append(indices)
            else:
                features = self.pool(features)
        features = self.dropout(self.bottleneck(self.dropout(features)))
        decoder_outputs = []  # deepest level first
        for level, step in enumerate(self.decoder):
            skip_level = self.depth - 1 - level  # the encoder level whose skip this step joins
            indices = pool_indices[skip_level] if self.keep_indices else None
            features = step(features, skips[skip_level], indices)
            decoder_outputs.append(features)
        logits = self.head(features)
        if not (self.training and len(self.aux_heads)):
            return logits
        # decoder_outputs[-1 - level] holds decoder level `level` (level 0 = full resolution).
        aux = [head(decoder_outputs[-1 - level]) for level, head in enumerate(self.aux_heads, start=1)]
        return [logits] + aux  # not [logits, *aux]: TorchScript cannot size a starred list


def build_model(spec: Mapping[str, Any], in_channels: int, num_classes: int, *, where: str = "model") -> UNet:
    """Build the U-Net a ``model`` config section describes; InputError naming ``where.<key>`` if invalid."""
    return UNet(parse_model_spec(spec, where), in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every Conv2d + BatchNorm2d pair fused into one convolution.

    The pairs are found as neighbours inside ``nn.Sequential`` containers (how :mod:`segcore.model.blocks`
    builds them); each fused convolution computes ``BN(conv(x))`` with BN's running statistics, and the BN
    slot becomes ``nn.Identity``. ``model`` itself is left untouched.
    """
    fused = copy.deepcopy(model).eval()
    for container in [module for module in fused.modules() if isinstance(module, nn.Sequential)]:
        for index in range(len(container) - 1):
            conv, norm = container[index], container[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                container[index] = fuse_conv_bn_eval(conv, norm)
                container[index + 1] = nn.Identity()
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused
