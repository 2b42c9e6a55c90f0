"""Scoring one shard of the test predictions: per-image metrics and the shard's summed confusion matrix.

The confusion matrix is the exact integer sum over the shard's images, so summing the shards' matrices
gives the pooled matrix of the whole test set (:func:`segcore.evaluate.tables.merge_shards`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from segcore.confusion import confusion_matrix
from segcore.data.canonical import read_sample
from segcore.evaluate.metrics import image_metrics
from segcore.evaluate.tables import per_image_table
from segcore.predict.outputs import read_shard_instances, read_shard_mask


def evaluate_shard(
    data: str | os.PathLike, shard_folder: str | os.PathLike, ids: Sequence[str], class_names: list[str]
) -> tuple[pd.DataFrame, np.ndarray]:
    """(per-image table, int64 (K, K) confusion matrix summed over the images) of one prediction shard.

    ``data``: the canonical folder with the truth; ``shard_folder``: rule predict's folder for these
    ``ids``; K = ``len(class_names)``. The table has one row per id in the given order
    (:func:`segcore.evaluate.tables.per_image_table`); with no ids it is header-only and the matrix zero.
    The object metrics score the shard's predicted instances (the canonical instances on the truth side),
    or the predicted mask's connected components for a shard without instances.
    Raises :class:`segcore.io.InputError` naming the file when an id has no predicted mask.
    """
    rows, pooled = [], np.zeros((len(class_names), len(class_names)), np.int64)
    for sample_id in ids:
        prediction = read_shard_mask(shard_folder, sample_id)
        objects = read_shard_instances(shard_folder, sample_id)
        truth = read_sample(data, sample_id)
        pooled += confusion_matrix(truth.mask, prediction, len(class_names))
        metrics = image_metrics(truth.mask, prediction, class_names, truth.instances, objects)
        rows.append({"id": sample_id, **metrics})
    return per_image_table(rows, class_names), pooled
