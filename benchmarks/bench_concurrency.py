"""Two training jobs sharing the CPU: each one's speed as a fraction of its speed alone.

``snakemake --cores 8`` on a small machine runs a prediction beside a training, or two trainings, at once.
Each job is a separate Python process with its own torch thread pool; OpenMP threads that spin while waiting
for work (GNU OpenMP's default) take the cores from the other job's threads, so both slow down far beyond a
fair share. This benchmark runs the default config's model through real training steps (random 128x128
batches of 16, channels-last as the training loop uses on the CPU, Adam) in worker processes:

1. one worker alone (the reference, measured in the same run);
2. two workers at once, as the pipeline starts them (:data:`segcore.compute.JOB_ENVIRONMENT` in the
   environment, :func:`segcore.compute.configure_threads` with the rule's threads);
3. two workers at once without those settings (OpenMP's default wait policy, torch's default inter-op pool),
   to show what the settings buy.

Each worker trains for a fixed wall time and reports images/s; the result is each concurrent worker's speed
as a fraction of the solo speed (goal >= 0.4 each with 2 jobs on 2 cores: a fair share is 0.5).

Usage: ``python benchmarks/bench_concurrency.py [--seconds S] [--threads N]``; default 40 s per phase
(about 2.5 min in all). ``--threads`` is what each job's rule asks for (default: the CPUs of this process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SIDE, BATCH, CHANNELS, CLASSES = 128, 16, 3, 4


def worker(seconds: float, threads: int, managed: bool) -> None:
    """Train for ``seconds`` (after one warm-up epoch) and print ``{"images_per_s": ...}`` as JSON."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import numpy as np
    import torch

    from segcore.compute import configure_threads
    from segcore.config_schema import with_defaults
    from segcore.model.unet import build_model

    if managed:
        configure_threads(threads)
    else:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    images_batch = torch.from_numpy(rng.random((BATCH, CHANNELS, SIDE, SIDE), dtype=np.float32))
    masks_batch = torch.from_numpy(rng.integers(0, CLASSES, (BATCH, SIDE, SIDE)))
    images_batch = images_batch.contiguous(memory_format=torch.channels_last)  # as the loop does on CPU
    torch.manual_seed(0)
    spec = with_defaults("experiments.*.model", {"name": "unet", "widths": [16, 32, 64, 128, 256], "batchnorm": True})
    model = build_model(spec, CHANNELS, CLASSES)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images_batch), masks_batch).backward()
        optimizer.step()

    step()  # warm-up
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        images += BATCH
    print(json.dumps({"images_per_s": images / (time.perf_counter() - start)}))


def run_workers(n_workers: int, seconds: float, threads: int, managed: bool) -> list[float]:
    """Start ``n_workers`` at once; their images/s."""
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from segcore.compute import JOB_ENVIRONMENT

    env = {key: value for key, value in os.environ.items() if key not in JOB_ENVIRONMENT}
    env["TQDM_DISABLE"] = "1"
    if managed:
        env.update(JOB_ENVIRONMENT)
    command = [sys.executable, __file__, "--worker", "--seconds", str(seconds), "--threads", str(threads)]
    if managed:
        command.append("--managed")
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n_workers)]
    speeds = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"worker failed with exit code {process.returncode}")
        speeds.append(json.loads(output.strip().splitlines()[-1])["images_per_s"])
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--managed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seconds, args.threads, args.managed)
        return
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs, {args.threads} threads per job, {args.seconds:.0f} s per phase")
    solo = run_workers(1, args.seconds, args.threads, managed=True)[0]
    print(f"alone (pipeline settings):      {solo:6.2f} images/s  (reference)")
    for managed, label in ((True, "pipeline settings"), (False, "torch/OpenMP defaults")):
        speeds = run_workers(2, args.seconds, args.threads, managed)
        fractions = ", ".join(f"{speed / solo:.2f}" for speed in speeds)
        verdict = "meets" if min(speeds) / solo >= 0.4 else "misses"
        print(
            f"two at once ({label}): {', '.join(f'{s:.2f}' for s in speeds)} images/s = "
            f"{fractions} of solo ({verdict} the 0.4 goal)"
        )


if __name__ == "__main__":
    main()
