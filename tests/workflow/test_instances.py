"""The border class and instance post-processing through the real pipeline: an experiment trained with the
border class predicts the dataset's classes, writes instances split by the watershed, and is scored on them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from tests.workflow.tiny_config import snakemake_command, tiny_workflow_config

pytestmark = pytest.mark.workflow

EXPERIMENTS = {
    "bordered": {
        "model": {"name": "unet", "widths": [8, 16, 32], "batchnorm": True},
        "loss": {"name": "weighted_ce"},
        "border_class": True,
        "border_width": 1,
    }
}


def test_a_border_class_experiment_writes_and_scores_instances(tmp_path: Path):
    configfile = tiny_workflow_config(
        tmp_path, experiments=EXPERIMENTS, training={"epochs": 1, "batch_size": 8}, shards=1
    )
    result = subprocess.run(snakemake_command(tmp_path, configfile), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results" / "tiny"
    metadata = torch.load(results / "bordered" / "model.pt", weights_only=True)["metadata"]
    assert metadata["num_classes"] == 5 and metadata["class_names"][-1] == "border" and metadata["border_class"]
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    test_ids = sorted(split.loc[split["subset"] == "test", "id"])
    shard = results / "bordered" / "predictions" / "shard-0"
    assert sorted(path.stem for path in (shard / "instances").glob("*.tif")) == test_ids
    assert json.loads((shard / "instances.json").read_text()) == {"method": "watershed on the border class"}
    for sample_id in test_ids:
        mask = tifffile.imread(shard / "masks" / f"{sample_id}.tif")
        instances = tifffile.imread(shard / "instances" / f"{sample_id}.tif")
        assert mask.max() <= 3  # the border class is folded back into the four dataset classes
        assert np.array_equal(instances > 0, mask > 0)  # every foreground pixel is in one object
    per_image = pd.read_csv(results / "bordered" / "metrics" / "per_image.tsv", sep="\t", dtype={"id": str})
    assert sorted(per_image["id"]) == test_ids
    assert per_image["object_f1"].between(0, 1).all()
    report = (results / "report.html").read_text()
    assert "objects by" in report and "watershed on the border class" in report
