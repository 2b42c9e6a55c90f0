"""Tests for segcore.predict.outputs (the predictions folder: writer and readers) and segcore.predict.shard.

References: tifffile and skimage reading the files back, the tab10 palette colours written out by hand, hand
shard assignments, the schema's defaults, and a whole-image forward pass of the model with torch.softmax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from skimage import io as skio

from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.io import InputError, write_table
from segcore.model.model_file import save_model
from segcore.model.unet import build_model
from segcore.predict.outputs import (
    read_predicted_mask,
    read_shard_mask,
    read_shard_probabilities,
    shard_writer,
)
from segcore.predict.shard import PredictionSettings, predict_shard, shard_test_ids, split_test_ids

MASK = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
IMAGE = np.full((2, 3), 200, np.uint8)
PROBABILITIES = np.stack([MASK == k for k in range(3)]).astype(np.float32)


def write_shard(folder: Path, ids: list[str], save_probabilities: bool = False) -> None:
    with shard_writer(folder, num_classes=3, save_probabilities=save_probabilities) as writer:
        for sample_id in ids:
            writer.write(sample_id, IMAGE, MASK, PROBABILITIES)


# --- the folder layout -----------------------------------------------------------------------------------


def test_a_shard_holds_masks_colour_masks_and_overlays(tmp_path: Path):
    folder = tmp_path / "predictions" / "shard-0"
    write_shard(folder, ["a", "b"])
    assert sorted(path.name for path in folder.iterdir()) == [
        "colour", "instances", "instances.json", "masks", "overlays",
    ]  # fmt: skip
    mask = tifffile.imread(folder / "masks" / "a.tif")
    assert mask.dtype == np.uint8 and np.array_equal(mask, MASK)
    black, blue, orange = [0, 0, 0], [31, 119, 180], [255, 127, 14]  # background, then tab10's first colours
    np.testing.assert_array_equal(
        skio.imread(folder / "colour" / "b.png"), [[black, blue, orange], [orange, blue, black]]
    )
    overlay = skio.imread(folder / "overlays" / "a.png")
    # A flat image stretches to 0; foreground is tinted 0.45 of its colour, background stays black.
    np.testing.assert_array_equal(overlay[0, 0], black)
    np.testing.assert_array_equal(overlay[0, 1], np.rint(0.45 * np.array(blue)))
    np.testing.assert_array_equal(read_shard_mask(folder, "b"), MASK)


def test_probabilities_are_written_only_when_asked(tmp_path: Path):
    write_shard(tmp_path / "with", ["a"], save_probabilities=True)
    saved = tifffile.imread(tmp_path / "with" / "probabilities" / "a.tif")
    assert saved.dtype == np.float32 and np.array_equal(saved, PROBABILITIES)
    np.testing.assert_array_equal(read_shard_probabilities(tmp_path / "with", "a"), PROBABILITIES)
    write_shard(tmp_path / "without", ["a"])
    assert not (tmp_path / "without" / "probabilities").exists()
    with pytest.raises(InputError, match="save_probabilities"):
        read_shard_probabilities(tmp_path / "without", "a")


def test_an_empty_shard_has_its_empty_subfolders(tmp_path: Path):
    write_shard(tmp_path / "shard-3", [], save_probabilities=True)
    kinds = sorted(path.name for path in (tmp_path / "shard-3").iterdir())
    assert kinds == ["colour", "instances", "instances.json", "masks", "overlays", "probabilities"]
    assert [path.name for path in (tmp_path / "shard-3").rglob("*.*")] == ["instances.json"]


def test_a_failed_shard_leaves_no_folder_and_keeps_an_older_one(tmp_path: Path):
    folder = tmp_path / "shard-0"
    with pytest.raises(RuntimeError), shard_writer(folder, 3, False) as writer:
        writer.write("a", IMAGE, MASK, PROBABILITIES)
        raise RuntimeError("killed")
    assert not folder.exists()
    write_shard(folder, ["old"])
    with pytest.raises(RuntimeError), shard_writer(folder, 3, False):
        raise RuntimeError("killed")
    assert [path.name for path in (folder / "masks").iterdir()] == ["old.tif"]


def test_the_writer_rejects_arrays_that_disagree(tmp_path: Path):
    with shard_writer(tmp_path / "shard-0", 3, False) as writer:
        with pytest.raises(ValueError, match="uint8 mask"):
            writer.write("a", IMAGE, MASK.astype(np.int64), PROBABILITIES)
        with pytest.raises(ValueError, match="probabilities"):
            writer.write("a", IMAGE, MASK, PROBABILITIES[:, :1])
        with pytest.raises(ValueError, match="image"):
            writer.write("a", IMAGE[:1], MASK, PROBABILITIES)


def test_readers_name_the_missing_prediction(tmp_path: Path):
    write_shard(tmp_path / "shard-0", ["a"])
    with pytest.raises(InputError, match=r"shard-0/masks/zz\.tif.*'zz'"):
        read_shard_mask(tmp_path / "shard-0", "zz")


def test_the_root_reader_finds_an_id_in_exactly_one_shard(tmp_path: Path):
    root = tmp_path / "predictions"
    write_shard(root / "shard-0", ["a", "x[1]"])
    write_shard(root / "shard-1", ["b", "a"])  # "a" twice: the shards are inconsistent
    np.testing.assert_array_equal(read_predicted_mask(root, "b"), MASK)
    np.testing.assert_array_equal(read_predicted_mask(root, "x[1]"), MASK)  # glob characters in an id
    with pytest.raises(InputError, match="found 2"):
        read_predicted_mask(root, "a")
    with pytest.raises(InputError, match="found 0"):
        read_predicted_mask(root, "x1")


# --- shards and settings ---------------------------------------------------------------------------------


def test_shards_deal_the_sorted_test_ids_in_turn(tmp_path: Path):
    split = tmp_path / "split.tsv"
    ids = ["e", "b", "t1", "d", "a", "c"]
    write_table(split, pd.DataFrame({"id": ids, "subset": ["test", "test", "train", "test", "test", "test"]}))
    assert split_test_ids(split) == ["a", "b", "c", "d", "e"]
    assert shard_test_ids(split, 0, 2) == ["a", "c", "e"]
    assert shard_test_ids(split, 1, 2) == ["b", "d"]
    assert shard_test_ids(split, 2, 3) == ["c"]
    with pytest.raises(ValueError, match="outside"):
        shard_test_ids(split, 2, 2)


def schema_prediction_defaults() -> dict:
    return with_defaults("prediction", {})


def test_prediction_settings_come_from_the_config_section():
    # The plan resolves tile_size and overlap when they are "auto" (segcore.plan.plan.resolve_prediction).
    settings = PredictionSettings.from_config({**schema_prediction_defaults(), "tile_size": 256, "overlap": 32})
    assert settings == PredictionSettings(
        tile_size=256, overlap=32, blend="gaussian", batch_size=8, tta="none", save_probabilities=False,
        instances="auto", watershed_h=1.0, threshold="argmax",
    )  # fmt: skip
    section = schema_prediction_defaults()
    del section["tta"]
    with pytest.raises(InputError, match=r"prediction\.tta"):
        PredictionSettings.from_config(section)


def test_predict_shard_writes_whole_image_predictions(tmp_path: Path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    samples = [
        Sample(f"s{i}", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), np.zeros((16, 16), np.uint8),
               np.zeros((16, 16), np.uint16))
        for i in range(3)
    ]  # fmt: skip
    write_canonical(tmp_path / "data", samples, num_classes=3)
    torch.manual_seed(0)
    spec = with_defaults("experiments.*.model", {"name": "unet", "widths": [4, 8], "batchnorm": True})
    model = build_model(spec, 3, 3).eval()
    metadata = {"model_spec": spec, "in_channels": 3, "num_classes": 3, "class_names": ["a", "b", "c"]}
    save_model(tmp_path / "model.pt", model, metadata)
    settings = PredictionSettings.from_config(
        {**schema_prediction_defaults(), "tile_size": 256, "overlap": 32, "save_probabilities": True}
    )
    folder = tmp_path / "predictions" / "shard-0"
    device = predict_shard(tmp_path / "model.pt", tmp_path / "data", ["s0", "s2"], settings, "cpu", folder)
    assert device == torch.device("cpu")
    assert sorted(path.name for path in (folder / "masks").iterdir()) == ["s0.tif", "s2.tif"]
    for sample in (samples[0], samples[2]):
        # Reference: one forward pass of the (unfused) model on the whole 16x16 image, softmax over classes.
        image = torch.from_numpy(np.moveaxis(sample.image, -1, 0).astype(np.float32) / 255)[None]
        with torch.no_grad():
            expected = torch.softmax(model(image), dim=1)[0].numpy()
        probabilities = read_shard_probabilities(folder, sample.id)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        np.testing.assert_array_equal(read_shard_mask(folder, sample.id), probabilities.argmax(axis=0))
