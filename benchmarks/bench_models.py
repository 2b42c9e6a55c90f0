"""Benchmark the U-Net family: throughput and the fraction of the fp32 matmul peak it reaches.

Reference: ``torch.matmul`` of two 2048x2048 float32 matrices (2 * 2048**3 FLOPs each), timed round-robin with
the steps it is compared with (matmul, inference, training, matmul, inference, ...), medians of the rounds, so
that load from other processes on a shared machine slows reference and network alike.

1. Per model at its natural input size (unet_small 128x128 batch 16, unet 256x256 batch 4, unet_original
   572x572 batch 1, unet_residual 128x128 batch 16): inference images/s (eval mode, no_grad, after
   :func:`segcore.model.unet.prepare_for_inference`) and training-step images/s (forward, cross-entropy, backward,
   SGD step), FLOPs per image from ``torch.utils.flop_counter.FlopCounterMode`` (counted on the meta device:
   shapes only, no arithmetic), and achieved FLOP/s as a fraction of the peak measured alongside.
2. The default small U-Net's training step in three settings: eager NCHW, channels_last, channels_last with
   BatchNorm (``--compile`` adds channels_last + BatchNorm + torch.compile, which costs 30-60 s to compile);
   each as images/s, fraction of peak and ratio to eager NCHW.
3. ``--part sizes``: the layout choice of :func:`segcore.train.hardware.prefers_channels_last` checked at
   equal work: the presets' network (widths 16..256, BatchNorm) trained on patches of side 128, 256, 320 and
   512 with the batch holding 2**18 pixels each time, eager NCHW against channels_last, timed round-robin;
   prints the channels_last / NCHW speed ratio per side and the layout the rule picks there.

Usage: ``python benchmarks/bench_models.py [--quick] [--compile] [--device cpu|cuda] [--threads N]
[--rounds N] [--part all|models|layouts|sizes]``.
``--quick`` uses smaller batches and inputs and one timed round (a smoke run: 45-100 s here, depending on
load). The default run (3 rounds) took 4.5-5 min on this busy 2-core machine; expect about 3 min on 2 free
cores. On a shared machine differences under ~15 % are noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from timing import timed  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from segcore.config_schema import with_defaults  # noqa: E402
from segcore.model.unet import build_model, count_parameters, prepare_for_inference  # noqa: E402


@dataclass(frozen=True)
class Case:
    """One benchmarked network: config spec, channels, classes, input side and batch size."""

    label: str
    spec: dict
    in_channels: int
    num_classes: int
    side: int
    batch: int


MATMUL_SIDE = 2048
MATMULS_PER_STEP = 3  # one ~0.1 s matmul is too short to time steadily on a busy machine
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


def interleaved_medians(
    steps: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per step, timing the steps round-robin so load changes hit all of them alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            timings[name].append(timed(step, device))
    return {name: statistics.median(values) for name, values in timings.items()}


def matmul_step(device: torch.device) -> tuple[Callable[[], object], float]:
    """A closure running ``MATMULS_PER_STEP`` fp32 2048x2048 matmuls, and the FLOPs it performs."""
    generator = torch.Generator(device=device).manual_seed(0)
    left = torch.rand(MATMUL_SIDE, MATMUL_SIDE, device=device, generator=generator)
    right = torch.rand(MATMUL_SIDE, MATMUL_SIDE, device=device, generator=generator)

    def step() -> None:
        for _ in range(MATMULS_PER_STEP):
            torch.matmul(left, right)

    return step, MATMULS_PER_STEP * 2 * MATMUL_SIDE**3


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
    model = build_model(with_defaults("experiments.*.model", spec), case.in_channels, case.num_classes)
    model = model.to("meta").train(train)
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


def bench_model(case: Case, repeats: int, device: torch.device) -> None:
    """Print one table row: parameters; GFLOP/image, images/s and fraction of peak for inference and training;
    and the matmul peak measured alongside."""
    torch.manual_seed(0)
    model = build_model(with_defaults("experiments.*.model", case.spec), case.in_channels, case.num_classes).to(device)
    images, target = case_inputs(case, device)
    inference_model = prepare_for_inference(model)

    def infer() -> None:
        with torch.no_grad():
            inference_model(images)

    peak_step, peak_flops = matmul_step(device)
    steps = {"peak": peak_step, "infer": infer, "train": training_step(model.train(), images, target)}
    seconds = interleaved_medians(steps, repeats, 1, device)
    peak = peak_flops / seconds["peak"]
    infer_flops = flops_per_image(case, case.spec, train=False)
    train_flops = flops_per_image(case, case.spec, train=True)
    infer_rate, train_rate = case.batch / seconds["infer"], case.batch / seconds["train"]
    print(
        f"{case.label:<14} {case.side:>4}^2 {case.batch:<5} {count_parameters(model) / 1e6:6.2f}M "
        f"| {infer_flops / 1e9:9.2f} {infer_rate:12.2f} {infer_rate * infer_flops / peak:5.2f} "
        f"| {train_flops / 1e9:9.2f} {train_rate:12.2f} {train_rate * train_flops / peak:5.2f} "
        f"| {peak / 1e9:6.1f}",
        flush=True,
    )


def bench_layouts(case: Case, repeats: int, device: torch.device, compile_too: bool) -> None:
    """Training step of ``case`` in several memory layouts and with/without BatchNorm, vs eager NCHW."""
    settings = [("eager NCHW", False, False, False), ("channels_last", True, False, False)]
    settings.append(("channels_last + BatchNorm", True, True, False))
    if compile_too:
        settings.append(("channels_last + BatchNorm + compile", True, True, True))
    peak_step, peak_flops = matmul_step(device)
    steps: dict[str, Callable[[], object]] = {"peak": peak_step}
    flops = {}
    for label, channels_last, batchnorm, compiled in settings:
        spec = with_defaults("experiments.*.model", {**case.spec, "batchnorm": batchnorm})
        torch.manual_seed(0)
        model = build_model(spec, case.in_channels, case.num_classes).to(device).train()
        images, target = case_inputs(case, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        steps[label] = training_step(torch.compile(model) if compiled else model, images, target)
        flops[label] = flops_per_image(case, spec, train=True)
    # Two warm-up rounds: a compiled model compiles its forward on the first call, its backward on the first
    # backward, and the second round runs everything warm.
    seconds = interleaved_medians(steps, repeats, 2 if compile_too else 1, device)
    peak = peak_flops / seconds.pop("peak")
    rates = {label: case.batch / value for label, value in seconds.items()}
    print(f"\n{case.label} training step, {case.side}x{case.side}, batch {case.batch} (peak {peak / 1e9:.1f}):")
    for label, rate in rates.items():
        fraction = rate * flops[label] / peak
        ratio = rate / rates["eager NCHW"]
        print(f"  {label:<36} {rate:7.2f} img/s  {fraction:5.2f} of peak  {ratio:5.2f}x eager")
    print(f"  fastest: {max(rates, key=rates.get)}")


SIZE_SIDES = (128, 256, 320, 512)
SIZE_PIXELS_PER_STEP = 2**18  # 256x256 x 4: the batch of every side holds the same pixels
SIZE_SPEC = {"name": "unet", "widths": [16, 32, 64, 128, 256], "batchnorm": True}


def bench_layout_sizes(repeats: int, device: torch.device) -> None:
    """Per patch side, the training speed of channels_last over eager NCHW at equal pixels per step, beside
    the layout :func:`segcore.train.hardware.prefers_channels_last` chooses for that side."""
    from segcore.train.hardware import prefers_channels_last

    print(f"\n{SIZE_SPEC['widths']} U-Net training step, NCHW vs channels_last, {SIZE_PIXELS_PER_STEP} px a step:")
    print(f"  {'side':>5} {'batch':>5} {'NCHW kpx/s':>11} {'NHWC kpx/s':>11} {'NHWC/NCHW':>10}  rule picks")
    for side in SIZE_SIDES:
        batch = max(1, SIZE_PIXELS_PER_STEP // side**2)
        case = Case(f"unet {side}", SIZE_SPEC, 1, 2, side, batch)
        steps: dict[str, Callable[[], object]] = {}
        for label, channels_last in (("nchw", False), ("nhwc", True)):
            torch.manual_seed(0)
            model = build_model(with_defaults("experiments.*.model", SIZE_SPEC), 1, 2).to(device).train()
            images, target = case_inputs(case, device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                images = images.contiguous(memory_format=torch.channels_last)
            steps[label] = training_step(model, images, target)
        seconds = interleaved_medians(steps, repeats, 1, device)
        rates = {label: batch * side**2 / value / 1e3 for label, value in seconds.items()}
        picked = "channels_last" if prefers_channels_last(device, side**2) else "NCHW"
        print(f"  {side:>5} {batch:>5} {rates['nchw']:>11.0f} {rates['nhwc']:>11.0f} "
              f"{rates['nhwc'] / rates['nchw']:>10.2f}  {picked}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and inputs, one timed round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 3, or 1 with --quick)")
    parser.add_argument(
        "--part",
        default="all",
        choices=("all", "models", "layouts", "sizes"),
        help="what to run (sizes: only with --part sizes)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.rounds or (1 if args.quick else 3)
    cases = QUICK_CASES if args.quick else FULL_CASES

    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads (shared machine: noisy)")
    if args.part in ("all", "models"):
        print(f"\n{'model':<14} {'input':>6} {'batch':<3} {'params':>7}", end="")
        print(" | GFLOP/img  infer img/s  frac | GFLOP/img  train img/s  frac | peak GFLOP/s")
        for case in cases:
            bench_model(case, repeats, device)
    if args.part in ("all", "layouts"):
        bench_layouts(cases[0], repeats, device, args.compile)
    if args.part == "sizes":
        bench_layout_sizes(repeats, device)


if __name__ == "__main__":
    main()
