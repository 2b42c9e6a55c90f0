"""Seeded train/validation/test split by counts (e.g. 800:100:100) or ratios (e.g. 6:2:2).

The split is a table ``id -> subset``; every id appears exactly once (``unused`` for ids left over when the
counts ask for fewer samples than the dataset has), so the table is complete and the subsets disjoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from segcore.io import InputError

SUBSETS = ("train", "val", "test")
UNUSED = "unused"


def _checked_values(values: Mapping[str, float], key: str) -> dict[str, float]:
    """The train/val/test values of a config mapping, checked: all present, numbers, none negative."""
    missing = [name for name in SUBSETS if name not in values]
    if missing:
        raise InputError(f"config key {key}: missing {', '.join(missing)} (needs train, val and test)")
    checked = {}
    for name in SUBSETS:
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise InputError(f"config key {key}.{name}: {value!r} is not a number")
        if value < 0:
            raise InputError(f"config key {key}.{name}: {value} is negative")
        checked[name] = value
    return checked


def subset_sizes(n_samples: int, method: str, counts: Mapping | None = None, ratios: Mapping | None = None) -> dict:
    """Number of samples per subset for ``n_samples`` ids.

    ``method="counts"``: the counts as given (integers); their sum may be below ``n_samples`` (the rest is
    unused) but not above. ``method="ratios"``: sizes proportional to the ratios, rounded by the largest
    remainder method so that they sum to exactly ``n_samples`` (ties go to train, then val, then test).
    Raises :class:`InputError` naming the config key for impossible requests.
    """
    if method == "counts":
        values = _checked_values(counts or {}, "split.counts")
        for name, value in values.items():
            if int(value) != value:
                raise InputError(f"config key split.counts.{name}: {value} is not a whole number")
        sizes = {name: int(value) for name, value in values.items()}
        if sum(sizes.values()) > n_samples:
            raise InputError(
                f"config key split.counts: asks for {sum(sizes.values())} samples "
                f"({sizes['train']}:{sizes['val']}:{sizes['test']}) but the dataset has only {n_samples}"
            )
        return sizes
    if method == "ratios":
        values = _checked_values(ratios or {}, "split.ratios")
        total = sum(values.values())
        if total <= 0:
            raise InputError("config key split.ratios: the ratios must sum to a positive number")
        exact = {name: n_samples * values[name] / total for name in SUBSETS}
        sizes = {name: int(np.floor(exact[name])) for name in SUBSETS}
        by_remainder = sorted(SUBSETS, key=lambda name: -(exact[name] - sizes[name]))  # stable: ties keep order
        for name in by_remainder[: n_samples - sum(sizes.values())]:
            sizes[name] += 1
        return sizes
    raise InputError(f"config key split.method: {method!r} is not one of counts, ratios")


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
