"""Benchmark the U-Net family: throughput and the fraction of the fp32 matmul peak it reaches.

1. Peak: ``torch.matmul`` of two 2048x2048 float32 matrices (2 * 2048**3 FLOPs), median of repeats, measured
   at the start (the reference for every fraction below) and again at the end, to show how much the shared
   machine's speed drifted during the run.
2. Per model at its natural input size (unet_small 128x128 batch 16, unet 256x256 batch 4, unet_original
   572x572 batch 1, unet_residual 128x128 batch 16): inference images/s (eval mode, no_grad, after
   :func:`segcore.models.prepare_for_inference`) and training-step images/s (forward, cross-entropy, backward,
   SGD step), FLOPs per image from ``torch.utils.flop_counter.FlopCounterMode`` (counted on the meta device:
   shapes only, no arithmetic), and achieved FLOP/s as a fraction of the measured peak.
3. The default small U-Net's training step in three settings: eager NCHW, channels_last, channels_last with
   BatchNorm (``--compile`` adds channels_last + BatchNorm + torch.compile, which costs 30-60 s to compile);
   each as images/s, fraction of peak and ratio to eager NCHW.

Usage: ``python benchmarks/bench_models.py [--quick] [--compile] [--device cpu|cuda] [--threads N]``.
``--quick`` uses smaller batches and inputs and one timed repeat (a smoke run, about a minute); the default
run takes 2-4 min on 2 CPU cores. Timings are medians; on a shared machine differences under ~15 % are noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from segcore.models import build_model, count_parameters, prepare_for_inference  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One benchmarked network: config spec, channels, classes, input side and batch size."""

    label: str
    spec: dict
    in_channels: int
    num_classes: int
    side: int
    batch: int


FULL_CASES = (
    Case("unet_small", {"name": "unet_small"}, 3, 4, 128, 16),
    Case("unet", {"name": "unet"}, 1, 2, 256, 4),
    Case("unet_original", {"name": "unet_original"}, 1, 2, 572, 1),
    Case("unet_residual", {"name": "unet_residual"}, 3, 4, 128, 16),
)
QUICK_CASES = (
    Case("unet_small", {"name": "unet_small"}, 3, 4, 128, 4),
    Case("unet", {"name": "unet"}, 1, 2, 64, 1),
    Case("unet_original", {"name": "unet_original"}, 1, 2, 188, 1),  # smallest valid input: 4x4 output
    Case("unet_residual", {"name": "unet_residual"}, 3, 4, 128, 4),
)


def median_seconds(step: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``step`` over ``repeats`` calls after ``warmup`` untimed calls."""
    timings = []
    for index in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def matmul_timings(repeats: int, device: torch.device, size: int = 2048) -> list[float]:
    """Wall times of ``repeats`` fp32 ``size x size`` matmuls (after 2 warm-up calls)."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.rand(size, size, device=device, generator=generator)
    right = torch.rand(size, size, device=device, generator=generator)
    timings = []
    for index in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(left, right)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            timings.append(time.perf_counter() - start)
    return timings


def training_step(model: torch.nn.Module, images: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """A closure running one SGD training step (forward, cross-entropy on the central crop, backward)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        crop = (target.shape[-1] - logits.shape[-1]) // 2  # valid padding: output is the input's centre
        inner = target[:, crop : crop + logits.shape[-2], crop : crop + logits.shape[-1]]
        F.cross_entropy(logits, inner).backward()
        optimizer.step()

    return step


def flops_per_image(case: Case, spec: dict, train: bool) -> float:
    """FLOPs of one image's forward (or forward + backward) pass, counted on the meta device."""
    model = build_model(spec, case.in_channels, case.num_classes).to("meta").train(train)
    images = torch.empty(case.batch, case.in_channels, case.side, case.side, device="meta")
    with FlopCounterMode(display=False) as counter:
        if train:
            model(images).sum().backward()
        else:
            with torch.no_grad():
                model(images)
    return counter.get_total_flops() / case.batch


def case_inputs(case: Case, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(case.batch, case.in_channels, case.side, case.side, generator=generator)
    target = torch.randint(0, case.num_classes, (case.batch, case.side, case.side), generator=generator)
    return images.to(device), target.to(device)


def bench_model(case: Case, peak: float, repeats: int, device: torch.device) -> None:
    """Print one table row: parameters, then GFLOP/image, images/s and fraction of peak (infer, train)."""
    torch.manual_seed(0)
    model = build_model(case.spec, case.in_channels, case.num_classes).to(device)
    images, target = case_inputs(case, device)
    inference_model = prepare_for_inference(model)

    def infer() -> None:
        with torch.no_grad():
            inference_model(images)

    infer_rate = case.batch / median_seconds(infer, repeats, 1, device)
    train_rate = case.batch / median_seconds(training_step(model.train(), images, target), repeats, 1, device)
    infer_flops = flops_per_image(case, case.spec, train=False)
    train_flops = flops_per_image(case, case.spec, train=True)
    print(
        f"{case.label:<14} {case.side:>4}^2 {case.batch:<5} {count_parameters(model) / 1e6:6.2f}M "
        f"| {infer_flops / 1e9:9.2f} {infer_rate:12.2f} {infer_rate * infer_flops / peak:5.2f} "
        f"| {train_flops / 1e9:9.2f} {train_rate:12.2f} {train_rate * train_flops / peak:5.2f}",
        flush=True,
    )


def bench_layouts(case: Case, peak: float, repeats: int, device: torch.device, compile_too: bool) -> None:
    """Training step of ``case`` in several memory layouts and with/without BatchNorm, vs eager NCHW."""
    settings = [("eager NCHW", False, False, False), ("channels_last", True, False, False)]
    settings.append(("channels_last + BatchNorm", True, True, False))
    if compile_too:
        settings.append(("channels_last + BatchNorm + compile", True, True, True))
    print(f"\n{case.label} training step, {case.side}x{case.side}, batch {case.batch}:")
    rates = {}
    for label, channels_last, batchnorm, compiled in settings:
        spec = {**case.spec, "batchnorm": batchnorm}
        torch.manual_seed(0)
        model = build_model(spec, case.in_channels, case.num_classes).to(device).train()
        images, target = case_inputs(case, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        runner = torch.compile(model) if compiled else model
        warmup = 2 if compiled else 1  # compiled: first call compiles forward, second backward is warm
        seconds = median_seconds(training_step(runner, images, target), repeats, warmup, device)
        rates[label] = case.batch / seconds
        fraction = rates[label] * flops_per_image(case, spec, train=True) / peak
        ratio = rates[label] / rates["eager NCHW"]
        print(f"  {label:<36} {rates[label]:7.2f} img/s  {fraction:5.2f} of peak  {ratio:5.2f}x eager")
    print(f"  fastest: {max(rates, key=rates.get)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and inputs, fewer repeats")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 1 if args.quick else 3
    cases = QUICK_CASES if args.quick else FULL_CASES

    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads (shared machine: noisy)")
    flops_per_matmul = 2 * 2048**3
    start_timings = matmul_timings(5 if args.quick else 10, device)
    start_peak = flops_per_matmul / statistics.median(start_timings)
    print(f"fp32 matmul 2048^2 at start: {start_peak / 1e9:.1f} GFLOP/s")
    print(f"\n{'model':<14} {'input':>6} {'batch':<3} {'params':>7} | GFLOP/img  infer img/s  frac", end="")
    print(" | GFLOP/img  train img/s  frac")
    for case in cases:
        bench_model(case, start_peak, repeats, device)
    bench_layouts(cases[0], start_peak, repeats, device, args.compile)

    end_timings = matmul_timings(5 if args.quick else 10, device)
    end_peak = flops_per_matmul / statistics.median(end_timings)
    overall_peak = flops_per_matmul / statistics.median(start_timings + end_timings)
    print(
        f"\nfp32 matmul peak: start {start_peak / 1e9:.1f}, end {end_peak / 1e9:.1f}, median of all "
        f"{overall_peak / 1e9:.1f} GFLOP/s; fractions above use the start value (multiply by "
        f"{start_peak / overall_peak:.2f} to rescale to the median)"
    )


if __name__ == "__main__":
    main()
