"""Predicting one shard of the test images: which ids a shard holds, the prediction settings, and the loop.

The shard's test ids are :func:`segcore.data.shards.shard_ids` of the split's test ids; rule evaluate uses
the same function (:func:`shard_test_ids`), so it scores exactly the images rule predict wrote.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from segcore.compute import select_device
from segcore.data.canonical import read_sample
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.io import InputError, read_table
from segcore.model.model_file import inference_tile_size, load_model
from segcore.model.overlap_tile import class_mask, predict_probabilities
from segcore.model.unet import UNet, prepare_for_inference
from segcore.plan.normalise import DTYPE_SCALING, Normalisation, normalise_image
from segcore.predict.instances import method_label, predicted_instances, resolve_method
from segcore.predict.outputs import shard_writer
from segcore.train.operating_point import foreground_mask

log = logging.getLogger(__name__)


def split_test_ids(split: str | os.PathLike) -> list[str]:
    """Sorted test ids of the split table at ``split``."""
    return ids_of(read_table(split), "test")


def shard_test_ids(split: str | os.PathLike, shard: int, n_shards: int) -> list[str]:
    """Sorted test ids of shard ``shard`` (0-based) of ``n_shards``; ValueError for a shard outside
    0..n_shards-1. The shards are disjoint and together hold every test id."""
    return shard_ids(split_test_ids(split), shard, n_shards)


@dataclass(frozen=True)
class PredictionSettings:
    """The config section ``prediction``; every field required (the defaults live in the schema alone).

    ``tile_size``: requested tile side (see :func:`segcore.model.model_file.inference_tile_size`);
    ``overlap``: pixels shared by neighbouring output tiles (ignored by valid-padding nets, which need none);
    ``blend``, ``tta``, ``batch_size``: as :func:`segcore.model.overlap_tile.predict_probabilities` takes them;
    ``instances``, ``watershed_h``: how objects are found (:mod:`segcore.predict.instances`);
    ``threshold``: the operating point, ``"argmax"`` or ``"auto"`` (:func:`operating_threshold`).
    """

    tile_size: int
    overlap: int
    blend: str
    batch_size: int
    tta: str
    save_probabilities: bool
    instances: str
    watershed_h: float
    threshold: str

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> PredictionSettings:
        """Settings from a ``prediction`` section; :class:`segcore.io.InputError` naming missing keys."""
        names = [item.name for item in fields(cls)]
        missing = [name for name in names if name not in section]
        if missing:
            raise InputError(f"config lacks {', '.join(f'prediction.{name}' for name in missing)}")
        return cls(**{name: section[name] for name in names})


def operating_threshold(setting: str, metadata: Mapping[str, Any]) -> float | None:
    """The foreground-probability threshold prediction applies, or None for argmax.

    ``setting``: ``prediction.threshold``. ``"auto"`` takes the model's ``foreground_threshold`` (chosen on
    the validation set at the end of training; present for two-class models only); argmax otherwise.
    """
    if setting != "auto" or metadata.get("num_classes") != 2:
        return None
    return metadata.get("foreground_threshold")


def predict_image(
    model: UNet,
    image: np.ndarray,
    num_classes: int,
    settings: PredictionSettings,
    device: torch.device,
    normalisation: Normalisation = DTYPE_SCALING,
) -> np.ndarray:
    """float32 (K, H, W) class probabilities of one stored image by overlap-tile prediction.

    ``image``: (H, W) or (H, W, C) uint8/uint16 as stored, normalised as in training (``normalisation``,
    the plan's: :func:`segcore.plan.normalise.normalise_image`); ``model``: an eval-mode (fused) model. The tile
    is chosen per image (:func:`segcore.model.model_file.inference_tile_size`), so a small image is one
    tile. A valid-padding net's tiles abut exactly, so ``settings.overlap`` applies to same-padding nets only
    (and only where the image needs more than one tile).
    """
    tile_size = inference_tile_size(model, settings.tile_size, image.shape[:2])
    # One tile covering the whole image has no neighbour to overlap (its blend weights normalise to 1), and
    # the tile shrinks to such an image: a configured overlap larger than that tile must not fail it.
    one_tile = tile_size >= max(image.shape[:2])
    overlap = settings.overlap if model.margin == 0 and not one_tile else 0
    return predict_probabilities(
        model, normalise_image(image, normalisation), num_classes=num_classes, tile_size=tile_size, margin=model.margin,
        overlap=overlap, batch_size=settings.batch_size, blend=settings.blend, tta=settings.tta, device=device,
    )  # fmt: skip


def predict_shard(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    ids: Sequence[str],
    settings: PredictionSettings,
    device_request: str,
    folder: str | os.PathLike,
    normalisation: Normalisation = DTYPE_SCALING,
) -> torch.device:
    """Predict the images ``ids`` of the canonical folder ``data`` and write them as one shard folder.

    ``normalisation``: the plan's, as the model was trained with (:mod:`segcore.plan.normalise`);
    ``device_request``: ``"auto"``, ``"cpu"`` or ``"cuda"`` (:func:`segcore.compute.select_device`). The
    folder (:mod:`segcore.predict.outputs`) appears only once every image is written. Returns the device used.
    """
    device = select_device(device_request)
    model, metadata = load_model(model_path, device)
    model = prepare_for_inference(model)
    num_classes = metadata["num_classes"]
    # A border-class model predicts the dataset's classes plus the border (last); masks hold the former.
    border_class = bool(metadata.get("border_class", False))
    method = resolve_method(settings.instances, border_class)
    mask_classes = num_classes - 1 if border_class else num_classes
    label = method_label(method, border_class)
    threshold = operating_threshold(settings.threshold, metadata)
    log.info("operating point: %s", "argmax" if threshold is None else f"foreground probability >= {threshold}")
    with shard_writer(folder, mask_classes, settings.save_probabilities, label) as writer:
        for sample_id in ids:
            image = read_sample(data, sample_id).image
            probabilities = predict_image(model, image, num_classes, settings, device, normalisation)
            classes = class_mask(probabilities) if threshold is None else foreground_mask(probabilities[1], threshold)
            mask, instances = predicted_instances(
                probabilities, classes, border_class=border_class, method=method,
                h=settings.watershed_h,
            )  # fmt: skip
            writer.write(sample_id, image, mask, probabilities, instances)
    log.info("predicted %d test images on %s; objects by %s", len(ids), device, label)
    return device
