"""Inference sets' results: the one writer and reader of a set's table and page stacks (no torch needed).

Rule infer segments one shard of a set's images exactly as rule predict segments test images
(:func:`segcore.predict.shard.predict_set_shard`: the plan's normalisation, overlap-tile prediction, TTA,
operating point); rule merge_inference tables the shards (:func:`write_set_table`); rule stack_inference
merges a stacked set into page stacks (:func:`write_set_stacks`).

A set's folder, ``results/<dataset>/<experiment>/inference/<set>/``::

    shard-<n>/                   the predictions layout of segcore.predict.outputs (masks, instances, colour,
                                 overlays), always with float32 (K, H, W) probabilities
    images.tsv                   one row per image in set order (segcore.data.image_sets): position (0..N-1),
                                 id, shard (its folder's name), height, width, and per class
                                 fraction_<class>, the share of the image's pixels predicted as that class
    masks.tif                    stacked sets: uint8 (P, H, W) class masks, page i = position i
    <class>_probability.tif      stacked sets: float32 (P, H, W) probability of one class per page (one file
                                 per class of the dataset, named by rules/common.smk); a border-class model's
                                 border plane stays in the shards' probabilities
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from segcore.data.image_files import natural_key
from segcore.io import InputError, read_table, read_tiff, write_pages, write_table
from segcore.predict.outputs import read_shard_ids, read_shard_mask, read_shard_probabilities

TABLE_COLUMNS = ["position", "id", "shard", "height", "width"]
FRACTION_PREFIX = "fraction_"


def write_set_table(shards: Sequence[str | os.PathLike], path: str | os.PathLike, class_names: Sequence[str]) -> None:
    """Write the set's ``images.tsv`` (module docstring) from its shard folders.

    Raises :class:`InputError` when two shards hold one id, or none holds any image.
    """
    rows, where = [], {}
    for shard in map(Path, shards):
        for sample_id in read_shard_ids(shard):
            if sample_id in where:
                raise InputError(f"{shard}: {sample_id!r} is also predicted in {where[sample_id]}")
            where[sample_id] = shard
            mask = read_shard_mask(shard, sample_id)
            counts = np.bincount(mask.ravel(), minlength=len(class_names))[: len(class_names)]
            rows.append({
                "id": sample_id, "shard": shard.name, "height": mask.shape[0], "width": mask.shape[1],
                **{f"{FRACTION_PREFIX}{name}": count / mask.size for name, count in zip(class_names, counts)},
            })  # fmt: skip
    if not rows:
        raise InputError(f"{', '.join(map(str, shards))}: no predicted images")
    rows.sort(key=lambda row: natural_key(row["id"]))
    table = pd.DataFrame(rows)
    table.insert(0, "position", range(len(table)))
    write_table(path, table)


def read_set_table(path: str | os.PathLike) -> pd.DataFrame:
    """The set's ``images.tsv`` in set order (ids as strings); InputError naming the file if a column is missing."""
    table = read_table(path)
    missing = [column for column in TABLE_COLUMNS if column not in table.columns]
    if missing:
        raise InputError(f"{path}: not an inference set table (lacks {', '.join(missing)})")
    return table.sort_values("position", ignore_index=True)


def _one_size(table: pd.DataFrame, set_name: str) -> tuple[int, int]:
    """(H, W) shared by every image of the table; InputError listing the sizes when they differ."""
    sizes = table.groupby(["height", "width"])["id"].first()
    if len(sizes) > 1:
        listing = ", ".join(f"{width}x{height} ({sample_id})" for (height, width), sample_id in sizes.items())
        raise InputError(
            f"inference set {set_name}: a stack needs images of one size, found {listing} (width x height); "
            f"set config key inference.{set_name}.stack to false to keep per-image files only"
        )
    ((height, width),) = sizes.index
    return int(height), int(width)


def write_set_stacks(
    table_path: str | os.PathLike,
    masks_path: str | os.PathLike,
    probability_paths: Sequence[str | os.PathLike],
    set_name: str,
) -> int:
    """Merge a stacked set's shards into page stacks: uint8 class masks at ``masks_path`` and one float32
    stack per class at ``probability_paths`` (class order), page i = the table's position i.

    The shards are the table's siblings (``shard`` column). Pages are written as they are read, so a long
    stack never sits in memory. Raises :class:`InputError` when the images differ in size (naming the set's
    ``stack`` key) or the shards' probabilities have fewer planes than paths. Returns the number of pages.
    """
    table = read_set_table(table_path)
    height, width = _one_size(table, set_name)
    shape = (len(table), height, width)
    shards = [Path(table_path).parent / shard for shard in table["shard"]]

    def pages(read) -> Iterator[np.ndarray]:
        for shard, sample_id in zip(shards, table["id"]):
            yield read(shard, sample_id)

    write_pages(masks_path, pages(read_shard_mask), shape, np.uint8)
    for plane, path in enumerate(probability_paths):

        def read_plane(shard: Path, sample_id: str, plane: int = plane) -> np.ndarray:
            probabilities = read_shard_probabilities(shard, sample_id)
            if probabilities.shape[0] <= plane:
                raise InputError(
                    f"{shard}: {sample_id!r} has {probabilities.shape[0]} probability planes, need {plane + 1}"
                )
            return probabilities[plane]

        write_pages(path, pages(read_plane), shape, np.float32)
    return len(table)


def read_page_stack(path: str | os.PathLike) -> np.ndarray:
    """A stack written by :func:`write_set_stacks`: (P, H, W), uint8 masks or float32 probabilities (a
    one-page stack too is 3-D)."""
    array = read_tiff(path)
    return array.reshape((-1, *array.shape[-2:]))
