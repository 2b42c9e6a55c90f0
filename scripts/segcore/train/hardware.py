"""How batches meet the model: device, memory layout and autocast dtype, and copying tensors there.

On CUDA, autocast to bfloat16 (float16 with a gradient scaler where bfloat16 is not supported),
channels-last layout, and batches copied from page-locked memory without blocking, so the copy of one batch
overlaps the kernels of the step before. On the CPU, float32 (low precision is about 150x slower there) and
channels-last only where it measures faster (:func:`prefers_channels_last`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Hardware:
    """How batches meet the model: the device, the memory layout and the autocast dtype (None: float32)."""

    device: torch.device
    channels_last: bool
    autocast_dtype: torch.dtype | None = None


def prefers_channels_last(device: torch.device, patch_pixels: int) -> bool:
    """Whether the NHWC memory layout is the faster one for training.

    On CUDA it is (tensor cores). On CPU it speeds small images by 17-28 % but slows convolution backward
    on large images by 30-75 % (shared/notes/cpu-performance.md), so it is used up to 256x256 patches.
    """
    return device.type == "cuda" or patch_pixels <= 256 * 256


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bfloat16 on CUDA devices that support it, else float16 on CUDA; None (float32) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def choose_hardware(device: torch.device, patch_pixels: int) -> Hardware:
    """The layout and precision :func:`fit` uses on ``device`` for training samples of ``patch_pixels``."""
    return Hardware(device, prefers_channels_last(device, patch_pixels), autocast_dtype(device))


def to_device(tensor: torch.Tensor, hardware: Hardware, channels_last: bool = False) -> torch.Tensor:
    """``tensor`` on the training device (4-D tensors in channels-last layout if asked).

    On CUDA the batch is first page-locked, so the host-to-device copy runs asynchronously
    (``non_blocking``) and overlaps the kernels already queued.
    """
    if hardware.device.type == "cuda":
        tensor = tensor.pin_memory().to(hardware.device, non_blocking=True)
    else:
        tensor = tensor.to(hardware.device)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor
