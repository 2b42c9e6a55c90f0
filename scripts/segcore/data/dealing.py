"""Seeded dealing of ids to labelled parts (subsets of a split, or cross-validation folds).

Ids that must stay together (a group: one patient, volume or plate) form a unit (:func:`dealing_order`);
units are shuffled with a seed, optionally ordered by foreground-coverage stratum (:func:`coverage_bins`),
and dealt to the labels in proportion to their target sizes (:func:`deal`). :mod:`segcore.data.split` deals
train/val/test this way and :mod:`segcore.data.folds` deals the folds of its train+val pool, so a fold
assignment is stratified and grouped exactly as the split is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from segcore.io import InputError


def _units(ids: Sequence[str], groups: Sequence[str] | None) -> list[list[str]]:
    """Ids that must stay together, each list sorted; an empty group name means the id stands alone.

    Units are ordered by their key (group name or id), so the result depends only on the ids and groups.
    """
    members: dict[tuple[int, str], list[str]] = {}
    for index, sample_id in enumerate(ids):
        group = groups[index] if groups is not None else ""
        # (0, group) and (1, id) cannot collide when a group is named like an id.
        key = (0, group) if group else (1, sample_id)
        members.setdefault(key, []).append(sample_id)
    return [sorted(members[key]) for key in sorted(members)]


def coverage_bins(fractions: Sequence[float], n_bins: int, tie_order: Sequence[int]) -> np.ndarray:
    """Equal-count bin (0..n_bins-1) of each value of ``fractions`` by rank: int64 (N,).

    Values are ranked ascending, equal values by ``tie_order`` (a permutation of 0..N-1); rank r falls in
    bin ``floor(r * n_bins / N)``, so bin sizes differ by at most one. Equal-count bins suit coverage
    values that cluster (ISBI slices all lie near 0.78), where equal-width bins would leave most empty.
    """
    count = len(fractions)
    ranks = np.empty(count, dtype=np.int64)
    ranks[np.lexsort((np.asarray(tie_order), np.asarray(fractions, dtype=np.float64)))] = np.arange(count)
    return ranks * n_bins // max(count, 1)


Label = TypeVar("Label", str, int)  # a subset name, or a fold number (segcore.data.folds)


def deal(unit_sizes: Sequence[int], order: Sequence[int], targets: Mapping[Label, int]) -> list[Label]:
    """Label (subset or fold) of each unit, dealt in ``order`` so every prefix of the order is split in
    proportion.

    After ``placed`` ids have been dealt, label k should hold ``targets[k] * placed / total``. Each unit
    goes to the label furthest below that share once the unit is counted, among the labels it still
    fits in (the first of those in ``targets``' order; if it fits in none, among all). For units of one id
    this never overfills a label and so meets every target exactly; a block of consecutive units (a
    coverage bin) gets each label's share to within one id. Larger units may overshoot where no exact
    packing exists.
    """
    total = sum(targets.values())
    labels = list(targets)
    assigned = dict.fromkeys(labels, 0)
    placed = 0
    subsets: list = [None] * len(unit_sizes)
    for unit in order:
        size = unit_sizes[unit]
        placed += size
        fitting = [label for label in labels if assigned[label] + size <= targets[label]]
        candidates = fitting or labels
        chosen = max(candidates, key=lambda label: targets[label] * placed / total - assigned[label])
        assigned[chosen] += size
        subsets[unit] = chosen
    return subsets


@dataclass(frozen=True)
class DealingOrder:
    """The units of a set of ids (ids that must stay together) and the order they are dealt in.

    ``members``: each unit's ids, sorted, units ordered by key (:func:`_units`); ``strata``: int64 (U,)
    coverage bin of each unit (all 0 without stratification); ``order``: unit indices in dealing order;
    ``group_of``: id -> group name, or None without groups.
    """

    members: list[list[str]]
    strata: np.ndarray
    order: list[int]
    group_of: dict[str, str] | None

    @property
    def sizes(self) -> list[int]:
        return [len(unit) for unit in self.members]


def dealing_order(
    ids: Sequence[str],
    seed: int,
    *,
    fractions: Sequence[float] | None = None,
    stratify_bins: int = 0,
    groups: Sequence[str] | None = None,
) -> DealingOrder:
    """Units of ``ids`` (groups kept whole) in a seeded dealing order, stratified by coverage.

    ``fractions`` (foreground fraction per id, aligned with ``ids``) is needed when ``stratify_bins`` > 1;
    ``groups`` (group name per id; ``""`` = the id alone) keeps each group in one unit. A unit takes the
    mean fraction of its ids. Units are shuffled with ``seed``; with stratification they are then ordered
    by coverage bin (:func:`coverage_bins`), and within a bin (or overall) larger units come first so they
    still find room. Depends on the set of ids only, not their order. Raises :class:`InputError` for
    duplicate ids.
    """
    ordered_ids = sorted(ids)
    if len(set(ordered_ids)) != len(ordered_ids):
        raise InputError("the dataset manifest holds duplicate ids")
    position = {sample_id: index for index, sample_id in enumerate(ids)}
    group_of = {sample_id: groups[position[sample_id]] for sample_id in ids} if groups is not None else None
    units = _units(ordered_ids, [group_of[i] for i in ordered_ids] if group_of is not None else None)
    shuffled_rank = np.empty(len(units), dtype=np.int64)
    shuffled_rank[np.random.default_rng(seed).permutation(len(units))] = np.arange(len(units))
    unit_sizes = [len(unit) for unit in units]
    bins = np.zeros(len(units), dtype=np.int64)
    if stratify_bins > 1:
        if fractions is None:
            raise ValueError("stratify_bins > 1 needs the foreground fractions")
        unit_fractions = [float(np.mean([fractions[position[i]] for i in unit])) for unit in units]
        bins = coverage_bins(unit_fractions, stratify_bins, shuffled_rank)
    order = sorted(range(len(units)), key=lambda u: (bins[u], -unit_sizes[u], shuffled_rank[u]))
    return DealingOrder(units, bins, order, group_of)
