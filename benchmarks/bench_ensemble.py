"""Benchmark fold-ensemble prediction (segcore.model.ensemble.SoftmaxEnsemble through predict_probabilities).

1. Throughput per fold model: an ensemble of k models does k models' work per tile, so its throughput per
   model is ``k * t(single) / t(ensemble)``, against the single model (what load_models gives for one file)
   predicting the same image in the same process. Goal: >= 0.9.
2. Peak memory at k = 1, 2, 4, 5, each in a fresh subprocess: the peak resident set size during the
   prediction minus the resident size just before it (which already holds the input and the k models'
   weights) minus the output array; and tracemalloc's peak of numpy allocations minus the output. Goal:
   flat in k (the members' weights, listed apart, are the only memory that grows with k).

Members: segcore U-Nets (widths 16-32-64-128, same padding, BatchNorm fused, 2 classes), each with its own
weights; overlap-tile prediction with tile 256, overlap 32, batch 4, CPU. The machine may be shared.

Usage: ``python benchmarks/bench_ensemble.py [--quick]`` (``--quick``: a smaller image, fewer repeats).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_tiling import (  # noqa: E402
    best_seconds,
    memory_in_subprocess,
    peak_memory,
)

from segcore.config_schema import with_defaults  # noqa: E402
from segcore.model.ensemble import SoftmaxEnsemble  # noqa: E402
from segcore.model.overlap_tile import predict_probabilities  # noqa: E402
from segcore.model.unet import build_model, prepare_for_inference  # noqa: E402

CLASSES = 2
TILE = 256
OVERLAP = 32
BATCH = 4
MEMORY_KS = (1, 2, 4, 5)
MEGABYTE = 1024 * 1024


def member(seed: int) -> torch.nn.Module:
    """One fold's model: a small segcore U-Net with weights drawn from ``seed``, prepared for inference."""
    torch.manual_seed(seed)
    spec = with_defaults("experiments.*.model", {"name": "unet", "widths": [16, 32, 64, 128], "batchnorm": True})
    return prepare_for_inference(build_model(spec, 3, CLASSES))


def predictor(k: int) -> torch.nn.Module:
    """The model rule predict runs for k model files: the model itself for one, else their ensemble."""
    members = [member(seed) for seed in range(k)]
    return members[0] if k == 1 else SoftmaxEnsemble(members).eval()


def predict(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    return predict_probabilities(
        model, image, num_classes=CLASSES, tile_size=TILE, overlap=OVERLAP, batch_size=BATCH, device="cpu"
    )


def throughput(k: int, size: int, repeats: int) -> dict:
    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    single, ensemble = predictor(1), predictor(k)
    seconds = best_seconds({"single": lambda: predict(single, image), "ensemble": lambda: predict(ensemble, image)},
                           repeats)  # fmt: skip
    pixels = size * size
    return {
        "k": k,
        "single_px_per_s": pixels / seconds["single"],
        "ensemble_px_per_s": pixels / seconds["ensemble"],
        "per_model_ratio": k * seconds["single"] / seconds["ensemble"],
    }


def memory_case(k: int, size: int) -> dict:
    """Run in a fresh process: peak memory of one ensemble prediction beyond its input, models and output."""
    model = predictor(k)
    image = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    predict(model, image[:, :TILE, :TILE].copy())  # warm-up: load kernels, fill allocator caches
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / MEGABYTE
    return {"k": k, "weights_mb": weights_mb, **peak_memory(lambda: predict(model, image))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller image, fewer repeats")
    parser.add_argument("--memory-case", nargs=2, type=int, metavar=("K", "SIZE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_case:
        print(json.dumps(memory_case(*arguments.memory_case)))
        return

    size, repeats, throughput_ks = (384, 2, (2,)) if arguments.quick else (1024, 3, (2, 5))
    parameters = sum(parameter.numel() for parameter in member(0).parameters())
    print(f"torch threads: {torch.get_num_threads()}; image {size}x{size}, tile {TILE}, overlap {OVERLAP}, "
          f"batch {BATCH}, CPU; {parameters} parameters per model; shared machine, noisy")  # fmt: skip
    print("\nThroughput (image pixels/s; per model = k * t(single) / t(ensemble of k); goal >= 0.9)")
    print(f"{'k':>2} {'single':>9} {'ensemble':>9} {'per model':>9}")
    for k in throughput_ks:
        row = throughput(k, size, repeats)
        print(f"{k:2d} {row['single_px_per_s']:9.3g} {row['ensemble_px_per_s']:9.3g} {row['per_model_ratio']:9.3f}")

    print("\nPeak memory beyond the input, the models and the output (fresh process per k, MB)")
    print(f"{'k':>2} {'weights':>8} {'extra RSS':>9} {'extra numpy':>11} {'time s':>7}")
    for k in MEMORY_KS:
        row = memory_in_subprocess(__file__, k, size)
        note = "" if row["peak_reset"] else "  (lifetime ru_maxrss: upper bound)"
        print(f"{k:2d} {row['weights_mb']:8.2f} {row['extra_rss_mb']:9.1f} {row['extra_traced_mb']:11.1f} "
              f"{row['seconds']:7.1f}{note}")  # fmt: skip
    print("goal: the extra columns stay flat as k grows")


if __name__ == "__main__":
    main()
