"""Importers: the real ISBI 2012 TIFF stacks, synthetic folder datasets and every kind of bad input."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage import draw
from skimage import io as skio

from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, read_manifest, read_sample
from segcore.data.importers import import_dataset, import_tiff_stacks
from segcore.data.mask_encodings import parse_encoding
from segcore.io import InputError

ISBI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isbi2012"
ISBI_ENCODING = {"type": "value_table", "values": {0: 0, 255: 1}}
CLASSES = ["background", "foreground"]


@pytest.fixture(scope="module")
def isbi() -> Path:
    if not (ISBI / "train-volume.tif").is_file():
        pytest.skip(f"the shared ISBI 2012 data is not at {ISBI} (checkout without ../shared)")
    return ISBI


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    skio.imsave(path, array, check_contrast=False)
    return path


def grey(seed: int, shape=(10, 9), dtype=np.uint8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def binary_dataset(root: Path, ids=("a", "b"), shape=(10, 9)) -> dict:
    """images/<id>.png grey and masks/<id>.png with values 0/255; returns the matching source config."""
    for index, sample_id in enumerate(ids):
        png(root / "images" / f"{sample_id}.png", grey(index, shape))
        png(root / "masks" / f"{sample_id}.png", (grey(index + 50, shape) > 127).astype(np.uint8) * 255)
    return {"format": "folder", "images": "images", "masks": "masks", "encoding": ISBI_ENCODING}


def run_import(source: dict, root: Path, dest: Path, class_names=CLASSES):
    """import_dataset of a ``dataset.import`` section with the schema's defaults filled in."""
    return import_dataset(with_defaults("dataset.import", source), root, dest, class_names)


def imported(root: Path, source: dict, class_names: list[str], dest: str = "canonical") -> dict[str, Sample]:
    """The samples ``source`` imports from ``root``, read back from the canonical folder, in import order."""
    manifest = run_import(source, root, root / dest, class_names)
    return {sample_id: read_sample(root / dest, sample_id) for sample_id in manifest["id"]}


def same_partition(first: np.ndarray, second: np.ndarray) -> bool:
    """True if two label images split the pixels into the same objects (ids may differ)."""
    pairs = np.unique(np.stack([first.ravel(), second.ravel()]), axis=1)
    return pairs.shape[1] == len(np.unique(first)) == len(np.unique(second))


def test_isbi_tiff_stacks_match_the_png_export_and_scipy_components(isbi, tmp_path):
    source = {
        "format": "tiff_stack",
        "images": "train-volume.tif",
        "masks": "train-labels.tif",
        "encoding": ISBI_ENCODING,
    }
    manifest = run_import(source, isbi, tmp_path / "canonical", ["membrane", "cell"])
    assert list(manifest["id"]) == [str(n) for n in range(30)]  # page index, not zero-padded
    assert (manifest[["height", "width"]] == 512).all().all()
    for n in (0, 29):
        sample = read_sample(tmp_path / "canonical", str(n))
        label = skio.imread(isbi / "png" / "train" / "label" / f"{n}.png")
        image = skio.imread(isbi / "png" / "train" / "image" / f"{n}.png")
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_array_equal(sample.mask, (label == 255).astype(np.uint8))  # 255 = cell interior
        reference, count = ndimage.label(label == 255)  # scipy's default structure: edge neighbours
        assert sample.instances.max() == count
        assert same_partition(sample.instances, reference)


def test_tiff_stacks_with_different_page_counts_name_both(isbi, tmp_path):
    short_labels = tmp_path / "labels.tif"
    tifffile.imwrite(short_labels, np.zeros((29, 512, 512), dtype=np.uint8))
    with pytest.raises(InputError) as error:
        import_tiff_stacks(
            isbi / "train-volume.tif", short_labels, encoding=parse_encoding(ISBI_ENCODING, 2), connectivity=1
        )
    assert f"{isbi / 'train-volume.tif'} has 30 pages" in str(error.value)
    assert f"{short_labels} has 29 pages" in str(error.value)


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_folder_keeps_grey_rgb_and_16_bit_images_as_stored_and_drops_alpha(tmp_path, kind):
    rgba = grey(1, (10, 9, 4))
    images = {
        "grey": grey(0),
        "rgba": rgba,
        "deep": grey(2, dtype=np.uint16),
        "deep_rgb": grey(3, (10, 9, 3), np.uint16),
    }
    png(tmp_path / "img" / "grey.png", images["grey"])
    png(tmp_path / "img" / "rgba.png", images["rgba"])
    png(tmp_path / "img" / "deep.png", images["deep"])
    tifffile.imwrite(tmp_path / "img" / "deep_rgb.tif", images["deep_rgb"], photometric="rgb")
    for sample_id in images:
        png(tmp_path / "msk" / f"{sample_id}.png", np.full((10, 9), 2, dtype=np.uint8))
    # One channel count per dataset: the grey and the RGB images are imported apart.
    wanted = {"grey": ("grey", "deep"), "rgb": ("rgba", "deep_rgb")}[kind]
    source = {"format": "folder", "images": "img", "masks": "msk", "image_pattern": "{id}.*"}
    for other in set(images) - set(wanted):
        (tmp_path / "msk" / f"{other}.png").unlink()
        next((tmp_path / "img").glob(f"{other}.*")).unlink()
    by_id = imported(tmp_path, source, ["background", "a", "b"])
    samples = list(by_id.values())
    assert sorted(by_id) == sorted(wanted)
    if kind == "grey":
        np.testing.assert_array_equal(by_id["grey"].image, images["grey"])
        assert by_id["deep"].image.dtype == np.uint16
        np.testing.assert_array_equal(by_id["deep"].image, images["deep"])
    else:
        np.testing.assert_array_equal(by_id["rgba"].image, rgba[..., :3])
        assert by_id["deep_rgb"].image.dtype == np.uint16
        np.testing.assert_array_equal(by_id["deep_rgb"].image, images["deep_rgb"])
    assert all((sample.mask == 2).all() and (sample.instances == 1).all() for sample in samples)


def test_lossy_jpeg_mask_with_binary_threshold(tmp_path):
    truth = np.zeros((48, 48), dtype=np.uint8)
    truth[draw.disk((24, 24), 13)] = 1
    png(tmp_path / "img" / "0.png", grey(0, (48, 48)))
    png(tmp_path / "msk" / "0.jpg", truth * 255)
    drifted = skio.imread(tmp_path / "msk" / "0.jpg")
    assert len(np.unique(drifted)) > 2  # JPEG really did blur the 0/255 edges
    source = {
        "format": "folder", "images": "img", "masks": "msk", "mask_pattern": "{id}.jpg",
        "encoding": {"type": "binary", "threshold": 127},
    }  # fmt: skip
    (sample,) = imported(tmp_path, source, CLASSES).values()
    np.testing.assert_array_equal(sample.mask, truth)


def test_shared_folder_subfolder_patterns_and_natural_order(tmp_path):
    for sample_id in ("10", "2", "1"):
        png(tmp_path / "all" / f"{sample_id}.png", grey(int(sample_id)))
        png(tmp_path / "all" / f"{sample_id}_mask.png", np.zeros((10, 9), dtype=np.uint8))
    shared = {"format": "folder", "images": "all", "masks": "all", "mask_pattern": "{id}_mask.png"}
    assert list(imported(tmp_path, shared, CLASSES, "shared")) == ["1", "2", "10"]
    for sample_id in ("x", "y"):
        png(tmp_path / "nested" / sample_id / "image.png", grey(3))
        png(tmp_path / "nested" / sample_id / "mask.png", np.ones((10, 9), dtype=np.uint8))
    nested = {
        "format": "folder", "images": "nested", "masks": "nested",
        "image_pattern": "{id}/image.png", "mask_pattern": "{id}/mask.png",
    }  # fmt: skip
    assert list(imported(tmp_path, nested, CLASSES, "nested")) == ["x", "y"]


def test_instances_from_an_instance_folder(tmp_path):
    root = tmp_path / "data"
    source = binary_dataset(root, ids=("a",))
    instance_ids = np.zeros((10, 9), dtype=np.uint16)
    instance_ids[:2, :2], instance_ids[4:, 3:] = 40, 9
    (root / "inst").mkdir()
    tifffile.imwrite(root / "inst" / "a.tif", instance_ids)
    source.update(instances="inst", instance_pattern="{id}.tif")
    run_import(source, root, tmp_path / "canonical")
    expected = np.zeros((10, 9), dtype=np.uint16)
    expected[:2, :2], expected[4:, 3:] = 2, 1  # 9 -> 1, 40 -> 2
    np.testing.assert_array_equal(read_sample(tmp_path / "canonical", "a").instances, expected)


def expect_import_error(tmp_path: Path, source: dict, root: Path, *fragments: str) -> None:
    """import_dataset raises naming every fragment, and leaves no canonical (or temporary) folder."""
    with pytest.raises(InputError) as error:
        run_import(source, root, tmp_path / "canonical")
    for fragment in fragments:
        assert fragment in str(error.value)
    assert not [path.name for path in tmp_path.iterdir() if path.name.lstrip(".").startswith("canonical")]


def test_image_without_mask(tmp_path):
    source = binary_dataset(tmp_path / "d", ids=("a", "b", "c"))
    (tmp_path / "d" / "masks" / "b.png").unlink()
    missing = str(tmp_path / "d/images/b.png")
    expect_import_error(tmp_path, source, tmp_path / "d", "1 image(s) have no mask", missing)


def test_mask_without_image(tmp_path):
    source = binary_dataset(tmp_path / "d")
    png(tmp_path / "d" / "masks" / "z.png", np.zeros((10, 9), dtype=np.uint8))
    orphan = str(tmp_path / "d/masks/z.png")
    expect_import_error(tmp_path, source, tmp_path / "d", "1 mask file(s) have no image", orphan)


def test_image_and_mask_sizes_differ(tmp_path):
    source = binary_dataset(tmp_path / "d")
    png(tmp_path / "d" / "masks" / "b.png", np.zeros((11, 9), dtype=np.uint8))
    expect_import_error(
        tmp_path,
        source,
        tmp_path / "d",
        f"{tmp_path / 'd/masks/b.png'} is 9x11",
        f"{tmp_path / 'd/images/b.png'} is 9x10",
    )


def test_unreadable_file(tmp_path):
    source = binary_dataset(tmp_path / "d")
    (tmp_path / "d" / "images" / "a.png").write_text("not a png")
    expect_import_error(tmp_path, source, tmp_path / "d", f"{tmp_path / 'd/images/a.png'}: not an image")


def test_truncated_file(tmp_path):
    source = binary_dataset(tmp_path / "d", shape=(64, 64))
    mask = tmp_path / "d" / "masks" / "b.png"
    mask.write_bytes(mask.read_bytes()[: mask.stat().st_size // 2])
    expect_import_error(tmp_path, source, tmp_path / "d", f"{mask}: the PNG file is truncated or corrupt")


def test_mask_value_not_declared(tmp_path):
    source = binary_dataset(tmp_path / "d")
    png(tmp_path / "d" / "masks" / "b.png", np.full((10, 9), 128, dtype=np.uint8))
    expect_import_error(tmp_path, source, tmp_path / "d", f"{tmp_path / 'd/masks/b.png'}: mask value 128")


def test_colour_not_in_colour_table(tmp_path):
    source = binary_dataset(tmp_path / "d", ids=("a",))
    colour_mask = np.zeros((10, 9, 3), dtype=np.uint8)
    colour_mask[3, 4] = (0, 200, 0)
    png(tmp_path / "d" / "masks" / "a.png", colour_mask)
    source["encoding"] = {"type": "colour_table", "colours": {"#000000": 0, "#ff0000": 1}}
    expect_import_error(
        tmp_path,
        source,
        tmp_path / "d",
        str(tmp_path / "d/masks/a.png"),
        "colour (0, 200, 0) at pixel (row 3, column 4)",
    )


def test_empty_folder(tmp_path):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir()
    source = {"format": "folder", "images": "images", "masks": "masks", "encoding": ISBI_ENCODING}
    expect_import_error(tmp_path, source, tmp_path / "d", f"{tmp_path / 'd/images'}: no image files match")


def test_duplicate_ids(tmp_path):
    source = binary_dataset(tmp_path / "d")
    tifffile.imwrite(tmp_path / "d" / "images" / "a.tif", grey(0))
    source["image_pattern"] = "{id}.*"
    expect_import_error(
        tmp_path,
        source,
        tmp_path / "d",
        str(tmp_path / "d/images/a.png"),
        str(tmp_path / "d/images/a.tif"),
        "both have id 'a'",
    )


def test_missing_folder_and_class_ids_beyond_the_classes(tmp_path):
    """The per-key checks of dataset.import are the schema's (test_config_schema.py); class ids against
    dataset.classes span two keys and are checked on import."""
    source = binary_dataset(tmp_path / "d")
    expect_import_error(tmp_path, {**source, "masks": "nowhere"}, tmp_path / "d", "does not exist")
    three_classes = {**source, "encoding": {"type": "value_table", "values": {0: 0, 255: 2}}}
    message = "config key dataset.import.encoding.values[255]: class id 2 is outside 0..1"
    expect_import_error(tmp_path, three_classes, tmp_path / "d", message)


def test_a_failed_import_keeps_the_previous_canonical_folder(tmp_path):
    source = binary_dataset(tmp_path / "d")
    run_import(source, tmp_path / "d", tmp_path / "canonical")
    png(tmp_path / "d" / "masks" / "b.png", np.full((10, 9), 7, dtype=np.uint8))
    with pytest.raises(InputError, match="mask value 7"):
        run_import(source, tmp_path / "d", tmp_path / "canonical")
    assert list(read_manifest(tmp_path / "canonical")["id"]) == ["a", "b"]
