"""Benchmark overlap-tile prediction (segcore.model.overlap_tile.predict_probabilities).

1. Throughput, in image pixels per second, against the raw model run on the same tiles (pre-extracted into
   batches, no reflection, blending or bookkeeping) in the same process. Goal: ratio >= 0.9.
2. Peak memory for 1024x1024 and 4096x4096 3-channel images, each case in a fresh subprocess: the peak
   resident set size during the prediction minus the resident size just before it (which holds the input
   image) minus the output array; and tracemalloc's peak of numpy allocations minus the output (torch's CPU
   allocator is invisible to tracemalloc, the resident size sees it). Goal: neither grows with image size.
   The subprocesses run with a fixed glibc mmap threshold so RSS tracks live memory, not heap fragmentation.

Nets: a same-padding net (3 padded 3x3 convs, 16 channels, 2 classes; tile 256, overlap 32) and the valid
version of it (unpadded convs, margin 3, tile 256, no overlap). The machine may be shared: figures are noisy.

Usage: ``python benchmarks/bench_tiling.py [--quick]`` (``--quick``: smaller images, fewer repeats).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from segcore.model.overlap_tile import axis_tiling, predict_probabilities  # noqa: E402

CLASSES = 2
TILE = 256
BATCH = 8
# name -> (conv padding, margin, overlap)
CASES = {"same": (1, 0, 32), "valid": (0, 3, 0)}
MEGABYTE = 1024 * 1024


def build_net(padding: int) -> torch.nn.Module:
    """3 conv layers, 16 channels; ``padding=1`` keeps the size, ``padding=0`` loses 3 pixels per side."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=padding),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=padding),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, CLASSES, 3, padding=padding),
    ).eval()


def predict(case: str, model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    _, margin, overlap = CASES[case]
    return predict_probabilities(
        model,
        image,
        num_classes=CLASSES,
        tile_size=TILE,
        margin=margin,
        overlap=overlap,
        batch_size=BATCH,
        device="cpu",
    )


def raw_batches(case: str, image: np.ndarray) -> list[torch.Tensor]:
    """The tiles ``predict`` feeds the model, extracted up front into batches."""
    _, margin, overlap = CASES[case]
    rows = axis_tiling(image.shape[1], TILE, margin, overlap, "gaussian")
    cols = axis_tiling(image.shape[2], TILE, margin, overlap, "gaussian")
    channels = np.arange(image.shape[0])
    # np.r_ turns an in-image slice into its index range and leaves reflected index arrays as they are.
    tiles = [image[np.ix_(channels, np.r_[row], np.r_[col])] for row in rows.inputs for col in cols.inputs]
    return [torch.from_numpy(np.stack(tiles[i : i + BATCH])) for i in range(0, len(tiles), BATCH)]


def best_seconds(runs: dict, repeats: int) -> dict:
    """Minimum wall time of each named run; runs alternate so load changes on a shared machine hit all."""
    for run in runs.values():
        run()  # warm-up: first-call allocations and kernel selection
    timings: dict = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return {name: min(seconds) for name, seconds in timings.items()}


def throughput(case: str, size: int, repeats: int) -> dict:
    model = build_net(CASES[case][0])
    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    batches = raw_batches(case, image)

    def run_raw(with_softmax: bool) -> None:
        with torch.inference_mode():
            for batch in batches:
                logits = model(batch)
                if with_softmax:
                    torch.softmax(logits, dim=1)

    runs = {
        "raw": lambda: run_raw(False),
        "raw_softmax": lambda: run_raw(True),
        "tiled": lambda: predict(case, model, image),
    }
    seconds = best_seconds(runs, repeats)
    pixels = size * size
    return {
        "case": case,
        "size": size,
        "tiles": sum(len(b) for b in batches),
        **{f"{name}_px_per_s": pixels / run_seconds for name, run_seconds in seconds.items()},
        "ratio": seconds["raw"] / seconds["tiled"],
        "ratio_softmax": seconds["raw_softmax"] / seconds["tiled"],
    }


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _reset_peak_resident() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _peak_resident_bytes(was_reset: bool) -> int:
    if was_reset:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # lifetime peak: an upper bound


def peak_memory(run: Callable[[], np.ndarray]) -> dict:
    """Peak memory of ``run()`` beyond the memory held before it and the array it returns (call in a fresh
    process after a warm-up): RSS (``extra_rss_mb``, the kernel's peak counter where it can be reset) and
    Python-traced (``extra_traced_mb``) MB, with ``output_mb``, ``seconds`` and ``peak_reset``."""
    gc.collect()
    was_reset = _reset_peak_resident()
    before = _resident_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    output = run().nbytes
    seconds = time.perf_counter() - start
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _peak_resident_bytes(was_reset)
    return {
        "output_mb": output / MEGABYTE,
        "extra_rss_mb": (peak - before - output) / MEGABYTE,
        "extra_traced_mb": (traced_peak - output) / MEGABYTE,
        "seconds": seconds,
        "peak_reset": was_reset,
    }


def memory_case(case: str, size: int) -> dict:
    """Run in a fresh process: peak memory of one prediction beyond its input and output arrays."""
    model = build_net(CASES[case][0])
    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    predict(case, model, image[:, :TILE, :TILE].copy())  # warm-up: load kernels, fill allocator caches
    return {
        "case": case,
        "size": size,
        "input_mb": image.nbytes / MEGABYTE,
        **peak_memory(lambda: predict(case, model, image)),
    }


def memory_in_subprocess(script: str, *case: object) -> dict:
    """The JSON line ``script --memory-case *case`` prints last, run in a fresh process (its own peak RSS)."""
    command = [sys.executable, script, "--memory-case", *map(str, case)]
    # A fixed glibc mmap threshold returns every large freed block to the system at once; with the default
    # adaptive one, batch-sized blocks land on the heap and fragmentation adds 50-100 MB of noise to RSS.
    environment = os.environ | {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    completed = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller images, fewer repeats")
    parser.add_argument("--memory-case", nargs=2, metavar=("CASE", "SIZE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_case:
        case, size = arguments.memory_case
        print(json.dumps(memory_case(case, int(size))))
        return

    quick = arguments.quick
    throughput_size, repeats, memory_sizes = (512, 2, (512, 1536)) if quick else (1024, 3, (1024, 4096))
    print(f"torch threads: {torch.get_num_threads()}; tile {TILE}, batch {BATCH}, CPU; shared machine, noisy")
    print("\nThroughput (image pixels/s; raw = model alone on the same pre-extracted tile batches,")
    print("raw+sm = raw plus the softmax that tiled prediction must also compute; goal tiled/raw >= 0.9)")
    print(
        f"{'case':6} {'size':>5} {'tiles':>5} {'raw':>9} {'raw+sm':>9} {'tiled':>9} {'tiled/raw':>9} "
        f"{'tiled/raw+sm':>12}"
    )
    for case in CASES:
        row = throughput(case, throughput_size, repeats)
        print(
            f"{case:6} {row['size']:5d} {row['tiles']:5d} {row['raw_px_per_s']:9.3g} "
            f"{row['raw_softmax_px_per_s']:9.3g} {row['tiled_px_per_s']:9.3g} {row['ratio']:9.3f} "
            f"{row['ratio_softmax']:12.3f}"
        )

    print("\nPeak memory beyond the input and output arrays (fresh process per case, MB)")
    print(f"{'case':6} {'size':>5} {'input':>7} {'output':>7} {'extra RSS':>9} {'extra numpy':>11} {'time s':>7}")
    for case in CASES:
        for size in memory_sizes:
            row = memory_in_subprocess(__file__, case, size)
            note = "" if row["peak_reset"] else "  (lifetime ru_maxrss: upper bound)"
            print(
                f"{case:6} {size:5d} {row['input_mb']:7.1f} {row['output_mb']:7.1f} "
                f"{row['extra_rss_mb']:9.1f} {row['extra_traced_mb']:11.1f} {row['seconds']:7.1f}{note}"
            )
    print("goal: the extra columns stay flat as the image grows")


if __name__ == "__main__":
    main()
