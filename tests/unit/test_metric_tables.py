"""Tests for segcore.evaluate.tables (per_image.tsv, confusion.tsv, summary.tsv and the merge of shards) and
segcore.evaluate.shard (scoring one prediction shard).

References: the exact text of hand-written tables, floats compared bit for bit after a round trip,
hand-computed merges and pooled scores, and scikit-learn's confusion matrix, accuracy and F1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from segcore.data.canonical import Sample, write_canonical
from segcore.evaluate.metrics import metric_names
from segcore.evaluate.shard import evaluate_shard
from segcore.evaluate.tables import (
    merge_per_image,
    merge_shards,
    per_image_table,
    pool_confusion,
    read_confusion,
    read_per_image,
    read_summary,
    write_confusion,
    write_per_image,
    write_summary,
)
from segcore.io import InputError
from segcore.predict.outputs import shard_writer

CLASSES = ["bg", "fg"]
# Floats whose shortest repr needs all 17 digits, the smallest subnormal, the largest double, and NaN.
HARD_FLOATS = [0.1 + 0.2, 1 / 3, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, np.nan]


def rows_for(ids: list[str], seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": i, **{name: float(rng.random()) for name in metric_names(CLASSES)}} for i in ids]


def write_shard_tables(folder: Path, ids: list[str], seed: int) -> Path:
    path = folder / f"per_image_{seed}.tsv"
    write_per_image(path, per_image_table(rows_for(ids, seed), CLASSES))
    return path


# --- per_image.tsv ---------------------------------------------------------------------------------------


def test_per_image_table_has_id_then_the_metrics_as_float64():
    table = per_image_table(rows_for(["b", "a"], seed=0), CLASSES)
    assert list(table.columns) == ["id", *metric_names(CLASSES)] and list(table["id"]) == ["b", "a"]
    empty = per_image_table([], CLASSES)
    assert len(empty) == 0 and all(empty[name].dtype == np.float64 for name in metric_names(CLASSES))


def test_per_image_floats_read_back_bit_for_bit(tmp_path: Path):
    names = metric_names(CLASSES)
    rows = [{"id": f"{k:03d}", **{name: HARD_FLOATS[(k + j) % 6] for j, name in enumerate(names)}} for k in range(6)]
    rng = np.random.default_rng(1)
    rows += [{"id": f"r{k}", **{name: float(rng.standard_normal() * 10.0 ** rng.integers(-300, 300)) for name in names}}
             for k in range(50)]  # fmt: skip
    path = tmp_path / "per_image.tsv"
    write_per_image(path, per_image_table(rows, CLASSES))
    read = read_per_image(path, CLASSES)
    assert list(read["id"]) == [row["id"] for row in rows]  # "000" stays a string
    expected = np.array([[row[name] for name in names] for row in rows])
    np.testing.assert_array_equal(read[names].to_numpy(), expected)  # exact, NaN where NaN
    assert path.read_text().splitlines()[6].startswith("005\t\t")  # NaN is an empty cell


def test_a_header_only_per_image_table_reads_as_float64(tmp_path: Path):
    path = tmp_path / "empty.tsv"
    write_per_image(path, per_image_table([], CLASSES))
    assert path.read_text() == "\t".join(["id", *metric_names(CLASSES)]) + "\n"
    read = read_per_image(path, CLASSES)
    assert len(read) == 0 and all(read[name].dtype == np.float64 for name in metric_names(CLASSES))


def test_a_per_image_table_of_other_classes_is_refused(tmp_path: Path):
    path = write_shard_tables(tmp_path, ["a"], seed=0)
    with pytest.raises(InputError, match="per_image_0.tsv"):
        read_per_image(path, ["bg", "cell"])


# --- confusion.tsv ---------------------------------------------------------------------------------------


def test_confusion_table_text_and_round_trip(tmp_path: Path):
    path = tmp_path / "confusion.tsv"
    cm = np.array([[5, 1], [2, 7]], np.int64)
    write_confusion(path, cm, CLASSES)
    assert path.read_text() == "truth\tbg\tfg\nbg\t5\t1\nfg\t2\t7\n"  # rows truth, columns prediction
    read = read_confusion(path, CLASSES)
    assert read.dtype == np.int64 and np.array_equal(read, cm)


def test_confusion_of_other_classes_is_refused(tmp_path: Path):
    path = tmp_path / "confusion.tsv"
    path.write_text("truth\tfg\tbg\nfg\t1\t0\nbg\t0\t1\n")
    with pytest.raises(InputError, match="confusion.tsv"):
        read_confusion(path, CLASSES)
    with pytest.raises(ValueError, match="3 classes"):
        write_confusion(path, np.eye(2, dtype=np.int64), ["a", "b", "c"])


# --- merging shards --------------------------------------------------------------------------------------


def test_merge_sorts_rows_by_id_whatever_the_shards(tmp_path: Path):
    first = write_shard_tables(tmp_path, ["c", "a"], seed=1)
    second = write_shard_tables(tmp_path, ["b"], seed=2)
    empty = write_shard_tables(tmp_path, [], seed=3)
    tables = [read_per_image(path, CLASSES) for path in (first, empty, second)]
    merged = merge_per_image(tables, ["a", "b", "c"], ["first", "empty", "second"])
    assert list(merged["id"]) == ["a", "b", "c"] and list(merged.index) == [0, 1, 2]
    assert all(merged[name].dtype == np.float64 for name in metric_names(CLASSES))
    by_id = {row["id"]: row for row in rows_for(["c", "a"], 1) + rows_for(["b"], 2)}
    for name in metric_names(CLASSES):
        assert list(merged[name]) == [by_id[i][name] for i in "abc"]


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([["a", "b"], ["b"]], r"repeated \['b'\]"),
        ([["a"], []], r"missing \['b'\]"),
        ([["a", "b", "z"]], r"not in the test set \['z'\]"),
    ],
)
def test_merge_requires_each_test_id_once(tmp_path: Path, shards, message):
    tables = [per_image_table(rows_for(ids, seed), CLASSES) for seed, ids in enumerate(shards)]
    with pytest.raises(InputError, match=message):
        merge_per_image(tables, ["a", "b"], ["s0", "s1"][: len(shards)])


def test_merge_shards_pools_the_integer_matrices(tmp_path: Path):
    paths = [write_shard_tables(tmp_path, ["a"], seed=1), write_shard_tables(tmp_path, ["b", "c"], seed=2)]
    matrices = [tmp_path / "cm0.tsv", tmp_path / "cm1.tsv"]
    write_confusion(matrices[0], np.array([[3, 1], [0, 4]]), CLASSES)
    write_confusion(matrices[1], np.array([[2, 0], [1, 1]]), CLASSES)
    per_image, summary = merge_shards(paths, matrices, ["a", "b", "c"], CLASSES)
    assert list(per_image["id"]) == ["a", "b", "c"]
    rows = summary.set_index("metric")
    # Pooled [[5, 1], [1, 5]]: accuracy 10/12; Dice of fg 2*5 / (2*5 + 1 + 1) = 10/12.
    assert rows.loc["pixel_accuracy", "pooled"] == pytest.approx(10 / 12)
    assert rows.loc["dice_fg", "pooled"] == pytest.approx(10 / 12)
    values = [row["pixel_accuracy"] for row in rows_for(["a"], 1) + rows_for(["b", "c"], 2)]
    assert rows.loc["pixel_accuracy", "per_image_mean"] == pytest.approx(sum(values) / 3)
    assert rows.loc["pixel_accuracy", "count"] == 3
    pooled = pool_confusion(matrices, CLASSES)  # what rule merge_metrics writes as confusion.tsv
    assert pooled.dtype == np.int64 and pooled.tolist() == [[5, 1], [1, 5]]
    assert pool_confusion([], CLASSES).tolist() == [[0, 0], [0, 0]]


def test_summary_round_trip(tmp_path: Path):
    summary = pd.DataFrame({
        "metric": ["pixel_accuracy", "hd95"], "per_image_mean": [0.1 + 0.2, 1 / 3], "per_image_std": [np.nan, 2.5],
        "pooled": [5e-324, np.nan], "count": [3, 0],
    })  # fmt: skip
    write_summary(tmp_path / "summary.tsv", summary)
    read = read_summary(tmp_path / "summary.tsv")
    assert list(read.index) == ["pixel_accuracy", "hd95"] and read["count"].dtype == np.int64
    np.testing.assert_array_equal(read["per_image_mean"].to_numpy(), [0.1 + 0.2, 1 / 3])
    np.testing.assert_array_equal(read["pooled"].to_numpy(), [5e-324, np.nan])
    (tmp_path / "bad.tsv").write_text("metric\tmean\nx\t1\n")
    with pytest.raises(InputError, match="bad.tsv"):
        read_summary(tmp_path / "bad.tsv")


# --- scoring a shard -------------------------------------------------------------------------------------


def test_evaluate_shard_scores_each_image_and_sums_the_matrices(tmp_path: Path):
    rng = np.random.default_rng(4)
    truths = {f"s{i}": (rng.random((12, 10)) < 0.4).astype(np.uint8) for i in range(3)}
    samples = [Sample(i, np.zeros((12, 10), np.uint8), m, m.astype(np.uint16)) for i, m in truths.items()]
    write_canonical(tmp_path / "data", samples, num_classes=2)
    predictions = {i: np.where(rng.random(m.shape) < 0.8, m, 1 - m).astype(np.uint8) for i, m in truths.items()}
    with shard_writer(tmp_path / "shard-0", 2, False) as writer:
        for sample_id in ("s2", "s0"):
            mask = predictions[sample_id]
            writer.write(sample_id, np.zeros(mask.shape, np.uint8), mask, np.zeros((2, *mask.shape), np.float32))
    table, cm = evaluate_shard(tmp_path / "data", tmp_path / "shard-0", ["s2", "s0"], CLASSES)
    assert list(table["id"]) == ["s2", "s0"] and list(table.columns) == ["id", *metric_names(CLASSES)]
    truth = np.concatenate([truths[i].ravel() for i in ("s2", "s0")])
    predicted = np.concatenate([predictions[i].ravel() for i in ("s2", "s0")])
    assert cm.dtype == np.int64 and np.array_equal(cm, skm.confusion_matrix(truth, predicted, labels=[0, 1]))
    for row in table.itertuples():
        assert row.pixel_accuracy == pytest.approx(
            skm.accuracy_score(truths[row.id].ravel(), predictions[row.id].ravel())
        )
        assert row.dice_fg == pytest.approx(skm.f1_score(truths[row.id].ravel(), predictions[row.id].ravel()))
    with pytest.raises(InputError, match=r"shard-0/masks/s1\.tif"):
        evaluate_shard(tmp_path / "data", tmp_path / "shard-0", ["s1"], CLASSES)
    empty_table, empty_cm = evaluate_shard(tmp_path / "data", tmp_path / "shard-0", [], CLASSES)
    assert len(empty_table) == 0 and not empty_cm.any()
