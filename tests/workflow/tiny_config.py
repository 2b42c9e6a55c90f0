"""A tiny configuration of the real pipeline for tests: 40 shapes images of 64x64, two epochs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

TINY_CONFIG: dict[str, Any] = {
    "seed": 3,
    "dataset": {
        "name": "tiny",
        "source": "shapes",
        "classes": ["background", "circle", "triangle", "square"],
        "shapes": {"count": 40, "size": 64, "max_objects": 3},
    },
    "split": {"method": "counts", "counts": {"train": 24, "val": 8, "test": 8}},
    "experiments": {
        "small": {
            "model": {"name": "unet", "widths": [8, 16, 32], "batchnorm": True},
            "loss": {"name": "weighted_ce"},
        }
    },
    "training": {"epochs": 2, "batch_size": 8},
    "prediction": {"tile_size": 64},
    "shards": 2,
}


def tiny_workflow_config(directory: Path, **overrides: Any) -> Path:
    """Write the tiny config (top-level keys replaced by ``overrides``) into ``directory``; return its path."""
    config = copy.deepcopy(TINY_CONFIG)
    config.update(overrides)
    path = Path(directory) / "tiny-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_command(directory: Path, configfile: Path, *extra: str) -> list[str]:
    """The command line that runs the repository's Snakefile in ``directory`` with ``configfile``.

    ``extra`` (targets, flags) comes first: ``--resources`` would otherwise swallow targets after it.
    """
    return [
        "snakemake", *extra, "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(directory),
        "--configfile", str(configfile), "--cores", "2", "--resources", "gpu=1",
    ]  # fmt: skip
