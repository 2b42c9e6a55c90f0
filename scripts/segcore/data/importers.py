"""Importers from the layouts real datasets ship in to :class:`segcore.data.canonical.Sample` objects.

Two layouts are supported:

- a folder of images and a folder of masks (optionally a folder of instance images), paired by the
  ``{id}`` part of their file names (:func:`segcore.data.pairing.pair_folder_files`,
  :func:`iter_folder_samples`);
- a multi-page image TIFF and a label TIFF with one sample per page, as ISBI 2012 ships
  ``train-volume.tif`` / ``train-labels.tif``, or ImageJ/OME hyperstacks whose samples lie along the axis
  ``dataset.import.stack_axis`` names (:func:`import_tiff_stacks`, :func:`segcore.data.tiff_files.stack_samples`).

Pairing problems (an image without mask or the reverse, duplicate ids, an empty folder, stacks with
different sample counts) are all found before any pixel is read. Every file is read whole and checked
(:mod:`segcore.data.image_files`); every problem raises :class:`InputError` naming the file(s) (and page).
Dataset-wide rules: one channel count for all images (:mod:`segcore.data.channels`), images at least
:data:`segcore.data.image_files.MIN_SIDE` pixels high and wide. :func:`import_dataset`, the config-driven
entry point, writes through :func:`segcore.data.canonical.write_canonical`, so a failed import leaves no
canonical folder behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.data.canonical import Sample, write_canonical
from segcore.data.channels import ChannelRule
from segcore.data.file_formats import file_format
from segcore.data.image_files import as_image, drop_alpha, read_raw
from segcore.data.mask_encodings import (
    MaskEncoding,
    encode_mask,
    instances_from_classes,
    instances_from_image,
    parse_encoding,
)
from segcore.data.pairing import SampleFiles, pair_folder_files
from segcore.data.tiff_files import read_tiff_checked, stack_samples
from segcore.io import InputError

__all__ = ["SampleFiles", "build_sample", "import_dataset", "import_tiff_stacks", "pair_folder_files"]


def mask_palette(encoding: MaskEncoding) -> str:
    """What a palette PNG mask means: its colours for ``colour_table``, else its indices (the values)."""
    return "colour" if encoding.type == "colour_table" else "index"


def _check_same_size(image: np.ndarray, other: np.ndarray, image_name: str, other_name: str) -> None:
    if other.shape[:2] != image.shape[:2]:
        raise InputError(
            f"{other_name} is {other.shape[1]}x{other.shape[0]} but {image_name} is "
            f"{image.shape[1]}x{image.shape[0]} (width x height)"
        )


def build_sample(
    sample_id: str,
    raw_image: np.ndarray,
    raw_mask: np.ndarray,
    raw_instances: np.ndarray | None,
    encoding: MaskEncoding,
    names: Sequence[str],
    connectivity: int,
    channels: ChannelRule | None = None,
) -> Sample:
    """Check and convert one sample's raw arrays; ``names`` (image, mask[, instances]) label messages.

    Instances come from ``raw_instances`` when given, otherwise from the connected components of each
    class of the encoded mask (see :func:`segcore.data.mask_encodings.instances_from_classes`).
    ``channels`` (shared by the samples of one import) keeps their channel count one.
    """
    image_name, mask_name = names[:2]
    image = as_image(raw_image, image_name)
    if channels is not None:
        image = channels.apply(image, image_name)
    raw_mask = drop_alpha(raw_mask)
    _check_same_size(image, raw_mask, image_name, mask_name)
    mask = encode_mask(raw_mask, encoding, mask_name)
    if raw_instances is None:
        instances = instances_from_classes(mask, mask_name, connectivity)
    else:
        raw_instances = drop_alpha(raw_instances)
        _check_same_size(image, raw_instances, image_name, names[2])
        instances = instances_from_image(raw_instances, names[2])
    return Sample(id=sample_id, image=image, mask=mask, instances=instances)


def load_folder_sample(
    files: SampleFiles, encoding: MaskEncoding, connectivity: int, channels: ChannelRule | None = None
) -> Sample:
    """Read and convert the files of one folder sample (see :func:`build_sample`)."""
    raw_instances = read_raw(files.instances, "index") if files.instances is not None else None
    names = (str(files.image), str(files.mask), str(files.instances))
    raw_image, raw_mask = read_raw(files.image), read_raw(files.mask, mask_palette(encoding))
    return build_sample(files.id, raw_image, raw_mask, raw_instances, encoding, names, connectivity, channels)


def iter_folder_samples(
    pairs: list[SampleFiles], encoding: MaskEncoding, connectivity: int, channels: ChannelRule | None = None
) -> Iterator[Sample]:
    """Load the samples of ``pairs`` one at a time, so a large dataset never sits in memory whole.

    Images are PNG, TIFF or JPEG, grey or RGB(A) (alpha dropped), 8- or 16-bit or float (as float32) kept
    as stored; masks are converted with ``encoding`` (a palette PNG mask's indices are its values, except
    for ``colour_table``). Raises :class:`InputError` naming the file(s) for an unreadable, truncated or
    misnamed file, an image/mask size mismatch, an undeclared mask value or colour, or a channel count
    unlike the others.
    """
    for files in pairs:
        yield load_folder_sample(files, encoding, connectivity, channels)


def read_stack(
    path: Path, stack_axis: str | None, key: str = "dataset.import.stack_axis"
) -> tuple[list[np.ndarray], str]:
    """The samples of the TIFF stack ``path`` and the word for one in messages (``"page"``/``"sample"``);
    ``key``: the config key of ``stack_axis``, named when the samples' axis is ambiguous."""
    if file_format(path) != "TIFF":
        raise InputError(f"{path}: format tiff_stack needs TIFF files, this is a {file_format(path)} file")
    return stack_samples(read_tiff_checked(path), stack_axis, path, key)


def import_tiff_stacks(
    image_stack_path: Path,
    label_stack_path: Path,
    *,
    encoding: MaskEncoding,
    instance_stack_path: Path | None = None,
    connectivity: int,
    stack_axis: str | None = None,
    channels: ChannelRule | None = None,
) -> list[Sample]:
    """One sample per page of an image TIFF stack and its label stack (ISBI 2012 layout).

    Sample ids are the page (or sample) indices as plain decimal strings, ``"0"``, ``"1"``, ..., ``"29"``
    (not zero-padded), so they equal the ids of the same slices exported as ``N.png`` files. Hyperstacks
    give their samples along ``stack_axis`` (:func:`segcore.data.tiff_files.stack_samples`). Raises
    :class:`InputError` naming both files and both counts if the sample counts differ, and naming the file
    and page for an unreadable or damaged file or a page whose size differs from its image page.
    """
    stacks = [image_stack_path, label_stack_path] + ([instance_stack_path] if instance_stack_path else [])
    read = [read_stack(Path(path), stack_axis) for path in stacks]
    counts = [len(samples) for samples, _ in read]
    if len(set(counts)) != 1:
        listing = ", ".join(f"{path} has {count} {word}s" for path, count, (_, word) in zip(stacks, counts, read))
        raise InputError(f"TIFF stacks differ in page count: {listing}")
    samples = []
    for index in range(counts[0]):
        names = [f"{path} {word} {index}" for path, (_, word) in zip(stacks, read)]
        raw_image, raw_mask, *raw_instances = (stack[index] for stack, _ in read)
        instance_page = raw_instances[0] if raw_instances else None
        samples.append(
            build_sample(str(index), raw_image, raw_mask, instance_page, encoding, names, connectivity, channels)
        )
    return samples


def import_dataset(
    settings: Mapping[str, Any],
    root: Path,
    dest: Path,
    class_names: Sequence[str],
    *,
    config_key: str = "dataset.import",
) -> pd.DataFrame:
    """Import the dataset ``settings`` describe into the canonical folder ``dest``; return its manifest.

    ``settings`` is the ``dataset.import`` section with the schema's defaults filled in (config/schema.yaml
    describes every key; the Snakefile fills them, code that writes a section by hand uses
    :func:`segcore.config_schema.with_defaults`). Relative paths are resolved against ``root``, an absolute
    path stands as it is; ``config_key`` names the section in messages. ``instances`` absent: each class's
    connected components (of ``connectivity``) are its objects. ``channels`` (None, 1 or 3) converts the
    images to one channel count (None: they must agree); ``stack_axis`` (tiff_stack) names the axis
    holding the samples of a hyperstack.

    ``len(class_names)`` is the number of classes; the encoding's class ids must lie below it (checked here,
    as it spans two config keys). Raises :class:`InputError` naming the key for that, and naming the file(s)
    for any bad input; ``dest`` is then left as it was.
    """
    images, masks = (Path(root) / settings[key] for key in ("images", "masks"))
    instances = Path(root) / settings["instances"] if "instances" in settings else None
    encoding = parse_encoding(settings["encoding"], len(class_names), f"{config_key}.encoding")
    connectivity = settings["connectivity"]
    channels = ChannelRule(settings["channels"], f"{config_key}.channels")
    if settings["format"] == "tiff_stack":
        samples: Iterable[Sample] = import_tiff_stacks(
            images, masks, encoding=encoding, instance_stack_path=instances, connectivity=connectivity,
            stack_axis=settings["stack_axis"], channels=channels,
        )  # fmt: skip
    else:
        pairs = pair_folder_files(
            images, masks, settings["image_pattern"], settings["mask_pattern"], instances, settings["instance_pattern"]
        )
        samples = iter_folder_samples(pairs, encoding, connectivity, channels)
    return write_canonical(dest, samples, encoding.num_classes)
