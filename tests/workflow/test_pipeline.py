"""The real Snakefile, end to end on a tiny config, in a temporary directory."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from tests.workflow.tiny_config import REPO_ROOT, snakemake_command, tiny_workflow_config

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from segcore.model.model_file import load_model  # noqa: E402

pytestmark = pytest.mark.workflow
RULES = [
    "generate_shapes",
    "split",
    "fingerprint",
    "plan",
    "augment",
    "class_weights",
    "weight_maps",
    "train",
    "predict",
    "export_model",
    "evaluate",
    "merge_metrics",
    "report",
    "all",
]


def run(command: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def digests(root: Path, patterns: list[str]) -> dict[str, str]:
    found = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def test_every_declared_output_exists_and_is_valid(tiny_run: Path):
    results = tiny_run / "results" / "tiny"
    data = results / "data"
    manifest = pd.read_csv(data / "manifest.tsv", sep="\t", dtype={"id": str})
    assert len(manifest) == 40
    image = tifffile.imread(data / "images" / f"{manifest['id'][0]}.tif")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8

    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    assert sorted(split["id"]) == sorted(manifest["id"])
    assert split["subset"].value_counts().to_dict() == {"train": 24, "val": 8, "test": 8}

    train_ids = set(split.loc[split["subset"] == "train", "id"])
    samples = {p.stem for p in (results / "train" / "samples").glob("shard-*/images/*.tif")}
    assert samples == train_ids | {f"{i}_aug1" for i in train_ids}  # originals + one copy each
    weights = sorted((results / "train" / "weights").glob("shard-*/*.tif"))
    assert {p.stem for p in weights} == samples
    weight_map = tifffile.imread(weights[0])
    assert weight_map.dtype == np.float32 and weight_map.shape == (64, 64) and weight_map.min() > 0

    experiment = results / "small"
    model, metadata = load_model(experiment / "model.pt")
    assert metadata["class_names"] == ["background", "circle", "triangle", "square"]
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    history = pd.read_csv(experiment / "history.tsv", sep="\t")
    assert list(history.columns) == [
        "epoch", "train_loss", "val_loss", "val_dice", "image_val_loss", "image_val_dice", "learning_rate",
        "seconds", "validation_seconds",
    ]  # fmt: skip
    assert list(history["epoch"]) == [1, 2] and np.isfinite(history["train_loss"]).all()
    assert np.isfinite(history["image_val_dice"].iloc[-1])  # whole images validated at the last epoch
    assert (experiment / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    facts = json.loads((experiment / "training.json").read_text())
    assert facts["device"] == ("cuda" if torch.cuda.is_available() else "cpu") and facts["epochs_run"] == 2

    test_ids = sorted(split.loc[split["subset"] == "test", "id"])
    masks = {p.stem: p for p in (experiment / "predictions").glob("shard-*/masks/*.tif")}
    assert sorted(masks) == test_ids
    assert sorted(p.stem for p in (experiment / "predictions").glob("shard-*/colour/*.png")) == test_ids
    predicted = tifffile.imread(masks[test_ids[0]])
    assert predicted.dtype == np.uint8 and predicted.shape == (64, 64) and predicted.max() < 4

    per_image = pd.read_csv(experiment / "metrics" / "per_image.tsv", sep="\t", dtype={"id": str})
    assert sorted(per_image["id"]) == test_ids
    assert per_image["pixel_accuracy"].between(0, 1).all()
    summary = pd.read_csv(experiment / "metrics" / "summary.tsv", sep="\t")
    assert {"pixel_accuracy", "mean_fg_dice", "dice_circle", "iou_square"} <= set(summary["metric"])

    report = (results / "report.html").read_text()
    assert "<table>" in report and "mean_fg_dice" in report
    assert report.count("data:image/png;base64,") >= 2
    logs = tiny_run / "logs" / "tiny"
    assert "epoch 2/2" in (logs / "small" / "train.log").read_text()


def test_rerun_after_removing_results_reproduces_data_byte_for_byte(tiny_run: Path):
    patterns = ["results/tiny/data/**/*", "results/tiny/split.tsv", "results/tiny/train/**/*"]
    before = digests(tiny_run, patterns)
    copy = tiny_run.parent / "tiny-rerun"
    copy.mkdir()
    configfile = tiny_workflow_config(copy)
    targets = ["results/tiny/train/weights/shard-0", "results/tiny/train/weights/shard-1"]
    result = run(snakemake_command(copy, configfile, *targets))
    assert result.returncode == 0, result.stderr[-4000:]
    after = digests(copy, patterns)
    assert len(before) > 100 and before == after
    shutil.rmtree(copy)


def test_dry_run_of_default_config_lists_every_rule(tmp_path: Path):
    result = run(snakemake_command(tmp_path, REPO_ROOT / "config" / "config.yaml", "--dry-run"), timeout=120)
    assert result.returncode == 0, result.stderr
    for rule in RULES:
        assert f"rule {rule}:" in result.stdout or f"localrule {rule}:" in result.stdout, rule


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"training": {"epoch": 3}}, "config key training: Additional properties are not allowed ('epoch'"),
        ({"training": {"epochs": "many"}}, "config key training.epochs: 'many' is not of type 'integer'"),
        ({"shards": 0}, "config key shards: 0 is less than the minimum of 1"),
    ],
)
def test_bad_config_stops_with_the_key_name(tmp_path: Path, override, message):
    configfile = tiny_workflow_config(tmp_path, **override)
    result = run(snakemake_command(tmp_path, configfile, "--dry-run"), timeout=120)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_impossible_split_stops_naming_the_key_before_any_job(tmp_path: Path):
    # A generated dataset's size is known from the config, so the check runs before any job (rules/common.smk);
    # for imported data rule split makes the same check (segcore.data.split.subset_sizes).
    configfile = tiny_workflow_config(
        tmp_path, split={"method": "counts", "counts": {"train": 30, "val": 8, "test": 8}}
    )
    result = run(snakemake_command(tmp_path, configfile, "results/tiny/split.tsv"), timeout=300)
    assert result.returncode != 0
    assert "config key split.counts: asks for 46 samples (30:8:8) but dataset.shapes.count is 40" in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["report.zip", "report.html"])
def test_snakemake_report_builds_after_a_run(tiny_run: Path, name: str):
    configfile = tiny_run / "tiny-config.yaml"
    result = run(snakemake_command(tiny_run, configfile, "--report", str(tiny_run / name)), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    built = tiny_run / name
    assert built.stat().st_size > 10_000
    if name == "report.zip":
        import zipfile

        names = zipfile.ZipFile(built).namelist()
        assert any(n.endswith("curves.png") for n in names) and any(n.endswith("report.html") for n in names)
