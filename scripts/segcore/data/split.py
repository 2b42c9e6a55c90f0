"""Seeded train/validation/test split by counts (e.g. 800:100:100) or ratios (e.g. 6:2:2).

The split is a table ``id -> subset``; every id appears exactly once (``unused`` for ids left over when the
counts ask for fewer samples than the dataset has), so the table is complete and the subsets disjoint.

:func:`split_dataset` applies the ``split`` config section. Besides the plain random split
(:func:`split_ids`), :func:`split_units` can stratify by foreground coverage
(every coverage bin is dealt to the subsets in proportion, so a test set cannot end up all-empty or
all-full by chance) and keep groups together (images of one patient, volume or plate never straddle two
subsets). :func:`load_split_table` reads a table given by the user instead, checked against the dataset.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# coverage_bins, deal and dealing_order are re-exported: they were defined here before segcore.data.dealing.
from segcore.data.dealing import coverage_bins, deal, dealing_order  # noqa: F401
from segcore.io import InputError, read_table

log = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")
UNUSED = "unused"


def subset_sizes(n_samples: int, method: str, values: Mapping[str, float]) -> dict[str, int]:
    """Number of samples per subset for ``n_samples`` ids; ``values`` is ``split.counts`` or ``split.ratios``.

    ``values`` holds train, val and test, non-negative (integers for counts), as config/schema.yaml checks.
    ``method="counts"``: the counts as given; their sum may be below ``n_samples`` (the rest is unused) but
    not above. ``method="ratios"``: sizes proportional to the ratios, rounded by the largest remainder
    method so that they sum to exactly ``n_samples`` (ties go to train, then val, then test). Raises
    :class:`InputError` naming the config key when the counts exceed the dataset or the ratios do not sum
    to a positive finite number.
    """
    if method == "counts":
        sizes = {name: int(values[name]) for name in SUBSETS}
        if sum(sizes.values()) > n_samples:
            raise InputError(
                f"config key split.counts: asks for {sum(sizes.values())} samples "
                f"({sizes['train']}:{sizes['val']}:{sizes['test']}) but the dataset has only {n_samples}"
            )
        return sizes
    total = float(sum(values[name] for name in SUBSETS))
    if not 0 < total < np.inf:
        raise InputError(f"config key split.ratios: the ratios sum to {total}; they need a positive finite sum")
    exact = {name: n_samples * values[name] / total for name in SUBSETS}
    sizes = {name: int(np.floor(exact[name])) for name in SUBSETS}
    # sorted() is stable: equal remainders keep the train, val, test order.
    by_remainder = sorted(SUBSETS, key=lambda name: -(exact[name] - sizes[name]))
    for name in by_remainder[: n_samples - sum(sizes.values())]:
        sizes[name] += 1
    return sizes


def split_ids(ids: Sequence[str], sizes: Mapping[str, int], seed: int) -> pd.DataFrame:
    """Assign ``ids`` to subsets of the given sizes by a seeded random permutation.

    The permutation is applied to the sorted ids, so the result depends only on the set of ids, the sizes and
    the seed, not on the order ``ids`` came in. Returns a table with columns ``id`` and ``subset``, sorted by id.
    """
    ordered = sorted(ids)
    if len(set(ordered)) != len(ordered):
        raise InputError("the dataset manifest holds duplicate ids")
    permuted = [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]
    subsets = []
    for name in SUBSETS:
        subsets += [name] * sizes[name]
    subsets += [UNUSED] * (len(ordered) - len(subsets))
    table = pd.DataFrame({"id": permuted, "subset": subsets}).sort_values("id", kind="stable")
    check_split(table, ordered)
    return table.reset_index(drop=True)


def check_split(table: pd.DataFrame, ids: Sequence[str]) -> None:
    """Raise ``ValueError`` unless every id of ``ids`` appears exactly once in ``table`` with a known subset."""
    if sorted(table["id"]) != sorted(ids):
        raise ValueError("split table does not hold every dataset id exactly once")
    unknown = set(table["subset"]) - set(SUBSETS) - {UNUSED}
    if unknown:
        raise ValueError(f"split table holds unknown subsets {sorted(unknown)}")


def ids_of(table: pd.DataFrame, subset: str) -> list[str]:
    """Sorted ids of one subset of a split table."""
    return sorted(table.loc[table["subset"] == subset, "id"])


# Dealing order of the subsets; ties between equal deficits go to the earlier one.
LABELS = (*SUBSETS, UNUSED)
LISTED_AT_MOST = 5  # ids quoted in a message; the rest are counted


def _listing(values: Sequence[str]) -> str:
    shown = ", ".join(repr(value) for value in values[:LISTED_AT_MOST])
    return shown + (f" and {len(values) - LISTED_AT_MOST} more" if len(values) > LISTED_AT_MOST else "")


def groups_from_pattern(ids: Sequence[str], pattern: str) -> list[str]:
    """The group of each id: the first capture group of ``pattern`` searched in it (the whole match if
    ``pattern`` has no group), e.g. ``"^(patient[0-9]+)_"`` puts ``patient3_slice7`` in ``patient3``.

    Raises :class:`InputError` naming ``split.group_pattern`` for an invalid expression or an id it does
    not match (or whose group comes out empty).
    """
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise InputError(f"config key split.group_pattern: {pattern!r} is not a regular expression ({error})") from None
    groups = []
    for sample_id in ids:
        match = regex.search(sample_id)
        group = (match.group(1) if regex.groups else match.group(0)) if match else None
        if not group:
            raise InputError(f"config key split.group_pattern: {pattern!r} finds no group in sample id {sample_id!r}")
        groups.append(group)
    return groups


def split_units(
    ids: Sequence[str],
    sizes: Mapping[str, int],
    seed: int,
    *,
    fractions: Sequence[float] | None = None,
    stratify_bins: int = 0,
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Assign ``ids`` to subsets of about the given ``sizes``, stratified and/or grouped; seeded.

    The units and their order come from :func:`dealing_order` (same arguments), and are dealt by
    :func:`deal`.

    Without groups the sizes are met exactly. With groups a subset can miss its size by less than the
    largest group; a subset asked for ids that ends up empty raises :class:`InputError`. Returns columns
    ``id``, ``subset`` (plus ``stratum`` and/or ``group`` when used), sorted by id.
    """
    ordered_ids = sorted(ids)
    dealing = dealing_order(ids, seed, fractions=fractions, stratify_bins=stratify_bins, groups=groups)
    units, bins, group_of, unit_sizes = dealing.members, dealing.strata, dealing.group_of, dealing.sizes
    targets = {name: sizes[name] for name in SUBSETS} | {UNUSED: len(ordered_ids) - sum(sizes[n] for n in SUBSETS)}
    unit_subsets = deal(unit_sizes, dealing.order, targets)

    rows = {"id": [], "subset": [], "stratum": [], "group": []}
    for unit_index, unit in enumerate(units):
        for sample_id in unit:
            rows["id"].append(sample_id)
            rows["subset"].append(unit_subsets[unit_index])
            rows["stratum"].append(int(bins[unit_index]))
            rows["group"].append(group_of[sample_id] if group_of is not None else "")
    columns = ["id", "subset"]
    if stratify_bins > 1:
        columns.append("stratum")
    if groups is not None:
        columns.append("group")
    table = pd.DataFrame(rows)[columns].sort_values("id", kind="stable").reset_index(drop=True)
    check_split(table, ordered_ids)
    empty = [name for name in SUBSETS if sizes[name] > 0 and not (table["subset"] == name).any()]
    if empty:
        raise InputError(
            f"config key split: the groups are too large to give the {' and '.join(empty)} subset any "
            f"image (largest group: {max(unit_sizes)} images); use smaller groups or other sizes"
        )
    return table


def check_groups(table: pd.DataFrame, groups: Mapping[str, str], where: str) -> None:
    """Raise :class:`InputError` naming ``where`` if a non-empty group of ``groups`` (id -> group) has ids
    in two subsets of ``table``."""
    subset_of = dict(zip(table["id"], table["subset"]))
    seen: dict[str, set[str]] = {}
    for sample_id, group in groups.items():
        if group:
            seen.setdefault(group, set()).add(subset_of[sample_id])
    straddling = sorted(group for group, subsets in seen.items() if len(subsets) > 1)
    if straddling:
        first = straddling[0]
        raise InputError(
            f"{where}: group {first!r} straddles subsets {sorted(seen[first])}"
            + (f" ({len(straddling)} groups do)" if len(straddling) > 1 else "")
        )


def load_split_table(path: str | os.PathLike, ids: Sequence[str]) -> pd.DataFrame:
    """Read a user's split table (TSV, columns ``id`` and ``subset``) and check it against ``ids``.

    Returns columns ``id`` and ``subset`` sorted by id. Raises :class:`InputError` naming ``path`` if it
    cannot be read, lacks a column, lists an id twice, lacks a dataset id or lists one the dataset does
    not have, or names an unknown subset.
    """
    try:
        table = read_table(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputError(f"{path}: cannot read the split table ({type(error).__name__}: {error})") from None
    missing_columns = [column for column in ("id", "subset") if column not in table.columns]
    if missing_columns:
        raise InputError(f"{path}: split table lacks column(s) {', '.join(missing_columns)}")
    table = table[["id", "subset"]].astype(str)
    duplicated = sorted(set(table.loc[table["id"].duplicated(), "id"]))
    if duplicated:
        raise InputError(f"{path}: split table lists id(s) more than once: {_listing(duplicated)}")
    listed, wanted = set(table["id"]), set(ids)
    if wanted - listed:
        raise InputError(f"{path}: split table lacks dataset id(s) {_listing(sorted(wanted - listed))}")
    if listed - wanted:
        extra = _listing(sorted(listed - wanted))
        raise InputError(f"{path}: split table lists id(s) not in the dataset: {extra}")
    unknown = sorted(set(table["subset"]) - set(LABELS))
    if unknown:
        raise InputError(f"{path}: unknown subset(s) {_listing(unknown)} (expected {', '.join(LABELS)})")
    return table.sort_values("id", kind="stable").reset_index(drop=True)


def sample_groups(manifest: pd.DataFrame, settings: Mapping[str, Any]) -> list[str] | None:
    """The group of each manifest row (``""``: the image stands alone), or None when grouping is off.

    ``settings`` is the ``split`` section. With ``group_by_group`` the groups come from ``group_pattern``
    (see :func:`groups_from_pattern`) or, without one, from the manifest's ``group`` column. Raises
    :class:`InputError` when ``group_pattern`` is set but ``group_by_group`` is false (a pattern that would
    silently do nothing).
    """
    pattern = settings["group_pattern"]
    if not settings["group_by_group"]:
        if pattern:
            raise InputError("config key split.group_pattern: is set but split.group_by_group is false")
        return None
    if pattern:
        return groups_from_pattern(list(manifest["id"]), pattern)
    groups = list(manifest["group"])
    if not any(groups):
        log.warning("split.group_by_group is true but the manifest names no groups: every image stands alone")
    return groups


def _drawn_split(
    manifest: pd.DataFrame, settings: Mapping[str, Any], seed: int, groups: list[str] | None
) -> pd.DataFrame:
    """A seeded split of the manifest's ids by the ``split`` settings (plain, stratified and/or grouped)."""
    ids = list(manifest["id"])
    method = settings["method"]
    sizes = subset_sizes(len(ids), method, settings[method])
    if settings["stratify_bins"] <= 1 and groups is None:
        return split_ids(ids, sizes, seed)
    table = split_units(
        ids, sizes, seed, fractions=list(manifest["foreground_fraction"]),
        stratify_bins=settings["stratify_bins"], groups=groups,
    )  # fmt: skip
    drawn = table["subset"].value_counts()
    missed = {name: int(drawn.get(name, 0)) for name in SUBSETS if drawn.get(name, 0) != sizes[name]}
    if missed:
        log.warning("groups kept whole: sizes %s instead of %s", missed, sizes)
    return table


def split_dataset(manifest: pd.DataFrame, settings: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """The split table of a canonical manifest: the user's ``split.table``, or one drawn with ``seed``.

    ``manifest`` has columns ``id``, ``foreground_fraction`` and ``group``; ``settings`` is the ``split``
    section with the schema's defaults filled in. A user's table is checked against the ids (and against
    the groups, when grouping is on); a drawn one follows ``method`` with ``counts`` or ``ratios``,
    ``stratify_bins`` and the groups (:func:`split_ids`, or :func:`split_units` when stratified or
    grouped). Logs each subset's size and mean foreground fraction. Returns columns ``id`` and ``subset``
    (plus ``stratum`` and/or ``group`` when used), sorted by id.
    """
    groups = sample_groups(manifest, settings)
    if settings["table"]:
        table = load_split_table(settings["table"], list(manifest["id"]))
        if groups is not None:
            check_groups(table, dict(zip(manifest["id"], groups)), settings["table"])
        log.info("using the split table %s", settings["table"])
    else:
        table = _drawn_split(manifest, settings, seed, groups)
    coverage = manifest.set_index("id")["foreground_fraction"]
    for name in SUBSETS:
        members = table.loc[table["subset"] == name, "id"]
        log.info("%s: %d images, mean foreground fraction %.3f", name, len(members), coverage[members].mean())
    return table
