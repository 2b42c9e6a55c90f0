"""Cross-validation end to end: the tiny config with split.folds 2 trains one model per fold (each its own
job), predicts the test set with their ensemble into the experiment's usual folders, reports the folds, and
bundles the ensemble: the segment command run on that bundle outside the pipeline repeats rule predict's
masks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import io as skio

from tests.workflow.tiny_config import REPO_ROOT, TINY_CONFIG, snakemake_command, tiny_workflow_config

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from segcore.predict.outputs import read_predicted_mask  # noqa: E402

pytestmark = pytest.mark.workflow


def test_two_folds_train_apart_and_predict_as_one_ensemble(tmp_path: Path):
    configfile = tiny_workflow_config(
        tmp_path, split={**TINY_CONFIG["split"], "folds": 2}, training={**TINY_CONFIG["training"], "epochs": 1}
    )
    dry = subprocess.run(snakemake_command(tmp_path, configfile, "--dry-run"), capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert "rule folds:" in dry.stdout and dry.stdout.count("rule train:") == 2  # one job per fold
    assert dry.stdout.count("rule export_model:") == 1  # one bundle: the ensemble of the folds

    result = subprocess.run(snakemake_command(tmp_path, configfile), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results" / "tiny"
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    pool = sorted(split.loc[split["subset"].isin(["train", "val"]), "id"])
    test_ids = sorted(split.loc[split["subset"] == "test", "id"])

    folds = pd.read_csv(results / "folds.tsv", sep="\t", dtype={"id": str})
    assert sorted(folds["id"]) == pool and folds["fold"].value_counts().to_dict() == {0: 16, 1: 16}
    experiment = results / "small"
    for fold in (0, 1):
        facts = json.loads((experiment / f"fold-{fold}" / "training.json").read_text())
        assert facts["epochs_run"] == 1 and facts["training_samples"] == 32  # 16 originals + 1 copy each
        assert (experiment / f"fold-{fold}" / "model.pt").is_file()
    assert not (experiment / "model.pt").exists()  # no run on the plain split

    # The ensemble's predictions and metrics where an experiment's always are.
    assert sorted(p.stem for p in (experiment / "predictions").glob("shard-*/masks/*.tif")) == test_ids
    per_image = pd.read_csv(experiment / "metrics" / "per_image.tsv", sep="\t", dtype={"id": str})
    assert sorted(per_image["id"]) == test_ids
    logs = tmp_path / "logs" / "tiny" / "small"
    assert "ensemble of 2 models" in (logs / "predict" / "shard-0.log").read_text()

    table = pd.read_csv(experiment / "fold_metrics.tsv", sep="\t", dtype={"fold": str})
    assert table["fold"].tolist() == ["0", "1", "mean", "sd"]
    assert table["best_val_dice"].iloc[2] == pytest.approx(table["best_val_dice"].iloc[:2].mean())
    summary = json.loads((experiment / "training.json").read_text())
    assert summary["folds"] == 2 and summary["training_samples"] == 32
    report = (results / "report.html").read_text()
    assert "Cross-validation: validation metrics per fold" in report and "Experiment small" in report

    # The ensemble's bundle: the folds' summary as its run facts, and the segment command repeating rule
    # predict's masks of the test images (as tests/workflow/test_bundle_workflow.py checks for one model).
    card = json.loads((experiment / "bundle" / "model_card.json").read_text())
    assert card["network"]["members"] == 2 and card["training"] == summary
    assert "an ensemble of 2 models" in (logs / "export_model.log").read_text()
    images = [results / "data" / "images" / f"{sample_id}.tif" for sample_id in test_ids]
    # Rule predict runs with 2 threads (fewer on a smaller machine); the command gets as many.
    threads = str(min(2, len(os.sched_getaffinity(0))))
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "scripts"), "OMP_NUM_THREADS": threads}
    out = tmp_path / "segmented"
    segmented = subprocess.run(
        [sys.executable, "-m", "segcore.segment", str(experiment / "bundle"), *map(str, images), "-o", str(out),
         "--device", "cpu"],
        capture_output=True, text=True, env=environment, timeout=600,
    )  # fmt: skip
    assert segmented.returncode == 0, segmented.stderr[-3000:]
    for sample_id in test_ids:
        predicted = read_predicted_mask(experiment / "predictions", sample_id)
        np.testing.assert_array_equal(skio.imread(out / f"{sample_id}.png"), predicted, err_msg=sample_id)
