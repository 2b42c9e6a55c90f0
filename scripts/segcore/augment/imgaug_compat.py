"""imgaug 0.4.0 under NumPy 2: the two names it needs that NumPy 2 removed, provided before it is imported.

imgaug 0.4.0 (its last release) reads ``np.sctypes`` at import time (``imgaug.dtypes``) and ``np.complex``
in a few augmenters. NumPy 2 removed both (NEP 52). They are restored here with their NumPy 1.x values,
only when missing, so nothing changes under NumPy 1.x. With them, ``iaa.Fliplr``/``iaa.Flipud`` give exactly
``a[:, ::-1]``/``a[::-1]`` (tested in tests/unit/test_augment.py). Import imgaug only through this module.
"""

from __future__ import annotations

import numpy as np

if not hasattr(np, "sctypes"):
    np.sctypes = {
        "int": [np.int8, np.int16, np.int32, np.int64],
        "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
        "float": [np.float16, np.float32, np.float64, np.longdouble],
        "complex": [np.complex64, np.complex128, np.clongdouble],
        "others": [bool, object, bytes, str, np.void],
    }
if "complex" not in np.__dict__:
    np.complex = complex  # NumPy 1.x's deprecated alias of the builtin

import imgaug.augmenters as iaa  # noqa: E402

__all__ = ["iaa"]
