"""Inference sets: listing and reading a set (segcore.data.image_sets), segmenting a shard of it as rule predict
would (segcore.predict.shard.predict_set_shard), its table and page stacks (the one writer and reader), the
config section, and the report's gallery.

References: :func:`segcore.predict.inference.segment_image` run here on the same images with the model and
settings rule predict uses (:func:`segcore.predict.shard.load_predictor`), one torch thread on both sides.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pytest
import tifffile
from skimage import io as skio

from segcore.config_schema import load_schema, with_defaults
from segcore.data.image_sets import ImageSet, file_images, list_set_images, load_set_image
from segcore.io import InputError, read_tiff, write_pages
from segcore.plan.normalise import Normalisation
from segcore.plan.plan import read_plan, resolve_prediction
from segcore.predict.inference import segment_image
from segcore.predict.outputs import read_shard_ids, read_shard_mask, read_shard_probabilities, shard_writer
from segcore.predict.sets import read_page_stack, read_set_table, write_set_stacks, write_set_table
from segcore.predict.shard import PredictionSettings, load_predictor, predict_set_shard
from segcore.report.gallery import InferenceSetResults, inference_gallery, spread_positions
from tests.unit.test_bundle import tiny_model, write_experiment

pytestmark = pytest.mark.usefixtures("single_torch_thread")
CLASSES = ["background", "cell"]


def image_set(name: str, **section) -> ImageSet:
    return ImageSet.from_config(name, with_defaults("inference.*", section, f"inference.{name}"))


def grey(seed: int, shape=(20, 24)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- the config section ------------------------------------------------------------------------------------


def test_a_set_section_is_filled_per_format_and_its_name_is_checked():
    folder = with_defaults("inference.*", {"images": "new", "format": "folder"})
    assert folder == {"images": "new", "format": "folder", "pattern": "{id}.png", "stack": False}
    stack = with_defaults("inference.*", {"images": "v.tif", "format": "tiff_stack"})
    assert stack == {"images": "v.tif", "format": "tiff_stack", "stack_axis": None}
    with pytest.raises(InputError, match="stack_axis"):
        with_defaults("inference.*", {"images": "new", "format": "folder", "stack_axis": "Z"})
    with pytest.raises(InputError, match="pattern"):
        with_defaults("inference.*", {"images": "new", "format": "folder", "pattern": "no-id.png"})
    schema = load_schema()  # the set's "$ref"s resolve in the whole schema
    validator = jsonschema.Draft202012Validator(schema).evolve(schema=schema["properties"]["inference"])
    assert validator.is_valid({"test_2": {"images": "a", "format": "folder"}})
    for bad in ("../up", "a-b", "2nd", "shard 0"):
        assert not validator.is_valid({bad: {"images": "a", "format": "folder"}}), bad
    assert load_schema()["properties"]["inference"]["default"] == {}


# --- listing and reading -----------------------------------------------------------------------------------


def test_a_folder_set_lists_its_pattern_files_in_natural_order(tmp_path: Path):
    for n in range(12):
        skio.imsave(tmp_path / f"scan_{n}.png", grey(n), check_contrast=False)
    skio.imsave(tmp_path / "notes.png", grey(99), check_contrast=False)  # does not fit the pattern
    items = list_set_images(image_set("scans", images=str(tmp_path), format="folder", pattern="scan_{id}.png"))
    assert [item.id for item in items] == [str(n) for n in range(12)]  # 10 and 11 after 9
    assert items[10].name == str(tmp_path / "scan_10.png")
    np.testing.assert_array_equal(load_set_image(items[10], model_channels=1), grey(10))


def test_a_stack_set_lists_one_image_per_page_in_page_order(tmp_path: Path):
    pages = np.stack([grey(n) for n in range(3)])
    tifffile.imwrite(tmp_path / "volume.tif", pages, photometric="minisblack")
    items = list_set_images(image_set("volume", images=str(tmp_path / "volume.tif"), format="tiff_stack"))
    assert [item.id for item in items] == ["0", "1", "2"]
    assert items[2].name == f"{tmp_path / 'volume.tif'} page 2"
    np.testing.assert_array_equal(load_set_image(items[2], 1), pages[2])
    # A single image converted as the import's dataset.import.channels converted the training images.
    assert load_set_image(items[0], 3, convert_to=3).shape == (20, 24, 3)


def test_bad_sets_and_files_are_named(tmp_path: Path):
    with pytest.raises(InputError, match=r"config key inference\.gone\.images: folder .* does not exist"):
        list_set_images(image_set("gone", images=str(tmp_path / "missing"), format="folder"))
    with pytest.raises(InputError, match=r"inference\.empty\.images: no image files .* match pattern"):
        list_set_images(image_set("empty", images=str(tmp_path), format="folder"))
    with pytest.raises(InputError, match=r"inference\.vol\.images: .* is not a file"):
        list_set_images(image_set("vol", images=str(tmp_path), format="tiff_stack"))
    skio.imsave(tmp_path / "0.png", grey(0), check_contrast=False)
    (tmp_path / "1.png").write_bytes((tmp_path / "0.png").read_bytes()[:60])  # truncated
    first, second = list_set_images(image_set("cut", images=str(tmp_path), format="folder"))
    with pytest.raises(InputError, match=r"0\.png: image has 1 channel\(s\) but the model takes 3"):
        load_set_image(first, 3)
    with pytest.raises(InputError, match=r"1\.png: .*truncated"):
        load_set_image(second, 1)


def test_file_images_reads_one_image_or_every_page(tmp_path: Path):
    tifffile.imwrite(tmp_path / "one.tif", grey(1))
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((20, 24, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "four.tif", np.zeros((4, 20, 24), np.uint8), photometric="minisblack")
    assert [image.shape for image in file_images(tmp_path / "one.tif")] == [(20, 24)]
    assert [image.shape for image in file_images(tmp_path / "rgb.tif")] == [(20, 24, 3)]
    assert len(file_images(tmp_path / "four.tif")) == 4


# --- the table and the stacks ------------------------------------------------------------------------------


def test_pages_keep_their_planes_and_a_one_page_stack_stays_3d(tmp_path: Path):
    planes = np.random.default_rng(0).random((3, 8, 9), dtype=np.float32)
    write_pages(tmp_path / "planes.tif", planes)
    np.testing.assert_array_equal(read_tiff(tmp_path / "planes.tif"), planes)  # 3 planes, not an RGB image
    write_pages(tmp_path / "one.tif", iter([planes[0]]), shape=(1, 8, 9), dtype=np.float32)
    assert read_page_stack(tmp_path / "one.tif").shape == (1, 8, 9)


def write_set_shards(root: Path, ids_by_shard: list[list[str]], shape=(8, 10)) -> dict[str, np.ndarray]:
    """Shard folders of a two-class set; returns each id's float32 (2, H, W) probabilities."""
    probabilities = {}
    for index, ids in enumerate(ids_by_shard):
        with shard_writer(root / f"shard-{index}", 2, True) as writer:
            for sample_id in ids:
                cell = np.random.default_rng(int(sample_id)).random(shape, dtype=np.float32)
                planes = np.stack([1 - cell, cell])
                writer.write(sample_id, grey(0, shape), (cell >= 0.5).astype(np.uint8), planes)
                probabilities[sample_id] = planes
    return probabilities


def test_the_stacks_hold_the_shards_pages_in_natural_id_order(tmp_path: Path):
    # Shards deal the text-sorted ids in turn ("0", "10", "11", "2", ...); the stack is in natural order.
    probabilities = write_set_shards(tmp_path, [["0", "11", "3", "5", "7", "9"], ["1", "10", "2", "4", "6", "8"]])
    write_set_table([tmp_path / "shard-0", tmp_path / "shard-1"], tmp_path / "images.tsv", CLASSES)
    table = read_set_table(tmp_path / "images.tsv")
    assert list(table["id"]) == [str(n) for n in range(12)] and list(table["position"]) == list(range(12))
    assert table.loc[10, "shard"] == "shard-1" and (table[["height", "width"]] == [8, 10]).all().all()
    cell_share = (probabilities["4"][1] >= 0.5).mean()
    assert table.loc[4, "fraction_cell"] == pytest.approx(cell_share)
    assert table.loc[4, "fraction_background"] == pytest.approx(1 - cell_share)
    paths = [tmp_path / "background_probability.tif", tmp_path / "cell_probability.tif"]
    assert write_set_stacks(tmp_path / "images.tsv", tmp_path / "masks.tif", paths, "scans") == 12
    masks, cell = read_page_stack(tmp_path / "masks.tif"), read_page_stack(paths[1])
    assert masks.shape == cell.shape == (12, 8, 10) and masks.dtype == np.uint8 and cell.dtype == np.float32
    for n in range(12):
        np.testing.assert_array_equal(cell[n], probabilities[str(n)][1])
        np.testing.assert_array_equal(masks[n], read_shard_mask(tmp_path / table.loc[n, "shard"], str(n)))
        np.testing.assert_array_equal(read_page_stack(paths[0])[n], probabilities[str(n)][0])


def test_stacks_need_one_size_and_ids_in_one_shard(tmp_path: Path):
    write_set_shards(tmp_path / "a", [["0"], ["1"]])
    write_set_shards(tmp_path / "a" / "other", [["2"]], shape=(9, 10))
    (tmp_path / "a" / "other" / "shard-0").rename(tmp_path / "a" / "shard-2")
    shards = [tmp_path / "a" / f"shard-{n}" for n in range(3)]
    write_set_table(shards, tmp_path / "a" / "images.tsv", CLASSES)
    with pytest.raises(InputError, match=r"10x8 \(0\), 10x9 \(2\).*inference\.mixed\.stack to false"):
        write_set_stacks(tmp_path / "a" / "images.tsv", tmp_path / "m.tif", [tmp_path / "p.tif"], "mixed")
    assert not (tmp_path / "m.tif").exists()
    write_set_shards(tmp_path / "b", [["0"], ["0"]])
    with pytest.raises(InputError, match="'0' is also predicted in"):
        write_set_table([tmp_path / "b" / "shard-0", tmp_path / "b" / "shard-1"], tmp_path / "t.tsv", CLASSES)


# --- segmenting a shard as rule predict does ---------------------------------------------------------------


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> tuple[Path, PredictionSettings, Normalisation]:
    """A tiny trained-looking two-class experiment on grey images (model.pt, plan.json) and its settings."""
    folder = tmp_path_factory.mktemp("experiment")
    model, spec = tiny_model(1, 2, batchnorm=True)
    normalisation = Normalisation("zscore", mean=(120.0,), sd=(40.0,))
    prediction = write_experiment(folder, model, spec, CLASSES, normalisation)
    plan = read_plan(folder / "plan.json")
    return folder, PredictionSettings.from_config(resolve_prediction(prediction, plan)), normalisation


def test_a_stack_shard_equals_segment_image_page_by_page(tmp_path: Path, experiment):
    folder, settings, normalisation = experiment
    pages = np.stack([grey(n, (30, 26)) for n in range(5)])
    tifffile.imwrite(tmp_path / "volume.tif", pages, photometric="minisblack")
    volume = image_set("volume", images=str(tmp_path / "volume.tif"), format="tiff_stack")
    shards = [tmp_path / f"shard-{n}" for n in range(2)]
    counts = [
        predict_set_shard(folder / "model.pt", volume, n, 2, settings, "cpu", shards[n], normalisation) for n in (0, 1)
    ]
    assert counts == [3, 2] and read_shard_ids(shards[1]) == ["1", "3"]
    predictor = load_predictor(folder / "model.pt", settings, "cpu", normalisation)
    for page in range(5):
        shard = shards[page % 2]
        probabilities, mask, _ = segment_image(predictor.model, pages[page], predictor.inference, predictor.device)
        np.testing.assert_array_equal(read_shard_probabilities(shard, str(page)), probabilities)
        np.testing.assert_array_equal(read_shard_mask(shard, str(page)), mask)
        np.testing.assert_array_equal(np.argmax(probabilities, axis=0), mask)  # argmax operating point


def test_a_bad_file_stops_the_shard_naming_it_and_writes_nothing(tmp_path: Path, experiment):
    folder, settings, normalisation = experiment
    images = tmp_path / "new"
    images.mkdir()
    for n in range(3):
        skio.imsave(images / f"{n}.png", grey(n), check_contrast=False)
    (images / "2.png").write_bytes(b"not a png")
    scans = image_set("scans", images=str(images), format="folder")
    with pytest.raises(InputError, match=r"2\.png: not an image of a supported format"):
        predict_set_shard(folder / "model.pt", scans, 0, 1, settings, "cpu", tmp_path / "shard-0", normalisation)
    assert not (tmp_path / "shard-0").exists() and [p.name for p in tmp_path.iterdir()] == ["new"]


# --- the report's gallery ----------------------------------------------------------------------------------


def test_spread_positions_include_the_ends():
    assert spread_positions(30, 3) == [0, 14, 29] or spread_positions(30, 3) == [0, 15, 29]
    assert spread_positions(2, 5) == [0, 1]
    assert spread_positions(7, 1) == [0] and spread_positions(7, 0) == [] and spread_positions(0, 3) == []


def test_the_gallery_shows_overlays_and_masks_of_a_few_images(tmp_path: Path):
    write_set_shards(tmp_path, [["0", "2", "4"], ["1", "3"]])
    write_set_table([tmp_path / "shard-0", tmp_path / "shard-1"], tmp_path / "images.tsv", CLASSES)
    page = inference_gallery([InferenceSetResults("unet", "test", tmp_path / "images.tsv")], shown=2)
    assert page.startswith("<h2>Inference sets</h2>") and "test (unet)" in page and "5 images" in page
    assert page.count("data:image/png;base64,") == 4  # 2 images x (overlay, prediction)
    assert "0 (image 1 of 5)" in page and "4 (image 5 of 5)" in page
    assert inference_gallery([], shown=3) == ""
