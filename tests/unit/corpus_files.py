"""Writers for the input corpus (test_input_corpus.py): image files as tools write them, and damaged copies.

Everything is generated in code into a test's tmp_path; no binary fixture is committed.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tifffile
from PIL import Image

SHAPE = (16, 12)  # (H, W): above segcore's minimum side, small enough to keep the corpus fast


@dataclass
class Setup:
    """What one corpus case wrote and what the import must do with it.

    ``source``: the ``dataset.import`` section (relative to the case's root folder), or None when
    ``action`` (called with the destination folder) replaces the import. ``error``: fragments the
    InputError message must hold; empty for a case that imports, whose canonical images and masks must
    equal ``images`` and ``masks`` pixel by pixel (same dtype). ``absent``: fragments the message must
    not hold (a temporary path).
    """

    source: dict[str, Any] | None
    error: tuple[str, ...] = ()
    images: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    classes: tuple[str, ...] = ("background", "a", "b")
    absent: tuple[str, ...] = ()
    action: Any = None


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def pixels(shape=SHAPE, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """Random values over the whole range of an integer dtype, or in [-1000, 1000) for floats."""
    if np.issubdtype(dtype, np.floating):
        return (rng(seed).random(shape) * 2000 - 1000).astype(dtype)
    return rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def labels(shape=SHAPE, classes: int = 3, seed: int = 1) -> np.ndarray:
    """uint8 class ids 0..classes-1 in blocks (so objects are not single pixels)."""
    blocks = rng(seed).integers(0, classes, (shape[0] // 4 + 1, shape[1] // 4 + 1)).astype(np.uint8)
    return np.kron(blocks, np.ones((4, 4), np.uint8))[: shape[0], : shape[1]]


def save_png(path: Path, array: np.ndarray) -> Path:
    """PNG through Pillow (grey 8/16-bit, RGB(A), grey+alpha, 1-bit from bool)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def save_png16_colour(path: Path, rgb: np.ndarray) -> Path:
    """16-bit RGB(A) PNG through OpenCV (Pillow cannot write one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    order = [2, 1, 0, 3][: rgb.shape[2]]
    assert cv2.imwrite(str(path), rgb[..., order])
    return path


def save_palette_png(path: Path, indices: np.ndarray, colours: list[tuple[int, int, int]] = ()) -> Path:
    """A 'P' mode PNG: ``indices`` (H, W) uint8 into ``colours``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([value for colour in colours for value in colour])
    image.save(path, format="PNG")
    return path


def save_jpeg(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="JPEG", quality=95)
    return path


def save_tiff(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **options)
    return path


def cut(path: Path, keep: int | float) -> Path:
    """Truncate ``path`` to ``keep`` bytes (an int) or to that fraction of its size (a float)."""
    data = path.read_bytes()
    size = keep if isinstance(keep, int) else int(len(data) * keep)
    path.write_bytes(data[:size])
    return path


def flip_byte(path: Path, offset: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def page_data_range(path: Path, page: int) -> tuple[int, int]:
    """(first byte, end byte) of the pixel data of ``page`` of a TIFF."""
    with tifffile.TiffFile(path) as tiff:
        target = tiff.pages[page]
        start = min(target.dataoffsets)
        end = max(offset + count for offset, count in zip(target.dataoffsets, target.databytecounts))
    return start, end


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_source(**changes) -> dict[str, Any]:
    """A folder-format ``dataset.import`` section: images/{id}.png with masks/{id}.png, classes encoding."""
    return {"format": "folder", "images": "images", "masks": "masks", "encoding": "classes", **changes}


def stack_source(**changes) -> dict[str, Any]:
    return {"format": "tiff_stack", "images": "images.tif", "masks": "labels.tif", "encoding": "classes", **changes}
