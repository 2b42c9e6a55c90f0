"""Inference sets through the real Snakefile on the tiny config: a multi-page TIFF of the test images whose
probability stacks give, page by page, rule predict's masks of the same images; folder sets (one stacked in
natural id order, one of mixed sizes kept per image); a bad file that stops the set naming it.

One run trains the tiny model and segments the folder sets; a second adds the TIFF set (made of the test
images, known once the split exists), which reruns only inference and the report.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from skimage import io as skio

from tests.workflow.tiny_config import REPO_ROOT, TINY_CONFIG, snakemake_command

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from segcore.data.shapes import generate_sample  # noqa: E402
from segcore.predict.outputs import read_predicted_mask  # noqa: E402

pytestmark = pytest.mark.workflow
CLASSES = TINY_CONFIG["dataset"]["classes"]
FOLDER_SETS = {
    "scans": {"images": "new/scans", "format": "folder", "pattern": "scan_{id}.png", "stack": True},
    "mixed": {"images": "new/mixed", "format": "folder"},
}


def write_config(directory: Path, name: str, sets: dict) -> Path:
    config = copy.deepcopy(TINY_CONFIG) | {"inference": sets}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(directory: Path, configfile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = snakemake_command(directory, configfile, *extra)
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def new_image(index: int, size: int = 64) -> np.ndarray:
    """An RGB shapes picture that is not in the dataset (another seed)."""
    return generate_sample(seed=1000, index=index, size=size, max_objects=3).image


@pytest.fixture(scope="module")
def inference_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """(run folder, the test ids in the order of the TIFF set's pages)."""
    directory = tmp_path_factory.mktemp("inference")
    (directory / "new" / "scans").mkdir(parents=True)
    (directory / "new" / "mixed").mkdir()
    for n in range(11):  # scan_10 sorts before scan_2 as text; the stack must hold it last
        skio.imsave(directory / "new" / "scans" / f"scan_{n}.png", new_image(n), check_contrast=False)
    skio.imsave(directory / "new" / "mixed" / "wide.png", new_image(20)[:48], check_contrast=False)
    skio.imsave(directory / "new" / "mixed" / "square.png", new_image(21), check_contrast=False)
    result = run(directory, write_config(directory, "folders", FOLDER_SETS))
    assert result.returncode == 0, result.stderr[-4000:]
    results = directory / "results" / "tiny"
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    test_ids = sorted(split.loc[split["subset"] == "test", "id"], reverse=True)  # pages not in id order
    volume = np.stack([tifffile.imread(results / "data" / "images" / f"{i}.tif") for i in test_ids])
    tifffile.imwrite(directory / "new" / "volume.tif", volume, photometric="rgb")
    sets = FOLDER_SETS | {"volume": {"images": "new/volume.tif", "format": "tiff_stack"}}
    result = run(directory, write_config(directory, "all-sets", sets))
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "rule infer:" in log and "rule train:" not in log and "rule predict:" not in log  # inference only
    return directory, test_ids


def read_stacks(folder: Path) -> np.ndarray:
    """float32 (P, K, H, W): the per-class probability stacks of a set, class by class."""
    return np.stack([tifffile.imread(folder / f"{name}_probability.tif") for name in CLASSES], axis=1)


def test_a_tiff_set_gives_rule_predicts_masks_page_by_page(inference_run):
    directory, test_ids = inference_run
    experiment = directory / "results" / "tiny" / "small"
    folder = experiment / "inference" / "volume"
    probabilities = read_stacks(folder)
    assert probabilities.shape == (len(test_ids), len(CLASSES), 64, 64) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    masks = tifffile.imread(folder / "masks.tif")
    assert masks.shape == (len(test_ids), 64, 64) and masks.dtype == np.uint8
    for page, sample_id in enumerate(test_ids):
        predicted = read_predicted_mask(experiment / "predictions", sample_id)
        np.testing.assert_array_equal(np.argmax(probabilities[page], axis=0), predicted, err_msg=sample_id)
        np.testing.assert_array_equal(masks[page], predicted, err_msg=sample_id)
    table = pd.read_csv(folder / "images.tsv", sep="\t", dtype={"id": str})
    assert list(table["id"]) == [str(n) for n in range(len(test_ids))]


def test_folder_sets_are_segmented_in_natural_order(inference_run):
    directory, _ = inference_run
    sets = directory / "results" / "tiny" / "small" / "inference"
    table = pd.read_csv(sets / "scans" / "images.tsv", sep="\t", dtype={"id": str})
    assert list(table["id"]) == [str(n) for n in range(11)]
    probabilities = read_stacks(sets / "scans")
    assert probabilities.shape == (11, len(CLASSES), 64, 64)
    for n in (2, 10):
        shard = sets / "scans" / table.loc[n, "shard"]
        np.testing.assert_array_equal(tifffile.imread(shard / "probabilities" / f"{n}.tif"), probabilities[n])
        assert skio.imread(shard / "overlays" / f"{n}.png").shape == (64, 64, 3)
    mixed = pd.read_csv(sets / "mixed" / "images.tsv", sep="\t", dtype={"id": str})
    assert mixed.set_index("id")[["height", "width"]].to_dict("index") == {
        "square": {"height": 64, "width": 64},
        "wide": {"height": 48, "width": 64},
    }
    assert sorted(p.name for p in (sets / "mixed").iterdir()) == ["images.tsv", "shard-0", "shard-1"]  # no stacks
    report = (directory / "results" / "tiny" / "report.html").read_text()
    assert "<h2>Inference sets</h2>" in report and "volume (small)" in report and "scans (small)" in report


def test_a_bad_file_stops_the_set_naming_it(inference_run):
    directory, _ = inference_run
    broken = directory / "new" / "broken"
    broken.mkdir()
    for n in range(3):
        skio.imsave(broken / f"{n}.png", new_image(n), check_contrast=False)
    (broken / "1.png").write_bytes((broken / "1.png").read_bytes()[:100])  # cut short
    configfile = write_config(directory, "broken", {"broken": {"images": "new/broken", "format": "folder"}})
    result = run(directory, configfile, "results/tiny/small/inference/broken/images.tsv")
    assert result.returncode != 0
    assert "[rule infer] ERROR" in result.stderr and f"{Path('new/broken/1.png')}: the PNG file is truncated" in (
        result.stderr
    )
    assert "rule train:" not in result.stdout + result.stderr  # the trained model is reused
    assert not (directory / "results" / "tiny" / "small" / "inference" / "broken" / "images.tsv").exists()
    missing = write_config(directory, "missing", {"gone": {"images": "new/nowhere", "format": "folder"}})
    result = run(directory, missing, "--dry-run")
    assert result.returncode != 0
    assert "config key inference.gone.images: 'new/nowhere' does not exist" in result.stdout + result.stderr
