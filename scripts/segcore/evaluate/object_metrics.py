"""Per-image object, instance and distance metrics: TGS score, object F1, ISBI 2012 errors, HD95.

Inputs are 2-D arrays of one shape: ``*_fg`` are foreground masks (any dtype, non-zero = foreground, read
as ``bool`` (H, W)); ``*_labels`` are label images (integer or bool (H, W), 0 = background, each object a
distinct positive id, ids need not be consecutive); class masks are ``uint8`` (H, W), 0 = background.
Overlaps between labelled objects come from one contingency table of (truth id, predicted id) pixel pairs,
counted in one pass over the image (``np.bincount``) rather than in a loop over objects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segcore.confusion import check_same_shape
from segcore.predict.instances import component_instances

# TGS Salt Identification Challenge thresholds 0.50, 0.55, ..., 0.95; rounded so each equals its literal
# (np.arange alone accumulates error, e.g. 0.6000000000000001).
TGS_IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)


def _as_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` as a non-negative integer array; ValueError naming ``name`` otherwise."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer labels, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} holds negative label {labels.min()}")
    return labels


def _compact_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, index)`` with ``ids[index] == labels.ravel()``; ``index`` is intp (H*W,).

    Small label values are used as their own index (ids = 0..max, some perhaps absent, i.e. of area 0), which
    avoids sorting the image; only labels larger than the pixel count are compacted with ``np.unique``.
    """
    flat = labels.ravel()
    top = int(flat.max())
    if top <= max(flat.size, 1 << 16):
        return np.arange(top + 1), flat.astype(np.intp)
    return np.unique(flat, return_inverse=True)


def _pair_counts(
    truth_index: np.ndarray, pred_index: np.ndarray, truth_size: int, pred_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table of paired indices (0..truth_size-1, 0..pred_size-1), one pair per pixel.

    Returns ``(pair_truth, pair_pred, pair_count)`` for the pairs that occur, counts int64. Counts via a
    dense ``bincount`` when the full table is small, else via ``np.unique`` of the pair keys.
    """
    pair_key = truth_index.astype(np.int64) * pred_size + pred_index
    if truth_size * pred_size <= max(4 * pair_key.size, 1 << 16):
        dense = np.bincount(pair_key, minlength=truth_size * pred_size)
        keys = np.flatnonzero(dense)
        pair_count = dense[keys]
    else:
        keys, pair_count = np.unique(pair_key, return_counts=True)
    pair_truth, pair_pred = np.divmod(keys, pred_size)
    return pair_truth, pair_pred, pair_count.astype(np.int64)


def tgs_average_precision(truth_fg: np.ndarray, pred_fg: np.ndarray) -> float:
    """TGS Salt Identification Challenge score of one image: mean over :data:`TGS_IOU_THRESHOLDS` of
    ``1 if IoU(truth, pred) > t else 0`` (strictly greater: an IoU of exactly 0.55 fails t = 0.55).

    Edge cases: empty truth and empty prediction -> 1.0; empty truth with any prediction -> 0.0;
    non-empty truth with an empty prediction -> 0.0 (the IoU is then 0 and fails every threshold).
    """
    check_same_shape(truth_fg, pred_fg)
    truth_fg, pred_fg = truth_fg.astype(bool), pred_fg.astype(bool)
    union = np.count_nonzero(truth_fg | pred_fg)
    if union == 0:
        return 1.0
    iou = np.count_nonzero(truth_fg & pred_fg) / union
    return float(np.mean(iou > TGS_IOU_THRESHOLDS))


def _count_matches(
    truth_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float, may_match: np.ndarray | None
) -> tuple[int, int, int]:
    """``(matched pairs, truth objects, predicted objects)`` at IoU > ``iou_threshold`` (>= 0.5).

    ``may_match``: optional bool (H, W); overlap is only counted on these pixels (areas use every pixel), so
    objects whose overlap lies wholly outside it cannot match.
    """
    truth_ids, truth_index = _compact_ids(truth_labels)
    pred_ids, pred_index = _compact_ids(pred_labels)
    truth_area = np.bincount(truth_index, minlength=len(truth_ids))
    pred_area = np.bincount(pred_index, minlength=len(pred_ids))
    overlapping = (truth_labels.ravel() != 0) & (pred_labels.ravel() != 0)
    if may_match is not None:
        overlapping &= may_match.ravel()
    pair_truth, pair_pred, overlap = _pair_counts(
        truth_index[overlapping], pred_index[overlapping], len(truth_ids), len(pred_ids)
    )
    union = truth_area[pair_truth] + pred_area[pair_pred] - overlap
    # Why counting passing pairs is a one-to-one matching: IoU(A, B) > 0.5 means |A & B| > |A | B| / 2 >=
    # |B| / 2, i.e. A holds more than half of B. Disjoint truth objects cannot both hold more than half of
    # B, and likewise for A, so at a threshold >= 0.5 every object is in at most one passing pair.
    matched = int(np.count_nonzero(overlap / union > iou_threshold))
    truth_count = int(np.count_nonzero(truth_area[truth_ids != 0]))
    pred_count = int(np.count_nonzero(pred_area[pred_ids != 0]))
    return matched, truth_count, pred_count


def label_objects(class_mask: np.ndarray) -> np.ndarray:
    """Connected components of each foreground class (4-connected), numbered 1..N across all classes.

    4-connectivity: objects that touch only at a corner count as separate objects (the stricter choice; a
    merged prediction of two cells is then not hidden by a one-pixel diagonal bridge).
    ``class_mask``: integer (H, W), 0 = background. Returns ``int32`` (H, W), 0 = background. Components
    are found per class, so touching objects of different classes stay separate objects; every pixel of
    an object has one class (``class_mask`` at that pixel). The objects of
    :func:`segcore.predict.instances.component_instances`, which the ``components`` predictions hold.
    """
    return component_instances(class_mask)


def _instance_classes(truth: np.ndarray, truth_instances: np.ndarray) -> np.ndarray:
    """Class of each truth instance, broadcast to its pixels: ``int64`` (H, W), 0 outside instances.

    An instance's class is the most frequent foreground class of ``truth`` under it (ties: lowest id). An
    instance lying wholly on background in ``truth`` gets class 0: it still counts as a truth object but no
    prediction can match it.
    """
    instance_ids, instance_index = _compact_ids(truth_instances)
    num_classes = int(truth.max()) + 1
    votes = np.bincount(
        instance_index * num_classes + truth.ravel(), minlength=len(instance_ids) * num_classes
    ).reshape(len(instance_ids), num_classes)
    votes[:, 0] = 0  # background pixels inside an instance do not vote
    instance_class = np.where(votes.any(axis=1), votes.argmax(axis=1), 0)
    instance_class[instance_ids == 0] = 0
    return instance_class[instance_index].reshape(truth.shape)


def _objects_and_classes(mask: np.ndarray, instances: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(object labels, class per pixel) of a class ``mask``: its per-class components (:func:`label_objects`)
    and the mask itself, or with ``instances`` (named ``name`` in errors) those, each of its majority class."""
    if instances is None:
        return label_objects(mask), mask
    check_same_shape(mask, instances)
    labels = _as_labels(instances, name)
    return labels, _instance_classes(mask, labels)


def object_scores(
    truth: np.ndarray,
    pred: np.ndarray,
    truth_instances: np.ndarray | None = None,
    pred_instances: np.ndarray | None = None,
) -> dict[str, float]:
    """Object-level precision, recall and F1 of a predicted class mask (one image).

    Objects are the 4-connected components of each foreground class (:func:`label_objects`); when
    ``truth_instances`` (integer (H, W), 0 = none) is given, the truth objects are those instances instead,
    each with the majority class of ``truth`` under it. Likewise ``pred_instances`` (the predictions
    folder's instances, e.g. split by a watershed) replace the components of ``pred``, each with the majority
    class of ``pred`` under it. A predicted object is a true positive when it matches a truth object of the
    same class at IoU > 0.5 (:func:`_count_matches`).

    Returns ``precision``, ``recall``, ``f1`` and the counts ``true_positives``, ``false_positives``,
    ``false_negatives``. Zero-object conventions (the TGS rule: agreeing on "nothing here" is perfect):
    no truth and no predicted objects -> precision = recall = f1 = 1.0; otherwise an undefined ratio is
    0.0 (no predictions: precision 0; no truth objects: recall 0; f1 is then 0).
    """
    check_same_shape(truth, pred)
    truth_labels, truth_class = _objects_and_classes(truth, truth_instances, "truth_instances")
    pred_labels, pred_class = _objects_and_classes(pred, pred_instances, "pred_instances")
    # Each object has one class, so counting overlap only where the classes agree matches same-class
    # objects only, in one pass over the image.
    true_positives, truth_count, pred_count = _count_matches(
        truth_labels, pred_labels, 0.5, may_match=truth_class == pred_class
    )
    false_positives, false_negatives = pred_count - true_positives, truth_count - true_positives
    if truth_count == 0 and pred_count == 0:
        precision = recall = f1 = 1.0
    else:
        precision = true_positives / pred_count if pred_count else 0.0
        recall = true_positives / truth_count if truth_count else 0.0
        f1 = 2 * true_positives / (2 * true_positives + false_positives + false_negatives)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "true_positives": true_positives,
        "false_positives": false_positives,
        "false_negatives": false_negatives,
    }


def pixel_error(truth_fg: np.ndarray, pred_fg: np.ndarray) -> float:
    """ISBI 2012 pixel error: the fraction of pixels whose binary label differs, in [0, 1].

    This is the squared Euclidean distance between the two binary label images divided by the pixel count
    (each disagreeing pixel contributes (1 - 0)^2 = 1).
    """
    check_same_shape(truth_fg, pred_fg)
    return float(np.count_nonzero(truth_fg.astype(bool) != pred_fg.astype(bool)) / truth_fg.size)


def rand_error(truth_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """ISBI 2012 / SNEMI3D adapted Rand error: 1 - the Rand F-score restricted to truth foreground.

    Pixels with truth label 0 are ignored; predicted label 0 is one more segment (as in
    ``skimage.metrics.adapted_rand_error``). With n_ij the contingency table of the kept pixels, a_i and b_j
    its row and column sums and N their total, let S = sum n_ij^2 - N, A = sum a_i^2 - N, B = sum b_j^2 - N
    (twice the numbers of pixel pairs joined in both, in truth, in the prediction). Rand precision is S/B,
    recall S/A, and their F-score simplifies to 2S / (A + B).

    Edge cases: no truth foreground -> NaN (nothing to score); A + B = 0 (every segment a single pixel in
    both images, so they agree) -> 0.0.
    """
    check_same_shape(truth_labels, pred_labels)
    truth_labels = _as_labels(truth_labels, "truth_labels")
    pred_labels = _as_labels(pred_labels, "pred_labels")
    kept = truth_labels != 0
    if not kept.any():
        return float("nan")
    truth_ids, truth_index = _compact_ids(truth_labels[kept])
    pred_ids, pred_index = _compact_ids(pred_labels[kept])
    pair_truth, pair_pred, joint = _pair_counts(truth_index, pred_index, len(truth_ids), len(pred_ids))
    pixel_count = int(joint.sum())
    truth_sizes = np.bincount(pair_truth, weights=joint)
    pred_sizes = np.bincount(pair_pred, weights=joint)
    joined_both = float(joint @ joint - pixel_count)
    joined_truth = float(truth_sizes @ truth_sizes - pixel_count)
    joined_pred = float(pred_sizes @ pred_sizes - pixel_count)
    if joined_truth + joined_pred == 0:
        return 0.0
    return 1.0 - 2.0 * joined_both / (joined_truth + joined_pred)


def _boundary(foreground: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour outside the foreground; the image border counts as outside."""
    eroded = ndimage.binary_erosion(foreground, structure=ndimage.generate_binary_structure(2, 1), border_value=0)
    return foreground & ~eroded


def hausdorff_distance(truth_fg: np.ndarray, pred_fg: np.ndarray, percentile: float = 100.0) -> float:
    """Symmetric percentile Hausdorff distance (pixels) between the boundaries of two foreground masks.

    Boundaries are the foreground pixels with a 4-neighbour outside (:func:`_boundary`). For each boundary
    pixel of one mask, the Euclidean distance to the nearest boundary pixel of the other is read from
    ``scipy.ndimage.distance_transform_edt``; the result is the larger of the two directed ``percentile``-th
    percentiles (numpy's linear interpolation). ``percentile=100`` is the classic Hausdorff distance.

    Edge cases: both masks empty -> 0.0 (they agree exactly); one empty and the other not -> the image
    diagonal ``hypot(H, W)``, so a missed or hallucinated object is penalised instead of dropped.
    """
    check_same_shape(truth_fg, pred_fg)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    truth_edge, pred_edge = _boundary(truth_fg.astype(bool)), _boundary(pred_fg.astype(bool))
    truth_any, pred_any = truth_edge.any(), pred_edge.any()
    if not truth_any and not pred_any:
        return 0.0
    if not truth_any or not pred_any:
        return float(np.hypot(*truth_fg.shape))
    pred_to_truth = ndimage.distance_transform_edt(~truth_edge)[pred_edge]
    truth_to_pred = ndimage.distance_transform_edt(~pred_edge)[truth_edge]
    return float(max(np.percentile(pred_to_truth, percentile), np.percentile(truth_to_pred, percentile)))


def hausdorff95(truth_fg: np.ndarray, pred_fg: np.ndarray) -> float:
    """95th-percentile symmetric boundary Hausdorff distance (HD95), see :func:`hausdorff_distance`."""
    return hausdorff_distance(truth_fg, pred_fg, percentile=95.0)
