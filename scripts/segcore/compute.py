"""Where computation runs: the torch device, and how many threads a job may use without hurting its neighbours.

Several torch jobs share a machine whenever Snakemake runs a prediction beside a training (``--cores 8`` on a
small machine). GNU OpenMP, which torch's CPU kernels use, lets idle threads spin for a while before they
sleep; two processes spinning on the same cores take them from each other's working threads, and an epoch
measured 35 s alone took 270-608 s beside another (shared/notes/cpu-performance.md). Jobs therefore run with
a passive OpenMP wait policy (:data:`JOB_ENVIRONMENT`, set before torch loads, by the Snakefile for every job)
and with exactly the threads their rule was given, capped at the CPUs they may use (:func:`configure_threads`).
``benchmarks/bench_concurrency.py`` measures the effect.
"""

from __future__ import annotations

import os

import torch


def usable_threads(requested: int) -> int:
    """``requested`` capped at the CPUs this process may run on.

    ``snakemake --cores 8`` on a 2-core machine hands a rule 8 threads; running torch with more threads than
    cores makes every step several times slower.
    """
    return max(1, min(int(requested), len(os.sched_getaffinity(0))))


# Read by the OpenMP runtime when torch loads: set in the environment of every job before it starts.
JOB_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_threads(requested: int) -> int:
    """Give torch ``requested`` threads (capped by :func:`usable_threads`) and one inter-op thread; returns
    the number of intra-op threads.

    The pipeline runs one model at a time per process, so a pool for parallel operators only adds idle
    threads. ``torch.set_num_interop_threads`` may only be called before torch's first parallel work; a later
    call (a second configure in the same process) keeps the existing pool.
    """
    threads = usable_threads(requested)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # the inter-op pool already started
        pass
    return threads


def select_device(requested: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``/``"cuda"`` force one (CUDA must exist)."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(requested)
