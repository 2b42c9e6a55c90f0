"""The metric tables: the one writer and the one reader of each, and the merge of the shards' tables.

Tab-separated (:func:`segcore.io.write_table`), floats written with full precision and NaN as an empty
cell::

    per_image.tsv   id, then one float column per metric of metric_names(class_names); one row per image
                    (a shard's table from rule evaluate, the merged one from rule merge_metrics)
    confusion.tsv   truth (class name), then one integer column per predicted class, named by class; the
                    rows are the truth classes in class order: the int64 (K, K) pixel confusion matrix
                    (a shard's from rule evaluate, the pooled one of the test set from rule merge_metrics)
    summary.tsv     metric, per_image_mean, per_image_std, pooled, count (segcore.evaluate.metrics.summarise)

Floats read back are exactly the floats written: pandas >= 3.1 parses every float with its round-trip
converter (the ``float_precision="round_trip"`` option that once asked for it is deprecated there).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from segcore.evaluate.metrics import metric_names, summarise
from segcore.io import InputError, read_table, write_table

SUMMARY_COLUMNS = ["metric", "per_image_mean", "per_image_std", "pooled", "count"]


def per_image_table(rows: Sequence[Mapping[str, object]], class_names: list[str]) -> pd.DataFrame:
    """The per-image table of ``rows`` (dicts with ``id`` and every metric of
    :func:`segcore.evaluate.metrics.metric_names`), columns in that order; no rows gives the header only
    (metric columns float64)."""
    columns = ["id", *metric_names(class_names)]
    table = pd.DataFrame(list(rows), columns=columns)
    return table.astype({name: np.float64 for name in columns[1:]})


def write_per_image(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a per-image table (:func:`per_image_table` or :func:`merge_per_image`), atomically."""
    write_table(path, table)


def read_per_image(path: str | os.PathLike, class_names: list[str]) -> pd.DataFrame:
    """A per-image table as written: ``id`` as strings, every metric column float64 (also with no rows).

    Raises :class:`segcore.io.InputError` naming the file when its columns are not ``id`` and the metrics
    of ``class_names``.
    """
    table = read_table(path)
    expected = ["id", *metric_names(class_names)]
    if list(table.columns) != expected:
        raise InputError(f"{path}: per-image columns are not id and the metrics of the classes {class_names}")
    # A header-only table reads as object columns; float64 keeps merging and summarising numeric.
    return table.astype({name: np.float64 for name in expected[1:]})


def write_confusion(path: str | os.PathLike, cm: np.ndarray, class_names: list[str]) -> None:
    """Write the int64 (K, K) confusion matrix ``cm`` (rows truth, columns prediction) as its table."""
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix of shape {cm.shape} for {len(class_names)} classes")
    columns = {name: cm[:, k].astype(np.int64) for k, name in enumerate(class_names)}
    write_table(path, pd.DataFrame({"truth": class_names, **columns}))


def read_confusion(path: str | os.PathLike, class_names: list[str]) -> np.ndarray:
    """The int64 (K, K) matrix written by :func:`write_confusion`; :class:`segcore.io.InputError` naming the
    file when its classes (columns or rows) are not ``class_names`` in order."""
    table = read_table(path)
    if list(table.columns) != ["truth", *class_names] or list(table["truth"]) != class_names:
        raise InputError(f"{path}: confusion matrix is not over the classes {class_names}")
    return table[class_names].to_numpy(dtype=np.int64)


def merge_per_image(tables: Sequence[pd.DataFrame], test_ids: Sequence[str], sources: Sequence[str]) -> pd.DataFrame:
    """The shards' per-image rows in one table sorted by id, so it does not depend on the shard count.

    ``tables``: per-image tables with float64 metric columns (:func:`read_per_image`), at least one;
    ``sources``: their file names, for the message. Raises :class:`segcore.io.InputError` naming the ids that
    are repeated, missing from ``test_ids``, or not test ids.
    """
    merged = pd.concat(list(tables), ignore_index=True)
    repeated = sorted(set(merged["id"][merged["id"].duplicated()]))
    missing = sorted(set(test_ids) - set(merged["id"]))
    extra = sorted(set(merged["id"]) - set(test_ids))
    if repeated or missing or extra:
        raise InputError(
            f"shard tables {list(sources)} do not hold each test id once: repeated {repeated[:5]}, missing "
            f"{missing[:5]}, not in the test set {extra[:5]}"
        )
    return merged.sort_values("id", kind="stable").reset_index(drop=True)


def pool_confusion(paths: Sequence[str | os.PathLike], class_names: list[str]) -> np.ndarray:
    """int64 (K, K): the exact integer sum of the confusion matrices at ``paths`` (:func:`read_confusion`,
    which raises :class:`segcore.io.InputError` for a matrix over other classes); zeros for no paths."""
    pooled = np.zeros((len(class_names), len(class_names)), np.int64)
    for path in paths:
        pooled += read_confusion(path, class_names)
    return pooled


def merge_shards(
    per_image_paths: Sequence[str | os.PathLike],
    confusion_paths: Sequence[str | os.PathLike],
    test_ids: Sequence[str],
    class_names: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(merged per-image table, summary table) of the shards' tables.

    The pooled confusion matrix is the exact integer sum of the shards' matrices (:func:`pool_confusion`);
    the summary is :func:`segcore.evaluate.metrics.summarise` of the merged table and that matrix. Raises
    :class:`segcore.io.InputError` as :func:`merge_per_image`, :func:`read_per_image` and
    :func:`read_confusion` do.
    """
    tables = [read_per_image(path, class_names) for path in per_image_paths]
    per_image = merge_per_image(tables, test_ids, [str(path) for path in per_image_paths])
    return per_image, summarise(per_image, pool_confusion(confusion_paths, class_names), class_names)


def write_summary(path: str | os.PathLike, summary: pd.DataFrame) -> None:
    """Write a summary table (:func:`merge_shards`), atomically."""
    write_table(path, summary)


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """A summary table as written, indexed by ``metric``: float64 ``per_image_mean``, ``per_image_std``,
    ``pooled`` and int64 ``count``. Raises :class:`segcore.io.InputError` for other columns."""
    table = read_table(path)
    if list(table.columns) != SUMMARY_COLUMNS:
        raise InputError(f"{path}: summary columns are {list(table.columns)}, expected {SUMMARY_COLUMNS}")
    floats = {name: np.float64 for name in SUMMARY_COLUMNS[1:4]}
    return table.astype({**floats, "count": np.int64}).set_index("metric")
