"""Several named experiments in one run: each trained, predicted and evaluated, side by side in the report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow.tiny_config import snakemake_command, tiny_workflow_config

pytestmark = pytest.mark.workflow

EXPERIMENTS = {
    # same padding, interpolation upsampling, additive skips, deep supervision, CE + Dice
    "deep_dice": {
        "model": {"name": "unet", "widths": [8, 16, 32], "batchnorm": True, "upsampling": "interp",
                  "fusion": "add", "deep_supervision": True, "deep_supervision_levels": 1},
        "loss": {"name": "combo", "terms": [{"name": "ce"}, {"name": "dice", "include_background": False}],
                 "deep_supervision_weights": [1.0, 0.5]},
        "weight_maps": False,
    },
    # the paper's valid-padding architecture, small: output smaller than input, tiled prediction
    "valid_residual": {
        "model": {"name": "unet", "widths": [8, 16, 32], "padding": "valid", "residual": True},
        "loss": {"name": "weighted_ce"},
        "augmentation": False,
    },
}  # fmt: skip


def test_two_experiments_run_end_to_end_and_are_compared(tmp_path: Path):
    configfile = tiny_workflow_config(tmp_path, experiments=EXPERIMENTS)
    result = subprocess.run(snakemake_command(tmp_path, configfile), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results" / "tiny"
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    test_ids = sorted(split.loc[split["subset"] == "test", "id"])
    for name in EXPERIMENTS:
        facts = json.loads((results / name / "training.json").read_text())
        assert facts["epochs_run"] == 2
        per_image = pd.read_csv(results / name / "metrics" / "per_image.tsv", sep="\t", dtype={"id": str})
        assert sorted(per_image["id"]) == test_ids
        assert per_image["pixel_accuracy"].between(0, 1).all()
    # originals only for the experiment without augmentation
    valid_facts = json.loads((results / "valid_residual" / "training.json").read_text())
    assert valid_facts["training_samples"] == 24
    report = (results / "report.html").read_text()
    for name in EXPERIMENTS:
        assert f"Experiment {name}" in report
    assert_weight_map_change_reruns_only_their_users(tmp_path)


def planned_jobs(directory: Path, configfile: Path) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans, read from Snakemake's job listing."""
    result = subprocess.run(snakemake_command(directory, configfile, "--dry-run"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    jobs, rule = [], None
    for line in (result.stdout + result.stderr).splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            rule = stripped.split()[1].rstrip(":")
            jobs.append((rule, ""))
        elif stripped.startswith("wildcards:") and rule is not None:
            jobs[-1] = (rule, stripped.removeprefix("wildcards:").strip())
    return jobs


def assert_weight_map_change_reruns_only_their_users(directory: Path) -> None:
    """A new w0 reruns the weight maps and the experiment training with them; the one without waits."""
    configfile = tiny_workflow_config(directory, experiments=EXPERIMENTS)
    assert planned_jobs(directory, configfile) == []  # the finished run is up to date
    configfile = tiny_workflow_config(directory, experiments=EXPERIMENTS, weights={"w0": 7.0})
    jobs = planned_jobs(directory, configfile)
    trained = sorted(wildcards for rule, wildcards in jobs if rule == "train")
    assert trained == ["dataset=tiny, experiment=valid_residual"], jobs
    assert {rule for rule, _ in jobs} >= {"weight_maps", "train", "predict", "report"}
    assert "augment" not in {rule for rule, _ in jobs}
