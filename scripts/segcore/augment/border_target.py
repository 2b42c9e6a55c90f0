"""The border class: a training target that marks where touching objects meet (the DSB 2018 winners' route).

A plain class mask merges touching objects into one blob, so no post-processing can tell them apart. With
``experiments.<name>.border_class`` on, the target gets one extra class, ``border`` (id K after the dataset's
classes 0..K-1): the pixels of an object that lie within ``border_width`` pixels (Euclidean) of a pixel of
*another* object. Borders against the background are not marked; only contacts are. At prediction the
connected interiors then separate the objects and serve as watershed seeds
(:mod:`segcore.predict.instances`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from segcore.io import InputError

BORDER_CLASS_NAME = "border"


def disk_footprint(radius: int) -> np.ndarray:
    """bool (2r+1, 2r+1): the offsets (dy, dx) with ``dy**2 + dx**2 <= r**2``; r = 0 gives the centre alone."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def touching_border(instances: np.ndarray, width: int) -> np.ndarray:
    """bool (H, W): object pixels within Euclidean distance ``width`` of a pixel of another object.

    ``instances``: integer (H, W), 0 = no object, each object a distinct positive id (ids need not be
    consecutive). ``width`` >= 1; width 1 marks the pixels with a 4-neighbour in another object. Pixels
    outside the image count as background (no object), so the image edge is never a border.
    """
    if width < 1:
        raise ValueError(f"border width must be >= 1, got {width}")
    labels = np.asarray(instances).astype(np.int64)
    if labels.ndim != 2:
        raise ValueError(f"instances must be (H, W), got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"instances hold negative id {labels.min()}")
    footprint = disk_footprint(width)
    # Another object lies within the disk of a pixel of object i exactly when the disk holds an id above i
    # (the largest id there exceeds i) or a positive id below i (the smallest, background read as +inf).
    largest = ndimage.maximum_filter(labels, footprint=footprint, mode="constant", cval=0)
    above_every_id = int(labels.max(initial=0)) + 1
    objects_only = np.where(labels > 0, labels, above_every_id)
    smallest = ndimage.minimum_filter(objects_only, footprint=footprint, mode="constant", cval=above_every_id)
    return (labels > 0) & ((largest > labels) | (smallest < labels))


def border_target(class_mask: np.ndarray, instances: np.ndarray, width: int, num_classes: int) -> np.ndarray:
    """uint8 (H, W): ``class_mask`` with the touching-border pixels (:func:`touching_border`) set to class K.

    ``class_mask``: integer (H, W) with values 0..K-1, K = ``num_classes`` (the dataset's classes, background
    included); ``instances``: integer (H, W) of the same shape, 0 = no object. Every other pixel keeps its
    class. An image without touching objects is returned unchanged (as uint8). Raises ValueError for shapes
    that disagree, a class value >= K, or K + 1 > 256 (no longer a uint8 mask).
    """
    class_mask = np.asarray(class_mask)
    if class_mask.shape != np.shape(instances):
        raise ValueError(f"class mask {class_mask.shape} and instances {np.shape(instances)} differ in shape")
    if not 1 <= num_classes <= 255:
        raise ValueError(f"need 1 <= num_classes <= 255 for a uint8 mask with a border class, got {num_classes}")
    if class_mask.size and int(class_mask.max()) >= num_classes:
        raise ValueError(f"class mask holds class {int(class_mask.max())} but num_classes is {num_classes}")
    target = class_mask.astype(np.uint8)
    target[touching_border(instances, width)] = num_classes
    return target


def border_width_of(experiment: Mapping[str, Any], where: str) -> int | None:
    """The border width (pixels) of an ``experiments.<name>`` section with border_class on, else None.

    ``where``: the section's config path for messages (``experiments.<name>``). The section holds
    ``border_class`` and ``border_width`` with their schema defaults filled in. Raises
    :class:`segcore.io.InputError` for a border class with the bce loss, whose one foreground logit cannot
    hold a third class.
    """
    if not experiment["border_class"]:
        return None
    loss = experiment["loss"]
    names = [term["name"] for term in loss.get("terms", [])] if loss["name"] == "combo" else [loss["name"]]
    if "bce" in names:
        raise InputError(
            f"config key {where}.border_class: the border class adds a class, and the bce loss scores one "
            "foreground class only; use ce, focal, dice or weighted_ce"
        )
    return int(experiment["border_width"])
