"""Pictures for people: colour-palette masks, overlays, and training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes and CI
import numpy as np  # noqa: E402

# Background black, then distinct colours (tab10 order) for classes 1..; repeated for many classes.
_TAB10 = np.array(
    [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
        [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    ],
    dtype=np.uint8,
)  # fmt: skip


def palette(num_classes: int) -> np.ndarray:
    """uint8 (num_classes, 3) colours: class 0 black, the others from the tab10 colours."""
    colours = [np.zeros(3, np.uint8)] + [_TAB10[i % len(_TAB10)] for i in range(num_classes - 1)]
    return np.stack(colours)


def colourise(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """uint8 (H, W) class mask -> uint8 (H, W, 3) colour image."""
    return palette(max(num_classes, int(mask.max()) + 1))[mask]


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    """Any (H, W) or (H, W, C) image -> uint8 (H, W, 3), stretched to its own min..max range."""
    array = image.astype(np.float32)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    low, high = float(array.min()), float(array.max())
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    rgb = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.45) -> np.ndarray:
    """uint8 (H, W, 3): the image with foreground classes tinted in their palette colour."""
    rgb = to_display_rgb(image).astype(np.float32)
    colours = colourise(mask, num_classes).astype(np.float32)
    foreground = (mask > 0)[..., None]
    blended = np.where(foreground, (1 - alpha) * rgb + alpha * colours, rgb)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
