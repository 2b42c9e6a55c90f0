"""Atomic file output and the image/table formats every stage shares.

Every writer here writes to a temporary name in the destination folder and renames it into place, so a job
killed mid-write never leaves a truncated file under its final name (``os.replace`` is atomic on POSIX
within one file system). The temporary names start with ``.<final name>.tmp-``; the next write of the same
output removes what a killed one left, so a rerun of the rule leaves no debris.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from skimage import io as skio


class InputError(ValueError):
    """Bad user input: a config value or a file that cannot be used; the message names it."""


def _temporary_prefix(final: Path) -> str:
    """The name prefix of the temporary entries :func:`atomic_path` and :func:`atomic_dir` create for ``final``."""
    return f".{final.name}.tmp-"


def _remove_leftovers(final: Path) -> None:
    """Remove temporary entries a killed earlier write of ``final`` left beside it (``kill -9`` runs no
    cleanup). Only one job writes a given output at a time, so entries with this prefix are all stale; a
    rerun of the rule that writes ``final`` therefore leaves no debris."""
    if ".tmp-" in final.parent.name:
        # Inside a folder atomic_dir is building: nothing from an earlier write can be there (the folder is
        # new, and a killed one is removed whole), and scanning it for every file would cost O(files^2).
        return
    prefix = _temporary_prefix(final)
    for entry in final.parent.glob(f"{glob.escape(prefix)}*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _permissions(directory: bool) -> int:
    """The mode a plain ``open``/``mkdir`` would give under the current umask.

    mkstemp/mkdtemp create private (0600/0700) entries; results must stay readable by whoever could read
    a normally written file (e.g. the group on a shared cluster file system).
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place only if the block succeeds.

    ``suffix`` is appended to the temporary name so libraries that pick a format from the extension
    (PNG, TIFF) still see it. On error the temporary file is removed and the final path is untouched.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(final)
    fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(final), suffix=suffix or final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _permissions(directory=False))
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final_dir``; swap it into place if the block succeeds.

    An existing ``final_dir`` is replaced only after the new one is complete, so a failure keeps what was
    there before and leaves no half-written folder.
    """
    final = Path(final_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final), dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, _permissions(directory=True))
        if final.exists():
            old = final.with_name(f"{_temporary_prefix(final)}old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_tiff(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a zlib-compressed TIFF, atomically; byte-identical for identical arrays."""
    # (H, W, 3) is an RGB image whatever its dtype: tifffile guesses so for integers only (and warns for float32).
    photometric = "rgb" if array.ndim == 3 and array.shape[2] == 3 else None
    with atomic_path(path, ".tif") as tmp:
        # No datetime/software tags: identical arrays must give identical bytes on every rerun.
        tifffile.imwrite(
            tmp, array, compression="zlib", metadata=None, software=False, datetime=False, photometric=photometric
        )


def write_pages(
    path: str | os.PathLike,
    data: np.ndarray | Iterable[np.ndarray],
    shape: tuple[int, ...] | None = None,
    dtype: np.dtype | type | None = None,
) -> None:
    """Write grey pages as a zlib-compressed TIFF with their shape recorded, atomically; bytes depend on the data.

    ``data``: an array whose last two axes are each page's (H, W), e.g. (K, H, W) class planes or a (P, H, W)
    stack; or an iterator of (H, W) pages with ``shape`` and ``dtype`` given, written as they come (a long
    stack never sits in memory). Never RGB: :func:`write_tiff` lets tifffile store 3 or 4 planes as colour;
    here they stay planes. The recorded shape brings a one-page stack back as (1, H, W) (:func:`read_tiff`).
    """
    with atomic_path(path, ".tif") as tmp:
        tifffile.imwrite(
            tmp, data, shape=shape, dtype=dtype, photometric="minisblack", compression="zlib", software=False,
            datetime=False,
        )  # fmt: skip


def read_tiff(path: str | os.PathLike) -> np.ndarray:
    """Read a single-page TIFF (or the whole stack of a multi-page one) as a numpy array."""
    try:
        return tifffile.imread(path)
    except Exception as error:  # tifffile raises several types for truncated or non-TIFF files
        raise InputError(f"{path}: cannot read TIFF ({error})") from error


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a ``uint8`` (H, W) or (H, W, 3) array as PNG, atomically."""
    with atomic_path(path, ".png") as tmp:
        skio.imsave(tmp, array, check_contrast=False)


def write_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a tab-separated table without the index, atomically; floats with full precision."""
    with atomic_path(path, ".tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def read_table(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """Read a tab-separated table written by :func:`write_table` (ids kept as strings)."""
    return pd.read_csv(path, sep="\t", dtype={"id": str}, keep_default_na=False, na_values=[""], **kwargs)
