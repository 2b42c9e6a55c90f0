"""The operating point of a binary task: a foreground-probability threshold chosen on the validation set.

With two classes, argmax predicts foreground where ``p(foreground) > 0.5``. A network trained on sparse
foreground (or with a class-weighted loss) is often calibrated away from 0.5, so a threshold chosen to
maximise the validation Dice can do better. :class:`ThresholdSearch` scores every candidate of
:data:`THRESHOLDS` (0.01, 0.02, ..., 0.99) at once from per-image histograms, so the search costs one pass
over the validation probabilities and memory independent of the image sizes.

Dice is scored as the validation Dice is: per image ``2 TP / (2 TP + FP + FN)`` of the foreground class,
skipped where truth and prediction are both empty, then averaged over images. Thresholds compare in
float32 (``p >= float32(t)``), the same comparison :func:`foreground_mask` makes at prediction time.
"""

from __future__ import annotations

import math

import numpy as np

# Candidates as float32, the dtype of the probabilities they are compared with.
THRESHOLDS = (np.arange(1, 100) / 100).astype(np.float32)


def foreground_mask(foreground_probability: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 ``(H, W)`` class mask: 1 where ``foreground_probability`` ``(H, W)`` >= ``threshold``, else 0.

    The comparison is made in float32 whatever the input dtype, as :class:`ThresholdSearch` scored it.
    """
    probability = np.asarray(foreground_probability, dtype=np.float32)
    return (probability >= np.float32(threshold)).astype(np.uint8)


class ThresholdSearch:
    """Accumulates per-image foreground Dice at every candidate threshold; :meth:`best` picks one."""

    def __init__(self) -> None:
        self._dice_rows: list[np.ndarray] = []

    def add(self, foreground_probability: np.ndarray, truth: np.ndarray) -> None:
        """Score one image: ``foreground_probability`` float ``(H, W)``, ``truth`` ``(H, W)`` of 0 and 1."""
        probability = np.asarray(foreground_probability, dtype=np.float32).ravel()
        is_foreground = np.asarray(truth).ravel() != 0
        # bins[i] = number of thresholds <= p_i: pixel i is predicted foreground at threshold k iff bins[i] > k.
        bins = np.searchsorted(THRESHOLDS, probability, side="right")
        size = THRESHOLDS.size + 1
        above_fg = _count_above(np.bincount(bins[is_foreground], minlength=size))
        above_bg = _count_above(np.bincount(bins[~is_foreground], minlength=size))
        true_pos, false_pos = above_fg, above_bg
        false_neg = int(is_foreground.sum()) - above_fg
        denominator = 2 * true_pos + false_pos + false_neg
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(denominator > 0, 2 * true_pos / denominator, np.nan)
        self._dice_rows.append(dice)

    def mean_dice(self) -> np.ndarray:
        """float64 ``(len(THRESHOLDS),)``: mean per-image Dice at each threshold (NaN where no image scores)."""
        if not self._dice_rows:
            return np.full(THRESHOLDS.size, np.nan)
        rows = np.stack(self._dice_rows)
        scored = np.sum(~np.isnan(rows), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(scored > 0, np.nansum(rows, axis=0) / scored, np.nan)

    def best(self) -> tuple[float, float]:
        """(threshold rounded to 2 decimals, its mean validation Dice); ties go to the threshold nearest 0.5.

        With no image scored (no images, or no foreground in any truth or prediction) returns (0.5, NaN).
        """
        dice = self.mean_dice()
        if np.all(np.isnan(dice)):
            return 0.5, math.nan
        top = np.nanmax(dice)
        candidates = np.flatnonzero(dice == top)
        chosen = candidates[np.argmin(np.abs(THRESHOLDS[candidates] - 0.5))]
        return round(float(THRESHOLDS[chosen]), 2), float(top)


def _count_above(counts: np.ndarray) -> np.ndarray:
    """int64 ``(len(THRESHOLDS),)``: from bin counts (bin b = pixels with b thresholds <= p), the number of
    pixels with more than k thresholds below them, i.e. predicted foreground at threshold k."""
    return np.cumsum(counts[::-1])[::-1][1:].astype(np.int64)
