"""The fingerprint and plan rules in the real Snakefile: odd image sides train and predict, and settings that
cannot work stop early, naming their config key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.workflow.tiny_config import snakemake_command, tiny_workflow_config

pytestmark = pytest.mark.workflow


def run(command: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_101_px_images_train_whole_on_a_depth_4_net_and_predict(tmp_path: Path):
    """101 is no multiple of 16: the plan keeps whole images (padded to 112 for the net, cropped back)."""
    configfile = tiny_workflow_config(
        tmp_path,
        dataset={"name": "odd", "source": "shapes", "classes": ["background", "circle", "triangle", "square"],
                 "shapes": {"count": 40, "size": 101, "max_objects": 3}},
        experiments={"deep": {"model": {"name": "unet", "widths": [4, 8, 16, 32, 64], "batchnorm": True},
                              "loss": {"name": "weighted_ce"}}},
        training={"epochs": 1},
        prediction={},
        augment={"copies": 0},
    )  # fmt: skip
    result = run(snakemake_command(tmp_path, configfile))
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results" / "odd"
    fingerprint = json.loads((results / "fingerprint.json").read_text())
    assert fingerprint["size"]["height"] == {"min": 101, "median": 101, "max": 101}
    assert fingerprint["intensity"]["images"] == 32  # train + val only
    plan = json.loads((results / "deep" / "plan.json").read_text())
    settings = plan["settings"]
    assert plan["depth"] == 4 and settings["patch_size"] == {**settings["patch_size"], "value": None, "source": "auto"}
    assert settings["tile_size"]["value"] == 112 and settings["normalisation"]["value"] == "zscore"
    assert 2 <= settings["batch_size"]["value"] <= 32
    assert len(json.loads((results / "deep" / "training.json").read_text())) > 0
    masks = sorted((results / "deep" / "predictions").glob("shard-*/masks/*.tif"))
    assert len(masks) == 8 and all(tifffile.imread(path).shape == (101, 101) for path in masks)
    assert np.isfinite(float(json.loads((results / "deep" / "training.json").read_text())["best_val_loss"]))
    page = (results / "report.html").read_text()
    assert "Plan and fingerprint" in page and "training.normalisation" in page


def test_a_missing_import_folder_stops_before_any_job(tmp_path: Path):
    (tmp_path / "masks").mkdir()
    configfile = tiny_workflow_config(
        tmp_path,
        dataset={"name": "mine", "source": "folder", "classes": ["background", "cell"],
                 "import": {"format": "folder", "images": "no_such_folder", "masks": "masks"}},
    )  # fmt: skip
    result = run(snakemake_command(tmp_path, configfile, "-n"), timeout=120)
    assert result.returncode != 0
    assert "config key dataset.import.images: 'no_such_folder' does not exist" in result.stdout + result.stderr


def test_a_patch_larger_than_the_images_stops_at_the_plan(tmp_path: Path):
    configfile = tiny_workflow_config(
        tmp_path,
        dataset={"name": "small", "source": "shapes", "classes": ["background", "circle", "triangle", "square"],
                 "shapes": {"count": 12, "size": 64, "max_objects": 2}},
        split={"method": "counts", "counts": {"train": 6, "val": 3, "test": 3}},
        training={"patch_size": 128},
    )  # fmt: skip
    result = run(snakemake_command(tmp_path, configfile, "results/small/small/plan.json"), timeout=300)
    assert result.returncode != 0
    assert "config key training.patch_size: 128 is larger than needed" in result.stderr
    assert not (tmp_path / "results" / "small" / "small" / "plan.json").exists()
