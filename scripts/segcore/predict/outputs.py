"""The predictions folder: the one writer and the one reader of its layout.

An experiment's predictions root holds one folder per prediction shard (rule predict's output)::

    shard-<n>/
        masks/<id>.tif          uint8 (H, W) class mask, 0 = background
        instances/<id>.tif      int32 (H, W) predicted objects, 0 = none, ids 1..N, each of one class
                                (segcore.predict.instances; the object metrics score these)
        instances.json          {"method": how the objects were found, in words}
        colour/<id>.png         uint8 (H, W, 3) the mask in palette colours (visual.colourise)
        overlays/<id>.png       uint8 (H, W, 3) the image, foreground tinted in those colours (visual.overlay)
        probabilities/<id>.tif  float32 (K, H, W) class probabilities; only when they are saved (a border-
                                class model's K + 1 planes, the border last)

Rule infer writes the same layout for an inference set's images (:mod:`segcore.predict.sets`), always with
probabilities. Later stages read predictions through :func:`read_shard_mask`, :func:`read_shard_instances`,
:func:`read_shard_probabilities`, :func:`read_shard_picture` and :func:`read_shard_ids` (one shard folder, as
rule evaluate is given), :func:`read_predicted_mask` and :func:`read_instance_method` (the root, searching
every shard, as the report does), never by path.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from skimage import io as skio

from segcore.data.image_files import natural_key
from segcore.io import InputError, atomic_dir, read_tiff, write_pages, write_png, write_tiff
from segcore.predict.instances import component_instances
from segcore.predict.visual import colourise, overlay

MASKS, COLOUR, OVERLAYS, PROBABILITIES = "masks", "colour", "overlays", "probabilities"
INSTANCES, INSTANCE_METHOD = "instances", "instances.json"
SHARD_GLOB = "shard-*"  # rule predict names the shard folders shard-<n>


class ShardWriter:
    """Writes the predictions of one image after another into a shard folder being built (see
    :func:`shard_writer`)."""

    def __init__(self, folder: Path, num_classes: int, save_probabilities: bool) -> None:
        self.folder = folder
        self.num_classes = num_classes
        self.save_probabilities = save_probabilities
        self.count = 0

    def write(
        self,
        sample_id: str,
        image: np.ndarray,
        mask: np.ndarray,
        probabilities: np.ndarray,
        instances: np.ndarray | None = None,
    ) -> None:
        """Write one image's predictions.

        ``image``: the input as stored, (H, W) or (H, W, C) uint8/uint16 (only shown in the overlay);
        ``mask``: uint8 (H, W) class mask; ``probabilities``: float32 (K, H, W), written only when the writer
        saves probabilities; ``instances``: integer (H, W) objects, 0 = none (None: the mask's connected
        components, :func:`segcore.predict.instances.component_instances`), stored as int32. Raises
        ValueError when the arrays' sizes disagree, or the mask is not uint8.
        """
        if mask.dtype != np.uint8 or mask.shape != image.shape[:2] or probabilities.shape[1:] != mask.shape:
            raise ValueError(
                f"{sample_id}: need a uint8 mask of the image's size and (K, H, W) probabilities; got image "
                f"{image.shape}, mask {mask.shape} {mask.dtype}, probabilities {probabilities.shape}"
            )
        if instances is None:
            instances = component_instances(mask)
        if instances.shape != mask.shape or not np.issubdtype(instances.dtype, np.integer):
            raise ValueError(f"{sample_id}: need integer instances of the mask's size, got {instances.shape}")
        write_tiff(self.folder / MASKS / f"{sample_id}.tif", mask)
        write_tiff(self.folder / INSTANCES / f"{sample_id}.tif", instances.astype(np.int32))
        write_png(self.folder / COLOUR / f"{sample_id}.png", colourise(mask, self.num_classes))
        write_png(self.folder / OVERLAYS / f"{sample_id}.png", overlay(image, mask, self.num_classes))
        if self.save_probabilities:
            write_pages(self.folder / PROBABILITIES / f"{sample_id}.tif", probabilities.astype(np.float32))
        self.count += 1


@contextlib.contextmanager
def shard_writer(
    folder: str | os.PathLike,
    num_classes: int,
    save_probabilities: bool,
    instance_method: str = "connected components",
) -> Iterator[ShardWriter]:
    """A :class:`ShardWriter` into a temporary folder that replaces ``folder`` when the block succeeds.

    The folder is complete or absent: on an error nothing of it is left (:func:`segcore.io.atomic_dir`). A
    shard without images still gets its (empty) subfolders. ``instance_method``: how the written instances
    were found, in words (:func:`segcore.predict.instances.method_label`), recorded in ``instances.json``.
    """
    with atomic_dir(folder) as tmp:
        for kind in (MASKS, INSTANCES, COLOUR, OVERLAYS) + ((PROBABILITIES,) if save_probabilities else ()):
            (tmp / kind).mkdir()
        (tmp / INSTANCE_METHOD).write_text(json.dumps({"method": instance_method}) + "\n")
        yield ShardWriter(tmp, num_classes, save_probabilities)


def read_shard_mask(shard_folder: str | os.PathLike, sample_id: str) -> np.ndarray:
    """The uint8 (H, W) class mask predicted for ``sample_id`` in one shard folder.

    Raises :class:`segcore.io.InputError` naming the file when the shard holds no mask for the id.
    """
    path = Path(shard_folder, MASKS, f"{sample_id}.tif")
    if not path.exists():
        raise InputError(f"{path}: no prediction for test image {sample_id!r}")
    return read_tiff(path)


def read_shard_instances(shard_folder: str | os.PathLike, sample_id: str) -> np.ndarray | None:
    """The int32 (H, W) objects predicted for ``sample_id`` in one shard folder (0 = none); None for a
    shard written before predictions held instances (its objects are then the mask's components)."""
    path = Path(shard_folder, INSTANCES, f"{sample_id}.tif")
    return read_tiff(path) if path.exists() else None


def read_instance_method(root: str | os.PathLike) -> str:
    """How the objects under the predictions ``root`` were found, in words (every shard's, joined by "; "
    when they differ); "connected components" for shards without ``instances.json``."""
    methods = set()
    for shard in sorted(Path(root).glob(SHARD_GLOB)):
        path = shard / INSTANCE_METHOD
        methods.add(json.loads(path.read_text())["method"] if path.exists() else "connected components")
    return "; ".join(sorted(methods)) or "connected components"


def read_shard_probabilities(shard_folder: str | os.PathLike, sample_id: str) -> np.ndarray:
    """The float32 (K, H, W) probabilities saved for ``sample_id`` in one shard folder.

    Raises :class:`segcore.io.InputError` when they were not saved (``prediction.save_probabilities`` off).
    """
    path = Path(shard_folder, PROBABILITIES, f"{sample_id}.tif")
    if not path.exists():
        raise InputError(f"{path}: no saved probabilities for {sample_id!r} (prediction.save_probabilities)")
    return read_tiff(path)


def read_predicted_mask(root: str | os.PathLike, sample_id: str) -> np.ndarray:
    """The uint8 (H, W) class mask predicted for ``sample_id`` in any shard under the predictions ``root``.

    Raises :class:`segcore.io.InputError` when no shard, or more than one, holds a mask for the id.
    """
    # Each shard folder is checked by name rather than globbed for the id: ids may hold glob characters.
    candidates = (shard / MASKS / f"{sample_id}.tif" for shard in sorted(Path(root).glob(SHARD_GLOB)))
    found = [path for path in candidates if path.exists()]
    if len(found) != 1:
        shards = [str(path.parents[1]) for path in found]
        raise InputError(f"{root}: need one prediction of {sample_id!r} among the shards, found {len(found)} {shards}")
    return read_tiff(found[0])


def read_shard_ids(shard_folder: str | os.PathLike) -> list[str]:
    """The ids predicted in one shard folder (those with a class mask), in natural order; [] for an empty shard."""
    names = (path.name for path in Path(shard_folder, MASKS).iterdir() if path.name.endswith(".tif"))
    return sorted((name.removesuffix(".tif") for name in names if not name.startswith(".")), key=natural_key)


def read_shard_picture(shard_folder: str | os.PathLike, sample_id: str, kind: str) -> np.ndarray:
    """The uint8 (H, W, 3) picture of ``sample_id`` in one shard folder: ``kind`` :data:`COLOUR` (the mask in
    palette colours) or :data:`OVERLAYS` (the image with its foreground tinted).

    Raises :class:`segcore.io.InputError` naming the file when the shard holds none.
    """
    if kind not in (COLOUR, OVERLAYS):
        raise ValueError(f"kind must be {COLOUR!r} or {OVERLAYS!r}, got {kind!r}")
    path = Path(shard_folder, kind, f"{sample_id}.png")
    if not path.exists():
        raise InputError(f"{path}: no {kind} picture of {sample_id!r}")
    return skio.imread(path)
