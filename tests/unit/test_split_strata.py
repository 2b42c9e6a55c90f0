"""Stratified and grouped splits and user split tables, against hand-dealt assignments."""

import re

import numpy as np
import pandas as pd
import pytest

from segcore.data.split import (
    check_groups,
    coverage_bins,
    groups_from_pattern,
    ids_of,
    load_split_table,
    split_units,
)
from segcore.io import InputError

SEEDS = [0, 1, 7, 42]


def counts_by(table: pd.DataFrame, column: str) -> dict:
    """{value of column: {subset: count}} with every subset listed (0 where absent)."""
    counts = table.groupby([column, "subset"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=["train", "val", "test", "unused"], fill_value=0)
    return {key: row.to_dict() for key, row in counts.iterrows()}


def test_coverage_bins_are_equal_count_by_rank():
    # Ascending: 0.1 (index 1), 0.2 (5), 0.3 (3), 0.5 (0), 0.7 (4), 0.9 (2); ranks 0..5 -> bins r*3//6.
    bins = coverage_bins([0.5, 0.1, 0.9, 0.3, 0.7, 0.2], 3, tie_order=[0, 1, 2, 3, 4, 5])
    assert bins.tolist() == [1, 0, 2, 1, 2, 0]


def test_coverage_bins_break_ties_by_the_given_order():
    # All equal: rank = position in tie_order, so indices 3 and 2 come first.
    assert coverage_bins([0.5] * 4, 2, tie_order=[3, 2, 1, 0]).tolist() == [1, 1, 0, 0]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_coverage_bin_is_dealt_in_proportion(seed):
    # 20 ids with coverage 0.00, 0.05, ..., 0.95: bin b holds ids 5b..5b+4. Dealing 12:4:4 (0.6:0.2:0.2)
    # by the largest deficit gives train, val, train, test, train in every run of five, so 3:1:1 per bin.
    ids = [f"s{i:02d}" for i in range(20)]
    table = split_units(
        ids, {"train": 12, "val": 4, "test": 4}, seed, fractions=[i / 20 for i in range(20)], stratify_bins=4
    )
    assert table["stratum"].tolist() == [i // 5 for i in range(20)]
    expected = {"train": 3, "val": 1, "test": 1, "unused": 0}
    assert counts_by(table, "stratum") == {b: expected for b in range(4)}


def test_counts_below_the_dataset_size_deal_unused_ids_across_bins():
    # Targets 8:2:2 plus 8 unused over 20 (0.4:0.1:0.1:0.4). Hand-dealt positions 1..10:
    # train, unused, val, train, unused | test, train, unused, train, unused; then the same again.
    ids = [f"{i}" for i in range(20)]
    table = split_units(
        ids, {"train": 8, "val": 2, "test": 2}, 3, fractions=[i / 20 for i in range(20)], stratify_bins=4
    )
    with_val = {"train": 2, "val": 1, "test": 0, "unused": 2}
    with_test = {"train": 2, "val": 0, "test": 1, "unused": 2}
    assert counts_by(table, "stratum") == {0: with_val, 1: with_test, 2: with_val, 3: with_test}


def test_plain_unit_split_meets_sizes_is_seeded_and_ignores_input_order():
    ids = [f"{i:03d}" for i in range(50)]
    sizes = {"train": 30, "val": 10, "test": 5}
    first = split_units(ids, sizes, 5, groups=[""] * 50)
    assert first["subset"].value_counts().to_dict() == {"train": 30, "val": 10, "test": 5, "unused": 5}
    assert first.equals(split_units(list(reversed(ids)), sizes, 5, groups=[""] * 50))
    assert not first.equals(split_units(ids, sizes, 6, groups=[""] * 50))


@pytest.mark.parametrize("seed", SEEDS)
def test_groups_of_two_stay_whole_and_meet_even_sizes(seed):
    # Ten groups of two; 12:4:4 ids is 6:2:2 groups, dealt exactly like single ids.
    ids = [f"g{g}_{k}" for g in range(10) for k in "ab"]
    groups = [f"g{g}" for g in range(10) for _ in "ab"]
    table = split_units(ids, {"train": 12, "val": 4, "test": 4}, seed, groups=groups)
    assert table["subset"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 4}
    for g in range(10):
        assert table.loc[table["id"].str.startswith(f"g{g}_"), "subset"].nunique() == 1


@pytest.mark.parametrize("seed", SEEDS)
def test_a_large_group_is_placed_first_where_it_fits(seed):
    # A group of 5 fits only train (6); placed first, it leaves 1 train, 2 val, 2 test for the 5 singletons
    # ("" = no group): deficits after 6..10 ids give val, test, val, test, train.
    ids = [f"big{k}" for k in range(5)] + [f"solo{k}" for k in range(5)]
    groups = ["big"] * 5 + [""] * 5
    table = split_units(ids, {"train": 6, "val": 2, "test": 2}, seed, groups=groups)
    assert set(table.loc[table["id"].str.startswith("big"), "subset"]) == {"train"}
    assert table["subset"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    assert table.loc[table["id"] == "solo0", "group"].item() == ""


def test_stratified_groups_keep_groups_whole():
    ids = [f"p{p}_{k}" for p in range(8) for k in range(3)]
    groups = [f"p{p}" for p in range(8) for _ in range(3)]
    fractions = [p / 8 for p in range(8) for _ in range(3)]
    table = split_units(ids, {"train": 12, "val": 6, "test": 6}, 1, fractions=fractions, stratify_bins=2, groups=groups)
    assert (table.groupby("group")["subset"].nunique() == 1).all()
    assert (
        table.groupby("group")["stratum"].first()
        == pd.Series([0, 0, 0, 0, 1, 1, 1, 1], index=[f"p{p}" for p in range(8)])
    ).all()
    assert table["subset"].value_counts().to_dict() == {"train": 12, "val": 6, "test": 6}


def test_groups_too_large_for_a_subset_stop_with_the_config_key():
    # Groups of 4, 4, 2 for 6:2:2: the first 4 takes train, the second fits nowhere and goes to val (largest
    # deficit), the 2 fits train and test with equal deficits and goes to train: test would stay empty.
    ids = [f"a{k}" for k in range(4)] + [f"b{k}" for k in range(4)] + ["c0", "c1"]
    groups = ["a"] * 4 + ["b"] * 4 + ["c"] * 2
    with pytest.raises(InputError, match=r"config key split: the groups are too large to give the test subset"):
        split_units(ids, {"train": 6, "val": 2, "test": 2}, 0, groups=groups)


def test_group_pattern_takes_the_first_capture_group_or_the_whole_match():
    ids = ["patient1_slice3", "patient12_slice1", "patient1_slice9"]
    assert groups_from_pattern(ids, r"^(patient[0-9]+)_") == ["patient1", "patient12", "patient1"]
    assert groups_from_pattern(ids, r"patient[0-9]+") == ["patient1", "patient12", "patient1"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"^(case[0-9]+)_", "finds no group in sample id 'patient1_slice3'"),
        (r"(patient[0-9", "is not a regular expression"),
    ],
)
def test_bad_group_patterns_name_the_key(pattern, message):
    with pytest.raises(InputError, match=rf"config key split\.group_pattern: .*{re.escape(message)}"):
        groups_from_pattern(["patient1_slice3"], pattern)


def test_check_groups_names_a_straddling_group():
    table = pd.DataFrame({"id": ["a", "b", "c"], "subset": ["train", "test", "train"]})
    check_groups(table, {"a": "g1", "b": "", "c": "g1"}, "split.tsv")  # "" never straddles
    with pytest.raises(InputError, match=r"split\.tsv: group 'g1' straddles subsets \['test', 'train'\]"):
        check_groups(table, {"a": "g1", "b": "g1", "c": ""}, "split.tsv")


def write_tsv(path, text: str):
    path.write_text(text)
    return path


def test_a_user_table_is_read_in_id_order(tmp_path):
    path = write_tsv(tmp_path / "s.tsv", "id\tsubset\tnote\n2\ttest\tx\n10\ttrain\ty\n1\tval\tz\n")
    table = load_split_table(path, ["1", "2", "10"])
    assert table.to_dict("list") == {"id": ["1", "10", "2"], "subset": ["val", "train", "test"]}
    assert ids_of(table, "train") == ["10"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id\tsubset\n1\ttrain\n2\ttest\n", "lacks dataset id(s) '3'"),
        ("id\tsubset\n1\ttrain\n2\ttest\n3\tval\n4\tval\n", "lists id(s) not in the dataset: '4'"),
        ("id\tsubset\n1\ttrain\n2\ttest\n3\tholdout\n", "unknown subset(s) 'holdout'"),
        ("id\tsubset\n1\ttrain\n1\ttest\n2\ttest\n3\tval\n", "lists id(s) more than once: '1'"),
        ("id\tpart\n1\ttrain\n", "lacks column(s) subset"),
    ],
)
def test_a_bad_user_table_is_named_with_its_problem(tmp_path, text, message):
    path = write_tsv(tmp_path / "s.tsv", text)
    with pytest.raises(InputError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        load_split_table(path, ["1", "2", "3"])


def test_a_missing_user_table_is_named(tmp_path):
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "nope.tsv"))):
        load_split_table(tmp_path / "nope.tsv", ["1"])


def test_stratification_spreads_coverage_better_than_chance():
    # 60 ids whose coverage is either 0.0 (30) or 0.9 (30): with two bins every subset gets exactly half of
    # each kind, so the test subset's mean coverage is exactly 0.45.
    ids = [f"{i:02d}" for i in range(60)]
    fractions = [0.0 if i % 2 else 0.9 for i in range(60)]
    table = split_units(ids, {"train": 40, "val": 10, "test": 10}, 9, fractions=fractions, stratify_bins=2)
    coverage = dict(zip(ids, fractions))
    for subset, size in (("train", 40), ("val", 10), ("test", 10)):
        members = ids_of(table, subset)
        assert len(members) == size
        assert np.mean([coverage[i] for i in members]) == pytest.approx(0.45)
