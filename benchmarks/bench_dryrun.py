"""Benchmark: how long Snakemake takes to build the job graph (a dry run) of a 10,000-image dataset.

Each round runs, one after another in a fresh empty folder each: ``snakemake --version`` (the start-up cost
alone: Python, Snakemake and its plugins), ``snakemake --dry-run`` of the repository's Snakefile for the
shapes dataset of 10,000 images in 8 shards, and the same for a reference of 100 images in 8 shards.
Medians over rounds. The DAG time is the dry run minus the start-up; the ratio 10,000 : 100 images shows
whether the graph's cost grows with the number of images (the pipeline's jobs are per shard, so it should
not). Target: a dry run of 10,000 images in under 10 s.

Usage: ``python benchmarks/bench_dryrun.py [--quick] [--images N] [--shards S]``; ``--quick`` runs one
round (about 15 s when start-up is quick), the default three.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_IMAGES = 100


def write_config(folder: Path, images: int, shards: int) -> Path:
    """A config for the generated shapes dataset of ``images`` images split 6:2:2, in ``shards`` shards."""
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config["dataset"]["shapes"]["count"] = images
    config["split"] = {"method": "ratios", "ratios": {"train": 6, "val": 2, "test": 2}}
    config["shards"] = shards
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def timed_run(command: list[str]) -> tuple[float, str]:
    """Seconds ``command`` took, and its output; raises with the output if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result.stdout


def dry_run(images: int, shards: int) -> tuple[float, int]:
    """Seconds of a dry run of the whole pipeline in a fresh folder, and the number of jobs it plans."""
    with tempfile.TemporaryDirectory() as folder:
        configfile = write_config(Path(folder), images, shards)
        command = [
            "snakemake", "--dry-run", "--quiet", "rules", "-s", str(REPO_ROOT / "Snakefile"),
            "--directory", folder, "--configfile", str(configfile), "--cores", "8",
        ]  # fmt: skip
        seconds, output = timed_run(command)
    jobs = [line for line in output.splitlines() if line.split()[:1] == ["total"]]
    return seconds, int(jobs[0].split()[1]) if jobs else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    startup, large, reference, jobs = [], [], [], {}
    for _ in range(rounds):
        startup.append(timed_run(["snakemake", "--version"])[0])
        seconds, jobs[args.images] = dry_run(args.images, args.shards)
        large.append(seconds)
        seconds, jobs[REFERENCE_IMAGES] = dry_run(REFERENCE_IMAGES, args.shards)
        reference.append(seconds)
    start_s, large_s, reference_s = (statistics.median(values) for values in (startup, large, reference))
    print(f"snakemake start-up (--version): {start_s:.2f} s; python {sys.version.split()[0]}; median of {rounds}")
    for label, images, seconds in (("dataset", args.images, large_s), ("reference", REFERENCE_IMAGES, reference_s)):
        print(
            f"dry run, {label} of {images} images in {args.shards} shards: {seconds:.2f} s, {jobs[images]} jobs; "
            f"DAG beyond start-up {seconds - start_s:.2f} s"
        )
    print(
        f"ratio {args.images}:{REFERENCE_IMAGES} images: {large_s / reference_s:.2f} (whole dry run), "
        f"{(large_s - start_s) / max(reference_s - start_s, 1e-3):.2f} (DAG beyond start-up)"
    )
    print(f"target < 10 s for the dry run: {'met' if large_s < 10 else 'NOT met'} ({large_s:.2f} s)")


if __name__ == "__main__":
    main()
