"""Benchmark the U-Net border term: fast cropped method vs the full-image reference.

512 x 512 Voronoi label images (seeded) with 20, 100 and 400 touching cells separated by 1-px background
lines. For each: median wall time over a few repeats, and peak traced memory (tracemalloc, one extra run, so
tracing does not slow the timed runs) of ``border_weights_reference`` and ``border_weights``; also the largest
difference between the two. Goal: >= 30x faster at 100 instances, fast peak memory independent of K.

Run: ``python benchmarks/bench_weights.py`` (about a minute).
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from segcore.augment.weight_maps import border_weights, border_weights_reference  # noqa: E402

SHAPE = (512, 512)
# Reference repeats per instance count: fewer at K = 400 (about 8 s a call) to keep the run near a minute.
REFERENCE_REPEATS = {20: 3, 100: 3, 400: 2}
FAST_REPEATS = 7


def voronoi_cells(shape: tuple[int, int], count: int, seed: int) -> np.ndarray:
    """``int32`` Voronoi cells of ``count`` random seeds, touching cells split by a 1-px background line."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    seeds.flat[rng.choice(seeds.size, size=count, replace=False)] = np.arange(1, count + 1)
    _, (rows, cols) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[rows, cols]
    cells[find_boundaries(cells, mode="inner")] = 0
    return cells


def timed(method: Callable[[np.ndarray], np.ndarray], instances: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time of ``method(instances)`` over ``repeats`` calls, and the result of the last call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = method(instances)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_mib(method: Callable[[np.ndarray], np.ndarray], instances: np.ndarray) -> float:
    """Peak memory traced by tracemalloc (numpy buffers included) during one call, in MiB."""
    tracemalloc.start()
    method(instances)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    print(
        f"border term on {SHAPE[0]}x{SHAPE[1]} Voronoi cells; median of {FAST_REPEATS} (fast) and "
        f"{'/'.join(map(str, REFERENCE_REPEATS.values()))} (reference) runs; peak = tracemalloc"
    )
    header = (
        f"{'K':>5} {'ref ms':>9} {'fast ms':>9} {'speedup':>8} "
        f"{'ref peak MiB':>13} {'fast peak MiB':>14} {'max |diff|':>11}"
    )
    print(header)
    for count, reference_repeats in REFERENCE_REPEATS.items():
        instances = voronoi_cells(SHAPE, count, seed=count)
        reference_s, reference = timed(border_weights_reference, instances, reference_repeats)
        fast_s, fast = timed(border_weights, instances, FAST_REPEATS)
        max_diff = np.abs(fast - reference).max()
        reference_mib = peak_mib(border_weights_reference, instances)
        fast_mib = peak_mib(border_weights, instances)
        print(
            f"{count:>5} {reference_s * 1e3:>9.1f} {fast_s * 1e3:>9.1f} {reference_s / fast_s:>7.1f}x "
            f"{reference_mib:>13.1f} {fast_mib:>14.1f} {max_diff:>11.2e}"
        )


if __name__ == "__main__":
    main()
