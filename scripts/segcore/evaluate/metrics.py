"""Pixel and class metrics of predicted class masks, one image at a time and pooled over a data set.

Class masks are ``uint8`` (H, W) with values 0..K-1 (0 = background). Every per-class metric is computed
from a confusion matrix ``cm`` (``int64`` (K, K), rows = truth class, columns = predicted class), so the
same code gives per-image values (from one image's matrix) and pooled values (from the summed matrix).

Empty-class convention for the per-class metrics: a class absent from both truth and prediction gives NaN
(nothing to score; NaN is skipped by every mean here). Otherwise an undefined ratio is 0: a class predicted
but absent from truth scores 0 dice/IoU/precision and 0 recall; a class present but never predicted scores
0 recall and 0 precision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segcore.confusion import (
    check_cm,
    check_same_shape,
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    pixel_accuracy,
    precision_per_class,
    recall_per_class,
)
from segcore.evaluate.object_metrics import (
    hausdorff95,
    label_objects,
    object_scores,
    pixel_error,
    rand_error,
    tgs_average_precision,
)

CLASS_METRIC_KINDS = ("dice", "iou", "precision", "recall")
IMAGE_LEVEL_METRICS = (
    "tgs_map",
    "object_precision",
    "object_recall",
    "object_f1",
    "pixel_error",
    "rand_error",
    "hd95",
)
# Errors and distances: smaller is better. Every other metric here is a score where larger is better.
LOWER_IS_BETTER = frozenset({"pixel_error", "rand_error", "hd95"})


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without numpy's empty-slice warning) when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def _check_class_names(class_names: list[str]) -> None:
    if not class_names:
        raise ValueError("class_names is empty: at least the background class must be named")
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be unique, got {list(class_names)}")


def metric_names(class_names: list[str]) -> list[str]:
    """Keys of :func:`image_metrics` in order (also the row order of :func:`summarise`)."""
    _check_class_names(class_names)
    per_class = [f"{kind}_{name}" for kind in CLASS_METRIC_KINDS for name in class_names]
    return ["pixel_accuracy", *per_class, "mean_fg_dice", "mean_fg_iou", *IMAGE_LEVEL_METRICS]


def class_metrics(cm: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """The confusion-matrix metrics of :func:`metric_names` (accuracy, per-class, ``mean_fg_*``).

    ``mean_fg_dice`` / ``mean_fg_iou`` are means over the foreground classes 1..K-1 skipping NaN; NaN when
    every foreground class is NaN (or there is none).
    """
    _check_class_names(class_names)
    cm = check_cm(cm)
    if cm.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix is {cm.shape} but {len(class_names)} class names are given")
    per_kind = {
        "dice": dice_per_class(cm),
        "iou": iou_per_class(cm),
        "precision": precision_per_class(cm),
        "recall": recall_per_class(cm),
    }
    values = {"pixel_accuracy": pixel_accuracy(cm)}
    for kind in CLASS_METRIC_KINDS:
        values.update({f"{kind}_{name}": float(v) for name, v in zip(class_names, per_kind[kind])})
    values["mean_fg_dice"] = _nanmean(per_kind["dice"][1:])
    values["mean_fg_iou"] = _nanmean(per_kind["iou"][1:])
    return values


def image_metrics(
    truth: np.ndarray,
    pred: np.ndarray,
    class_names: list[str],
    truth_instances: np.ndarray | None = None,
    pred_instances: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one image as a flat dict of Python floats, keyed as :func:`metric_names`.

    ``truth``, ``pred``: ``uint8`` (H, W) class masks, values 0..K-1 with K = ``len(class_names)``;
    ``truth_instances``: optional integer (H, W) instance mask (0 = no object) used as the truth objects;
    ``pred_instances``: likewise the predicted objects (the predictions folder's instances).
    Class metrics come from the image's confusion matrix (:func:`class_metrics`). Foreground (any class
    > 0) feeds ``tgs_map``, ``pixel_error`` and ``hd95``. ``object_*`` are from
    :func:`segcore.evaluate.object_metrics.object_scores`. ``rand_error`` compares label images: the 4-connected
    components of each foreground class (:func:`segcore.evaluate.object_metrics.label_objects`), or
    ``truth_instances`` / ``pred_instances`` on their side when given; NaN when the truth has no foreground.
    """
    check_same_shape(truth, pred)
    values = class_metrics(confusion_matrix(truth, pred, len(class_names)), class_names)
    truth_fg, pred_fg = truth > 0, pred > 0
    objects = object_scores(truth, pred, truth_instances, pred_instances)
    truth_labels = label_objects(truth) if truth_instances is None else truth_instances
    pred_labels = label_objects(pred) if pred_instances is None else pred_instances
    values.update(
        {
            "tgs_map": tgs_average_precision(truth_fg, pred_fg),
            "object_precision": objects["precision"],
            "object_recall": objects["recall"],
            "object_f1": objects["f1"],
            "pixel_error": pixel_error(truth_fg, pred_fg),
            "rand_error": rand_error(truth_labels, pred_labels),
            "hd95": hausdorff95(truth_fg, pred_fg),
        }
    )
    return {name: float(values[name]) for name in metric_names(class_names)}


def summarise(per_image: pd.DataFrame, pooled_cm: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Summary table, one row per metric of :func:`metric_names`, in that order.

    Columns: ``metric``; ``per_image_mean`` and ``per_image_std`` (mean and sample standard deviation,
    ddof=1, over images, NaN skipped); ``pooled`` (the metric of ``pooled_cm``, the confusion matrix summed
    over all images, so large images weigh more; NaN for the object and distance metrics, which do not pool
    into a confusion matrix); ``count`` (images with a non-NaN value). ``per_image`` must hold one column
    per metric name (other columns, such as ``id``, are ignored); it may have no rows.
    """
    names = metric_names(class_names)
    missing = [name for name in names if name not in per_image.columns]
    if missing:
        raise ValueError(f"per-image table lacks metric columns {missing}")
    pooled = class_metrics(pooled_cm, class_names)
    columns = per_image[names].astype(float)
    return pd.DataFrame(
        {
            "metric": names,
            "per_image_mean": columns.mean(skipna=True).to_numpy(),
            "per_image_std": columns.std(skipna=True, ddof=1).to_numpy(),
            "pooled": [pooled.get(name, float("nan")) for name in names],
            "count": columns.notna().sum().to_numpy().astype(np.int64),
        }
    )


def best_and_worst(per_image: pd.DataFrame, metric: str, n: int) -> tuple[list[str], list[str]]:
    """Ids (column ``id``) of the ``n`` best and the ``n`` worst images by ``metric``, best / worst first.

    "Best" is the largest value, or the smallest for the metrics in :data:`LOWER_IS_BETTER`. Images with a
    NaN value are left out; equal values are ordered by id (ascending, as strings) in both lists so the
    choice is reproducible. With fewer than ``n`` scored images every one is returned, so the lists may
    share ids.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for column in ("id", metric):
        if column not in per_image.columns:
            raise ValueError(f"per-image table has no column {column!r}")
    scored = pd.DataFrame({"id": per_image["id"].astype(str), "value": per_image[metric].astype(float)})
    scored = scored.dropna(subset=["value"])
    larger_first = metric not in LOWER_IS_BETTER
    best = scored.sort_values(["value", "id"], ascending=[not larger_first, True], kind="stable")
    worst = scored.sort_values(["value", "id"], ascending=[larger_first, True], kind="stable")
    return best["id"].head(n).tolist(), worst["id"].head(n).tolist()
