"""Pixel confusion matrices and the per-class scores computed from them.

Shared by training (validation Dice) and evaluation (every per-class metric), so it sits beside ``io``
rather than in either stage. A confusion matrix ``cm`` is ``int64`` (K, K): rows = truth class, columns =
predicted class; summed matrices give pooled scores.

Empty-class convention: a class absent from both truth and prediction gives NaN (nothing to score);
otherwise an undefined ratio is 0.
"""

from __future__ import annotations

import numpy as np


def check_same_shape(truth: np.ndarray, pred: np.ndarray) -> None:
    """Raise ValueError, naming both shapes, unless ``truth`` and ``pred`` are non-empty 2-D arrays alike."""
    if truth.shape != pred.shape:
        raise ValueError(f"truth has shape {truth.shape} but pred has shape {pred.shape}")
    if truth.ndim != 2 or truth.size == 0:
        raise ValueError(f"masks must be non-empty 2-D (H, W) arrays, got shape {truth.shape}")


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixel confusion matrix ``int64`` (K, K) with K = ``num_classes``: ``cm[t, p]`` = pixels of truth
    class t predicted as p.

    ``truth``, ``pred``: integer (H, W) class masks of one shape with values in 0..K-1. Raises ValueError
    on a shape mismatch (naming both shapes), a non-integer dtype, or a value outside 0..K-1.
    """
    check_same_shape(truth, pred)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, mask in (("truth", truth), ("pred", pred)):
        if not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f"{name} must be an integer class mask, got dtype {mask.dtype}")
        out_of_range = mask[(mask < 0) | (mask >= num_classes)]
        if out_of_range.size:
            raise ValueError(f"{name} holds class {out_of_range[0]}, outside 0..{num_classes - 1}")
    pair_index = truth.ravel().astype(np.int64) * num_classes + pred.ravel()
    counts = np.bincount(pair_index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def check_cm(cm: np.ndarray) -> np.ndarray:
    """``cm`` as ``int64`` (K, K); ValueError if it is not a square matrix."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {cm.shape}")
    return cm.astype(np.int64)


def _class_ratio(cm: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` per class, float64 (K,): NaN for classes absent from both truth and
    prediction, 0.0 for other classes where the denominator is 0."""
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    ratio = np.where(present, 0.0, np.nan)
    defined = denominator > 0
    ratio[defined] = numerator[defined] / denominator[defined]
    return ratio


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of pixels predicted correctly: trace / total of ``cm`` (K, K); NaN for an empty matrix."""
    cm = check_cm(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def dice_per_class(cm: np.ndarray) -> np.ndarray:
    """Dice (F1) per class, 2TP / (2TP + FP + FN), float64 (K,); NaN for a class absent from truth and
    prediction, 0 for a class predicted but absent from truth."""
    cm = check_cm(cm)
    true_pos = np.diag(cm)
    return _class_ratio(cm, 2 * true_pos, cm.sum(axis=0) + cm.sum(axis=1))


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """Intersection over union (Jaccard) per class, TP / (TP + FP + FN), float64 (K,); NaN for a class
    absent from truth and prediction, 0 for a class predicted but absent from truth."""
    cm = check_cm(cm)
    true_pos = np.diag(cm)
    return _class_ratio(cm, true_pos, cm.sum(axis=0) + cm.sum(axis=1) - true_pos)


def precision_per_class(cm: np.ndarray) -> np.ndarray:
    """Precision per class, TP / (TP + FP), float64 (K,); NaN for a class absent from truth and
    prediction, 0 for a class predicted but absent from truth and for a class never predicted."""
    cm = check_cm(cm)
    return _class_ratio(cm, np.diag(cm), cm.sum(axis=0))


def recall_per_class(cm: np.ndarray) -> np.ndarray:
    """Recall (sensitivity) per class, TP / (TP + FN), float64 (K,); NaN for a class absent from truth and
    prediction, 0 for a class predicted but absent from truth."""
    cm = check_cm(cm)
    return _class_ratio(cm, np.diag(cm), cm.sum(axis=1))
