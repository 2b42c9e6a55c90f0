"""Importers from the layouts real datasets ship in to :class:`segcore.data.canonical.Sample` objects.

Two layouts are supported:

- a folder of images and a folder of masks (optionally a folder of instance images), paired by the
  ``{id}`` part of their file names (:func:`pair_folder_files`, :func:`iter_folder_samples`);
- a multi-page image TIFF and a multi-page label TIFF with one sample per page, as ISBI 2012 ships
  ``train-volume.tif`` / ``train-labels.tif`` (:func:`import_tiff_stacks`).

Pairing problems (an image without mask or the reverse, duplicate ids, an empty folder, stacks with
different page counts) are all found before any pixel is read. Every problem raises :class:`InputError`
naming the file(s). :func:`import_dataset`, the config-driven entry point, writes through
:func:`segcore.data.canonical.write_canonical`, so a failed import leaves no canonical folder behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from segcore.data.canonical import Sample, write_canonical
from segcore.data.image_files import as_image, drop_alpha, find_files, natural_key, read_raw
from segcore.data.mask_encodings import (
    MaskEncoding,
    encode_mask,
    instances_from_classes,
    instances_from_image,
    parse_encoding,
)
from segcore.io import InputError

LISTED_AT_MOST = 5  # file names quoted in a "missing partner" message; the rest are counted


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample of a folder dataset; ``instances`` is None when derived from the mask."""

    id: str
    image: Path
    mask: Path
    instances: Path | None = None


def _list_unpaired(ids: set[str], files: dict[str, Path]) -> str:
    names = [str(files[sample_id]) for sample_id in sorted(ids, key=natural_key)]
    shown = ", ".join(names[:LISTED_AT_MOST])
    return shown + (f" and {len(names) - LISTED_AT_MOST} more" if len(names) > LISTED_AT_MOST else "")


def _check_partners(images: dict[str, Path], partners: dict[str, Path], kind: str, partner_dir: Path) -> None:
    """Raise InputError listing the images without a ``kind`` file and the ``kind`` files without image."""
    without_partner = set(images) - set(partners)
    if without_partner:
        raise InputError(
            f"{len(without_partner)} image(s) have no {kind} in {partner_dir}: "
            f"{_list_unpaired(without_partner, images)}"
        )
    without_image = set(partners) - set(images)
    if without_image:
        raise InputError(
            f"{len(without_image)} {kind} file(s) have no image: {_list_unpaired(without_image, partners)}"
        )


def _literal_length(pattern: str) -> int:
    return len(pattern.replace("{id}", "").replace("*", ""))


def pair_folder_files(
    images_dir: Path,
    masks_dir: Path,
    image_pattern: str,
    mask_pattern: str,
    instances_dir: Path | None = None,
    instance_pattern: str | None = None,
) -> list[SampleFiles]:
    """Pair image, mask (and instance) files by id, in natural id order, without reading pixels.

    Patterns are described in :func:`segcore.data.image_files.pattern_regex`. Folders may be shared: a file
    matching the patterns of two roles goes to the more specific pattern (more literal characters), so
    ``{id}.png`` images and ``{id}_mask.png`` masks can live together. ``instances_dir`` None: no
    instance files; ``instance_pattern`` None: ``mask_pattern``. Raises :class:`InputError` for an empty
    image folder, duplicate ids, or any file without its partner (naming the files).
    """
    instance_pattern = instance_pattern or mask_pattern
    roles = {"images": (images_dir, image_pattern), "masks": (masks_dir, mask_pattern)}
    if instances_dir is not None:
        roles["instances"] = (instances_dir, instance_pattern)
    found: dict[str, dict[str, Path]] = {}
    resolved = {role: Path(folder).resolve() for role, (folder, _) in roles.items()}
    for role, (folder, pattern) in roles.items():
        neighbours = [
            other_pattern
            for other, (_, other_pattern) in roles.items()
            if other != role and resolved[other] == resolved[role]
        ]
        if pattern in neighbours:
            raise InputError(f"{folder}: {role} share this folder and pattern {pattern!r} with other files")
        # A file matching two patterns in one folder belongs to the more specific one (more literal
        # characters): "a_mask.png" is a mask under "{id}_mask.png", not an image under "{id}.png".
        more_specific = [other for other in neighbours if _literal_length(other) > _literal_length(pattern)]
        found[role] = find_files(Path(folder), pattern, f"{role} {folder}", more_specific)
    images, masks = found["images"], found["masks"]
    if not images:
        raise InputError(f"{images_dir}: no image files match pattern {image_pattern!r}")
    _check_partners(images, masks, "mask", Path(masks_dir))
    instances = found.get("instances", {})
    if instances_dir is not None:
        _check_partners(images, instances, "instance image", Path(instances_dir))
    return [
        SampleFiles(sample_id, images[sample_id], masks[sample_id], instances.get(sample_id))
        for sample_id in sorted(images, key=natural_key)
    ]


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
) -> Sample:
    """Check and convert one sample's raw arrays; ``names`` (image, mask[, instances]) label messages.

    Instances come from ``raw_instances`` when given, otherwise from the connected components of each
    class of the encoded mask (see :func:`segcore.data.mask_encodings.instances_from_classes`).
    """
    image_name, mask_name = names[:2]
    image = as_image(raw_image, Path(image_name))
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


def load_folder_sample(files: SampleFiles, encoding: MaskEncoding, connectivity: int) -> Sample:
    """Read and convert the files of one folder sample (see :func:`build_sample`)."""
    raw_instances = read_raw(files.instances) if files.instances is not None else None
    names = (str(files.image), str(files.mask), str(files.instances))
    return build_sample(
        files.id, read_raw(files.image), read_raw(files.mask), raw_instances, encoding, names, connectivity
    )


def iter_folder_samples(pairs: list[SampleFiles], encoding: MaskEncoding, connectivity: int) -> Iterator[Sample]:
    """Load the samples of ``pairs`` one at a time, so a large dataset never sits in memory whole.

    Images are PNG, TIFF or JPEG, grey or RGB(A) (alpha dropped), 8- or 16-bit kept as stored; masks are
    converted with ``encoding``. Raises :class:`InputError` naming the file(s) for an unreadable or truncated
    file, an image/mask size mismatch or an undeclared mask value or colour.
    """
    for files in pairs:
        yield load_folder_sample(files, encoding, connectivity)


def read_stack_pages(path: Path) -> list[np.ndarray]:
    """Each page of a (multi-page) TIFF as an array; InputError naming ``path`` if it cannot be read."""
    try:
        with tifffile.TiffFile(path) as tiff:
            return [page.asarray() for page in tiff.pages]
    except Exception as error:  # tifffile raises many types for missing, truncated or non-TIFF files
        raise InputError(f"{path}: cannot read TIFF stack ({type(error).__name__}: {error})") from error


def import_tiff_stacks(
    image_stack_path: Path,
    label_stack_path: Path,
    *,
    encoding: MaskEncoding,
    instance_stack_path: Path | None = None,
    connectivity: int,
) -> list[Sample]:
    """One sample per page of an image TIFF stack and its label stack (ISBI 2012 layout).

    Sample ids are the page indices as plain decimal strings, ``"0"``, ``"1"``, ..., ``"29"`` (not
    zero-padded), so they equal the ids of the same slices exported as ``N.png`` files. Raises
    :class:`InputError` naming both files and both counts if the page counts differ, and naming the file
    and page for an unreadable file or a page whose size differs from its image page.
    """
    stacks = [image_stack_path, label_stack_path] + ([instance_stack_path] if instance_stack_path else [])
    pages = [read_stack_pages(Path(path)) for path in stacks]
    counts = [len(stack_pages) for stack_pages in pages]
    if len(set(counts)) != 1:
        listing = ", ".join(f"{path} has {count} pages" for path, count in zip(stacks, counts))
        raise InputError(f"TIFF stacks differ in page count: {listing}")
    samples = []
    for index in range(counts[0]):
        names = [f"{path} page {index}" for path in stacks]
        raw_image, raw_mask, *raw_instances = (stack_pages[index] for stack_pages in pages)
        instance_page = raw_instances[0] if raw_instances else None
        samples.append(build_sample(str(index), raw_image, raw_mask, instance_page, encoding, names, connectivity))
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
    connected components (of ``connectivity``) are its objects.

    ``len(class_names)`` is the number of classes; the encoding's class ids must lie below it (checked here,
    as it spans two config keys). Raises :class:`InputError` naming the key for that, and naming the file(s)
    for any bad input; ``dest`` is then left as it was.
    """
    images, masks = (Path(root) / settings[key] for key in ("images", "masks"))
    instances = Path(root) / settings["instances"] if "instances" in settings else None
    encoding = parse_encoding(settings["encoding"], len(class_names), f"{config_key}.encoding")
    connectivity = settings["connectivity"]
    if settings["format"] == "tiff_stack":
        samples: Iterable[Sample] = import_tiff_stacks(
            images, masks, encoding=encoding, instance_stack_path=instances, connectivity=connectivity
        )
    else:
        pairs = pair_folder_files(
            images, masks, settings["image_pattern"], settings["mask_pattern"], instances, settings["instance_pattern"]
        )
        samples = iter_folder_samples(pairs, encoding, connectivity)
    return write_canonical(dest, samples, encoding.num_classes)
