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


# CPU kernel sets (torch.backends.cpu.get_cpu_capability()) whose channels-last convolutions measured faster
# at every patch side: on an AVX-512 Xeon, 1.30 / 1.52 / 1.21 / 1.34x NCHW's speed at 128 / 256 / 320 / 512 px
# for the presets' 16..256 U-Net (benchmarks/bench_models.py --part sizes, equal pixels per step).
CHANNELS_LAST_CPU_CAPABILITIES = ("AVX512",)
# Elsewhere (measured on AVX2): channels-last up to this many pixels; above, its convolution backward ran at
# about half speed (30-75 % slower training, shared/notes/cpu-performance.md).
CHANNELS_LAST_MAX_PIXELS = 256 * 256


def prefers_channels_last(device: torch.device, patch_pixels: int, cpu_capability: str | None = None) -> bool:
    """Whether the NHWC memory layout is the faster one for training.

    On CUDA it is (tensor cores). On a CPU whose kernel set (``cpu_capability``, default
    ``torch.backends.cpu.get_cpu_capability()``: "AVX512", "AVX2", "DEFAULT", ...) is in
    :data:`CHANNELS_LAST_CPU_CAPABILITIES` it is at every size; on other CPUs up to
    :data:`CHANNELS_LAST_MAX_PIXELS` per sample. The choice depends on the machine only, never on a timing,
    so a run repeated on one machine takes the same layout (and gives the same bits).
    """
    if device.type == "cuda":
        return True
    capability = cpu_capability if cpu_capability is not None else torch.backends.cpu.get_cpu_capability()
    return capability in CHANNELS_LAST_CPU_CAPABILITIES or patch_pixels <= CHANNELS_LAST_MAX_PIXELS


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
