"""Real datasets through the real Snakefile: the ISBI 2012 preset from a local mirror, a user's folder.

The ISBI tests serve the real PNGs of ../shared/data/isbi2012 from an HTTP server on 127.0.0.1 under the
layout of github.com/zhixuhao/unet, and point the preset's ``mirror_url`` at it; they skip where ../shared
is absent. Every run copies config/config.yaml into its working directory, so Snakemake merges the preset
over the defaults exactly as in a checkout; a last config file shrinks the training budget.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from skimage import draw, measure
from skimage import io as skio
from skimage.metrics import adapted_rand_error

from tests.unit.helpers_http import FileServer
from tests.workflow.tiny_config import REPO_ROOT

pytestmark = pytest.mark.workflow
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ISBI = SHARED / "data" / "isbi2012"
PRESET = REPO_ROOT / "config" / "isbi2012.yaml"
TEMPLATE = REPO_ROOT / "config" / "custom.yaml"
LAYOUT = "data/membrane/train"  # zhixuhao/unet keeps the slices as {image,label}/N.png
TEST_LAYOUT = "data/membrane/test"  # and the unlabelled test slices as N.png
# Small enough for two shared CPU cores: a 3-level net, 2 epochs of 64x64 patches, no augmented copies.
TINY_BUDGET = {
    "augment": {"copies": 0},
    "experiments": {
        "unet": {
            "model": {"name": "unet", "widths": [8, 16, 32], "batchnorm": True},
            "loss": {"name": "weighted_ce"},
        }
    },
    "training": {"epochs": 2, "batch_size": 8, "patch_size": 64},
    "prediction": {"tile_size": 128, "tta": "none"},
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_yaml(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def run_workflow(directory: Path, configfiles: list[Path], *targets: str, timeout: int = 600):
    """Run the repository's Snakefile in ``directory`` (holding a copy of config/config.yaml)."""
    (directory / "config").mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "config" / "config.yaml", directory / "config" / "config.yaml")
    command = [
        "snakemake", *targets, "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(directory),
        "--configfile", *map(str, configfiles), "--cores", "2", "--resources", "gpu=1",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def sums_from_shared() -> dict[str, str]:
    """zhixuhao path -> sha256 of the 60 labelled training PNGs and the 30 test PNGs, from ../shared's
    SHA256SUMS."""
    sums = {}
    for line in (ISBI / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        if path.startswith("./png/train/"):
            sums[f"{LAYOUT}/{path.removeprefix('./png/train/')}"] = digest
        elif path.startswith("./png/test/"):
            sums[f"{TEST_LAYOUT}/{path.removeprefix('./png/test/')}"] = digest
    return sums


@pytest.fixture(scope="module")
def isbi_routes() -> dict[str, Path]:
    if not (ISBI / "SHA256SUMS").is_file() or not (ISBI / "png" / "train").is_dir():
        pytest.skip(f"the shared ISBI 2012 data is not at {ISBI} (a checkout without ../shared)")
    routes = {
        f"/{LAYOUT}/{kind}/{n}.png": ISBI / "png" / "train" / kind / f"{n}.png"
        for kind in ("image", "label")
        for n in range(30)
    }
    return routes | {f"/{TEST_LAYOUT}/{n}.png": ISBI / "png" / "test" / f"{n}.png" for n in range(30)}


def test_preset_pins_the_published_checksums(isbi_routes):
    preset = yaml.safe_load(PRESET.read_text())["dataset"]["download"]
    assert (
        preset["base_url"]
        == "https://raw.githubusercontent.com/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a/"
    )
    assert preset["files"] == sums_from_shared()
    assert len(preset["files"]) == 90


@pytest.fixture(scope="module")
def isbi_run(isbi_routes, tmp_path_factory):
    directory = tmp_path_factory.mktemp("isbi")
    with FileServer(isbi_routes, lifetime_s=600) as server:
        mirror = write_yaml(
            directory / "mirror.yaml",
            {"dataset": {"download": {"mirror_url": server.base_url + "/"}}, **TINY_BUDGET},
        )
        result = run_workflow(directory, [PRESET, mirror])
    assert result.returncode == 0, result.stderr[-4000:]
    return directory, dict(server.requests)


def test_isbi_files_are_downloaded_once_each_and_verified(isbi_run, isbi_routes):
    directory, requests = isbi_run
    assert requests == dict.fromkeys(isbi_routes, 1)
    downloaded = directory / "resources" / "isbi2012" / "download"
    files = [p for p in downloaded.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp"]
    digests = {str(p.relative_to(downloaded)): sha256(p.read_bytes()) for p in files}
    assert digests == sums_from_shared()
    assert sorted(p.name for p in downloaded.parent.iterdir()) == ["download"]  # no temporary leftovers


def test_isbi_slices_are_imported_with_cells_as_class_1(isbi_run):
    directory, _ = isbi_run
    data = directory / "results" / "isbi2012" / "data"
    manifest = pd.read_csv(data / "manifest.tsv", sep="\t", dtype={"id": str})
    assert sorted(manifest["id"], key=int) == [str(n) for n in range(30)]
    assert (manifest[["height", "width", "channels"]] == [512, 512, 1]).all().all()
    for n in (0, 17, 29):
        label = skio.imread(ISBI / "png" / "train" / "label" / f"{n}.png")
        np.testing.assert_array_equal(tifffile.imread(data / "masks" / f"{n}.tif"), (label == 255).astype(np.uint8))
        np.testing.assert_array_equal(
            tifffile.imread(data / "images" / f"{n}.tif"),
            skio.imread(ISBI / "png" / "train" / "image" / f"{n}.png"),
        )
        fraction = manifest.set_index("id").loc[str(n), "foreground_fraction"]
        assert fraction == pytest.approx(np.mean(label == 255), abs=1e-6)


def test_isbi_report_scores_the_held_out_slices(isbi_run):
    directory, _ = isbi_run
    results = directory / "results" / "isbi2012"
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    assert split["subset"].value_counts().to_dict() == {"train": 20, "val": 5, "test": 5}
    # Five coverage bins of six slices, each dealt 4:1:1.
    per_bin = split.groupby(["stratum", "subset"]).size().unstack(fill_value=0)
    assert per_bin.to_dict("index") == {b: {"test": 1, "train": 4, "val": 1} for b in range(5)}
    test_ids = sorted(split.loc[split["subset"] == "test", "id"])
    per_image = pd.read_csv(results / "unet" / "metrics" / "per_image.tsv", sep="\t", dtype={"id": str})
    assert sorted(per_image["id"]) == test_ids
    predictions = results / "unet" / "predictions"
    for sample_id in test_ids:
        predicted = tifffile.imread(next(predictions.glob(f"shard-*/masks/{sample_id}.tif")))
        label = skio.imread(ISBI / "png" / "train" / "label" / f"{sample_id}.png")
        # ISBI pixel error: fraction of pixels whose cell/membrane label disagrees, from the raw label PNG.
        expected = np.mean((predicted == 1) != (label == 255))
        assert per_image.set_index("id").loc[sample_id, "pixel_error"] == pytest.approx(expected, abs=1e-9)
        # Adapted Rand error of the truth's 4-connected cell segments against the predicted cells (the preset
        # splits them by a watershed: the predictions folder's instances), membrane pixels of the truth ignored.
        cells = tifffile.imread(next(predictions.glob(f"shard-*/instances/{sample_id}.tif")))
        assert np.array_equal(cells > 0, predicted == 1)
        rand, _, _ = adapted_rand_error(measure.label(label == 255, connectivity=1), cells)
        assert per_image.set_index("id").loc[sample_id, "rand_error"] == pytest.approx(rand, abs=1e-9)
    summary = pd.read_csv(results / "unet" / "metrics" / "summary.tsv", sep="\t").set_index("metric")
    for metric in ("mean_fg_dice", "pixel_error", "rand_error", "dice_membrane"):
        assert 0 <= summary.loc[metric, "per_image_mean"] <= 1, metric
    report = (results / "report.html").read_text()
    assert "isbi2012" in report and "rand_error" in report and "pixel_error" in report


def test_isbi_test_volume_is_segmented_into_a_membrane_probability_stack(isbi_run):
    """The preset's inference set: the 30 unlabelled test slices, stacked in slice order."""
    directory, _ = isbi_run
    folder = directory / "results" / "isbi2012" / "unet" / "inference" / "test"
    membrane = tifffile.imread(folder / "membrane_probability.tif")
    cell = tifffile.imread(folder / "cell_probability.tif")
    masks = tifffile.imread(folder / "masks.tif")
    assert membrane.shape == cell.shape == masks.shape == (30, 512, 512)
    assert membrane.dtype == np.float32 and masks.dtype == np.uint8
    np.testing.assert_allclose(membrane + cell, 1, atol=1e-5)
    for n in (0, 10, 29):  # page n is slice n.png (natural order: 10 after 9), not page n of a text sort
        shard = next(folder.glob(f"shard-*/probabilities/{n}.tif"))
        np.testing.assert_array_equal(tifffile.imread(shard)[0], membrane[n])
    table = pd.read_csv(folder / "images.tsv", sep="\t", dtype={"id": str})
    assert list(table["id"]) == [str(n) for n in range(30)]
    assert "Inference sets" in (directory / "results" / "isbi2012" / "report.html").read_text()


def test_a_checksum_mismatch_stops_naming_both_digests_and_keeps_nothing(isbi_routes, tmp_path):
    first = f"/{LAYOUT}/image/0.png"
    body = isbi_routes[first].read_bytes()
    expected, actual = sha256(body), sha256(bytes([body[0] ^ 0xFF]) + body[1:])  # the server flips byte 0
    with FileServer(isbi_routes, mode="wrong_bytes", lifetime_s=120) as server:
        mirror = write_yaml(tmp_path / "mirror.yaml", {"dataset": {"download": {"mirror_url": server.base_url}}})
        result = run_workflow(tmp_path, [PRESET, mirror], "resources/isbi2012/download", timeout=120)
    assert result.returncode != 0
    assert f"{server.base_url}{first}: sha256 mismatch: expected {expected}, got {actual}" in result.stderr
    assert [p for p in (tmp_path / "resources").rglob("*") if p.is_file()] == []


def write_user_folder(root: Path, sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Grey PNG images with one bright disc each and 0/255 PNG masks of the disc; returns the masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    masks = {}
    for index, (height, width) in enumerate(sizes):
        mask = np.zeros((height, width), np.uint8)
        rows, cols = draw.disk(
            (height / 2 + index % 3, width / 2 - index % 4), min(height, width) / 4, shape=mask.shape
        )
        mask[rows, cols] = 255
        image = (rng.normal(60, 10, mask.shape) + (mask > 0) * 120).clip(0, 255).astype(np.uint8)
        sample_id = f"cell{index:02d}"
        skio.imsave(root / "images" / f"{sample_id}.png", image, check_contrast=False)
        skio.imsave(root / "masks" / f"{sample_id}_mask.png", mask, check_contrast=False)
        masks[sample_id] = mask
    return masks


def user_config(directory: Path, folder: str) -> Path:
    """The template config/custom.yaml with only its two folder paths edited."""
    text = TEMPLATE.read_text()
    assert text.count("images: my-data/images\n") == 1 and text.count("masks: my-data/masks\n") == 1
    text = text.replace("images: my-data/images\n", f"images: {folder}/images\n")
    text = text.replace("masks: my-data/masks\n", f"masks: {folder}/masks\n")
    return write_yaml(directory / "my-data.yaml", yaml.safe_load(text))


# Mixed sizes, one of them not a multiple of the net's 4x downsampling.
USER_SIZES = [(48, 64), (64, 64), (56, 80), (50, 70)] * 3


def test_a_user_folder_of_0_255_masks_runs_end_to_end(tmp_path):
    masks = write_user_folder(tmp_path / "lab-scans", USER_SIZES)
    budget = write_yaml(
        tmp_path / "budget.yaml",
        {**TINY_BUDGET, "training": {"epochs": 2, "batch_size": 8, "patch_size": 32}},
    )
    result = run_workflow(tmp_path, [user_config(tmp_path, "lab-scans"), budget])
    assert result.returncode == 0, result.stderr[-4000:]
    results = tmp_path / "results" / "my-data"
    manifest = pd.read_csv(results / "data" / "manifest.tsv", sep="\t", dtype={"id": str})
    assert sorted(manifest["id"]) == sorted(masks)
    for sample_id, mask in masks.items():
        np.testing.assert_array_equal(tifffile.imread(results / "data" / "masks" / f"{sample_id}.tif"), mask // 255)
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    # 6:2:2 of 12 is 7.2 : 2.4 : 2.4; the one image left after rounding down goes to val (the first of the
    # two largest remainders).
    assert split["subset"].value_counts().to_dict() == {"train": 7, "val": 3, "test": 2}
    for sample_id in split.loc[split["subset"] == "test", "id"]:
        predicted = tifffile.imread(next((results / "unet" / "predictions").glob(f"shard-*/masks/{sample_id}.tif")))
        assert predicted.shape == masks[sample_id].shape  # whole images of their own size
    assert "mean_fg_dice" in (results / "report.html").read_text()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("grey_value", "cell03_mask.png: mask value 128 is not declared in the value table"),
        ("missing_mask", "1 image(s) have no mask in"),
        ("wrong_size", "cell02_mask.png is 40x30 but"),
    ],
)
def test_bad_user_files_stop_the_import_naming_the_file(tmp_path, damage, message):
    folder = tmp_path / "lab-scans"
    write_user_folder(folder, USER_SIZES[:6])
    if damage == "grey_value":
        mask = skio.imread(folder / "masks" / "cell03_mask.png")
        mask[0, 0] = 128
        skio.imsave(folder / "masks" / "cell03_mask.png", mask, check_contrast=False)
    elif damage == "missing_mask":
        (folder / "masks" / "cell04_mask.png").unlink()
    else:
        skio.imsave(folder / "masks" / "cell02_mask.png", np.zeros((30, 40), np.uint8), check_contrast=False)
    result = run_workflow(tmp_path, [user_config(tmp_path, "lab-scans")], "results/my-data/data", timeout=120)
    assert result.returncode != 0
    assert "[rule import_dataset] ERROR" in result.stderr and message in result.stderr
    assert not (tmp_path / "results" / "my-data" / "data").exists()
    assert list((tmp_path / "results" / "my-data").glob(".data*")) == []  # no half-written canonical folder


@pytest.mark.parametrize("unsafe", [False, True])
def test_a_downloaded_zip_is_unpacked_and_imported_unless_a_member_escapes(tmp_path, unsafe):
    write_user_folder(tmp_path / "lab-scans", USER_SIZES[:4])
    archive = tmp_path / "mirror" / "scans-v1.zip"  # holds lab-scans/{images,masks}/
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((tmp_path / "lab-scans").rglob("*.png")):
            zipped.write(path, path.relative_to(tmp_path).as_posix())
        if unsafe:
            zipped.writestr("../escaped.png", b"not an image")
    config = {
        "dataset": {
            "name": "zipped",
            "source": "download",
            "classes": ["background", "cell"],
            "download": {
                "base_url": (tmp_path / "mirror").as_uri(),  # file:// URLs work like http://
                "files": {"scans-v1.zip": sha256(archive.read_bytes())},
                "extract": ["scans-v1.zip"],  # into scans-v1/
            },
            "import": {
                "format": "folder",
                "images": "scans-v1/lab-scans/images",
                "masks": "scans-v1/lab-scans/masks",
                "mask_pattern": "{id}_mask.png",
                "encoding": {"type": "value_table", "values": {0: 0, 255: 1}},
            },
        },
        "experiments": TINY_BUDGET["experiments"],
    }
    configfile = write_yaml(tmp_path / "zipped.yaml", config)
    result = run_workflow(tmp_path, [configfile], "results/zipped/data", timeout=120)
    downloaded = tmp_path / "resources" / "zipped" / "download"
    if unsafe:
        assert result.returncode != 0
        assert "member '../escaped.png' escapes the extraction folder" in result.stderr
        assert [p for p in (tmp_path / "resources").rglob("*") if p.is_file()] == []
        assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "resources" / "escaped.png").exists()
    else:
        assert result.returncode == 0, result.stderr[-4000:]
        assert (
            sorted(p.name for p in (downloaded / "scans-v1" / "lab-scans" / "masks").iterdir())[0] == "cell00_mask.png"
        )
        manifest = pd.read_csv(tmp_path / "results" / "zipped" / "data" / "manifest.tsv", sep="\t")
        assert sorted(manifest["id"]) == ["cell00", "cell01", "cell02", "cell03"]


def test_a_bad_import_section_stops_before_any_job_naming_every_key(tmp_path):
    """config/schema.yaml checks dataset.import whole (keys per format, encoding shape) before Snakemake
    plans anything; the per-key cases are unit-tested in tests/unit/test_config_schema.py."""
    config = yaml.safe_load(TEMPLATE.read_text())
    config["dataset"]["import"] |= {"format": "tiff_stack", "encoding": {"type": "value_table", "values": {}}}
    result = run_workflow(tmp_path, [write_yaml(tmp_path / "bad.yaml", config)], "--dry-run", timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    unknown = "config key dataset.import: Unevaluated properties are not allowed ('image_pattern', 'mask_pattern'"
    assert unknown in output
    assert "config key dataset.import.encoding.values: {} should be non-empty" in output
    assert not (tmp_path / "results").exists()
