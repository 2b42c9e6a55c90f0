"""The real Snakefile killed (``kill -9`` of Snakemake and its jobs) in the middle of each heavy rule, then rerun.

One run is killed four times, each time while a job of one heavy rule is writing: augment and weight_maps
and predict at the moment their temporary shard folder appears, train at a seeded random moment after its
first saved epoch. Each kill leaves debris (the temporary folder, Snakemake's lock and incomplete markers);
each rerun goes on from there. The reference is an uninterrupted run of the same config: at the end the
killed run's results/ holds exactly the same files (no temporary entry, no resume state), with the same bytes
for every image, weight map, prediction and the model (training resumed bit for bit).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.workflow.test_resume import AFTER_KILL, saved_epoch, succeed
from tests.workflow.tiny_config import snakemake_command, tiny_workflow_config

pytestmark = pytest.mark.workflow
EPOCHS = 3
TRAINING = {"epochs": EPOCHS, "batch_size": 8, "early_stopping_patience": EPOCHS}
RESULTS = Path("results/tiny")
SUMMARY = str(RESULTS / "small" / "metrics" / "summary.tsv")
# Files whose bytes must not depend on a kill (tables, the curves and the report hold run times, so only their
# names count).
DETERMINISTIC_SUFFIXES = {".tif", ".pt", ".png"}
TIMED_FILES = {"curves.png"}


def temporary_entry(folder: Path) -> Callable[[], bool]:
    """True once ``folder`` holds an entry of an atomic write in progress (segcore.io's ``.<name>.tmp-``)."""
    return lambda: folder.is_dir() and any(".tmp-" in path.name for path in folder.iterdir())


def after_saved_epoch(state: Path, delay_s: float) -> Callable[[], bool]:
    """True ``delay_s`` seconds after the training state first shows a completed epoch."""
    seen: list[float] = []

    def ready() -> bool:
        if not seen and saved_epoch(state) >= 1:
            seen.append(time.monotonic())
        return bool(seen) and time.monotonic() - seen[0] >= delay_s

    return ready


def kill_when(directory: Path, configfile: Path, ready: Callable[[], bool], timeout: float = 300) -> None:
    """Run the workflow towards the summary and SIGKILL its whole process group once ``ready()`` holds."""
    command = snakemake_command(directory, configfile, SUMMARY, *AFTER_KILL)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, "the workflow ended before the moment to kill it"
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too): relative path -> SHA-256 for files whose bytes
    are deterministic, "" otherwise."""
    entries = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        deterministic = path.is_file() and path.suffix in DETERMINISTIC_SUFFIXES and path.name not in TIMED_FILES
        entries[key] = hashlib.sha256(path.read_bytes()).hexdigest() if deterministic else ""
    return entries


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("uninterrupted")
    succeed(directory, tiny_workflow_config(directory, training=TRAINING), SUMMARY)
    return tree(directory / RESULTS)


def test_kills_in_every_heavy_rule_leave_no_debris_after_the_rerun(tmp_path, uninterrupted):
    configfile = tiny_workflow_config(tmp_path, training=TRAINING)
    results = tmp_path / RESULTS
    moments = {
        "augment": temporary_entry(results / "train" / "samples"),
        "weight_maps": temporary_entry(results / "train" / "weights"),
        "train": after_saved_epoch(results / "small" / ".resume" / "state.pt", random.Random(7).uniform(0, 0.3)),
        "predict": temporary_entry(results / "small" / "predictions"),
    }
    for rule, ready in moments.items():
        kill_when(tmp_path, configfile, ready)
        leftovers = [path.name for path in results.rglob("*") if ".tmp-" in path.name]
        if rule == "train":  # the kill came before the model was written
            assert not (results / "small" / "model.pt").exists()
        else:  # the kill came while a shard was being written
            assert leftovers, f"{rule}: no temporary entry at the kill"

    succeed(tmp_path, configfile, SUMMARY, *AFTER_KILL)
    killed = tree(results)
    assert sorted(set(killed) - set(uninterrupted)) == []  # no debris, no resume state
    assert sorted(set(uninterrupted) - set(killed)) == []
    assert killed == uninterrupted  # images, weight maps, the model and predictions byte for byte
