"""Timing shared by the benchmarks: wall seconds of one step, waiting for queued CUDA work around it."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def timed(step: Callable[[], object], device: torch.device) -> float:
    """Seconds ``step()`` takes; on CUDA the clock starts and stops with the device idle."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
