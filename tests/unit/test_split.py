"""Split sizes and assignment, and the split config section applied to a manifest, against hand-computed
values (the per-key checks of the section are tested in test_config_schema.py)."""

import logging
import re

import pandas as pd
import pytest

from segcore.config_schema import with_defaults
from segcore.data.split import SUBSETS, check_split, ids_of, sample_groups, split_dataset, split_ids, subset_sizes
from segcore.io import InputError

IDS = [f"{i:04d}" for i in range(1000)]


def test_counts_are_exact():
    assert subset_sizes(1000, "counts", {"train": 800, "val": 100, "test": 100}) == {
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
    assert subset_sizes(n, "ratios", ratios) == expected


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
    ("method", "values", "message"),
    [
        ("counts", {"train": 900, "val": 100, "test": 100}, "split.counts: asks for 1100 samples (900:100:100)"),
        ("ratios", {"train": 0, "val": 0, "test": 0}, "split.ratios: the ratios sum to 0.0"),
        ("ratios", {"train": float("inf"), "val": 1, "test": 1}, "split.ratios: the ratios sum to inf"),
    ],
)
def test_impossible_requests_name_the_config_key(method, values, message):
    with pytest.raises(InputError, match=rf"^config key {re.escape(message)}"):
        subset_sizes(1000, method, values)


def test_check_split_rejects_missing_and_duplicated_ids():
    table = split_ids(IDS[:4], {"train": 2, "val": 1, "test": 1}, seed=0)
    with pytest.raises(ValueError):
        check_split(table.iloc[:3], IDS[:4])
    with pytest.raises(ValueError):
        check_split(table.assign(subset=["train", "val", "test", "holdout"]), IDS[:4])


# --- split_dataset: the split config section applied to a manifest ----------------------------------------


def manifest_of(count: int, fractions=None, groups=None) -> pd.DataFrame:
    """A canonical manifest's split columns: ids "00".., foreground fractions and groups ("" = none)."""
    return pd.DataFrame(
        {
            "id": [f"{i:02d}" for i in range(count)],
            "foreground_fraction": fractions if fractions is not None else [0.5] * count,
            "group": groups if groups is not None else [""] * count,
        }
    )


def split_settings(**keys) -> dict:
    return with_defaults("split", keys)


def test_plain_counts_are_the_seeded_random_split():
    manifest = manifest_of(20)
    table = split_dataset(manifest, split_settings(counts={"train": 10, "val": 5, "test": 3}), seed=4)
    assert table.equals(split_ids(list(manifest["id"]), {"train": 10, "val": 5, "test": 3}, 4))
    assert table["subset"].value_counts().to_dict() == {"train": 10, "val": 5, "test": 3, "unused": 2}


def test_ratios_use_every_image():
    # 12 * (0.6, 0.2, 0.2) = 7.2, 2.4, 2.4 -> floors 7, 2, 2; the one left goes to val (first largest remainder).
    table = split_dataset(manifest_of(12), split_settings(method="ratios"), seed=0)
    assert table["subset"].value_counts().to_dict() == {"train": 7, "val": 3, "test": 2}


def test_stratify_bins_deal_every_coverage_bin_in_proportion():
    # 20 images of coverage 0.00..0.95 in 4 bins of 5, dealt 12:4:4 -> 3:1:1 in every bin.
    manifest = manifest_of(20, fractions=[i / 20 for i in range(20)])
    settings = split_settings(counts={"train": 12, "val": 4, "test": 4}, stratify_bins=4)
    table = split_dataset(manifest, settings, seed=7)
    per_bin = table.groupby(["stratum", "subset"]).size().unstack(fill_value=0)
    assert per_bin.to_dict("index") == {b: {"test": 1, "train": 3, "val": 1} for b in range(4)}


def test_group_pattern_keeps_each_group_in_one_subset():
    manifest = manifest_of(12)
    manifest["id"] = [f"patient{p}_slice{k}" for p in range(6) for k in range(2)]
    settings = split_settings(
        counts={"train": 8, "val": 2, "test": 2}, group_by_group=True, group_pattern="^(patient[0-9]+)_"
    )
    table = split_dataset(manifest, settings, seed=1)
    assert table.groupby("group")["subset"].nunique().eq(1).all() and table["group"].nunique() == 6
    assert table["subset"].value_counts().to_dict() == {"train": 8, "val": 2, "test": 2}


def test_the_manifests_groups_are_used_without_a_pattern():
    groups = ["a", "a", "a", "b", "b", "c", "", ""]
    assert sample_groups(manifest_of(8, groups=groups), split_settings(group_by_group=True)) == groups
    assert sample_groups(manifest_of(8, groups=groups), split_settings()) is None


def test_a_group_pattern_without_grouping_is_refused():
    with pytest.raises(
        InputError, match=r"^config key split\.group_pattern: is set but split\.group_by_group is false"
    ):
        split_dataset(manifest_of(4), split_settings(group_pattern="^(.)"), seed=0)


def test_warnings_for_missing_groups_and_missed_sizes(caplog):
    with caplog.at_level(logging.WARNING, logger="segcore.data.split"):
        sample_groups(manifest_of(4), split_settings(group_by_group=True))
        # groups of 3, 3, 2 for 4:2:2 cannot be met exactly
        manifest = manifest_of(8, groups=["a"] * 3 + ["b"] * 3 + ["c"] * 2)
        split_dataset(manifest, split_settings(counts={"train": 4, "val": 2, "test": 2}, group_by_group=True), seed=0)
    messages = [record.getMessage() for record in caplog.records]
    assert "split.group_by_group is true but the manifest names no groups: every image stands alone" in messages
    assert any(message.startswith("groups kept whole: sizes ") for message in messages)


def test_a_user_table_replaces_the_drawn_split_and_is_checked_against_groups(tmp_path, caplog):
    path = tmp_path / "mine.tsv"
    path.write_text("id\tsubset\n00\ttrain\n01\ttrain\n02\tval\n03\ttest\n")
    manifest = manifest_of(4, fractions=[0.1, 0.3, 0.5, 0.7], groups=["g", "g", "", ""])
    with caplog.at_level(logging.INFO, logger="segcore.data.split"):
        table = split_dataset(manifest, split_settings(table=str(path), group_by_group=True), seed=0)
    assert table.to_dict("list") == {"id": ["00", "01", "02", "03"], "subset": ["train", "train", "val", "test"]}
    # mean foreground fraction of train: (0.1 + 0.3) / 2
    assert "train: 2 images, mean foreground fraction 0.200" in [record.getMessage() for record in caplog.records]
    path.write_text("id\tsubset\n00\ttrain\n01\tval\n02\tval\n03\ttest\n")
    with pytest.raises(InputError, match=r"mine\.tsv: group 'g' straddles subsets \['train', 'val'\]"):
        split_dataset(manifest, split_settings(table=str(path), group_by_group=True), seed=0)
