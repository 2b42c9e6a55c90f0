"""Tests for the report's pictures: error overlays (segcore.report.overlays), the per-class and confusion
charts (segcore.report.figures), durations (segcore.report.durations) and the legend (segcore.report.html).

References: hand-built 4x4 and 5x5 masks with their error pixels and colours written out by hand, numpy's
own row division for the confusion normalisation, and h:mm:ss worked out by hand.
"""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from segcore.evaluate.metrics import metric_names
from segcore.report.durations import format_duration
from segcore.report.figures import class_score_chart, class_scores, confusion_chart, row_normalise
from segcore.report.html import legend_html
from segcore.report.overlays import (
    CONTOUR,
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    LEGEND,
    WRONG_CLASS,
    contour_thickness,
    error_masks,
    error_overlay,
    truth_contours,
)

# Three classes: background 0, classes 1 and 2.
TRUTH = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 0], [0, 0, 0, 0]], np.uint8)
PREDICTION = np.array([[0, 1, 1, 0], [0, 0, 1, 1], [0, 1, 2, 0], [2, 0, 0, 0]], np.uint8)
WHITE, ORANGE, SKY_BLUE, PURPLE, BLACK = (255, 255, 255), (230, 159, 0), (86, 180, 233), (204, 121, 167), (0, 0, 0)


def pixels(*positions: tuple[int, int]) -> np.ndarray:
    """bool (4, 4) with True at ``positions``."""
    mask = np.zeros((4, 4), bool)
    for row, column in positions:
        mask[row, column] = True
    return mask


# --- error masks and contours ----------------------------------------------------------------------------


def test_error_masks_of_a_4x4_example():
    errors = error_masks(TRUTH, PREDICTION)
    np.testing.assert_array_equal(errors.false_positive, pixels((0, 1), (3, 0)))  # predicted on background
    np.testing.assert_array_equal(errors.false_negative, pixels((0, 3)))  # class 1 predicted as background
    np.testing.assert_array_equal(errors.wrong_class, pixels((2, 1)))  # class 2 predicted as class 1
    wrong = errors.false_positive | errors.false_negative | errors.wrong_class
    np.testing.assert_array_equal(wrong, TRUTH != PREDICTION)  # disjoint kinds covering every wrong pixel
    assert int(errors.false_positive.sum() + errors.false_negative.sum() + errors.wrong_class.sum()) == 4
    with pytest.raises(ValueError, match="shape"):
        error_masks(TRUTH, PREDICTION[:3])


def test_two_classes_have_no_wrong_class_pixels():
    truth = np.array([[0, 1], [1, 1]], np.uint8)
    errors = error_masks(truth, 1 - truth)
    assert not errors.wrong_class.any() and errors.false_positive.sum() == 1 and errors.false_negative.sum() == 3


def test_contours_are_the_inner_boundary_of_each_object():
    square = np.zeros((5, 5), np.uint8)
    square[1:4, 1:4] = 1
    ring = square.astype(bool)
    ring[2, 2] = False  # the centre's four neighbours are all inside
    np.testing.assert_array_equal(truth_contours(square), ring)
    np.testing.assert_array_equal(truth_contours(square, thickness=2), square.astype(bool))  # two pixels deep
    with pytest.raises(ValueError, match="thickness"):
        truth_contours(square, thickness=0)


def test_touching_instances_are_outlined_apart_and_the_image_edge_is_no_boundary():
    row = np.ones((1, 4), np.uint8)
    assert not truth_contours(row).any()  # one object filling the image: nothing to outline
    np.testing.assert_array_equal(truth_contours(row, np.array([[1, 1, 2, 2]])), [[False, True, True, False]])
    classes = np.array([[1, 1, 2, 2]], np.uint8)  # another class is a boundary without instances
    np.testing.assert_array_equal(truth_contours(classes), [[False, True, True, False]])


def test_contour_thickness_is_about_one_screen_pixel():
    assert [contour_thickness(shape) for shape in [(64, 64), (256, 300), (512, 512), (1024, 700, 3)]] == [1, 1, 2, 4]


# --- error overlay ---------------------------------------------------------------------------------------


def test_error_overlay_colours_at_known_pixels():
    image = np.zeros((4, 4), np.uint8)
    image[3, 3] = 255  # stretched to 255, dimmed to 60 %: grey 153
    out = error_overlay(image, TRUTH, PREDICTION)
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    expected = {
        (0, 1): ORANGE, (3, 0): ORANGE,  # false positives
        (0, 3): SKY_BLUE,  # false negative, painted over its contour
        (2, 1): PURPLE,  # wrong class
        (0, 2): WHITE, (1, 2): WHITE, (2, 2): WHITE,  # right, on the truth's boundary
        (0, 0): BLACK, (3, 2): BLACK,  # right background of a black image
        (3, 3): (153, 153, 153),
    }  # fmt: skip
    for (row, column), colour in expected.items():
        assert tuple(out[row, column]) == colour, (row, column)
    assert (CONTOUR[1], FALSE_POSITIVE[1], FALSE_NEGATIVE[1], WRONG_CLASS[1]) == (WHITE, ORANGE, SKY_BLUE, PURPLE)


def test_error_overlay_greys_a_colour_image():
    image = np.zeros((4, 4, 3), np.uint8)
    image[3, 3] = [255, 0, 0]  # channel mean 85 after stretching to 0..255, dimmed: 51
    out = error_overlay(image, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    assert tuple(out[3, 3]) == (51, 51, 51) and not out[:3].any()


def test_legend_names_every_colour():
    legend = legend_html()
    for name, (red, green, blue) in LEGEND:
        assert f"background:rgb({red}, {green}, {blue})" in legend and name in legend


# --- charts ----------------------------------------------------------------------------------------------


def test_row_normalise_matches_numpy_and_leaves_absent_classes_nan():
    cm = np.array([[50, 3, 0], [0, 0, 0], [7, 1, 12]], np.int64)
    fractions = row_normalise(cm)
    assert fractions.dtype == np.float64
    for row in (0, 2):
        np.testing.assert_array_equal(fractions[row], cm[row] / cm[row].sum())
    assert np.isnan(fractions[1]).all()  # class 1 absent from the truth
    rng = np.random.default_rng(0)
    full = rng.integers(1, 1000, size=(4, 4))
    np.testing.assert_allclose(row_normalise(full), full / full.sum(axis=1, keepdims=True), rtol=0, atol=0)
    np.testing.assert_allclose(row_normalise(full).sum(axis=1), 1.0)


def summary_table(class_names: list[str]) -> pd.DataFrame:
    """Summary indexed by metric: per-image mean 0.01 * row, sd 0.001 * row, pooled 1 - mean; NaN pooled
    Dice of the last class."""
    names = metric_names(class_names)
    rows = np.arange(len(names))
    table = pd.DataFrame(
        {"per_image_mean": 0.01 * rows, "per_image_std": 0.001 * rows, "pooled": 1 - 0.01 * rows, "count": 2},
        index=pd.Index(names, name="metric"),
    )
    table.loc[f"dice_{class_names[-1]}", "pooled"] = np.nan
    return table


def test_class_scores_read_dice_and_iou_per_class():
    classes = ["bg", "a", "b"]
    summary = summary_table(classes)
    scores = class_scores(summary, classes)
    assert list(scores["kind"]) == ["dice"] * 3 + ["iou"] * 3 and list(scores["class"]) == classes * 2
    iou_a = scores.set_index(["kind", "class"]).loc[("iou", "a")]
    assert iou_a["per_image_mean"] == summary.loc["iou_a", "per_image_mean"]
    assert iou_a["per_image_std"] == summary.loc["iou_a", "per_image_std"]
    assert iou_a["pooled"] == summary.loc["iou_a", "pooled"]
    assert np.isnan(scores.set_index(["kind", "class"]).loc[("dice", "b"), "pooled"])


def decoded(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return iio.imread(png, extension=".png")[..., :3]


def test_class_score_chart_is_a_reproducible_picture():
    classes = ["bg", "a", "b"]
    png = class_score_chart(summary_table(classes), classes)
    picture = decoded(png)
    assert picture.shape[1] > picture.shape[0] > 200 and picture.std() > 10  # drawn, not blank
    # Okabe-Ito blue and orange bars are both there.
    assert (picture == [0, 114, 178]).all(axis=2).any() and (picture == [230, 159, 0]).all(axis=2).any()
    assert class_score_chart(summary_table(classes), classes) == png


def test_confusion_chart_draws_every_class_including_an_absent_one():
    cm = np.array([[50, 3, 0], [0, 0, 0], [7, 1, 12]], np.int64)
    png = confusion_chart(cm, ["bg", "a", "b"])
    picture = decoded(png)
    assert picture.std() > 10
    assert (picture == [221, 221, 221]).all(axis=2).any()  # the grey of the absent class's row
    assert confusion_chart(cm, ["bg", "a", "b"]) == png


# --- durations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "decimals", "text"),
    [
        (0, 0, "0:00:00"),
        (59, 0, "0:00:59"),
        (3600, 0, "1:00:00"),
        (3725.4, 0, "1:02:05"),
        (0.5, 0, "0:00:01"),  # half up
        (59.96, 1, "0:01:00.0"),  # rounding carries into the minutes
        (12.34, 1, "0:00:12.3"),
        (360000, 0, "100:00:00"),
        (None, 0, "-"),
        (float("nan"), 1, "-"),
    ],
)
def test_format_duration(seconds, decimals, text):
    assert format_duration(seconds, decimals) == text


def test_a_negative_duration_is_refused():
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)
