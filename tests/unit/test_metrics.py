"""Pixel/class metrics against scikit-learn and hand-computed values; summary and ranking tables."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from segcore.confusion import (
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    pixel_accuracy,
    precision_per_class,
    recall_per_class,
)
from segcore.evaluate.metrics import best_and_worst, image_metrics, metric_names, summarise

# The 4x4 hand example. Confusion matrix worked out pixel by pixel (rows truth, columns prediction):
#   [[6, 1, 0],
#    [1, 4, 0],
#    [1, 1, 2]]
HAND_TRUTH = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 1], [0, 2, 2, 0]], np.uint8)
HAND_PRED = np.array([[0, 0, 1, 1], [0, 1, 1, 1], [0, 2, 1, 0], [0, 0, 2, 0]], np.uint8)
HAND_CM = np.array([[6, 1, 0], [1, 4, 0], [1, 1, 2]])
HAND_NAMES = ["background", "cell", "nucleus"]


def random_masks(seed: int, num_classes: int, shape=(32, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, num_classes, shape).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.6, truth, rng.integers(0, num_classes, shape)).astype(np.uint8)
    return truth, pred


# --- confusion matrix ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_confusion_matrix_matches_sklearn(seed):
    truth, pred = random_masks(seed, num_classes=4)
    truth[truth == 3] = 0  # class 3 missing from truth: its row must still be there (all zeros)
    cm = confusion_matrix(truth, pred, num_classes=5)
    expected = skm.confusion_matrix(truth.ravel(), pred.ravel(), labels=range(5))
    assert cm.dtype == np.int64 and cm.shape == (5, 5)
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_hand_example():
    np.testing.assert_array_equal(confusion_matrix(HAND_TRUTH, HAND_PRED, 3), HAND_CM)


def test_confusion_matrix_rejects_bad_input():
    masks = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        confusion_matrix(masks, np.zeros((4, 5), np.uint8), 2)
    with pytest.raises(ValueError, match="pred holds class 3"):
        confusion_matrix(masks, masks + 3, 3)
    with pytest.raises(ValueError, match="truth holds class 2"):
        confusion_matrix(masks + 2, masks, 2)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(masks.astype(float), masks, 2)


# --- per-class metrics -----------------------------------------------------------------------------------


def test_class_metrics_hand_example():
    assert pixel_accuracy(HAND_CM) == pytest.approx(12 / 16)
    np.testing.assert_allclose(dice_per_class(HAND_CM), [12 / 15, 8 / 11, 4 / 6])
    np.testing.assert_allclose(iou_per_class(HAND_CM), [6 / 9, 4 / 7, 2 / 4])
    np.testing.assert_allclose(precision_per_class(HAND_CM), [6 / 8, 4 / 6, 2 / 2])
    np.testing.assert_allclose(recall_per_class(HAND_CM), [6 / 7, 4 / 5, 2 / 4])


@pytest.mark.parametrize("seed", range(3))
def test_class_metrics_match_sklearn_with_empty_classes(seed):
    truth, pred = random_masks(seed, num_classes=3)
    truth[0, 0] = 3  # class 3: in truth only (never predicted)
    pred[0, 1] = 4  # class 4: predicted only (absent from truth)
    # class 5: absent from both
    cm = confusion_matrix(truth, pred, num_classes=6)
    labels = list(range(6))
    absent_from_both = np.array([False] * 5 + [True])
    references = {
        dice_per_class: skm.f1_score,
        iou_per_class: skm.jaccard_score,
        precision_per_class: skm.precision_score,
        recall_per_class: skm.recall_score,
    }
    for ours, sklearn_score in references.items():
        expected = sklearn_score(truth.ravel(), pred.ravel(), labels=labels, average=None, zero_division=0)
        values = ours(cm)
        assert values.dtype == np.float64 and values.shape == (6,)
        np.testing.assert_allclose(values[~absent_from_both], expected[~absent_from_both])
        assert np.isnan(values[5]), ours.__name__
    assert precision_per_class(cm)[4] == 0.0 and recall_per_class(cm)[4] == 0.0  # predicted, not in truth
    assert dice_per_class(cm)[4] == 0.0 and iou_per_class(cm)[4] == 0.0
    assert precision_per_class(cm)[3] == 0.0 and recall_per_class(cm)[3] == 0.0  # in truth, never predicted


def test_pixel_accuracy_of_empty_matrix_is_nan():
    assert math.isnan(pixel_accuracy(np.zeros((3, 3), np.int64)))


# --- one image -------------------------------------------------------------------------------------------


def test_image_metrics_hand_example():
    values = image_metrics(HAND_TRUTH, HAND_PRED, HAND_NAMES)
    assert list(values) == metric_names(HAND_NAMES)
    assert all(type(v) is float for v in values.values())
    expected = {
        "pixel_accuracy": 12 / 16,
        "dice_background": 12 / 15,
        "dice_cell": 8 / 11,
        "iou_nucleus": 2 / 4,
        "precision_cell": 4 / 6,
        "recall_nucleus": 2 / 4,
        "mean_fg_dice": (8 / 11 + 4 / 6) / 2,
        "mean_fg_iou": (4 / 7 + 2 / 4) / 2,
        # foreground IoU = 7 / 10 = 0.7: thresholds 0.50..0.65 pass, 0.70 does not (strict >)
        "tgs_map": 0.4,
        # cell: one object each side, IoU 4/7 -> match; nucleus: 1 truth object, 2 diagonal 1-pixel
        # predicted objects (4-connectivity), IoU 1/4 each -> tp 1, fp 2, fn 1
        "object_precision": 1 / 3,
        "object_recall": 1 / 2,
        "object_f1": 2 / 5,
        "pixel_error": 3 / 16,
        # truth objects A (cell, 5 px), B (nucleus, 4 px); overlap counts [[4, 1], [1, 1, 1, 1]]:
        # S = 21 - 9, A = 41 - 9, B = (25 + 4 + 1 + 1) - 9 -> 1 - 2 * 12 / 54
        "rand_error": 1 - 24 / 54,
        # boundary distances are 0 or 1 in both directions, more than 5 % of them 1
        "hd95": 1.0,
    }
    for name, value in expected.items():
        assert values[name] == pytest.approx(value), name


def test_image_metrics_all_background():
    empty = np.zeros((8, 8), np.uint8)
    values = image_metrics(empty, empty, ["background", "salt"])
    assert values["pixel_accuracy"] == 1.0 and values["dice_background"] == 1.0
    assert math.isnan(values["dice_salt"]) and math.isnan(values["mean_fg_dice"])
    assert values["tgs_map"] == 1.0 and values["object_f1"] == 1.0 and values["hd95"] == 0.0
    assert values["pixel_error"] == 0.0 and math.isnan(values["rand_error"])


def test_image_metrics_with_truth_instances():
    truth = np.zeros((6, 10), np.uint8)
    truth[1:5, 1:9] = 1
    instances = np.zeros((6, 10), np.int32)
    instances[1:5, 1:5], instances[1:5, 5:9] = 1, 2
    pred = truth.copy()
    pred[:, 5] = 0
    with_instances = image_metrics(truth, pred, ["background", "cell"], truth_instances=instances)
    without = image_metrics(truth, pred, ["background", "cell"])
    assert with_instances["object_f1"] == 1.0 and without["object_f1"] == 0.0
    assert with_instances["rand_error"] < without["rand_error"]


# --- data-set summary ------------------------------------------------------------------------------------


def two_image_table() -> tuple[pd.DataFrame, np.ndarray]:
    names = ["bg", "fg"]
    small_truth = np.array([[1, 1], [0, 0]], np.uint8)
    small_pred = np.array([[1, 0], [0, 0]], np.uint8)
    large = np.ones((4, 4), np.uint8)
    rows = [
        {"id": "small", **image_metrics(small_truth, small_pred, names)},
        {"id": "large", **image_metrics(large, large, names)},
    ]
    pooled_cm = confusion_matrix(small_truth, small_pred, 2) + confusion_matrix(large, large, 2)
    return pd.DataFrame(rows), pooled_cm


def test_summarise_pooled_versus_per_image_hand_example():
    per_image, pooled_cm = two_image_table()
    summary = summarise(per_image, pooled_cm, ["bg", "fg"]).set_index("metric")
    assert list(summary.columns) == ["per_image_mean", "per_image_std", "pooled", "count"]
    assert list(summary.index) == metric_names(["bg", "fg"])
    dice_fg = summary.loc["dice_fg"]
    # small image: tp 1, fn 1 -> 2/3; large image: 1. Pooled: tp 17, fn 1, fp 0 -> 34/35.
    assert dice_fg["per_image_mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert dice_fg["per_image_std"] == pytest.approx(math.sqrt(2) / 6)
    assert dice_fg["pooled"] == pytest.approx(34 / 35)
    assert dice_fg["count"] == 2
    # background: absent from both in the large image -> NaN there, so one image counts.
    dice_bg = summary.loc["dice_bg"]
    assert dice_bg["per_image_mean"] == pytest.approx(4 / 5) and dice_bg["count"] == 1
    assert math.isnan(dice_bg["per_image_std"])
    assert summary.loc["pixel_accuracy", "per_image_mean"] == pytest.approx((3 / 4 + 1) / 2)
    assert summary.loc["pixel_accuracy", "pooled"] == pytest.approx(19 / 20)
    assert summary.loc["mean_fg_iou", "pooled"] == pytest.approx(17 / 18)
    assert math.isnan(summary.loc["hd95", "pooled"]) and math.isnan(summary.loc["object_f1", "pooled"])


def test_summarise_with_no_images_and_missing_columns():
    names = ["bg", "fg"]
    empty = pd.DataFrame(columns=["id", *metric_names(names)])
    summary = summarise(empty, np.zeros((2, 2), np.int64), names)
    assert (summary["count"] == 0).all() and summary["per_image_mean"].isna().all()
    per_image, pooled_cm = two_image_table()
    with pytest.raises(ValueError, match="hd95"):
        summarise(per_image.drop(columns="hd95"), pooled_cm, names)


# --- best and worst images -------------------------------------------------------------------------------


def ranking_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["f", "b", "d", "a", "e", "c"],
            "mean_fg_dice": [0.5, 0.9, np.nan, 0.5, 0.1, 0.9],
            "hd95": [3.0, 1.0, np.nan, 3.0, 9.0, 1.0],
        }
    )


def test_best_and_worst_higher_is_better_with_ties_and_nan():
    best, worst = best_and_worst(ranking_table(), "mean_fg_dice", 3)
    assert best == ["b", "c", "a"]  # 0.9 tie by id, then 0.5 tie: a before f
    assert worst == ["e", "a", "f"]


def test_best_and_worst_lower_is_better_for_distances():
    best, worst = best_and_worst(ranking_table(), "hd95", 2)
    assert best == ["b", "c"] and worst == ["e", "a"]


def test_best_and_worst_with_n_beyond_the_scored_images():
    best, worst = best_and_worst(ranking_table(), "mean_fg_dice", 10)
    assert best == ["b", "c", "a", "f", "e"] and worst == ["e", "a", "f", "b", "c"]  # NaN image "d" left out
    assert best_and_worst(ranking_table(), "mean_fg_dice", 0) == ([], [])


def test_best_and_worst_rejects_bad_arguments():
    with pytest.raises(ValueError, match="no_such_metric"):
        best_and_worst(ranking_table(), "no_such_metric", 2)
    with pytest.raises(ValueError, match="n must be"):
        best_and_worst(ranking_table(), "hd95", -1)
