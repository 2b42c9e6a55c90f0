"""Predicting one stored image: the one path from pixels to class mask shared by rule predict and ``segment``.

Rule predict (:func:`segcore.predict.shard.predict_shard`, the eager model) and the ``segment`` command
(:mod:`segcore.predict.segment`, the bundle's TorchScript model) both call :func:`segment_image` with an
:class:`InferenceSettings`, which holds every choice between the stored pixels and the mask: normalisation,
tile geometry, test-time augmentation, operating point, border class and instance method. The bundle's
model card (:mod:`segcore.predict.bundle`) stores these settings, so the two give the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segcore.model.model_file import tile_size_for
from segcore.model.overlap_tile import class_mask, predict_probabilities
from segcore.plan.normalise import Normalisation, normalise_image
from segcore.predict.instances import predicted_instances
from segcore.train.operating_point import foreground_mask


@dataclass(frozen=True)
class InferenceSettings:
    """Every setting that turns a stored image into its prediction, besides the network's weights.

    ``num_classes``: the network's output planes (a border-class model's dataset classes plus the border,
    last); ``depth``/``margin``: the network's poolings and the pixels its output lies inside its input (0 for
    same padding); ``tile_size``: the requested tile side (:func:`segcore.model.model_file.tile_size_for`
    adapts it per image); ``overlap``, ``blend``, ``batch_size``, ``tta``: as
    :func:`segcore.model.overlap_tile.predict_probabilities` takes them; ``threshold``: the foreground
    probability of the operating point, None for argmax; ``instances``: ``components`` or ``watershed``
    (resolved, :func:`segcore.predict.instances.resolve_method`); ``watershed_h``: its h.
    """

    num_classes: int
    depth: int
    margin: int
    normalisation: Normalisation
    tile_size: int
    overlap: int
    blend: str
    batch_size: int
    tta: str
    threshold: float | None
    border_class: bool
    instances: str
    watershed_h: float

    @property
    def mask_classes(self) -> int:
        """Classes of the written masks: the border class (last) is folded into the object classes."""
        return self.num_classes - 1 if self.border_class else self.num_classes


def predict_image(
    model: torch.nn.Module, image: np.ndarray, settings: InferenceSettings, device: torch.device
) -> np.ndarray:
    """float32 (K, H, W) class probabilities of one stored image by overlap-tile prediction.

    ``image``: (H, W) or (H, W, C) uint8/uint16 as stored, normalised as in training
    (:func:`segcore.plan.normalise.normalise_image`); ``model``: an eval-mode (fused or TorchScript) model.
    The tile is chosen per image (:func:`segcore.model.model_file.tile_size_for`), so a small image is one
    tile. A valid-padding net's tiles abut exactly, so ``settings.overlap`` applies to same-padding nets only
    (and only where the image needs more than one tile).
    """
    tile_size = tile_size_for(settings.depth, settings.margin, settings.tile_size, image.shape[:2])
    # One tile covering the whole image has no neighbour to overlap (its blend weights normalise to 1), and
    # the tile shrinks to such an image: a configured overlap larger than that tile must not fail it.
    one_tile = tile_size >= max(image.shape[:2])
    overlap = settings.overlap if settings.margin == 0 and not one_tile else 0
    return predict_probabilities(
        model, normalise_image(image, settings.normalisation), num_classes=settings.num_classes,
        tile_size=tile_size, margin=settings.margin, overlap=overlap, batch_size=settings.batch_size,
        blend=settings.blend, tta=settings.tta, device=device,
    )  # fmt: skip


def segment_image(
    model: torch.nn.Module, image: np.ndarray, settings: InferenceSettings, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, mask, instances) of one stored image (see :func:`predict_image` for the arguments).

    ``probabilities``: float32 (K, H, W) as the network predicts them (a border-class model's border plane
    last); ``mask``: uint8 (H, W) of the dataset's classes, from the operating point (argmax, or foreground
    probability >= ``settings.threshold``) with the border class folded in; ``instances``: int32 (H, W)
    objects (:func:`segcore.predict.instances.predicted_instances`, whose watershed also decides the mask of
    a border-class model).
    """
    probabilities = predict_image(model, image, settings, device)
    if settings.threshold is None:
        classes = class_mask(probabilities)
    else:
        classes = foreground_mask(probabilities[1], settings.threshold)
    mask, instances = predicted_instances(
        probabilities, classes, border_class=settings.border_class, method=settings.instances,
        h=settings.watershed_h,
    )  # fmt: skip
    return probabilities, mask, instances
