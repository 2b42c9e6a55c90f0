"""Reading image files of any supported format, and finding them by an ``{id}`` file-name pattern.

Supported: PNG and JPEG (:mod:`segcore.data.file_formats`) and TIFF (:mod:`segcore.data.tiff_files`), told
apart by content and checked against the suffix. Every byte of every page is checked: an empty, truncated
or corrupt file, or one of another format, raises :class:`InputError` naming it (and the page).

File names are compared in Unicode NFC form: macOS writes names decomposed (NFD, ``e`` + combining accent),
other systems composed (NFC), and both spellings of one name must give one id.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segcore.data.file_formats import file_format, read_pillow
from segcore.data.tiff_files import read_tiff_checked, single_image
from segcore.io import InputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MIN_SIDE = 8  # px; a smaller image holds no object worth segmenting (and is usually a thumbnail or a mistake)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_raw(path: Path, palette: str = "colour") -> np.ndarray:
    """The pixel array of one image file as stored: (H, W) or (H, W, C), any dtype the file holds.

    A TIFF must hold one image (planar RGB comes back as (H, W, 3)); ``palette`` says what a palette PNG
    gives (:func:`segcore.data.file_formats.read_pillow`: ``"index"`` for masks, ``"colour"`` for images).
    Raises :class:`InputError` naming ``path`` (and the page) for any unreadable, damaged or misnamed file.
    """
    kind = file_format(path)
    if kind == "TIFF":
        return single_image(read_tiff_checked(path), path)
    return read_pillow(path, kind, palette)


def drop_alpha(raw: np.ndarray) -> np.ndarray:
    """Remove a trailing alpha or singleton channel: (H, W, 4) -> (H, W, 3); (H, W, 2|1) -> (H, W)."""
    if raw.ndim == 3 and raw.shape[2] == 4:
        return raw[..., :3]
    if raw.ndim == 3 and raw.shape[2] in (1, 2):
        return raw[..., 0]
    return raw


def _finite_float32(image: np.ndarray, path: Path) -> np.ndarray:
    """``float32`` copy of a float image; InputError counting NaN/infinite or too large values."""
    bad = int(np.count_nonzero(~np.isfinite(image)))
    if bad:
        raise InputError(
            f"{path}: {bad} of {image.size} pixel values are NaN or infinite; every value of a float image "
            "must be a finite number"
        )
    if image.size and float(np.abs(image).max()) > FLOAT32_MAX:
        raise InputError(f"{path}: float values beyond {FLOAT32_MAX:.3g} do not fit the float32 canonical image")
    return image.astype(np.float32)


def as_image(raw: np.ndarray, path: Path | str) -> np.ndarray:
    """A canonical image from a raw array: (H, W) or (H, W, 3), ``uint8``, ``uint16`` or ``float32``.

    Alpha is dropped; 1-bit images (read as ``bool``) become ``uint8`` 0/255; float images (any width)
    must hold finite values only and are stored as ``float32``. Raises :class:`InputError` naming ``path``
    for another dtype (signed, 32-bit integer), NaN or infinite values (counting them), a shape that is not
    a single 2-D grey or RGB image, or a side shorter than :data:`MIN_SIDE` pixels.
    """
    image = drop_alpha(raw)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        image = _finite_float32(image, Path(path))
    elif image.dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"{path}: image dtype {image.dtype} is not supported (expected 8- or 16-bit unsigned integers or floats)"
        )
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputError(f"{path}: expected a single (H, W) grey or (H, W, 3) RGB image, got shape {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"{path}: the image is {image.shape[1]}x{image.shape[0]} pixels (width x height); images must be at "
            f"least {MIN_SIDE} pixels wide and high"
        )
    return image


def nfc(name: str) -> str:
    """``name`` in Unicode NFC form (composed accents), the form ids are compared and stored in."""
    return unicodedata.normalize("NFC", name)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a file-name pattern with exactly one ``{id}`` (and optional ``*`` wildcards) to a regex.

    ``{id}`` captures the longest run of characters other than ``/``; ``*`` matches any run without
    ``/``; everything else is literal (case-sensitive, in NFC form: match NFC-normalised names). A ``/``
    in the pattern matches subfolders.
    config/schema.yaml checks that a configured pattern holds ``{id}`` once (``$defs/file_pattern``); any
    other count raises ValueError here.
    """
    before, after = nfc(pattern).split("{id}")

    def literal_with_wildcards(piece: str) -> str:
        return "[^/]*".join(re.escape(part) for part in piece.split("*"))

    return re.compile(f"{literal_with_wildcards(before)}(?P<id>[^/]+){literal_with_wildcards(after)}")


def natural_key(sample_id: str) -> list:
    """Sort key ordering ``"2"`` before ``"10"``: digit runs compare as numbers."""
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", sample_id)]


def find_files(folder: Path, pattern: str, where: str, exclude_patterns: Sequence[str] = ()) -> dict[str, Path]:
    """Map id -> file for the image files under ``folder`` whose relative path fully matches ``pattern``.

    Hidden files and folders (name starting with ``.``) and files without an image suffix are ignored;
    so are files that fully match one of ``exclude_patterns`` (masks kept in the image folder). The search
    descends into subfolders only when the pattern holds a ``/``. Raises :class:`InputError` naming
    ``where`` if the folder is missing, and naming both files if two files give the same id (``a.png``
    and ``a.tif`` under ``{id}.*``, or one name spelt in NFC and NFD). Ids are in NFC form.
    """
    regex = pattern_regex(pattern)
    excludes = [pattern_regex(excluded) for excluded in exclude_patterns]
    if not folder.is_dir():
        raise InputError(f"{where}: folder {folder} does not exist")
    candidates = folder.rglob("*") if "/" in pattern else folder.iterdir()
    found: dict[str, Path] = {}
    for path in sorted(candidates):
        relative = nfc(path.relative_to(folder).as_posix())
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if any(excluded.fullmatch(relative) for excluded in excludes):
            continue
        match = regex.fullmatch(relative)
        if match is None:
            continue
        sample_id = match["id"]
        if sample_id in found:
            raise InputError(f"{where}: files {found[sample_id]} and {path} both have id {sample_id!r}")
        found[sample_id] = path
    return found
