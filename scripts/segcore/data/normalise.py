"""Image intensities as the network receives them."""

from __future__ import annotations

import numpy as np


def image_to_float(image: np.ndarray) -> np.ndarray:
    """uint8/uint16 image (H, W) or (H, W, C) -> float32 (C, H, W) scaled to [0, 1] by the dtype's maximum.

    Float images are passed through unscaled (already normalised by whoever wrote them).
    """
    array = image[..., None] if image.ndim == 2 else image
    array = np.moveaxis(array, -1, 0)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    return array.astype(np.float32)
