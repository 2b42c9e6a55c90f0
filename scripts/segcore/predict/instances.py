"""Objects from a prediction: instance labels that split touching objects, since objects are what users count.

A class mask merges touching objects into one connected blob. ``prediction.instances`` chooses how the
predicted objects are found (:func:`predicted_instances`):

* ``components``: the 4-connected components of each predicted class (touching objects stay merged). For a
  model trained with the border class the border pixels are first given their most probable object class.
* ``watershed``: a seeded watershed (``skimage.segmentation.watershed``) that splits touching objects.
  A border-class model seeds it with the connected components of the predicted interior (classes 1..K-1)
  and floods the border pixels from them in order of rising border probability, so each border pixel joins
  the object it lies on. A plain model seeds it with the h-maxima of the distance transform of each class's
  predicted foreground (maxima standing ``watershed_h`` pixels above every path to a higher maximum; one
  per convex blob, two for two touching discs) and floods ``-distance`` within that class's foreground.
* ``auto``: ``watershed`` for a border-class model (the border class is there to be used), else ``components``.

Every function is deterministic (no random numbers). Instance ids are 1..N in order of the class, then of
the seed's first pixel in raster order; each instance has one class and is 4-connected.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_components
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

METHODS = ("auto", "components", "watershed")

# 4-connectivity: objects that touch only at a corner are separate objects (as the object metrics count them).
OBJECT_CONNECTIVITY = 1


def component_instances(class_mask: np.ndarray) -> np.ndarray:
    """Connected components of each foreground class (4-connected), numbered 1..N across all classes.

    ``class_mask``: integer (H, W), 0 = background. Returns ``int32`` (H, W), 0 = background; class 1's
    components come first, each class's in raster order of their first pixel. Touching objects of different
    classes stay separate objects; every pixel of an object has one class.
    """
    labels = np.zeros(class_mask.shape, dtype=np.int32)
    next_id = 0
    for class_id in np.unique(class_mask):
        if class_id == 0:
            continue
        components, count = label_components(class_mask == class_id, connectivity=OBJECT_CONNECTIVITY, return_num=True)
        inside = components > 0
        labels[inside] = components[inside] + next_id
        next_id += count
    return labels


def resolve_method(requested: str, border_class: bool) -> str:
    """``components`` or ``watershed`` for the ``prediction.instances`` value ``requested`` (see the module)."""
    if requested not in METHODS:
        raise ValueError(f"prediction.instances must be one of {METHODS}, got {requested!r}")
    if requested == "auto":
        return "watershed" if border_class else "components"
    return requested


def method_label(method: str, border_class: bool) -> str:
    """How a prediction's objects were found, in words for the report (``method`` as :func:`resolve_method`)."""
    if method == "watershed":
        return "watershed on the border class" if border_class else "watershed on the distance transform"
    return "connected components (border folded in)" if border_class else "connected components"


def _relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """int32 ``labels`` with its positive ids renumbered 1..N in order of first appearance in raster order."""
    flat = labels.ravel()
    ids, first = np.unique(flat[flat > 0], return_index=True)
    order = ids[np.argsort(first)]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int32)
    lookup[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lookup[labels]


def _class_watershed(foreground: np.ndarray, h: float) -> np.ndarray:
    """int32 (H, W) instances of one class's foreground (bool (H, W)) by a distance-transform watershed.

    Seeds: the h-maxima of the Euclidean distance to the background, one seed per 8-connected plateau within
    one 4-connected component (a diagonal ridge stays one seed). A component whose maxima all stand lower
    than ``h`` (thin objects) gets no seed and is kept whole as one instance.
    """
    distance = ndimage.distance_transform_edt(foreground)
    components = label_components(foreground, connectivity=1)
    peaks = h_maxima(distance, h).astype(bool) & foreground
    plateaus = label_components(peaks, connectivity=2)
    # One seed id per (component, plateau) pair: a plateau crossing a diagonal gap must not join two objects.
    seeds = np.zeros(foreground.shape, dtype=np.int64)
    pair = components[peaks].astype(np.int64) * (int(plateaus.max()) + 1) + plateaus[peaks]
    seeds[peaks] = np.unique(pair, return_inverse=True)[1].ravel() + 1
    labels = watershed(-distance, markers=seeds, mask=foreground, connectivity=OBJECT_CONNECTIVITY).astype(np.int32)
    unseeded = foreground & (labels == 0)
    extra = label_components(unseeded, connectivity=1).astype(np.int32)
    labels[unseeded] = extra[unseeded] + int(labels.max(initial=0))
    return labels


def distance_watershed(class_mask: np.ndarray, h: float) -> np.ndarray:
    """int32 (H, W) instances of a class mask, each foreground class split by :func:`_class_watershed`.

    ``class_mask``: integer (H, W), 0 = background; ``h`` > 0: the least height (pixels of distance) of a
    maximum that seeds its own object. Instance ids run 1..N, class by class; 0 = background.
    """
    if not h > 0:
        raise ValueError(f"watershed h must be > 0, got {h}")
    instances = np.zeros(class_mask.shape, dtype=np.int32)
    for class_id in np.unique(class_mask):
        if class_id == 0:
            continue
        labels = _class_watershed(class_mask == class_id, h)
        inside = labels > 0
        instances[inside] = _relabel_consecutive(labels)[inside] + int(instances.max(initial=0))
    return instances


def fold_border(probabilities: np.ndarray, class_mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W) class mask of K classes from a border-class model's mask of K + 1 (border = K).

    ``probabilities``: float (K + 1, H, W), plane K the border class, K >= 2; ``class_mask``: integer
    (H, W), values 0..K. Border pixels take their most probable object class 1..K-1 (the first on ties);
    every other pixel keeps its class.
    """
    border = probabilities.shape[0] - 1
    folded = class_mask.astype(np.uint8)
    on_border = folded == border
    folded[on_border] = (np.argmax(probabilities[1:border], axis=0) + 1).astype(np.uint8)[on_border]
    return folded


def border_watershed(probabilities: np.ndarray, class_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (H, W) class mask of K classes, int32 (H, W) instances) of a border-class model's prediction.

    ``probabilities``: float (K + 1, H, W) with plane K the border class (K >= 2); ``class_mask``: integer
    (H, W), values 0..K (K = border). Seeds are the 4-connected components of each interior class 1..K-1;
    they flood the foreground (every pixel of class > 0) in order of rising border probability, so each
    border pixel joins the seed it is reached from first. A border blob no seed reaches becomes objects of
    its own, of its most probable object class (:func:`fold_border`). Each instance has its seed's class
    throughout, which the returned class mask holds; background stays 0.
    """
    if probabilities.ndim != 3 or probabilities.shape[0] < 3 or probabilities.shape[1:] != class_mask.shape:
        raise ValueError(
            f"need (K + 1, H, W) probabilities with K >= 2 and an (H, W) class mask; got {probabilities.shape} "
            f"and {class_mask.shape}"
        )
    border = probabilities.shape[0] - 1
    seeds = component_instances(np.where(class_mask == border, 0, class_mask))
    foreground = class_mask > 0
    elevation = probabilities[border].astype(np.float64)
    instances = watershed(elevation, markers=seeds, mask=foreground, connectivity=OBJECT_CONNECTIVITY)
    instances = instances.astype(np.int32)
    folded = fold_border(probabilities, class_mask)
    # Each instance's class is its seed's: the class of any seed pixel (seeds are single-class components).
    seed_class = np.zeros(int(seeds.max(initial=0)) + 1, dtype=np.uint8)
    seed_class[seeds[seeds > 0]] = folded[seeds > 0]
    mask = seed_class[instances]
    unseeded = foreground & (instances == 0)
    if unseeded.any():
        extra = component_instances(np.where(unseeded, folded, 0))
        instances[unseeded] = extra[unseeded] + int(instances.max(initial=0))
        mask[unseeded] = folded[unseeded]
    return mask, instances


def predicted_instances(
    probabilities: np.ndarray, class_mask: np.ndarray, *, border_class: bool, method: str, h: float
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (H, W) class mask of the dataset's K classes, int32 (H, W) instances) of one prediction.

    ``probabilities``: float32 (C, H, W) as predicted, C = K + 1 for a ``border_class`` model (plane K the
    border) else K; ``class_mask``: integer (H, W), values 0..C-1 (the argmax or an operating point);
    ``method``: ``components`` or ``watershed`` (:func:`resolve_method`); ``h``: ``prediction.watershed_h``.
    Instances: 0 = background, ids 1..N, each of one class (the returned mask's class at its pixels).
    """
    if method not in ("components", "watershed"):
        raise ValueError(f"method must be components or watershed (resolve auto first), got {method!r}")
    if border_class and method == "watershed":
        return border_watershed(probabilities, class_mask)
    mask = fold_border(probabilities, class_mask) if border_class else class_mask.astype(np.uint8)
    instances = distance_watershed(mask, h) if method == "watershed" else component_instances(mask)
    return mask, instances
