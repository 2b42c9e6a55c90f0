"""The real Snakefile: training killed and rerun resumes bit for bit; shard jobs add up to one job's files.

References are independent runs: an uninterrupted training run, and the same tiny workflow run as one shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from tests.workflow.tiny_config import REPO_ROOT, snakemake_command, tiny_workflow_config

pytestmark = pytest.mark.workflow
EPOCHS = 4
TRAINING = {"epochs": EPOCHS, "batch_size": 8, "early_stopping_patience": EPOCHS}
EXPERIMENT = Path("results/tiny/small")
STATE = EXPERIMENT / ".resume" / "state.pt"
# Stale locks and incomplete markers are what a killed Snakemake leaves; a user would pass the same flags.
AFTER_KILL = ("--nolock", "--rerun-incomplete")


def snakemake(directory: Path, configfile: Path, *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    command = snakemake_command(directory, configfile, *extra)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def succeed(directory: Path, configfile: Path, *extra: str) -> subprocess.CompletedProcess:
    result = snakemake(directory, configfile, *extra)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def saved_epoch(path: Path) -> int:
    """Completed epochs in a state file; 0 while there is none (it is replaced atomically, never torn)."""
    if not path.exists():
        return 0
    return torch.load(path, map_location="cpu", weights_only=True)["progress"]["epoch"]


def kill_training_after(directory: Path, configfile: Path, epochs: int, timeout: float = 300) -> int:
    """Start the train job, SIGKILL Snakemake and the job once the state shows ``epochs``; return the epoch."""
    command = snakemake_command(directory, configfile, str(EXPERIMENT / "model.pt"), "--forcerun", "train")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while saved_epoch(directory / STATE) < epochs:
            assert process.poll() is None, "the train job ended before it could be killed"
            assert time.monotonic() < deadline, "no training state appeared in time"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the process group: Snakemake and the rule script it runs
        process.wait()
    return saved_epoch(directory / STATE)


def digests(root: Path, pattern: str) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files matching ``pattern`` under ``root``, keyed without shard folders."""
    found = {}
    for path in root.glob(pattern):
        key = "/".join(part for part in path.relative_to(root).parts if not part.startswith("shard-"))
        assert key not in found, f"{key} is in two shards"
        found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def single_shard(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny workflow in one shard, run up to the trained model: (directory, config file)."""
    directory = tmp_path_factory.mktemp("one-shard")
    configfile = tiny_workflow_config(directory, training=TRAINING, shards=1)
    succeed(directory, configfile, str(EXPERIMENT / "model.pt"))
    return directory, configfile


def test_training_killed_and_rerun_resumes_to_the_uninterrupted_model(single_shard):
    directory, configfile = single_shard
    model, facts = directory / EXPERIMENT / "model.pt", directory / EXPERIMENT / "training.json"
    uninterrupted = model.read_bytes()
    assert not (directory / STATE).parent.exists()  # a finished run removes its state
    recorded = json.loads(facts.read_text())
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert recorded["git_commit"] == (commit.stdout.strip() if commit.returncode == 0 else "unknown")
    assert recorded["seed"] == 3 and recorded["torch"] == torch.__version__ and recorded["epochs_run"] == EPOCHS
    assert {"python", "numpy", "device", "precision"} <= set(recorded)

    killed_at = kill_training_after(directory, configfile, epochs=2)
    assert 2 <= killed_at < EPOCHS and not model.exists()

    (directory / "changed").mkdir()
    changed = tiny_workflow_config(directory / "changed", training={**TRAINING, "learning_rate": 0.01}, shards=1)
    refused = snakemake(directory, changed, str(EXPERIMENT / "model.pt"), *AFTER_KILL)
    assert refused.returncode != 0
    assert f"{STATE}: the saved training state belongs to another run (differs in training)" in refused.stderr
    assert saved_epoch(directory / STATE) == killed_at  # refused, not overwritten, and kept by Snakemake

    succeed(directory, configfile, str(EXPERIMENT / "model.pt"), *AFTER_KILL)
    log = (directory / "logs" / "tiny" / "small" / "train.log").read_text()
    trained = [int(epoch) for epoch in re.findall(r"INFO epoch (\d+)/", log)]
    assert trained == list(range(killed_at + 1, EPOCHS + 1))  # no epoch trained twice
    assert model.read_bytes() == uninterrupted
    assert not (directory / STATE).exists()


@pytest.fixture(scope="module")
def three_shards(tmp_path_factory) -> Path:
    """The same tiny workflow in three shards, run up to the metrics summary."""
    directory = tmp_path_factory.mktemp("three-shards")
    configfile = tiny_workflow_config(directory, training=TRAINING, shards=3)
    succeed(directory, configfile, str(EXPERIMENT / "metrics" / "summary.tsv"))
    return directory


def test_shard_jobs_together_produce_the_files_of_one_job(single_shard, three_shards: Path):
    one, one_config = single_shard
    three = three_shards
    succeed(one, one_config, str(EXPERIMENT / "metrics" / "summary.tsv"), *AFTER_KILL)  # after the kill above

    assert len(list((three / "results/tiny/train/samples").glob("shard-*"))) == 3
    samples = ["samples/shard-*/images/*.tif", "samples/shard-*/masks/*.tif", "samples/shard-*/instances/*.tif"]
    for pattern in [*samples, "weights/shard-*/*.tif"]:
        one_files = digests(one / "results/tiny/train", pattern)
        assert len(one_files) >= 24 and digests(three / "results/tiny/train", pattern) == one_files, pattern
    # trained twice from one seed on the same data: the same model file
    assert (three / EXPERIMENT / "model.pt").read_bytes() == (one / EXPERIMENT / "model.pt").read_bytes()
    predictions = "predictions/shard-*/masks/*.tif"
    assert digests(three / EXPERIMENT, predictions) == digests(one / EXPERIMENT, predictions)
    assert len(list((three / EXPERIMENT / "metrics").glob("shard-*/per_image.tsv"))) == 3
    for table in ["per_image.tsv", "summary.tsv", "confusion.tsv"]:
        merged = (three / EXPERIMENT / "metrics" / table).read_bytes()
        assert merged == (one / EXPERIMENT / "metrics" / table).read_bytes(), table


def test_shard_confusion_matrices_add_up_to_the_pooled_one(three_shards: Path):
    """The shards' matrices against scikit-learn's over every test image, and the summary's pooled accuracy."""
    metrics = three_shards / EXPERIMENT / "metrics"
    shards = [pd.read_csv(path, sep="\t", index_col="truth") for path in sorted(metrics.glob("shard-*/confusion.tsv"))]
    pooled = sum(table.to_numpy() for table in shards)
    masks = sorted((three_shards / EXPERIMENT / "predictions").glob("shard-*/masks/*.tif"))
    truth_folder = three_shards / "results/tiny/data/masks"
    truth = np.concatenate([tifffile.imread(truth_folder / path.name).ravel() for path in masks])
    predicted = np.concatenate([tifffile.imread(path).ravel() for path in masks])
    assert len(shards) == 3 and len(masks) == 8
    np.testing.assert_array_equal(pooled, sklearn_confusion_matrix(truth, predicted, labels=[0, 1, 2, 3]))
    merged = pd.read_csv(metrics / "confusion.tsv", sep="\t", index_col="truth")  # rule merge_metrics's
    np.testing.assert_array_equal(merged.to_numpy(), pooled)
    summary = pd.read_csv(metrics / "summary.tsv", sep="\t").set_index("metric")
    assert summary.loc["pixel_accuracy", "pooled"] == np.trace(pooled) / pooled.sum()
