"""Split sizes and assignment, checked against hand-computed values."""

import re

import pytest

from segcore.data.split import SUBSETS, check_split, ids_of, split_ids, subset_sizes
from segcore.io import InputError

IDS = [f"{i:04d}" for i in range(1000)]


def test_counts_are_exact():
    assert subset_sizes(1000, "counts", counts={"train": 800, "val": 100, "test": 100}) == {
        "train": 800, "val": 100, "test": 100,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("n", "ratios", "expected"),
    [
        (1000, {"train": 6, "val": 2, "test": 2}, {"train": 600, "val": 200, "test": 200}),
        (30, {"train": 6, "val": 2, "test": 2}, {"train": 18, "val": 6, "test": 6}),
        # 7 * (0.6, 0.2, 0.2) = 4.2, 1.4, 1.4 -> floors 4, 1, 1; the one left goes to the first largest
        # remainder (val and test tie at 0.4; val comes first).
        (7, {"train": 6, "val": 2, "test": 2}, {"train": 4, "val": 2, "test": 1}),
        (10, {"train": 0.7, "val": 0.15, "test": 0.15}, {"train": 7, "val": 2, "test": 1}),
        (5, {"train": 1, "val": 0, "test": 0}, {"train": 5, "val": 0, "test": 0}),
    ],
)
def test_ratios_round_to_the_dataset_size(n, ratios, expected):
    assert subset_sizes(n, "ratios", ratios=ratios) == expected


def test_split_is_disjoint_complete_and_of_the_requested_sizes():
    table = split_ids(IDS, {"train": 800, "val": 100, "test": 100}, seed=1)
    assert sorted(table["id"]) == IDS
    assert table["subset"].value_counts().to_dict() == {"train": 800, "val": 100, "test": 100}
    subsets = [set(ids_of(table, name)) for name in SUBSETS]
    assert not (subsets[0] & subsets[1]) and not (subsets[0] & subsets[2]) and not (subsets[1] & subsets[2])


def test_leftover_ids_are_marked_unused():
    table = split_ids(IDS[:10], {"train": 5, "val": 2, "test": 1}, seed=0)
    assert table["subset"].value_counts().to_dict() == {"train": 5, "val": 2, "test": 1, "unused": 2}


def test_split_is_seeded_and_independent_of_input_order():
    sizes = {"train": 6, "val": 2, "test": 2}
    first = split_ids(IDS[:10], sizes, seed=5)
    again = split_ids(list(reversed(IDS[:10])), sizes, seed=5)
    other = split_ids(IDS[:10], sizes, seed=6)
    assert first.equals(again)
    assert not first.equals(other)


@pytest.mark.parametrize(
    ("method", "kwargs", "key"),
    [
        ("counts", {"counts": {"train": 900, "val": 100, "test": 100}}, "split.counts"),
        ("counts", {"counts": {"train": -1, "val": 1, "test": 1}}, "split.counts.train"),
        ("counts", {"counts": {"train": 1.5, "val": 1, "test": 1}}, "split.counts.train"),
        ("counts", {"counts": {"train": 1, "val": 1}}, "split.counts"),
        ("ratios", {"ratios": {"train": 0, "val": 0, "test": 0}}, "split.ratios"),
        ("ratios", {"ratios": {"train": 6, "val": -2, "test": 2}}, "split.ratios.val"),
        ("ratios", {"ratios": {"train": "six", "val": 2, "test": 2}}, "split.ratios.train"),
        ("thirds", {}, "split.method"),
    ],
)
def test_impossible_requests_name_the_config_key(method, kwargs, key):
    with pytest.raises(InputError, match=rf"config key {re.escape(key)}\b"):
        subset_sizes(1000, method, **kwargs)


def test_check_split_rejects_missing_and_duplicated_ids():
    table = split_ids(IDS[:4], {"train": 2, "val": 1, "test": 1}, seed=0)
    with pytest.raises(ValueError):
        check_split(table.iloc[:3], IDS[:4])
    with pytest.raises(ValueError):
        check_split(table.assign(subset=["train", "val", "test", "holdout"]), IDS[:4])
