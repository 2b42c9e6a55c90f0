"""Unlabelled image sets to segment (config ``inference.<name>``): a folder of image files or a TIFF stack.

A set's images are listed (:func:`list_set_images`) and read one at a time (:func:`load_set_image`) with the
import's readers and checks (:mod:`segcore.data.image_files`, :func:`segcore.data.importers.read_stack`), so
a bad file stops with :class:`segcore.io.InputError` naming the file (and page). Nothing needs labels.

Ids and order: a folder set's ids are the ``{id}`` parts of the file names that fit its ``pattern`` (the
file-pattern syntax of ``dataset.import``); a stack's are its sample indices ``"0"``, ``"1"``, ... (as the
import numbers them). A set's order is the natural order of its ids (:func:`segcore.data.image_files.natural_key`:
``"2"`` before ``"10"``): the page order of a stack, the numeric order of files named ``0.png`` .. ``29.png``.
A folder set lists names only (pixels are read when loaded); a stack is read whole when listed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segcore.data.channels import convert_channels, require_channels
from segcore.data.file_formats import file_format
from segcore.data.image_files import as_image, find_files, natural_key, read_raw
from segcore.data.importers import read_stack
from segcore.data.tiff_files import CHANNEL_AXES, read_tiff_checked, stack_samples
from segcore.io import InputError

FORMATS = ("folder", "tiff_stack")


@dataclass(frozen=True)
class ImageSet:
    """One ``inference.<name>`` section: ``images`` (a folder or a TIFF stack), ``format`` (:data:`FORMATS`),
    ``pattern`` (folder sets: file names with one ``{id}``), ``stack_axis`` (stacks: the hyperstack axis of
    the samples, as ``dataset.import.stack_axis``), ``stacked`` (the set's predictions are also merged into
    page stacks: always for a stack, ``stack: true`` for a folder)."""

    name: str
    images: Path
    format: str
    pattern: str | None = None
    stack_axis: str | None = None
    stacked: bool = False

    @property
    def key(self) -> str:
        """The set's config key, for messages."""
        return f"inference.{self.name}"

    @classmethod
    def from_config(cls, name: str, section: Mapping[str, Any], root: str | os.PathLike = ".") -> ImageSet:
        """The set from its config section with the schema's defaults filled in; a relative ``images`` path
        starts at ``root`` (the working directory the rules run in)."""
        images = Path(root) / section["images"]
        if section["format"] == "folder":
            return cls(name, images, "folder", pattern=section["pattern"], stacked=bool(section["stack"]))
        if section["format"] == "tiff_stack":
            return cls(name, images, "tiff_stack", stack_axis=section["stack_axis"], stacked=True)
        raise InputError(f"config key inference.{name}.format: {section['format']!r} is not one of {FORMATS}")


@dataclass(frozen=True)
class SetImage:
    """One image of a set: its ``id``, its ``name`` in messages (the file, or ``<stack> page <n>``) and
    ``read``, which returns its pixels as stored (:func:`segcore.data.image_files.read_raw`)."""

    id: str
    name: str
    read: Callable[[], np.ndarray]


def list_set_images(image_set: ImageSet) -> list[SetImage]:
    """The set's images in set order (module docstring).

    Raises :class:`InputError` naming the config key for a missing folder, a folder without matching files
    or two files with one id, and naming the file (and page) for a stack that cannot be read.
    """
    where = f"config key {image_set.key}.images"
    if image_set.format == "tiff_stack":
        if not image_set.images.is_file():
            raise InputError(f"{where}: {image_set.images} is not a file (format tiff_stack takes one TIFF stack)")
        samples, word = read_stack(image_set.images, image_set.stack_axis, f"{image_set.key}.stack_axis")
        return [
            SetImage(str(index), f"{image_set.images} {word} {index}", lambda sample=sample: sample)
            for index, sample in enumerate(samples)
        ]
    found = find_files(image_set.images, image_set.pattern, where)
    if not found:
        raise InputError(f"{where}: no image files in {image_set.images} match pattern {image_set.pattern!r}")
    return [
        SetImage(sample_id, str(found[sample_id]), lambda path=found[sample_id]: read_raw(path))
        for sample_id in sorted(found, key=natural_key)
    ]


def load_set_image(item: SetImage, model_channels: int, convert_to: int | None = None) -> np.ndarray:
    """The image of ``item`` as the pipeline stores images (:func:`segcore.data.image_files.as_image`: uint8,
    uint16 or float32, (H, W) or (H, W, 3)), converted to ``convert_to`` channels when set (as the import's
    ``dataset.import.channels`` converted the training images).

    Raises :class:`InputError` naming the file (and page) for an unreadable or damaged file, an unsupported
    image, or a channel count other than ``model_channels``.
    """
    image = as_image(item.read(), item.name)
    if convert_to is not None:
        image = convert_channels(image, convert_to)
    require_channels(image, model_channels, item.name)
    return image


def file_images(path: Path) -> list[np.ndarray]:
    """The images of one file as stored: one for a PNG or JPEG; for a TIFF, one per entry of its axes other
    than height, width and colour (every page of a plain stack; a hyperstack's time points and depths in the
    file's axis order, :func:`segcore.data.tiff_files.stack_samples`). Raises :class:`InputError` naming the
    file (and page) for an unreadable or damaged file."""
    if file_format(path) != "TIFF":
        return [read_raw(path)]
    data = read_tiff_checked(path)
    sample_axes = "".join(
        axis for axis, length in zip(data.axes, data.array.shape) if length > 1 and axis not in "YX" + CHANNEL_AXES
    )
    samples, _ = stack_samples(data, sample_axes or None, path)
    return samples
