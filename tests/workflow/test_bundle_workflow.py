"""The real Snakefile's model bundle: exported with every run, and the segment command run on it outside the
pipeline repeats rule predict's masks for the same test images."""

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

from tests.workflow.tiny_config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from segcore.predict.outputs import read_predicted_mask  # noqa: E402

pytestmark = pytest.mark.workflow


def test_the_bundle_segments_the_test_images_as_rule_predict_did(tiny_run: Path, tmp_path: Path):
    experiment = tiny_run / "results" / "tiny" / "small"
    bundle = experiment / "bundle"
    card = json.loads((bundle / "model_card.json").read_text())
    assert card["classes"] == ["background", "circle", "triangle", "square"] and card["input"]["channels"] == 3
    assert card["normalisation"]["mode"] in ("zscore", "percentile")
    assert card["prediction"]["tile_size"] == 64 and card["network"]["padding_multiple"] == 4
    assert card["training"] == json.loads((experiment / "training.json").read_text())
    split = pd.read_csv(tiny_run / "results" / "tiny" / "split.tsv", sep="\t", dtype={"id": str})
    test_ids = sorted(split.loc[split["subset"] == "test", "id"])
    images = [tiny_run / "results" / "tiny" / "data" / "images" / f"{sample_id}.tif" for sample_id in test_ids]
    # Rule predict runs with 2 threads (fewer on a smaller machine); the command gets as many.
    threads = str(min(2, len(os.sched_getaffinity(0))))
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "scripts"), "OMP_NUM_THREADS": threads}
    result = subprocess.run(
        [sys.executable, "-m", "segcore.segment", str(bundle), *map(str, images), "-o", str(tmp_path), "--device",
         "cpu"],
        capture_output=True, text=True, env=environment, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for sample_id in test_ids:
        predicted = read_predicted_mask(experiment / "predictions", sample_id)
        np.testing.assert_array_equal(skio.imread(tmp_path / f"{sample_id}.png"), predicted, err_msg=sample_id)
