"""The files of the weights step: the class weight table of the training set, and a shard's weight maps.

Both read the augmented training shards, which are canonical folders (:mod:`segcore.data.canonical`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from segcore.augment.weight_maps import class_pixel_counts, class_weights_from_counts, weight_map
from segcore.data.canonical import read_manifest, read_sample
from segcore.io import atomic_dir, read_tiff, write_tiff


def class_weight_table(
    shard_dirs: Sequence[str | os.PathLike], class_names: Sequence[str], *, balance: bool
) -> pd.DataFrame:
    """Class pixel counts over every mask of ``shard_dirs`` and the class weights ``w_c`` from them.

    Returns one row per class, columns ``class`` (id), ``name``, ``pixels`` (int64) and ``weight``
    (float32): with ``balance`` (``weights.class_balance``) the inverse-frequency weights of
    :func:`segcore.augment.weight_maps.class_weights_from_counts`, else 1 for every class. Raises
    ValueError for a mask value outside ``0..len(class_names) - 1`` or when no mask holds any pixel.
    """
    counts = np.zeros(len(class_names), np.int64)
    for shard in shard_dirs:
        for sample_id in read_manifest(shard)["id"]:
            counts += class_pixel_counts(read_tiff(f"{shard}/masks/{sample_id}.tif"), len(class_names))
    weights = class_weights_from_counts(counts) if balance else np.ones(len(class_names), np.float32)
    return pd.DataFrame(
        {"class": range(len(class_names)), "name": list(class_names), "pixels": counts, "weight": weights}
    )


def write_weight_maps(
    samples_dir: str | os.PathLike,
    dest_dir: str | os.PathLike,
    class_weights: np.ndarray,
    *,
    w0: float,
    sigma: float,
    background_only: bool,
) -> int:
    """Write the weight map of every sample of the canonical folder ``samples_dir`` as ``dest_dir/<id>.tif``.

    Each map is float32 ``(H, W)`` (:func:`segcore.augment.weight_maps.weight_map` with ``class_weights``
    ``(K,)`` and the ``weights`` config keys). ``dest_dir`` appears only once every map is written (it
    replaces an older folder whole). Returns the number of maps.
    """
    ids = list(read_manifest(samples_dir)["id"])
    with atomic_dir(dest_dir) as folder:
        for sample_id in ids:
            sample = read_sample(samples_dir, sample_id)
            weights = weight_map(
                sample.mask, sample.instances, class_weights, w0=w0, sigma=sigma, background_only=background_only
            )
            write_tiff(folder / f"{sample_id}.tif", weights)
    return len(ids)
