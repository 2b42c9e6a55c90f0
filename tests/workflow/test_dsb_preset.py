"""The DSB 2018 preset (config/dsb2018.yaml) imports ../shared/data/dsb2018_dev through the real Snakefile.

The preset names the data folders relative to the repository root (``../shared/data/dsb2018_dev/...``); the
run here happens in a temporary directory, so a later config file gives the same folders as absolute paths,
as the preset's header tells users to. Only the import and the split run (seconds); the references are the
data set's own files: manifest.csv (nuclei per image, imaging type), the RGBA PNGs and the 0/255 masks.
Skips where ../shared is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from skimage import io as skio

from tests.workflow.tiny_config import REPO_ROOT

pytestmark = pytest.mark.workflow
DSB = REPO_ROOT.parent / "shared" / "data" / "dsb2018_dev"
PRESET = REPO_ROOT / "config" / "dsb2018.yaml"


@pytest.fixture(scope="module")
def dsb_manifest() -> pd.DataFrame:
    if not (DSB / "manifest.csv").is_file():
        pytest.skip(f"the shared DSB 2018 data is not at {DSB} (a checkout without ../shared)")
    return pd.read_csv(DSB / "manifest.csv", dtype={"id": str}).set_index("id")


def test_preset_points_at_the_shared_folders() -> None:
    preset = yaml.safe_load(PRESET.read_text())["dataset"]["import"]
    for key in ("images", "masks", "instances"):
        assert preset[key] == f"../shared/data/dsb2018_dev/{key}"
    # Relative to the repository root, the directory the preset is meant to run from.
    assert (REPO_ROOT / preset["images"]).resolve() == DSB.resolve() / "images"


@pytest.fixture(scope="module")
def dsb_import(dsb_manifest, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("dsb")
    (directory / "config").mkdir()
    shutil.copy(REPO_ROOT / "config" / "config.yaml", directory / "config" / "config.yaml")
    paths = {key: str(DSB / key) for key in ("images", "masks", "instances")}
    override = directory / "paths.yaml"
    override.write_text(yaml.safe_dump({"dataset": {"import": {"format": "folder", **paths}}}))
    command = [
        "snakemake", "results/dsb2018/split.tsv", "-s", str(REPO_ROOT / "Snakefile"), "--directory",
        str(directory), "--configfile", str(PRESET), str(override), "--cores", "2",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return directory / "results" / "dsb2018"


def test_every_image_is_imported_with_its_nuclei(dsb_import, dsb_manifest) -> None:
    data = dsb_import / "data"
    manifest = pd.read_csv(data / "manifest.tsv", sep="\t", dtype={"id": str}).set_index("id")
    assert sorted(manifest.index) == sorted(dsb_manifest.index)
    assert len(manifest) == 60
    assert (manifest["height"] == dsb_manifest.loc[manifest.index, "height"]).all()
    assert (manifest["width"] == dsb_manifest.loc[manifest.index, "width"]).all()
    for sample_id in manifest.index:
        instances = tifffile.imread(data / "instances" / f"{sample_id}.tif")
        assert len(np.unique(instances[instances > 0])) == dsb_manifest.loc[sample_id, "n_instances"], sample_id
        mask = tifffile.imread(data / "masks" / f"{sample_id}.tif")
        np.testing.assert_array_equal(mask, (skio.imread(DSB / "masks" / f"{sample_id}.png") == 255).astype(np.uint8))
        # Union mask and instances agree (the data set's README: masks equal instances > 0).
        np.testing.assert_array_equal(mask > 0, instances > 0)
    # Images keep RGB and lose the alpha channel (a grey, a colour and a brightfield image).
    for category in ("fluorescence", "colour", "brightfield"):
        sample_id = dsb_manifest.index[dsb_manifest["category"] == category][0]
        image = tifffile.imread(data / "images" / f"{sample_id}.tif")
        np.testing.assert_array_equal(image, skio.imread(DSB / "images" / f"{sample_id}.png")[..., :3])


def test_split_is_6_2_2_with_every_imaging_type_in_every_subset(dsb_import, dsb_manifest) -> None:
    split = pd.read_csv(dsb_import / "split.tsv", sep="\t", dtype={"id": str})
    assert split["subset"].value_counts().to_dict() == {"train": 36, "val": 12, "test": 12}
    per_type = pd.crosstab(split["id"].map(dsb_manifest["category"]), split["subset"])
    assert (per_type > 0).all().all(), per_type
