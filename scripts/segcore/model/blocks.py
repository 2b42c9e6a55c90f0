"""Building blocks of the U-Net family: convolution blocks, decoder steps and skip cropping.

All blocks take and return float tensors ``(N, C, H, W)``. With ``padding="valid"`` every 3x3 convolution
shrinks each side by one pixel, so a block's output is 4 pixels smaller than its input in each dimension and
the skip connections are center-cropped to the decoder's size before fusion (Ronneberger et al. 2015, Fig. 1).
With ``upsampling="unpool"`` the encoder's max-pooling indices travel to the decoder (Badrinarayanan et al.
2017, SegNet), which puts every value back where its window's maximum was (:class:`MaxUnpoolUpsampler`).
Convolution and BatchNorm layers sit next to each other inside ``nn.Sequential`` containers so that
:func:`segcore.model.unet.prepare_for_inference` can fuse every pair it finds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UPSAMPLINGS = ("transpose", "interp", "unpool")
FUSIONS = ("concat", "add")


def center_crop(tensor: Tensor, size: list[int]) -> Tensor:
    """Return the central ``(h, w)`` window of the last two dimensions of ``tensor`` ``(..., H, W)``.

    The window starts at ``((H - h) // 2, (W - w) // 2)``; when ``H - h`` is odd the extra row goes to the
    bottom (likewise the extra column to the right). Returns ``tensor`` itself when the sizes already match.
    Raises ValueError if ``h > H`` or ``w > W``. ``size`` is any pair of ints (a list, a tuple, a
    ``torch.Size``); the annotation says list so that TorchScript accepts ``tensor.shape[-2:]``.
    """
    height, width = tensor.shape[-2], tensor.shape[-1]
    crop_height, crop_width = int(size[0]), int(size[1])
    if crop_height > height or crop_width > width:
        raise ValueError(f"cannot center-crop a {height}x{width} tensor to {crop_height}x{crop_width}")
    if (crop_height, crop_width) == (height, width):
        return tensor
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    return tensor[..., top : top + crop_height, left : left + crop_width]


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, padding: str, batchnorm: bool) -> list[nn.Module]:
    """A convolution, then BatchNorm if asked (the convolution then has no bias: BN's shift replaces it)."""
    pad = kernel_size // 2 if padding == "same" else 0
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    return layers


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with ReLU: the unit of every U-Net level.

    ``residual=True`` adds a shortcut from the block's input to the second convolution's output before the
    last ReLU (He et al. 2016); the shortcut is a 1x1 convolution (+BN) when the channel counts differ, and is
    center-cropped to the output under valid padding. Output ``(N, out_channels, H', W')`` with ``H' = H``
    (same padding) or ``H' = H - 4`` (valid padding).
    """

    def __init__(self, in_channels: int, out_channels: int, padding: str, batchnorm: bool, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(in_channels, out_channels, 3, padding, batchnorm),
            nn.ReLU(inplace=True),
            *_conv_bn(out_channels, out_channels, 3, padding, batchnorm),
        )
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if in_channels == out_channels
                else nn.Sequential(*_conv_bn(in_channels, out_channels, 1, padding, batchnorm))
            )

    def forward(self, features: Tensor) -> Tensor:
        out = self.body(features)
        if self.shortcut is not None:
            out = out + center_crop(self.shortcut(features), out.shape[-2:])
        return F.relu(out)


def max_unpool_into(features: Tensor, indices: Tensor, skip_size: list[int]) -> Tensor:
    """Max-unpool ``features`` ``(N, C, h, w)`` with pooling ``indices`` of a ``skip_size`` ``(H, W)`` map.

    ``indices`` ``(N, C, H // 2, W // 2)`` int64 come from ``max_pool2d(kernel 2, return_indices=True)`` on the
    ``(H, W)`` encoder map and hold flat positions ``row * W + col`` in it. Output ``(N, C, 2h, 2w)``: each
    value sits at its 2x2 window's maximum, the other three pixels of the window are zero. With
    ``(h, w) = (H // 2, W // 2)`` (same padding) this is ``F.max_unpool2d(features, indices, 2)``.

    Valid padding leaves the decoder smaller than the pooled map (``h < H // 2``); ``features`` is then the
    centre of the pooled map, as the skip crop assumes. ``F.max_unpool2d`` only writes outputs near ``2h``,
    so ``features`` is zero-padded back to the pooled map's size (the padding lands outside the window kept),
    unpooled into the whole ``(H, W)`` plane with all the indices, and the centre ``(2h, 2w)`` is returned:
    the same window :func:`center_crop` cuts from the skip. The two windows agree exactly when
    ``H // 2 - h`` is even, which valid-padding U-Nets guarantee (4 at the bottleneck, ``2 * d + 8`` one level
    up); ValueError otherwise, and when ``features`` is larger than the pooled map.
    """
    height, width = features.shape[-2], features.shape[-1]
    pooled_height, pooled_width = indices.shape[-2], indices.shape[-1]
    extra_height, extra_width = pooled_height - height, pooled_width - width
    if extra_height < 0 or extra_width < 0 or extra_height % 2 or extra_width % 2:
        raise ValueError(
            f"cannot unpool {height}x{width} features with {pooled_height}x{pooled_width} pooling indices "
            "(the pooled map must be larger by an even number of pixels per side)"
        )
    if extra_height or extra_width:
        top, left = extra_height // 2, extra_width // 2
        features = F.pad(features, [left, extra_width - left, top, extra_height - top])
    plane = F.max_unpool2d(features, indices, 2, output_size=[skip_size[0], skip_size[1]])
    return center_crop(plane, [2 * height, 2 * width])


class MaxUnpoolUpsampler(nn.Module):
    """A 1x1 convolution to ``out_channels``, then max-unpooling with the encoder's pooling indices (SegNet).

    The indices exist per encoder channel, so the channels are mapped to the skip's count first (at the
    coarse resolution, a quarter of the cost); the sparse result (3 of 4 pixels zero) is densified by the
    decoder's 3x3 convolutions after fusion with the skip. See :func:`max_unpool_into` for shapes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, features: Tensor, indices: Tensor, skip_size: list[int]) -> Tensor:
        return max_unpool_into(self.project(features), indices, skip_size)


def make_upsampler(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """A module doubling height and width and mapping ``in_channels`` to ``out_channels``.

    ``transpose``: 2x2 transposed convolution with stride 2 (the paper's "up-convolution"). ``interp``: a 1x1
    convolution followed by bilinear x2 interpolation. The 1x1 convolution runs first because both operations
    are linear and per-pixel/per-channel respectively, so the order does not change the result while the
    convolution costs a quarter at the lower resolution; a 1x1 kernel also keeps the exact 2x size under
    valid padding, so both kinds give the same output sizes. ``unpool``: a :class:`MaxUnpoolUpsampler`, called
    as ``up(features, indices, skip_size)`` (the other two as ``up(features)``).
    """
    if kind == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
    if kind == "interp":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        )
    if kind == "unpool":
        return MaxUnpoolUpsampler(in_channels, out_channels)
    raise ValueError(f"upsampling {kind!r} is not one of {', '.join(UPSAMPLINGS)}")


class DecoderStep(nn.Module):
    """Upsample the deeper features, fuse them with the (cropped) skip, and run a :class:`ConvBlock`.

    The upsampler maps the deeper level's channels to the skip's ``skip_channels``, so ``fusion="add"`` never
    needs a further projection and ``fusion="concat"`` feeds ``2 * skip_channels`` channels to the block.
    Input ``below`` ``(N, in_channels, h, w)`` and ``skip`` ``(N, skip_channels, >= 2h, >= 2w)``; output
    ``(N, skip_channels, 2h, 2w)`` (same padding) or ``(N, skip_channels, 2h - 4, 2w - 4)`` (valid padding).
    ``upsampling="unpool"`` also needs ``indices``: the max-pooling indices of ``skip`` (ValueError without).
    """

    # A constant: TorchScript compiles only the branch of forward that this step's upsampler can take.
    __constants__ = ["unpool"]

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        padding: str,
        batchnorm: bool,
        residual: bool,
        upsampling: str,
        fusion: str,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r} is not one of {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.unpool = upsampling == "unpool"
        self.up = make_upsampler(upsampling, in_channels, skip_channels)
        block_in = 2 * skip_channels if fusion == "concat" else skip_channels
        self.block = ConvBlock(block_in, skip_channels, padding, batchnorm, residual)

    def forward(self, below: Tensor, skip: Tensor, indices: Tensor | None = None) -> Tensor:
        if self.unpool:
            if indices is None:
                raise ValueError("upsampling unpool needs the encoder's max-pooling indices")
            upsampled = self.up(below, indices, skip.shape[-2:])
        else:
            upsampled = self.up(below)
        skip = center_crop(skip, upsampled.shape[-2:])
        if self.fusion == "concat":
            fused = torch.cat([skip, upsampled], dim=1)
        else:
            fused = skip + upsampled
        return self.block(fused)


def init_he_normal(module: nn.Module) -> None:
    """He-normal weights (fan-in, ReLU gain) and zero biases for every ``nn.Conv2d`` in ``module``.

    The paper (Sec. 3) draws initial weights from N(0, sqrt(2 / fan_in)) so that deep stacks without
    BatchNorm keep unit activation variance; PyTorch's default uniform init shrinks it layer by layer.
    Transposed convolutions keep PyTorch's default.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
