"""Cross-validation folds (segcore.data.folds) and the fold runs' data and summary (segcore.train.folds).

References: hand-built pools and groups, counts per fold and stratum, hand-computed means and sds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segcore.data.canonical import Sample, write_canonical
from segcore.data.folds import assign_folds, dataset_folds, fold_sizes, fold_split, read_folds, write_folds
from segcore.data.split import ids_of
from segcore.io import InputError
from segcore.report.build import build_report
from segcore.train.folds import ensemble_facts, fold_metrics, fold_samples, mean_history, write_fold_metrics
from tests.unit.test_report_build import CLASSES, write_results

SEEDS = [0, 1, 7, 42]


def test_fold_sizes_differ_by_at_most_one_and_sum_to_the_pool():
    assert fold_sizes(11, 3) == {0: 4, 1: 4, 2: 3}
    assert fold_sizes(10, 5) == dict.fromkeys(range(5), 2)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_the_pool_in_near_equal_parts(seed, k):
    ids = [f"s{i:02d}" for i in range(23)]
    table = assign_folds(ids, k, seed)
    assert table["id"].tolist() == sorted(ids)  # every id exactly once
    assert set(table["fold"]) == set(range(k))
    assert table["fold"].value_counts().to_dict() == {f: n for f, n in fold_sizes(23, k).items()}


def test_folds_are_reproducible_from_the_seed_and_ignore_input_order():
    ids = [f"{i:03d}" for i in range(40)]
    first = assign_folds(ids, 4, 11)
    assert first.equals(assign_folds(list(reversed(ids)), 4, 11))
    assert not first.equals(assign_folds(ids, 4, 12))


@pytest.mark.parametrize("seed", SEEDS)
def test_groups_never_straddle_two_folds(seed):
    # 12 groups of sizes 1..3 (24 ids): each group's ids must share one fold.
    sizes = [1, 2, 3] * 4
    ids, groups = [], []
    for group, size in enumerate(sizes):
        ids += [f"g{group:02d}_{member}" for member in range(size)]
        groups += [f"g{group:02d}"] * size
    table = assign_folds(ids, 3, seed, groups=groups)
    fold_of = dict(zip(table["id"], table["fold"]))
    for group in set(groups):
        assert len({fold_of[i] for i, g in zip(ids, groups) if g == group}) == 1
    # Sizes miss their target (8) by less than the largest group.
    assert all(abs(count - 8) < 3 for count in table["fold"].value_counts())


@pytest.mark.parametrize("seed", SEEDS)
def test_every_coverage_stratum_is_spread_over_the_folds(seed):
    # 20 ids with coverage 0.00 .. 0.95 in 4 strata of 5, dealt to 5 folds of 4: each stratum's five ids go
    # to five different folds (every prefix of the dealing order is split in proportion).
    ids = [f"s{i:02d}" for i in range(20)]
    table = assign_folds(ids, 5, seed, fractions=[i / 20 for i in range(20)], stratify_bins=4)
    stratum = {f"s{i:02d}": i // 5 for i in range(20)}
    per_fold_and_stratum = table.assign(stratum=table["id"].map(stratum)).groupby(["fold", "stratum"]).size()
    assert per_fold_and_stratum.max() == 1 and len(per_fold_and_stratum) == 20


def test_too_many_folds_or_one_fold_are_named():
    with pytest.raises(InputError, match=r"split\.folds: 5 folds need at least 5"):
        assign_folds(["a", "b", "c", "d"], 5, 0)
    with pytest.raises(InputError, match=r"split\.folds: 3 folds need at least 3 images \(or groups\)"):
        assign_folds(["a", "b", "c", "d"], 3, 0, groups=["x", "x", "x", ""])
    with pytest.raises(InputError, match=r"split\.folds: 1 folds"):
        assign_folds(["a", "b"], 1, 0)


def split_table() -> pd.DataFrame:
    subsets = ["train"] * 6 + ["val"] * 3 + ["test"] * 2 + ["unused"]
    return pd.DataFrame({"id": [f"s{i:02d}" for i in range(12)], "subset": subsets})


def test_each_pool_id_validates_in_exactly_one_fold_and_the_test_set_stays(tmp_path: Path):
    split = split_table()
    folds = assign_folds(sorted(ids_of(split, "train") + ids_of(split, "val")), 3, 5)
    write_folds(tmp_path / "folds.tsv", folds)
    folds = read_folds(tmp_path / "folds.tsv")
    assert folds["fold"].dtype == np.int64 and folds["id"].tolist() == [f"s{i:02d}" for i in range(9)]
    validated = []
    for fold in range(3):
        table = fold_split(split, folds, fold)
        assert table["id"].tolist() == split["id"].tolist()
        assert ids_of(table, "test") == ["s09", "s10"] and ids_of(table, "unused") == ["s11"]
        assert sorted(ids_of(table, "train") + ids_of(table, "val")) == [f"s{i:02d}" for i in range(9)]
        assert ids_of(table, "val") == sorted(folds.loc[folds["fold"] == fold, "id"])
        validated += ids_of(table, "val")
    assert sorted(validated) == [f"s{i:02d}" for i in range(9)]


def test_a_stale_fold_table_or_unknown_fold_is_refused():
    split = split_table()
    folds = pd.DataFrame({"id": [f"s{i:02d}" for i in range(8)], "fold": [0, 1] * 4})
    with pytest.raises(ValueError, match="does not hold exactly"):
        fold_split(split, folds, 0)
    folds = pd.DataFrame({"id": [f"s{i:02d}" for i in range(9)], "fold": [0, 1, 0] * 3})
    with pytest.raises(ValueError, match="fold 2 is not"):
        fold_split(split, folds, 2)


def test_dataset_folds_deal_the_pool_only_with_the_split_settings():
    manifest = pd.DataFrame({
        "id": [f"s{i:02d}" for i in range(12)], "foreground_fraction": np.linspace(0, 1, 12),
        "group": ["p1", "p1", "p2", "p2", "", "", "", "", "", "", "", ""],
    })  # fmt: skip
    settings = {"folds": 3, "stratify_bins": 2, "group_by_group": True, "group_pattern": None}
    table = dataset_folds(manifest, split_table(), settings, seed=4)
    assert table["id"].tolist() == [f"s{i:02d}" for i in range(9)]
    fold_of = dict(zip(table["id"], table["fold"]))
    assert fold_of["s00"] == fold_of["s01"] and fold_of["s02"] == fold_of["s03"]
    assert table.equals(dataset_folds(manifest, split_table(), settings, seed=4))


def sample(sample_id: str) -> Sample:
    return Sample(sample_id, np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16))


def test_a_fold_trains_on_its_train_originals_and_their_copies_only(tmp_path: Path):
    # "b_aug1" is an original (of the val fold), though shaped like a copy of "b" (train): never taken.
    originals = ["a", "b", "b_aug1", "c"]
    ids = [*originals, "a_aug1", "b_aug1_aug1", "c_aug1"]
    write_canonical(tmp_path / "shard-0", [sample(i) for i in ids if i != "b_aug1"], num_classes=2)
    write_canonical(tmp_path / "shard-1", [sample("b_aug1")], num_classes=2)
    split = pd.DataFrame({"id": [*originals, "t"], "subset": ["train", "train", "val", "val", "test"]})
    assert fold_samples([tmp_path / "shard-0", tmp_path / "shard-1"], split) == ["a", "a_aug1", "b"]


FACTS = [
    {"experiment": "e", "parameters": 100, "training_seconds": 1.5, "best_epoch": 2, "best_val_loss": 0.5,
     "best_val_dice": 0.6, "foreground_threshold": 0.4, "device": "cpu", "device_name": "x"},
    {"experiment": "e", "parameters": 100, "training_seconds": 2.0, "best_epoch": 3, "best_val_loss": 0.3,
     "best_val_dice": 0.8, "foreground_threshold": 0.6, "device": "cpu", "device_name": "y"},
]  # fmt: skip


def test_ensemble_facts_sum_costs_average_results_and_keep_shared_values():
    assert ensemble_facts(FACTS) == {
        "experiment": "e", "folds": 2, "parameters": 200, "training_seconds": 3.5, "best_epoch": 2.5,
        "best_val_loss": 0.4, "best_val_dice": 0.7, "foreground_threshold": 0.5, "device": "cpu",
        "device_name": "x, y",
    }  # fmt: skip
    assert ensemble_facts([FACTS[0], {**FACTS[1], "foreground_threshold": None}])["foreground_threshold"] is None


def test_fold_metrics_lists_every_fold_then_mean_and_sample_sd():
    table = fold_metrics(FACTS).set_index("fold")
    assert table.index.tolist() == ["0", "1", "mean", "sd"]
    assert table.loc["mean", "best_val_dice"] == pytest.approx(0.7)
    assert table.loc["sd", "best_val_dice"] == pytest.approx(math.sqrt(0.02))  # (0.1^2 * 2) / (2 - 1)
    assert np.isnan(table.loc["mean", "image_val_dice"])  # in no fold's facts


def test_mean_history_averages_the_folds_that_reached_an_epoch():
    first = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "image_val_dice": [np.nan, 0.4]})
    second = pd.DataFrame({"epoch": [1], "train_loss": [3.0], "image_val_dice": [0.2]})
    table = mean_history([first, second])
    assert table.columns.tolist() == ["epoch", "train_loss", "image_val_dice"]
    assert table["train_loss"].tolist() == [2.0, 0.5] and table["image_val_dice"].tolist() == [0.2, 0.4]


def test_the_report_shows_the_per_fold_table(tmp_path: Path):
    write_fold_metrics(tmp_path / "x" / "fold_metrics.tsv", fold_metrics(FACTS))
    results = replace(write_results(tmp_path), folds=tmp_path / "x" / "fold_metrics.tsv")
    page = build_report("tiny", [results], tmp_path / "data", CLASSES, 1, tmp_path / "c.png", threshold="argmax")
    assert "Cross-validation: validation metrics per fold" in page
    assert "<td>mean</td>" in page and "<td>sd</td>" in page and "<td>0.7000</td>" in page
