"""The dataset fingerprint: what the plan needs to know about a canonical dataset folder.

:func:`dataset_fingerprint` reads a canonical folder (:mod:`segcore.data.canonical`) and its split table and
returns a JSON-ready dict (written and read by :mod:`segcore.plan.plan` only)::

    images, subsets            number of images; images per subset of the split (train/val/test/unused)
    size                       {height, width}: {min, median, max} in pixels over every image
    channels, dtype            the images' channel count and dtype name ("uint8,uint16" when mixed)
    intensity                  per-channel statistics over a seeded pixel sample of the train and val images
                               only (test images never shape the normalisation): ids, images, pixels, seed,
                               and for "all" pixels and "foreground" pixels (mask > 0) lists of one value per
                               channel: mean, sd, p0_5, p99_5, min, max, clipped_mean, clipped_sd (mean and
                               sd after clipping to [p0_5, p99_5]); "foreground" is null without any;
                               "per_image": how far the images differ from each other, from the same
                               sample (:func:`per_image_statistics`), null without any
    classes                    one entry per class id: name, pixel_fraction (over every image), images (in
                               which it occurs), objects, object_size {min, median, max, mean} in pixels
    objects                    count (every image) and touching_fraction: the share of objects with a pixel
                               4-adjacent to a pixel of another object

Objects are the canonical ``instances/`` labels; an object's class is the mask class most of its pixels have.
Class frequencies and objects cover the whole dataset (they describe the data, they are not fitted).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.data.canonical import read_manifest
from segcore.data.split import ids_of
from segcore.io import InputError, read_table, read_tiff

MAX_SAMPLED_PIXELS = 1_000_000
PERCENTILES = (0.5, 99.5)
# Keeps the fingerprint's pixel draw apart from other streams seeded by the same config seed.
_SAMPLE_STREAM = 7_411


def size_summary(values: Sequence[float]) -> dict[str, float]:
    """``{min, median, max}`` of ``values`` (non-empty), as plain numbers (ints where they are whole)."""
    array = np.asarray(values, dtype=np.float64)

    def plain(value: float) -> float:
        return int(value) if float(value).is_integer() else float(value)

    return {"min": plain(array.min()), "median": plain(np.median(array)), "max": plain(array.max())}


def sample_positions(pixel_counts: Sequence[int], max_pixels: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Flat pixel indices to sample from each image, evenly: ``max_pixels // len(pixel_counts)`` (at least
    1) per image, all of an image's pixels when it has fewer; drawn without replacement, sorted.

    Returns one int64 array per image, in the given order (so the draw depends on ``rng`` and the order).
    """
    quota = max(1, max_pixels // max(1, len(pixel_counts)))
    positions = []
    for count in pixel_counts:
        if count <= quota:
            positions.append(np.arange(count, dtype=np.int64))
        else:
            positions.append(np.sort(rng.choice(count, size=quota, replace=False)).astype(np.int64))
    return positions


def channel_statistics(values: np.ndarray) -> dict[str, list[float]] | None:
    """Per-channel statistics of float64 ``values`` (N, C): mean, sd (population, ddof 0), p0_5 and p99_5
    (``np.percentile``, linear interpolation), min, max, and the mean and sd after clipping to
    [p0_5, p99_5]. None when N is 0.
    """
    if values.shape[0] == 0:
        return None
    low, high = np.percentile(values, PERCENTILES, axis=0)
    clipped = np.clip(values, low, high)

    def listed(array: np.ndarray) -> list[float]:
        return [float(value) for value in array]

    return {
        "mean": listed(values.mean(axis=0)),
        "sd": listed(values.std(axis=0)),
        "p0_5": listed(low),
        "p99_5": listed(high),
        "min": listed(values.min(axis=0)),
        "max": listed(values.max(axis=0)),
        "clipped_mean": listed(clipped.mean(axis=0)),
        "clipped_sd": listed(clipped.std(axis=0)),
    }


def per_image_statistics(samples: Sequence[np.ndarray]) -> dict[str, list[float]] | None:
    """Per-channel spread of the images' own intensities, from each image's sampled pixels ``samples`` (one
    float64 (N_i, C) array per image; images with N_i = 0 are skipped). Every image counts once, however
    many pixels it has, since the question is whether the *images* differ, not the pixels.

    Returns lists of one value per channel: ``mean_sd``, the sd (ddof 0) over the images of their means;
    ``mean_min``/``mean_max``, the darkest and brightest image mean; ``sd_median``, the median over the
    images of their sds (ddof 0): the typical contrast inside one image. None without any image.
    """
    kept = [sample for sample in samples if sample.shape[0] > 0]
    if not kept:
        return None
    means = np.stack([sample.mean(axis=0) for sample in kept])  # (images, C)
    sds = np.stack([sample.std(axis=0) for sample in kept])

    def listed(array: np.ndarray) -> list[float]:
        return [float(value) for value in array]

    return {
        "mean_sd": listed(means.std(axis=0)),
        "mean_min": listed(means.min(axis=0)),
        "mean_max": listed(means.max(axis=0)),
        "sd_median": listed(np.median(sds, axis=0)),
    }


def touching_objects(instances: np.ndarray) -> np.ndarray:
    """Sorted ids of the objects of ``instances`` (H, W), 0 = none, with a pixel 4-adjacent to another
    object's pixel."""
    pairs = []
    for first, second in ((instances[:, :-1], instances[:, 1:]), (instances[:-1, :], instances[1:, :])):
        between = (first != second) & (first > 0) & (second > 0)
        pairs += [first[between], second[between]]
    return np.unique(np.concatenate(pairs)) if pairs else np.zeros(0, instances.dtype)


def object_classes_and_sizes(instances: np.ndarray, mask: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """(ids, classes, sizes) of the objects in ``instances`` (H, W): each object's pixel count and the mask
    class most of its pixels have (the lowest class on ties). int64 arrays, ids ascending."""
    labels = instances.ravel().astype(np.int64)
    if labels.size == 0 or labels.max() == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    table = np.bincount(labels * num_classes + mask.ravel(), minlength=(labels.max() + 1) * num_classes)
    table = table.reshape(-1, num_classes)
    sizes = table.sum(axis=1)
    ids = np.flatnonzero(sizes)
    ids = ids[ids > 0]
    return ids, table[ids].argmax(axis=1), sizes[ids]


@dataclass
class _Tally:
    """Running totals over images for the class and object parts of the fingerprint."""

    num_classes: int
    pixels: np.ndarray = field(init=False)
    images: np.ndarray = field(init=False)
    sizes: list[list[int]] = field(init=False)
    objects: int = 0
    touching: int = 0

    def __post_init__(self) -> None:
        self.pixels = np.zeros(self.num_classes, np.int64)
        self.images = np.zeros(self.num_classes, np.int64)
        self.sizes = [[] for _ in range(self.num_classes)]

    def add(self, sample_id: str, mask: np.ndarray, instances: np.ndarray, class_names: Sequence[str]) -> None:
        if mask.size and int(mask.max()) >= self.num_classes:
            raise InputError(
                f"config key dataset.classes: the mask of image {sample_id!r} holds class {int(mask.max())} but "
                f"only {self.num_classes} classes are declared ({', '.join(class_names)})"
            )
        counts = np.bincount(mask.ravel(), minlength=self.num_classes)
        self.pixels += counts
        self.images += counts > 0
        ids, classes, sizes = object_classes_and_sizes(instances, mask, self.num_classes)
        for object_class, size in zip(classes, sizes):
            self.sizes[object_class].append(int(size))
        self.objects += len(ids)
        self.touching += len(touching_objects(instances))

    def classes(self, class_names: Sequence[str]) -> list[dict[str, Any]]:
        total = max(int(self.pixels.sum()), 1)
        entries = []
        for index, name in enumerate(class_names):
            sizes = self.sizes[index]
            entries.append({
                "id": index,
                "name": name,
                "pixel_fraction": float(self.pixels[index]) / total,
                "images": int(self.images[index]),
                "objects": len(sizes),
                "object_size": {**size_summary(sizes), "mean": float(np.mean(sizes))} if sizes else None,
            })  # fmt: skip
        return entries


def _single_channel_count(manifest: pd.DataFrame) -> int:
    """The manifest's one channel count; InputError naming example ids when images differ."""
    counts = sorted(int(value) for value in manifest["channels"].unique())
    if len(counts) > 1:
        examples = "; ".join(
            f"{count}: {', '.join(manifest.loc[manifest['channels'] == count, 'id'].astype(str)[:3])}"
            for count in counts
        )
        raise InputError(f"the images have different channel counts ({examples}); the network needs one")
    return counts[0]


def _as_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (H * W, C) view."""
    return image.reshape(image.shape[0] * image.shape[1], -1)


def dataset_fingerprint(
    data: str | os.PathLike,
    split: str | os.PathLike,
    class_names: Sequence[str],
    seed: int,
    max_pixels: int = MAX_SAMPLED_PIXELS,
) -> dict[str, Any]:
    """The fingerprint (module docstring) of the canonical folder ``data`` with the split table ``split``.

    Intensities: at most ``max_pixels`` pixels (:func:`sample_positions`, seeded by ``seed``) of the train
    and val images, in sorted id order. Raises :class:`segcore.io.InputError` naming ``dataset.classes``
    when a mask holds a class id beyond the declared classes, and when images differ in channel count.
    """
    root = Path(data)
    manifest = read_manifest(root).sort_values("id", kind="stable")
    manifest["id"] = manifest["id"].astype(str)
    table = read_table(split)
    fitted_ids = sorted(ids_of(table, "train") + ids_of(table, "val"))
    channels = _single_channel_count(manifest)
    rng = np.random.default_rng([seed, _SAMPLE_STREAM])
    shapes = manifest.set_index("id")[["height", "width"]]
    pixel_counts = [int(shapes.loc[i, "height"] * shapes.loc[i, "width"]) for i in fitted_ids]
    positions = dict(zip(fitted_ids, sample_positions(pixel_counts, max_pixels, rng)))
    tally = _Tally(len(class_names))
    dtypes: set[str] = set()
    sampled, foreground = [], []
    for sample_id in manifest["id"]:  # sorted, so the sample's order does not depend on the manifest's
        mask = read_tiff(root / "masks" / f"{sample_id}.tif")
        tally.add(sample_id, mask, read_tiff(root / "instances" / f"{sample_id}.tif"), class_names)
        if sample_id in positions:
            image = read_tiff(root / "images" / f"{sample_id}.tif")
            dtypes.add(image.dtype.name)
            sampled.append(_as_pixels(image)[positions[sample_id]].astype(np.float64))
            foreground.append(mask.ravel()[positions[sample_id]] > 0)
    values = np.concatenate(sampled) if sampled else np.zeros((0, channels))
    in_foreground = np.concatenate(foreground) if foreground else np.zeros(0, bool)
    if not dtypes:  # no train or val image: the dtype of the first image
        dtypes.add(read_tiff(root / "images" / f"{manifest['id'].iloc[0]}.tif").dtype.name)
    subsets = table["subset"].value_counts()
    return {
        "images": len(manifest),
        "subsets": {name: int(subsets.get(name, 0)) for name in ("train", "val", "test", "unused")},
        "size": {"height": size_summary(manifest["height"]), "width": size_summary(manifest["width"])},
        "channels": channels,
        "dtype": ",".join(sorted(dtypes)),
        "intensity": {
            "ids": "train+val",
            "images": len(fitted_ids),
            "pixels": int(values.shape[0]),
            "seed": seed,
            "all": channel_statistics(values),
            "foreground": channel_statistics(values[in_foreground]),
            "per_image": per_image_statistics(sampled),
        },
        "classes": tally.classes(class_names),
        "objects": {
            "count": tally.objects,
            "touching_fraction": tally.touching / tally.objects if tally.objects else 0.0,
        },
    }
