"""Error overlays: where a prediction is wrong, painted on the image itself.

The overlay is foreground-versus-background with one extra colour for wrong classes, so the same three
colours mean the same thing for every dataset (two classes or many):

    false positive   predicted foreground (any class > 0) where the truth is background
    false negative   truth foreground where the prediction is background
    wrong class      truth and prediction both foreground, but different classes (never with two classes)

and the truth's contours (the inner boundary of every truth object, per class and per instance) in white.
The colours are from the Okabe-Ito palette, which stays distinguishable with every common colour-vision
deficiency; the image underneath is greyed and dimmed so that none of its own colours reads as an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segcore.predict.visual import to_display_rgb

# (name, uint8 RGB) of the overlay's marks, in the legend's order.
CONTOUR = ("truth contour", (255, 255, 255))
FALSE_POSITIVE = ("false positive (predicted foreground, truth background)", (230, 159, 0))  # Okabe-Ito orange
FALSE_NEGATIVE = ("false negative (truth foreground, predicted background)", (86, 180, 233))  # sky blue
WRONG_CLASS = ("wrong class (both foreground, classes differ)", (204, 121, 167))  # reddish purple
LEGEND = (CONTOUR, FALSE_POSITIVE, FALSE_NEGATIVE, WRONG_CLASS)
# The image under the marks keeps 60 % of its brightness, so white contours stand out on bright images too.
DIM = 0.6


@dataclass(frozen=True)
class ErrorMasks:
    """bool (H, W) masks of the pixels a prediction gets wrong; disjoint, and together every wrong pixel."""

    false_positive: np.ndarray
    false_negative: np.ndarray
    wrong_class: np.ndarray


def error_masks(truth: np.ndarray, prediction: np.ndarray) -> ErrorMasks:
    """The wrong pixels of integer (H, W) class masks ``truth`` and ``prediction`` (0 = background), by kind
    (see the module docstring). Raises ValueError for masks of different shapes."""
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    truth_fg, predicted_fg = truth > 0, prediction > 0
    return ErrorMasks(
        false_positive=predicted_fg & ~truth_fg,
        false_negative=truth_fg & ~predicted_fg,
        wrong_class=truth_fg & predicted_fg & (truth != prediction),
    )


def truth_contours(truth: np.ndarray, instances: np.ndarray | None = None, thickness: int = 1) -> np.ndarray:
    """bool (H, W): the inner boundary of the truth's objects, ``thickness`` pixels wide.

    A foreground pixel (``truth`` > 0) is on the boundary when a pixel within ``thickness - 1`` pixels
    (Chebyshev distance) plus one step along a row or column holds another class or, with integer (H, W)
    ``instances``, another instance, so touching objects of one class are outlined separately. The image
    edge is no boundary: an object cut by it stays open there.
    """
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    # One integer label per (class, instance) pair: a change of either is a boundary.
    key = truth.astype(np.int64)
    if instances is not None:
        key = key * (int(instances.max()) + 1) + instances.astype(np.int64)
    height, width = key.shape
    # Edge padding repeats the border pixels, so the image edge never differs from its neighbour.
    padded = np.pad(key, thickness, mode="edge")
    boundary = np.zeros(key.shape, bool)
    for dy in range(-thickness, thickness + 1):
        for dx in range(-thickness, thickness + 1):
            # Offsets of a (2t-1)-square grown by one 4-connected step: thickness 1 is the 4-neighbourhood.
            if max(abs(dy), abs(dx)) > thickness or min(abs(dy), abs(dx)) == thickness or (dy, dx) == (0, 0):
                continue
            shifted = padded[thickness + dy : thickness + dy + height, thickness + dx : thickness + dx + width]
            boundary |= shifted != key
    return boundary & (truth > 0)


def error_overlay(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    instances: np.ndarray | None = None,
    thickness: int = 1,
) -> np.ndarray:
    """uint8 (H, W, 3): the image in dimmed grey, the truth's contours (:func:`truth_contours`) in white, and
    the wrong pixels (:func:`error_masks`) in their :data:`LEGEND` colours, fully opaque.

    ``image``: any (H, W) or (H, W, C) image (stretched to its range, channels averaged to grey).
    Errors are painted over the contours: a missed thin object then shows as false negatives, not as a
    white outline hiding them, and a contour that stays white is a boundary the prediction got right.
    """
    rgb = to_display_rgb(image).astype(np.float32)
    grey = np.rint(DIM * rgb.mean(axis=2)).astype(np.uint8)
    out = np.repeat(grey[..., None], 3, axis=2)
    out[truth_contours(truth, instances, thickness)] = CONTOUR[1]
    errors = error_masks(truth, prediction)
    out[errors.false_positive] = FALSE_POSITIVE[1]
    out[errors.false_negative] = FALSE_NEGATIVE[1]
    out[errors.wrong_class] = WRONG_CLASS[1]
    return out


def contour_thickness(shape: tuple[int, ...], shown_px: int = 256) -> int:
    """Contour width in pixels for an image of ``shape`` (H, W, ...) shown ``shown_px`` wide: about one
    screen pixel, since a one-pixel line in a large image vanishes when the browser scales it down."""
    return max(1, round(max(shape[:2]) / shown_px))
