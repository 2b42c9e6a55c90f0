"""Where computation runs: the torch device and how many threads a job may use."""

from __future__ import annotations

import os

import torch


def usable_threads(requested: int) -> int:
    """``requested`` capped at the CPUs this process may run on.

    ``snakemake --cores 8`` on a 2-core machine hands a rule 8 threads; running torch with more threads than
    cores makes every step several times slower.
    """
    return max(1, min(int(requested), len(os.sched_getaffinity(0))))


def select_device(requested: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``/``"cuda"`` force one (CUDA must exist)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(requested)
