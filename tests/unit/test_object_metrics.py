"""Object, instance and distance metrics against hand-built cases, scikit-image and scipy references."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist, directed_hausdorff
from skimage.measure import label
from skimage.metrics import adapted_rand_error
from skimage.segmentation import find_boundaries

from segcore.evaluate.object_metrics import (
    TGS_IOU_THRESHOLDS,
    hausdorff95,
    hausdorff_distance,
    label_objects,
    object_scores,
    pixel_error,
    rand_error,
    tgs_average_precision,
)


def random_labels(seed: int, shape=(48, 48), fill=0.45) -> np.ndarray:
    """Label image of random blobs: connected components of smoothed noise (8-connected)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((shape[0] // 4, shape[1] // 4))
    blobs = np.kron(noise, np.ones((4, 4))) < fill
    return label(blobs, connectivity=2).astype(np.int32)


# --- TGS score -------------------------------------------------------------------------------------------


def test_tgs_thresholds_are_the_ten_exact_values():
    assert TGS_IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_tgs_empty_cases():
    empty = np.zeros((8, 8), bool)
    some = empty.copy()
    some[2:4, 2:4] = True
    assert tgs_average_precision(empty, empty) == 1.0
    assert tgs_average_precision(empty, some) == 0.0
    assert tgs_average_precision(some, empty) == 0.0
    assert tgs_average_precision(some, some) == 1.0


def iou_pair(overlap_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth = all 1000 pixels of a 20x50 image, pred = its first ``overlap_pixels``: IoU = k / 1000."""
    truth = np.ones((20, 50), bool)
    pred = np.zeros(1000, bool)
    pred[:overlap_pixels] = True
    return truth, pred.reshape(20, 50)


@pytest.mark.parametrize("index", range(10))
def test_tgs_iou_just_above_and_below_each_threshold(index):
    threshold_per_mille = 500 + 50 * index  # 0.50, 0.55, ..., 0.95 as k / 1000
    # IoU 0.001 above: this threshold and all lower ones pass -> (index + 1) / 10.
    assert tgs_average_precision(*iou_pair(threshold_per_mille + 1)) == pytest.approx((index + 1) / 10)
    # IoU exactly at the threshold fails it (strict >), as does 0.001 below -> index / 10.
    assert tgs_average_precision(*iou_pair(threshold_per_mille)) == pytest.approx(index / 10)
    assert tgs_average_precision(*iou_pair(threshold_per_mille - 1)) == pytest.approx(index / 10)


def test_tgs_rejects_shape_mismatch_naming_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        tgs_average_precision(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


# --- object matching (through object_scores) ------------------------------------------------------------


def counts(scores: dict) -> tuple[int, int, int]:
    return scores["true_positives"], scores["false_positives"], scores["false_negatives"]


def test_matching_compacts_arbitrary_truth_instance_ids():
    instances = np.zeros((10, 20), np.int32)
    instances[1:4, 1:4], instances[5:9, 10:15] = 7, 1_000_000_000  # huge id: compacted, not used as an index
    mask = (instances > 0).astype(np.uint8)
    assert counts(object_scores(mask, mask, truth_instances=instances)) == (2, 0, 0)


@pytest.mark.parametrize(
    # Prediction: columns 1..split of the 10x10 truth square, a one-pixel gap, then the rest. A half is IoU
    # 50/100 = 0.5 (not > 0.5, so no match); 60 pixels are IoU 0.6 and match.
    ("split_column", "expected"),
    [(5, (0, 2, 1)), (6, (1, 1, 0))],
)
def test_match_split_object(split_column, expected):
    truth = np.zeros((12, 12), np.uint8)
    truth[1:11, 1:11] = 1
    pred = truth.copy()
    pred[:, 1 + split_column] = 0
    assert counts(object_scores(truth, pred)) == expected


@pytest.mark.parametrize(("split_column", "expected"), [(5, (0, 1, 2)), (6, (1, 0, 1))])
def test_match_merged_objects(split_column, expected):
    truth = np.zeros((12, 12), np.uint8)
    truth[1:11, 1:11] = 1
    instances = np.zeros_like(truth, dtype=np.uint16)  # two touching truth objects, 10 x split and 10 x rest
    instances[1:11, 1 : 1 + split_column], instances[1:11, 1 + split_column : 11] = 1, 2
    assert counts(object_scores(truth, truth.copy(), truth_instances=instances)) == expected


def test_match_missed_and_spurious_objects():
    truth = np.zeros((10, 10), np.uint8)
    truth[0:3, 0:3], truth[6:9, 6:9] = 1, 1
    pred = np.zeros_like(truth)
    pred[0:3, 0:3], pred[0:2, 7:9] = 1, 1  # finds object 1, misses 2, adds a spurious one
    assert counts(object_scores(truth, pred)) == (1, 1, 1)
    assert counts(object_scores(truth, np.zeros_like(truth))) == (0, 0, 2)
    assert counts(object_scores(np.zeros_like(truth), pred)) == (0, 2, 0)


@pytest.mark.parametrize("seed", range(4))
def test_matching_against_brute_force_pairs(seed):
    truth = random_labels(seed)
    # Prediction: the truth foreground with random 2x2 holes, so some objects shrink a little (IoU > 0.5),
    # some split or shrink a lot; its objects are its 4-connected components.
    holes = np.kron(np.random.default_rng(seed).random((24, 24)) < 0.15, np.ones((2, 2), bool))
    pred_mask = ((truth > 0) & ~holes).astype(np.uint8)
    pred = label(pred_mask, connectivity=1)
    truth_ids, pred_ids = np.unique(truth[truth > 0]), np.unique(pred[pred > 0])
    passing = 0
    for t in truth_ids:
        for p in pred_ids:
            inter = np.count_nonzero((truth == t) & (pred == p))
            passing += inter / np.count_nonzero((truth == t) | (pred == p)) > 0.5
    scores = object_scores((truth > 0).astype(np.uint8), pred_mask, truth_instances=truth)
    assert counts(scores) == (passing, len(pred_ids) - passing, len(truth_ids) - passing)


# --- object scores ---------------------------------------------------------------------------------------


def test_label_objects_is_per_class_and_4_connected():
    mask = np.array([[1, 0, 2], [0, 1, 2], [0, 0, 0]], np.uint8)  # 1s touch at a corner only
    labels = label_objects(mask)
    assert len(np.unique(labels[labels > 0])) == 3
    assert labels[0, 2] == labels[1, 2] and labels[0, 0] != labels[1, 1]


@pytest.mark.parametrize("seed", range(3))
def test_label_objects_numbers_class_by_class_like_scipy(seed):
    """Reference: scipy.ndimage.label (4-connected by default in 2-D, ids in raster order) per class, class 1's
    components first, each later class's offset by the count so far."""
    mask = np.random.default_rng(seed).integers(0, 4, (30, 40)).astype(np.uint8)
    expected, offset = np.zeros(mask.shape, np.int32), 0
    for class_id in (1, 2, 3):
        components, count = ndimage.label(mask == class_id)
        expected[components > 0] = components[components > 0] + offset
        offset += count
    labels = label_objects(mask)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)


def test_object_scores_zero_object_conventions():
    empty = np.zeros((6, 6), np.uint8)
    some = empty.copy()
    some[1:3, 1:3] = 1
    both_empty = object_scores(empty, empty)
    assert (both_empty["precision"], both_empty["recall"], both_empty["f1"]) == (1.0, 1.0, 1.0)
    spurious = object_scores(empty, some)
    assert (spurious["precision"], spurious["recall"], spurious["f1"]) == (0.0, 0.0, 0.0)
    assert spurious["false_positives"] == 1
    missed = object_scores(some, empty)
    assert (missed["precision"], missed["recall"], missed["f1"]) == (0.0, 0.0, 0.0)
    assert missed["false_negatives"] == 1


def test_object_scores_hand_example_with_wrong_class():
    truth = np.zeros((10, 10), np.uint8)
    truth[0:3, 0:3], truth[5:8, 5:8], truth[0:2, 6:9] = 1, 2, 1
    pred = np.zeros_like(truth)
    pred[0:3, 0:3] = 1  # right
    pred[5:8, 5:8] = 1  # right place, wrong class: no match
    # truth: 3 objects, pred: 2, tp = 1 -> precision 1/2, recall 1/3, f1 = 2 / (2 + 1 + 2) = 0.4
    scores = object_scores(truth, pred)
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)


def test_object_scores_uses_truth_instances_for_touching_objects():
    truth = np.zeros((6, 10), np.uint8)
    truth[1:5, 1:9] = 1  # one connected region in the class mask ...
    instances = np.zeros_like(truth, dtype=np.uint16)
    instances[1:5, 1:5], instances[1:5, 5:9] = 4, 9  # ... holding two touching instances
    pred = truth.copy()
    pred[:, 5] = 0  # prediction separates them (IoU 16/16 and 12/16)
    as_components = object_scores(truth, pred)
    assert (as_components["true_positives"], as_components["false_positives"]) == (0, 2)
    as_instances = object_scores(truth, pred, truth_instances=instances)
    assert (as_instances["precision"], as_instances["recall"], as_instances["f1"]) == (1.0, 1.0, 1.0)


# --- ISBI 2012 errors ------------------------------------------------------------------------------------


def test_pixel_error_hand_example():
    truth = np.array([[0, 1, 1, 0]] * 4, bool)
    pred = truth.copy()
    pred[0, 0], pred[3, 1], pred[2, 2] = True, False, False
    assert pixel_error(truth, pred) == pytest.approx(3 / 16)
    assert pixel_error(truth, truth) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_rand_error_matches_skimage(seed):
    truth, pred = random_labels(seed), random_labels(seed + 50, fill=0.6)
    pred[pred > 0] += 1000  # ids differ from the truth's and are not consecutive
    expected, _, _ = adapted_rand_error(truth, pred, ignore_labels=(0,))
    assert rand_error(truth, pred) == pytest.approx(expected, abs=1e-12)


def test_rand_error_edge_cases():
    truth = random_labels(7)
    assert rand_error(truth, truth + 5 * (truth > 0)) == pytest.approx(0.0)  # same partition, other ids
    assert np.isnan(rand_error(np.zeros_like(truth), truth))


def test_rand_error_hand_example():
    truth = np.array([[1, 1, 2, 2]], np.int32)
    pred = np.array([[3, 3, 3, 0]], np.int32)
    # n_ij = [[2, 0], [1, 1]]: S = 6 - 4 = 2, A = 8 - 4 = 4, B = 10 - 4 = 6, F = 4 / 10
    assert rand_error(truth, pred) == pytest.approx(0.6)


# --- Hausdorff distances ---------------------------------------------------------------------------------


def padded_blobs(seed: int) -> np.ndarray:
    """Random foreground kept 2 pixels off the image border (so border handling does not matter)."""
    mask = np.zeros((44, 44), bool)
    mask[2:-2, 2:-2] = random_labels(seed, shape=(40, 40)) > 0
    return mask


def reference_hausdorff(truth: np.ndarray, pred: np.ndarray, percentile: float) -> float:
    truth_points = np.argwhere(find_boundaries(truth, connectivity=1, mode="inner"))
    pred_points = np.argwhere(find_boundaries(pred, connectivity=1, mode="inner"))
    distances = cdist(truth_points, pred_points)
    truth_to_pred, pred_to_truth = distances.min(axis=1), distances.min(axis=0)
    return max(np.percentile(truth_to_pred, percentile), np.percentile(pred_to_truth, percentile))


@pytest.mark.parametrize("seed", range(4))
def test_hd95_matches_cdist_reference(seed):
    truth, pred = padded_blobs(seed), padded_blobs(seed + 10)
    assert hausdorff95(truth, pred) == pytest.approx(reference_hausdorff(truth, pred, 95.0))


@pytest.mark.parametrize("seed", range(3))
def test_hausdorff_max_matches_directed_hausdorff(seed):
    truth, pred = padded_blobs(seed), padded_blobs(seed + 20)
    truth_points = np.argwhere(find_boundaries(truth, connectivity=1, mode="inner"))
    pred_points = np.argwhere(find_boundaries(pred, connectivity=1, mode="inner"))
    expected = max(directed_hausdorff(truth_points, pred_points)[0], directed_hausdorff(pred_points, truth_points)[0])
    assert hausdorff_distance(truth, pred, percentile=100.0) == pytest.approx(expected)


def test_hausdorff_shifted_square_and_edge_cases():
    truth = np.zeros((30, 40), bool)
    truth[10:20, 10:20] = True
    shifted = np.roll(truth, 3, axis=1)
    assert hausdorff95(truth, shifted) == pytest.approx(3.0)
    assert hausdorff95(truth, truth) == 0.0
    empty = np.zeros_like(truth)
    assert hausdorff95(empty, empty) == 0.0
    assert hausdorff95(truth, empty) == pytest.approx(50.0)  # diagonal of 30 x 40
    assert hausdorff95(empty, truth) == pytest.approx(50.0)


def test_hausdorff_counts_the_image_border_as_outside():
    full = np.ones((5, 5), bool)
    inner = np.zeros_like(full)
    inner[1:4, 1:4] = True
    # A full image has a boundary (its outer ring); the farthest ring pixels are its corners, one diagonal
    # step from the 3x3 square's ring.
    assert hausdorff_distance(full, inner, percentile=100.0) == pytest.approx(np.sqrt(2))
