"""TIFF files read with every page checked, and their axes turned into images or samples.

tifffile reads what it can of a damaged file: a broken page chain is *logged* ("invalid page offset") and
fewer pages are returned, and an ImageJ stack whose metadata no longer fits falls back to its first page.
:func:`read_tiff_checked` therefore listens to tifffile's log while reading, checks that every page's pixel
data lies inside the file, and decodes every page itself, so that any of these stops with the file, the
page and the cause instead of yielding a shorter stack.

Axes are tifffile's letters (``series[0].axes``): Y height, X width, S samples of a pixel (RGB, interleaved
(H, W, 3) or planar (3, H, W)), C channel, Z depth, T time, I/Q a plain sequence of pages, and others.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from segcore.io import InputError

CHANNEL_AXES = "SC"  # axes whose entries are the channels of one pixel
PLANE_AXES = "YX"
AXIS_NAMES = {"T": "time", "Z": "depth", "C": "channel", "S": "colour sample", "I": "image", "Q": "image"}
PAGE_AXES = ("", "I", "Q")  # a stack whose samples are its pages


@dataclass(frozen=True)
class TiffData:
    """The first image series of a TIFF: ``array`` with one axis per letter of ``axes``."""

    array: np.ndarray
    axes: str


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """The messages tifffile logs at ERROR level (damage it works around) while the block runs."""
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _strip_object_name(message: str) -> str:
    """tifffile prefixes messages with the object's repr (``<tifffile.TiffPages @8> ...``); drop it."""
    return message.split("> ", 1)[1] if message.startswith("<") and "> " in message else message


def _header_ends(tiff: tifffile.TiffFile, page: tifffile.TiffPage) -> list[tuple[str, int]]:
    """Where the page's header (IFD) and each tag value stored outside it end, read from the raw entries.

    tifffile shares tag values between like pages and reads a cut-off value short without complaint, so
    the entries are decoded here: tag code, type, count, then the value itself or its offset.
    """
    layout, order, handle = tiff.tiff, tiff.byteorder, tiff.filehandle
    handle.seek(page.offset)
    (count,) = struct.unpack(layout.tagnoformat, handle.read(layout.tagnosize))  # formats hold the byte order
    entries = handle.read(count * layout.tagsize)
    ends = [("its header", page.offset + layout.tagnosize + count * layout.tagsize + layout.offsetsize)]
    inline = layout.tagsize - 4 - struct.calcsize(layout.tagformat2[:-2])  # bytes of the value field
    for start in range(0, len(entries) - layout.tagsize + 1, layout.tagsize):
        code, kind = struct.unpack(layout.tagformat1, entries[start : start + 4])
        values, field = struct.unpack(layout.tagformat2, entries[start + 4 : start + layout.tagsize])
        item = tifffile.TIFF.DATA_FORMATS.get(kind)
        nbytes = values * struct.calcsize(order + item) if item else 0
        if nbytes > inline:
            (offset,) = struct.unpack(layout.offsetformat, field[: layout.offsetsize])
            ends.append((f"the value of tag {code}", offset + nbytes))
    return ends


def _check_page_extent(tiff: tifffile.TiffFile, page: tifffile.TiffPage, path: Path) -> None:
    """InputError naming the page if its header, a tag value or its pixel data reach beyond the file's end.

    tifffile reads a cut-off tag value or strip short without complaint, so the bounds are checked here.
    """
    size = tiff.filehandle.size
    ends = _header_ends(tiff, page)
    ends += [("its pixel data", offset + count) for offset, count in zip(page.dataoffsets, page.databytecounts)]
    for what, end in ends:
        if end > size:
            raise InputError(
                f"{path}: page {page.index}: {what} ends at byte {end} but the file has only {size} bytes "
                "(the file is truncated)"
            )


def _read_page(page: tifffile.TiffPage, path: Path, logged: list[str]) -> np.ndarray:
    """The decoded pixels of ``page``; InputError naming the page if its data does not decode."""
    try:
        array = page.asarray()
    except Exception as error:  # codecs raise many types for damaged data
        raise InputError(f"{path}: page {page.index} is corrupt ({type(error).__name__}: {error})") from error
    if logged:
        raise InputError(f"{path}: page {page.index} is corrupt ({_strip_object_name(logged[0])})")
    return array


def _series_array(tiff: tifffile.TiffFile, path: Path, logged: list[str]) -> TiffData:
    series = tiff.series[0]
    if logged:  # the series fell back to fewer pages than the metadata describes
        raise InputError(f"{path}: the file is truncated or corrupt ({_strip_object_name(logged[0])})")
    others = [other for other in tiff.series[1:] if not other.keyframe.is_reduced]  # thumbnails are fine
    if others:
        shapes = ", ".join(str(other.shape) for other in [series, *others])
        raise InputError(f"{path}: holds {len(others) + 1} image series of different shapes ({shapes}); expected one")
    pages = list(series.pages)
    present = [page for page in pages if page is not None]
    described = math.prod(series.shape) // math.prod(series.keyframe.shape)
    if len(present) != described:
        raise InputError(
            f"{path}: the file is truncated or corrupt: its metadata describes {described} pages of shape "
            f"{series.keyframe.shape} but {len(present)} are present"
        )
    arrays = [_read_page(page, path, logged) for page in present]
    return TiffData(np.stack(arrays).reshape(series.shape), series.axes)


def read_tiff_checked(path: Path) -> TiffData:
    """The first image series of the TIFF at ``path``, every page read and checked.

    Raises :class:`InputError` naming ``path`` (and the page, counted from 0) if the file is not a readable
    TIFF, its page chain is broken, a page's data lies beyond the end of the file or does not decode, or
    it holds several image series of different shapes (reduced-resolution thumbnails are ignored).
    """
    with _tifffile_errors() as logged:
        try:
            with tifffile.TiffFile(path) as tiff:
                pages = list(tiff.pages)  # every page header: a broken chain is logged here
                for page in pages:  # a page cut off names itself, before the broken chain after it
                    _check_page_extent(tiff, page, path)
                if logged:
                    raise InputError(
                        f"{path}: page {len(pages)} cannot be read, the file is truncated or corrupt "
                        f"({_strip_object_name(logged[0])}); {len(pages)} page(s) before it are intact"
                    )
                return _series_array(tiff, path, logged)
        except InputError:
            raise
        except Exception as error:  # tifffile raises many types for damaged headers
            raise InputError(
                f"{path}: the TIFF file is truncated or corrupt ({type(error).__name__}: {error})"
            ) from error


def describe_axes(axes: str, shape: tuple[int, ...]) -> str:
    """``"T (time) 5, Z (depth) 10, Y 64, X 64"``: each axis letter, its meaning where known, and length."""
    return ", ".join(
        f"{axis} ({AXIS_NAMES[axis]}) {length}" if axis in AXIS_NAMES else f"{axis} {length}"
        for axis, length in zip(axes, shape)
    )


def _squeezed(data: TiffData) -> tuple[np.ndarray, str]:
    """The array without its length-1 axes (Y and X always kept), and their letters."""
    keep = [index for index, axis in enumerate(data.axes) if data.array.shape[index] > 1 or axis in PLANE_AXES]
    array = data.array.reshape([data.array.shape[index] for index in keep])
    return array, "".join(data.axes[index] for index in keep)


def _as_plane(array: np.ndarray, axes: str, path: Path) -> np.ndarray:
    """(H, W) or (H, W, C) from an array holding only Y, X and at most one channel axis."""
    channels = [axis for axis in axes if axis in CHANNEL_AXES]
    if not set(PLANE_AXES) <= set(axes) or len(channels) > 1:
        found = describe_axes(axes, array.shape)
        raise InputError(f"{path}: cannot tell height, width and colour apart (axes {found})")
    order = [axes.index("Y"), axes.index("X")] + [axes.index(axis) for axis in channels]
    return np.ascontiguousarray(np.transpose(array, order))


def single_image(data: TiffData, path: Path) -> np.ndarray:
    """The one (H, W) or (H, W, C) image of a TIFF (planar RGB moved to the last axis).

    Raises :class:`InputError` naming ``path`` and its axes if it holds several images (pages, Z, T, ...).
    """
    array, axes = _squeezed(data)
    extra = [axis for axis in axes if axis not in PLANE_AXES + CHANNEL_AXES]
    if extra:
        count = math.prod(array.shape[axes.index(axis)] for axis in extra)
        raise InputError(
            f"{path}: holds {count} images (axes {describe_axes(axes, array.shape)}); the folder format reads one "
            "image per file (use format tiff_stack for a stack)"
        )
    return _as_plane(array, axes, path)


def _sample_axes(axes: str, shape: tuple[int, ...], stack_axis: str | None, path: Path, key: str) -> str:
    """The axis letters whose entries are the samples (module docstring of importers: ``stack_axis``)."""
    candidates = "".join(axis for axis in axes if axis not in PLANE_AXES + CHANNEL_AXES)
    found = describe_axes(axes, shape)
    if stack_axis and all(axis in axes for axis in stack_axis):
        leftover = [axis for axis in candidates if axis not in stack_axis]
        if leftover:
            raise InputError(
                f"{path}: axes {', '.join(leftover)} also have more than one entry (axes {found}); list every "
                f"axis holding samples in config key {key} (e.g. {stack_axis + ''.join(leftover)!r})"
            )
        return stack_axis
    if len(candidates) > 1:
        wanted = f"is {stack_axis!r} but the file has no such axis" if stack_axis else "is not set"
        raise InputError(
            f"{path}: the samples could lie along several axes ({found}); config key {key} {wanted}: set it to "
            f"the letter(s) of the axes holding the samples, e.g. {candidates[0]!r}"
        )
    return candidates  # one axis (or none: a single image) holds the samples


def stack_samples(
    data: TiffData, stack_axis: str | None, path: Path, key: str = "dataset.import.stack_axis"
) -> tuple[list[np.ndarray], str]:
    """The samples of a stack, each (H, W) or (H, W, C), and the word for one of them in messages.

    Samples lie along the one axis other than Y, X and the channel axes (S, C) with more than one entry,
    or along the axes ``stack_axis`` lists (tifffile letters, e.g. ``"Z"``; ``"TZ"`` flattens time-major).
    A file lacking those axes but with at most one such axis (a label stack saved without hyperstack
    metadata) uses its own. The word is ``"page"`` when each sample is a page, else ``"sample"``.
    Raises :class:`InputError` naming ``path``, its axes and ``key`` when the choice is ambiguous.
    """
    array, axes = _squeezed(data)
    chosen = _sample_axes(axes, array.shape, stack_axis, path, key)
    order = [axes.index(axis) for axis in chosen] + [index for index, axis in enumerate(axes) if axis not in chosen]
    moved = np.transpose(array, order)
    count = math.prod(moved.shape[: len(chosen)])
    flat = moved.reshape((count, *moved.shape[len(chosen) :]))
    rest = "".join(axis for axis in axes if axis not in chosen)
    word = "page" if chosen in PAGE_AXES and "C" not in axes else "sample"  # ImageJ stores channels as pages
    return [_as_plane(sample, rest, path) for sample in flat], word
