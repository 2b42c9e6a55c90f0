"""Benchmark the training step of the default config's model and the share of it spent feeding data.

Model: the first experiment of ``config/config.yaml`` (its model and loss), 3 input channels, the config's
classes, on in-memory synthetic 128x128 images, batch 16, through the real loop code
(:func:`segcore.train.loop.train_epoch` over a :class:`segcore.train.data.BatchSampler`).

1. Training images/s in two settings: the reference (float32, NCHW) and the one :func:`fit` chooses on the
   device (:func:`segcore.train.loop.choose_hardware`: channels-last on small CPU images; channels-last and
   bfloat16 autocast on CUDA), each as images/s, fraction of the fp32 matmul peak and ratio to the reference.
   The peak is ``torch.matmul`` of two 2048x2048 float32 matrices, timed round-robin with the epochs
   (matmul, reference epoch, chosen epoch, feeding, matmul, ...; medians of the rounds), so load from other
   processes on a shared machine slows all alike. FLOPs per image (forward + backward) are counted by
   ``torch.utils.flop_counter.FlopCounterMode`` on the meta device.
2. Data feeding: the same epoch's batches drawn from the sampler and copied to the device (page-locked,
   non-blocking on CUDA) without the model, as a share of the chosen setting's epoch time (target < 5 %).

Usage: ``python benchmarks/bench_training.py [--quick] [--device auto|cpu|cuda] [--threads N]``.
``--quick``: 2 batches per epoch and 2 timed rounds (about 30 s on 2 CPU cores); the default, 4 batches and
5 rounds, takes about 2 min there. On a shared machine differences under ~15 % are noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
os.environ.setdefault("TQDM_DISABLE", "1")  # the loop's per-epoch progress bars would bury the results

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from timing import timed  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from segcore.compute import select_device  # noqa: E402
from segcore.config_schema import with_defaults  # noqa: E402
from segcore.model.unet import build_model, count_parameters  # noqa: E402
from segcore.train.data import BatchSampler, LabelledImages  # noqa: E402
from segcore.train.loop import Hardware, choose_hardware, to_device, train_epoch  # noqa: E402
from segcore.train.losses import build_loss  # noqa: E402

SIDE, BATCH, CHANNELS = 128, 16, 3
MATMUL_SIDE = 2048


def default_experiment() -> tuple[dict, dict, int]:
    """(model spec, loss spec, number of classes) of the first experiment in config/config.yaml."""
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    experiment = next(iter(config["experiments"].values()))
    return (
        with_defaults("experiments.*.model", experiment["model"]),
        with_defaults("experiments.*.loss", experiment["loss"]),
        len(config["dataset"]["classes"]),
    )


def synthetic_data(count: int, num_classes: int) -> LabelledImages:
    """``count`` random float32 (3, 128, 128) images, uint8 class masks and float32 weight maps."""
    rng = np.random.default_rng(0)
    images = [rng.random((CHANNELS, SIDE, SIDE), dtype=np.float32) for _ in range(count)]
    masks = [rng.integers(0, num_classes, (SIDE, SIDE), dtype=np.uint8) for _ in range(count)]
    weights = [1 + mask.astype(np.float32) for mask in masks]
    return LabelledImages([f"{i:04d}" for i in range(count)], images, masks, weights)


def flops_per_image(model_spec: dict, num_classes: int) -> float:
    """FLOPs of one image's forward and backward pass, counted on the meta device (shapes only)."""
    model = build_model(model_spec, CHANNELS, num_classes).to("meta").train()
    images = torch.empty(BATCH, CHANNELS, SIDE, SIDE, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    return counter.get_total_flops() / BATCH


def synchronised(step: Callable[[], object], device: torch.device) -> Callable[[], float]:
    """A closure timing ``step`` in seconds (see :func:`timing.timed`)."""
    return lambda: timed(step, device)


def epoch_step(model_spec: dict, loss_spec: dict, num_classes: int, sampler: BatchSampler, hardware: Hardware):
    """A closure running one training epoch of a fresh model in ``hardware``'s layout and precision."""
    torch.manual_seed(0)
    model = build_model(model_spec, CHANNELS, num_classes).to(hardware.device)
    if hardware.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(hardware.device.type, enabled=hardware.autocast_dtype == torch.float16)
    loss_function = build_loss(loss_spec)
    epochs = iter(range(1, 1_000_000))

    def step() -> None:
        train_epoch(model, optimizer, scaler, sampler, loss_function, np.random.default_rng(next(epochs)), hardware)

    return step


def feeding_step(sampler: BatchSampler, hardware: Hardware):
    """A closure drawing one epoch of batches and copying them to the device, without any model."""

    def step() -> None:
        for images, masks, weights in sampler.epoch(np.random.default_rng(0)):
            to_device(images, hardware, channels_last=hardware.channels_last)
            to_device(masks, hardware)
            if weights is not None:
                to_device(weights, hardware)

    return step


def matmul_step(device: torch.device) -> tuple[Callable[[], object], float]:
    """A closure running three 2048x2048 float32 matmuls, and the FLOPs it performs."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.rand(MATMUL_SIDE, MATMUL_SIDE, device=device, generator=generator)
    right = torch.rand(MATMUL_SIDE, MATMUL_SIDE, device=device, generator=generator)
    repeats = 3 if device.type == "cpu" else 50  # long enough to time steadily

    def step() -> None:
        for _ in range(repeats):
            torch.matmul(left, right)

    return step, repeats * 2 * MATMUL_SIDE**3


def round_robin_medians(steps: dict[str, Callable[[], float]], rounds: int, warmup: int) -> dict[str, float]:
    """Median seconds of each timed step over ``rounds`` rounds, the steps interleaved within each round."""
    for _ in range(warmup):
        for run_step in steps.values():
            run_step()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, run_step in steps.items():
            seconds[name].append(run_step())
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 batches per epoch, 2 rounds")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    batches, rounds, warmup = (2, 2, 1) if args.quick else (4, 5, 2)
    model_spec, loss_spec, num_classes = default_experiment()
    sampler = BatchSampler(synthetic_data(batches * BATCH, num_classes), BATCH)
    chosen = choose_hardware(device, SIDE * SIDE)
    reference = Hardware(device, channels_last=False)
    matmul, matmul_flops = matmul_step(device)
    medians = round_robin_medians(
        {
            "matmul": synchronised(matmul, device),
            "reference": synchronised(epoch_step(model_spec, loss_spec, num_classes, sampler, reference), device),
            "chosen": synchronised(epoch_step(model_spec, loss_spec, num_classes, sampler, chosen), device),
            "feeding": synchronised(feeding_step(sampler, chosen), device),
        },
        rounds,
        warmup,
    )

    peak = matmul_flops / medians["matmul"]
    image_flops = flops_per_image(model_spec, num_classes)
    parameters = count_parameters(build_model(model_spec, CHANNELS, num_classes))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; {rounds} rounds of {batches} batches, medians")
    print(f"model: {model_spec} ({parameters} parameters), loss {loss_spec['name']}, {SIDE}x{SIDE}, batch {BATCH}")
    print(f"FLOPs per image, forward + backward: {image_flops / 1e9:.2f} GFLOP")
    print(f"fp32 matmul peak ({MATMUL_SIDE}x{MATMUL_SIDE}): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'setting':<44}{'images/s':>10}{'of peak':>10}{'ratio':>8}")
    images = batches * BATCH
    for name, hardware in (("reference", reference), ("chosen", chosen)):
        rate = images / medians[name]
        label = f"{'fit uses: ' if name == 'chosen' else 'reference: '}{describe(hardware)}"
        print(f"{label:<44}{rate:>10.1f}{rate * image_flops / peak:>10.3f}{medians['reference'] / medians[name]:>8.2f}")
    share = medians["feeding"] / medians["chosen"]
    print(
        f"data feeding: {1000 * medians['feeding'] / batches:.2f} ms per batch of "
        f"{1000 * medians['chosen'] / batches:.1f} ms per training step = {100 * share:.2f} % of step time "
        f"(target < 5 %: {'met' if share < 0.05 else 'NOT met'})"
    )


def describe(hardware: Hardware) -> str:
    precision = str(hardware.autocast_dtype or torch.float32).removeprefix("torch.")
    return f"{precision}, {'channels_last' if hardware.channels_last else 'NCHW'}"


if __name__ == "__main__":
    main()
