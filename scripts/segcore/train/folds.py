"""Cross-validation on the training side: what a fold's run trains on, and the summary of the k runs.

A fold's run (rule train with a ``{fold}`` wildcard) validates on its fold of the train+val pool and trains
on the rest (:func:`segcore.data.folds.fold_split`); with augmentation the shards hold every pool id's
originals and copies, of which :func:`fold_samples` picks the fold's. Rule summarise_folds then writes what
the report reads of an experiment: its ``training.json`` (:func:`ensemble_facts`), ``history.tsv``
(:func:`mean_history`) and the per-fold table ``fold_metrics.tsv`` (:func:`fold_metrics`, written by
:func:`write_fold_metrics` and read by :func:`read_fold_metrics` alone).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.augment.naming import original_of
from segcore.data.canonical import read_manifest
from segcore.data.split import ids_of
from segcore.io import read_table, write_table
from segcore.model.ensemble import mean_threshold

# Validation results of a run (training.json keys), one column each in the per-fold table.
FOLD_METRICS = (
    "best_epoch", "kept_epoch", "epochs_run", "best_val_loss", "best_val_dice", "image_val_loss", "image_val_dice",
    "foreground_threshold", "threshold_val_dice", "training_samples", "training_seconds",
)  # fmt: skip
# Facts that add up over the folds: the ensemble holds every fold's weights and cost every fold's training.
SUMMED_FACTS = ("parameters", "training_seconds")


def fold_samples(sample_dirs: Sequence[str | os.PathLike], split: pd.DataFrame) -> list[str]:
    """Sorted ids of the augmented samples a fold trains on: its train originals and their copies.

    ``sample_dirs``: augmentation shards (canonical folders) holding the whole pool's originals and copies;
    ``split``: the fold's split table. An id of another subset is never taken for a copy, even when it is
    shaped like one (an original named ``a_aug1``).
    """
    train = set(ids_of(split, "train"))
    others = set(split["id"]) - train
    available = [sample_id for folder in sample_dirs for sample_id in read_manifest(Path(folder))["id"]]
    return sorted(i for i in available if i in train or (i not in others and original_of(i) in train))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ensemble_facts(facts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The experiment's run facts from its folds' ``training.json`` (in fold order), for the report.

    ``experiment`` and ``folds`` (k) first, then every key of the first fold's facts: summed for
    :data:`SUMMED_FACTS`; ``foreground_threshold`` as the ensemble predicts with it
    (:func:`segcore.model.ensemble.mean_threshold`); a value all folds share as is; differing numbers as
    their mean (5 decimals); other differing values listed once each, comma-separated.
    """
    summary: dict[str, Any] = {"experiment": facts[0]["experiment"], "folds": len(facts)}
    for key in facts[0]:
        values = [entry.get(key) for entry in facts]
        if key in SUMMED_FACTS:
            summary[key] = round(sum(values), 1) if isinstance(values[0], float) else sum(values)
        elif key == "foreground_threshold":
            summary[key] = mean_threshold(values)
        elif all(value == values[0] for value in values):
            summary[key] = values[0]
        elif all(_is_number(value) for value in values):
            summary[key] = round(float(np.mean(values)), 5)
        else:
            summary[key] = ", ".join(dict.fromkeys(str(value) for value in values))
    return summary


def mean_history(histories: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per epoch, the mean of the folds' history rows (same columns as a run's history table): an epoch
    some folds did not reach (early stopping) averages the folds that did; NaN (no whole-image validation
    that epoch) is skipped."""
    columns = list(histories[0].columns)
    table = pd.concat(histories, ignore_index=True).groupby("epoch", as_index=False, sort=True).mean()
    return table[columns]


def fold_metrics(facts: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The per-fold validation table: one row per fold (column ``fold`` 0..k-1, in the given order) with
    :data:`FOLD_METRICS` (NaN where a fold has no value, e.g. no threshold for more than two classes), then
    rows ``mean`` and ``sd`` (sample standard deviation over the folds, NaN skipped)."""
    rows = pd.DataFrame(
        [[entry.get(key) for key in FOLD_METRICS] for entry in facts], columns=list(FOLD_METRICS), dtype=float
    )
    summary = pd.DataFrame([rows.mean(), rows.std(ddof=1)])
    table = pd.concat([rows, summary], ignore_index=True)
    table.insert(0, "fold", [str(fold) for fold in range(len(facts))] + ["mean", "sd"])
    return table


def write_fold_metrics(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write the table of :func:`fold_metrics`, atomically."""
    write_table(path, table)


def read_fold_metrics(path: str | os.PathLike) -> pd.DataFrame:
    """The table written by :func:`write_fold_metrics` (``fold`` as text: 0..k-1, mean, sd)."""
    return read_table(path, converters={"fold": str})
