"""Reading image files of any supported format, and finding them by an ``{id}`` file-name pattern.

Supported: PNG and JPEG (through scikit-image / imageio) and TIFF (through tifffile); 8- and 16-bit data
is returned as stored. A file that cannot be decoded (corrupt, truncated, not an image) raises
:class:`InputError` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from skimage import io as skio

from segcore.io import InputError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
TIFF_SUFFIXES = (".tif", ".tiff")


def read_raw(path: Path) -> np.ndarray:
    """The pixel array of ``path`` as stored: (H, W) or (H, W, C), any dtype the file holds."""
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            return tifffile.imread(path)
        return np.asarray(skio.imread(path))
    except Exception as error:  # decoders raise many types (OSError, ValueError, SyntaxError, ...)
        raise InputError(f"{path}: cannot read image ({type(error).__name__}: {error})") from error


def drop_alpha(raw: np.ndarray) -> np.ndarray:
    """Remove a trailing alpha or singleton channel: (H, W, 4) -> (H, W, 3); (H, W, 2|1) -> (H, W)."""
    if raw.ndim == 3 and raw.shape[2] == 4:
        return raw[..., :3]
    if raw.ndim == 3 and raw.shape[2] in (1, 2):
        return raw[..., 0]
    return raw


def as_image(raw: np.ndarray, path: Path) -> np.ndarray:
    """A canonical image from a raw array: ``uint8``/``uint16`` (H, W) or (H, W, 3), alpha dropped.

    1-bit images (read as ``bool``) become ``uint8`` 0/255. Raises :class:`InputError` naming ``path``
    for another dtype (float, signed) or a shape that is not a single 2-D grey or RGB image.
    """
    image = drop_alpha(raw)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: image dtype {image.dtype} is not supported (expected uint8 or uint16)")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise InputError(f"{path}: expected a single (H, W) or (H, W, 3) image, got shape {image.shape}")
    return image


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a file-name pattern with exactly one ``{id}`` (and optional ``*`` wildcards) to a regex.

    ``{id}`` captures the longest run of characters other than ``/``; ``*`` matches any run without
    ``/``; everything else is literal (case-sensitive). A ``/`` in the pattern matches subfolders.
    config/schema.yaml checks that a configured pattern holds ``{id}`` once (``$defs/file_pattern``); any
    other count raises ValueError here.
    """
    before, after = pattern.split("{id}")

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
    and ``a.tif`` under ``{id}.*``).
    """
    regex = pattern_regex(pattern)
    excludes = [pattern_regex(excluded) for excluded in exclude_patterns]
    if not folder.is_dir():
        raise InputError(f"{where}: folder {folder} does not exist")
    candidates = folder.rglob("*") if "/" in pattern else folder.iterdir()
    found: dict[str, Path] = {}
    for path in sorted(candidates):
        relative = path.relative_to(folder).as_posix()
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
