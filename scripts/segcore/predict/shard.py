"""Predicting one shard of the test images or of an inference set: which ids a shard holds, the prediction
settings, the loaded model and the loop.

The shard's test ids are :func:`segcore.data.shards.shard_ids` of the split's test ids; rule evaluate uses
the same function (:func:`shard_test_ids`), so it scores exactly the images rule predict wrote. An inference
set's shards (:func:`predict_set_shard`, rule infer) deal its ids the same way and run the same loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from segcore.compute import select_device
from segcore.data.canonical import read_sample
from segcore.data.image_sets import ImageSet, list_set_images, load_set_image
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.io import InputError, read_table
from segcore.model.ensemble import load_models, model_files
from segcore.plan.normalise import DTYPE_SCALING, Normalisation
from segcore.predict.inference import InferenceSettings, segment_image
from segcore.predict.instances import method_label, resolve_method
from segcore.predict.outputs import shard_writer

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

    ``tile_size``: requested tile side (see :func:`segcore.model.model_file.tile_size_for`);
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


def inference_settings(
    metadata: Mapping[str, Any],
    settings: PredictionSettings,
    normalisation: Normalisation,
    depth: int,
    margin: int,
) -> InferenceSettings:
    """What :func:`segcore.predict.inference.segment_image` needs for a model saved with ``metadata``
    (:func:`segcore.model.model_file.save_model`), predicted with ``settings`` after ``normalisation`` (the
    plan's); ``depth`` and ``margin``: the model's. Rule predict and the bundle's model card both take their
    settings from here."""
    border_class = bool(metadata.get("border_class", False))
    return InferenceSettings(
        num_classes=int(metadata["num_classes"]), depth=int(depth), margin=int(margin),
        normalisation=normalisation, tile_size=int(settings.tile_size), overlap=int(settings.overlap),
        blend=settings.blend, batch_size=int(settings.batch_size), tta=settings.tta,
        threshold=operating_threshold(settings.threshold, metadata), border_class=border_class,
        instances=resolve_method(settings.instances, border_class), watershed_h=float(settings.watershed_h),
    )  # fmt: skip


@dataclass(frozen=True)
class Predictor:
    """A trained model ready for :func:`segcore.predict.inference.segment_image`: the eval-mode network on
    ``device``, its :class:`InferenceSettings`, the channels it takes, and how it finds objects (in words)."""

    model: torch.nn.Module
    inference: InferenceSettings
    device: torch.device
    in_channels: int
    instance_label: str


def load_predictor(
    model_path: str | os.PathLike | Sequence[str | os.PathLike],
    settings: PredictionSettings,
    device_request: str,
    normalisation: Normalisation = DTYPE_SCALING,
) -> Predictor:
    """The model at ``model_path`` with the settings of rule predict (:func:`inference_settings`).

    ``model_path``: a model file, or several (the folds of a cross-validation), which predict as one
    ensemble averaging their softmax tile by tile (:func:`segcore.model.ensemble.load_models`; its
    ``"auto"`` threshold is the mean of theirs). ``normalisation``: the plan's, as the model was trained
    with (:mod:`segcore.plan.normalise`); ``device_request``: ``"auto"``, ``"cpu"`` or ``"cuda"``
    (:func:`segcore.compute.select_device`).
    """
    device = select_device(device_request)
    paths = model_files(model_path)
    model, metadata = load_models(paths, device)
    if len(paths) > 1:
        log.info("ensemble of %d models, their softmax averaged", len(paths))
    inference = inference_settings(metadata, settings, normalisation, model.depth, model.margin)
    threshold = inference.threshold
    log.info("operating point: %s", "argmax" if threshold is None else f"foreground probability >= {threshold}")
    label = method_label(inference.instances, inference.border_class)
    return Predictor(model, inference, device, int(metadata["in_channels"]), label)


def write_predictions(
    predictor: Predictor,
    images: Iterable[tuple[str, np.ndarray]],
    folder: str | os.PathLike,
    save_probabilities: bool,
) -> int:
    """Segment each ``(id, image)`` (the image as stored) and write the predictions as one shard folder
    (:mod:`segcore.predict.outputs`), which appears only once every image is written; returns the count.

    ``images`` is consumed lazily, so an image that cannot be read stops the shard before it is written.
    """
    inference = predictor.inference
    # A border-class model predicts the dataset's classes plus the border (last); masks hold the former.
    with shard_writer(folder, inference.mask_classes, save_probabilities, predictor.instance_label) as writer:
        for sample_id, image in images:
            probabilities, mask, instances = segment_image(predictor.model, image, inference, predictor.device)
            writer.write(sample_id, image, mask, probabilities, instances)
    return writer.count


def predict_shard(
    model_path: str | os.PathLike | Sequence[str | os.PathLike],
    data: str | os.PathLike,
    ids: Sequence[str],
    settings: PredictionSettings,
    device_request: str,
    folder: str | os.PathLike,
    normalisation: Normalisation = DTYPE_SCALING,
) -> torch.device:
    """Predict the images ``ids`` of the canonical folder ``data`` and write them as one shard folder.

    ``model_path``, ``normalisation`` and ``device_request`` as :func:`load_predictor` takes them (several
    model files: the folds of a cross-validation, predicting as one ensemble). Returns the device used.
    """
    predictor = load_predictor(model_path, settings, device_request, normalisation)
    images = ((sample_id, read_sample(data, sample_id).image) for sample_id in ids)
    count = write_predictions(predictor, images, folder, settings.save_probabilities)
    log.info("predicted %d test images on %s; objects by %s", count, predictor.device, predictor.instance_label)
    return predictor.device


def predict_set_shard(
    model_path: str | os.PathLike | Sequence[str | os.PathLike],
    image_set: ImageSet,
    shard: int,
    n_shards: int,
    settings: PredictionSettings,
    device_request: str,
    folder: str | os.PathLike,
    normalisation: Normalisation = DTYPE_SCALING,
    convert_to: int | None = None,
) -> int:
    """Segment shard ``shard`` of ``n_shards`` of the set's images into the predictions folder ``folder``.

    The shard holds :func:`segcore.data.shards.shard_ids` of the set's ids (as rule predict shards test ids).
    ``settings``, ``device_request``, ``normalisation``: as rule predict takes them; ``convert_to``:
    ``dataset.import.channels`` (1 or 3), applied as the import applied it, or None. Probabilities are always
    written. Raises :class:`InputError` naming the file (and page) of an image that cannot be used; the
    folder is then not written. Returns the number of images segmented.
    """
    items = list_set_images(image_set)  # before the model loads: a bad listing stops at once
    chosen = set(shard_ids([item.id for item in items], shard, n_shards))
    predictor = load_predictor(model_path, settings, device_request, normalisation)
    images = ((item.id, load_set_image(item, predictor.in_channels, convert_to)) for item in items if item.id in chosen)
    count = write_predictions(predictor, images, folder, save_probabilities=True)
    log.info("segmented %d of the %d images of %s on %s", count, len(items), image_set.key, predictor.device)
    return count
