"""The canonical dataset folder every importer writes and every later stage reads.

Layout of a canonical folder::

    images/<id>.tif     uint8, uint16 or float32 (finite values), (H, W) or (H, W, C)
    masks/<id>.tif      uint8 (H, W), class index per pixel (0 = background)
    instances/<id>.tif  uint16 (H, W), 0 = no object, each object a distinct positive id
    manifest.tsv        id, height, width, channels, classes (comma-separated ids present),
                        foreground_fraction, group

The folder is written whole into a temporary folder and renamed into place (:func:`segcore.io.atomic_dir`),
so a failed import leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from segcore.io import InputError, atomic_dir, read_table, read_tiff, write_table, write_tiff

SUBFOLDERS = ("images", "masks", "instances")


@dataclass(frozen=True)
class Sample:
    """One image with its labels. ``group`` ties samples that must stay in one split subset."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray
    group: str = ""


def check_sample(sample: Sample, num_classes: int) -> None:
    """Raise :class:`InputError` naming the sample if its arrays disagree in size or hold bad values."""
    height, width = sample.image.shape[:2]
    for name, array in (("mask", sample.mask), ("instances", sample.instances)):
        if array.shape != (height, width):
            raise InputError(
                f"sample {sample.id!r}: {name} is {array.shape[1]}x{array.shape[0]} but the image is {width}x{height}"
            )
    if sample.mask.size and int(sample.mask.max()) >= num_classes:
        raise InputError(
            f"sample {sample.id!r}: mask holds class {int(sample.mask.max())} but only {num_classes} classes "
            "are declared"
        )


def manifest_row(sample: Sample) -> dict:
    """One manifest line for ``sample``: shape, classes present and foreground fraction."""
    image = sample.image
    return {
        "id": sample.id,
        "height": image.shape[0],
        "width": image.shape[1],
        "channels": 1 if image.ndim == 2 else image.shape[2],
        "classes": ",".join(str(c) for c in np.unique(sample.mask)),
        "foreground_fraction": round(float(np.count_nonzero(sample.mask)) / sample.mask.size, 6),
        "group": sample.group,
    }


def write_canonical(folder: str | os.PathLike, samples: Iterable[Sample], num_classes: int) -> pd.DataFrame:
    """Check and write ``samples`` as a canonical folder, atomically; return the manifest.

    Raises :class:`InputError` on duplicate ids, an empty dataset, or any sample failing
    :func:`check_sample`; the folder is then left as it was.
    """
    rows = []
    with atomic_dir(folder) as tmp:
        for sub in SUBFOLDERS:
            (tmp / sub).mkdir()
        seen: set[str] = set()
        for sample in samples:
            if sample.id in seen:
                raise InputError(f"duplicate sample id {sample.id!r}")
            seen.add(sample.id)
            check_sample(sample, num_classes)
            write_tiff(tmp / "images" / f"{sample.id}.tif", sample.image)
            write_tiff(tmp / "masks" / f"{sample.id}.tif", sample.mask.astype(np.uint8))
            write_tiff(tmp / "instances" / f"{sample.id}.tif", sample.instances.astype(np.uint16))
            rows.append(manifest_row(sample))
        if not rows:
            raise InputError(f"{folder}: the dataset holds no samples")
        manifest = pd.DataFrame(rows)
        write_table(tmp / "manifest.tsv", manifest)
    return manifest


def read_manifest(folder: str | os.PathLike) -> pd.DataFrame:
    """The manifest table of a canonical folder (ids as strings, group as string)."""
    manifest = read_table(Path(folder) / "manifest.tsv", converters={"group": str, "classes": str})
    return manifest


def read_sample(folder: str | os.PathLike, sample_id: str) -> Sample:
    """Load one sample of a canonical folder."""
    root = Path(folder)
    return Sample(
        id=sample_id,
        image=read_tiff(root / "images" / f"{sample_id}.tif"),
        mask=read_tiff(root / "masks" / f"{sample_id}.tif"),
        instances=read_tiff(root / "instances" / f"{sample_id}.tif"),
    )
