"""Cross-validation folds (``split.folds: k``): the train and val subsets of the split form the pool, dealt
into k folds; fold f validates on its own ids and trains on the other folds' ids, and the test subset stays
fixed, so the k models are scored on the one test set (as an ensemble).

The folds are dealt like the split itself (:mod:`segcore.data.dealing`): seeded, stratified by foreground
coverage (``split.stratify_bins``) and with groups kept whole (``split.group_by_group``), so a fold never
holds part of a group. The assignment is the table ``folds.tsv`` (columns ``id``, ``fold``; pool ids only),
written by :func:`write_folds` (rule folds) and read by :func:`read_folds` alone; :func:`fold_split` turns
it into the split table of one fold's training run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from segcore.data.dealing import deal, dealing_order
from segcore.data.split import ids_of, sample_groups
from segcore.io import InputError, read_table, write_table

log = logging.getLogger(__name__)

POOL = ("train", "val")  # the subsets whose ids the folds share out


def fold_sizes(n_ids: int, k: int) -> dict[int, int]:
    """Target size of each fold 0..k-1: ``n_ids // k``, one more for the first ``n_ids % k`` folds."""
    return {fold: n_ids // k + (fold < n_ids % k) for fold in range(k)}


def assign_folds(
    ids: Sequence[str],
    k: int,
    seed: int,
    *,
    fractions: Sequence[float] | None = None,
    stratify_bins: int = 0,
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Deal ``ids`` (the pool) into ``k`` folds of near-equal size; seeded, stratified and/or grouped.

    ``fractions``, ``stratify_bins`` and ``groups`` as :func:`segcore.data.dealing.dealing_order` takes
    them (aligned with ``ids``). Without groups the fold sizes differ by at most one; with groups a fold can
    miss its size by less than the largest group. Depends on the set of ids, not their order. Returns
    columns ``id`` (str) and ``fold`` (int 0..k-1), sorted by id. Raises :class:`InputError` naming
    ``split.folds`` when k < 2 or a fold would get no id (fewer ids or groups than folds).
    """
    if k < 2:
        raise InputError(f"config key split.folds: {k} folds; cross-validation needs at least 2")
    dealing = dealing_order(ids, seed, fractions=fractions, stratify_bins=stratify_bins, groups=groups)
    if len(dealing.members) < k:
        raise InputError(
            f"config key split.folds: {k} folds need at least {k} images (or groups) in the train and val "
            f"subsets; they hold {len(ids)} images in {len(dealing.members)} units"
        )
    unit_folds = deal(dealing.sizes, dealing.order, fold_sizes(len(ids), k))
    rows = [(sample_id, unit_folds[unit]) for unit, members in enumerate(dealing.members) for sample_id in members]
    table = pd.DataFrame(rows, columns=["id", "fold"]).sort_values("id", kind="stable").reset_index(drop=True)
    empty = sorted(set(range(k)) - set(table["fold"]))
    if empty:
        raise InputError(
            f"config key split.folds: the groups are too large to give fold(s) {empty} any image "
            f"(largest group: {max(dealing.sizes)} images); use fewer folds or smaller groups"
        )
    return table


def pool_ids(split: pd.DataFrame) -> list[str]:
    """Sorted ids of the pool (train and val subsets) of a split table."""
    return sorted(ids_of(split, "train") + ids_of(split, "val"))


def dataset_folds(manifest: pd.DataFrame, split: pd.DataFrame, settings: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """The fold table of a dataset: its split's pool dealt into ``settings["folds"]`` folds.

    ``manifest``: the canonical manifest (``id``, ``foreground_fraction``, ``group``); ``split``: its split
    table; ``settings``: the ``split`` section (``folds``, ``stratify_bins``, ``group_by_group``,
    ``group_pattern``). Logs each fold's size and mean foreground fraction.
    """
    pool = manifest.set_index("id").loc[pool_ids(split)].reset_index()
    groups = sample_groups(pool, settings)
    table = assign_folds(
        list(pool["id"]), settings["folds"], seed, fractions=list(pool["foreground_fraction"]),
        stratify_bins=settings["stratify_bins"], groups=groups,
    )  # fmt: skip
    coverage = pool.set_index("id")["foreground_fraction"]
    for fold, members in table.groupby("fold")["id"]:
        log.info("fold %d: %d images, mean foreground fraction %.3f", fold, len(members), coverage[members].mean())
    return table


def write_folds(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a fold table (columns ``id``, ``fold``), atomically."""
    write_table(path, table[["id", "fold"]])


def read_folds(path: str | os.PathLike) -> pd.DataFrame:
    """The fold table written by :func:`write_folds`: ``id`` (str), ``fold`` (int), sorted by id."""
    return read_table(path).astype({"fold": int})


def fold_split(split: pd.DataFrame, folds: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The split table of fold ``fold``'s training run: pool ids of that fold become ``val``, the other
    pool ids ``train``; test and unused ids keep their subset. Columns ``id`` and ``subset``, sorted by id.

    Raises ValueError when the fold table does not hold exactly the split's pool ids (a stale table) or
    ``fold`` is not one of its folds.
    """
    if sorted(folds["id"]) != pool_ids(split):
        raise ValueError("the fold table does not hold exactly the train and val ids of the split")
    if fold not in set(folds["fold"]):
        raise ValueError(f"fold {fold} is not in the fold table (folds {sorted(set(folds['fold']))})")
    fold_of = dict(zip(folds["id"], folds["fold"]))
    table = split[["id", "subset"]].copy()
    in_pool = table["subset"].isin(POOL)
    table.loc[in_pool, "subset"] = ["val" if fold_of[i] == fold else "train" for i in table.loc[in_pool, "id"]]
    return table.sort_values("id", kind="stable").reset_index(drop=True)
