"""Pixel weight maps for the U-Net loss (Ronneberger et al. 2015, eq. 2).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

``w_c`` balances class frequencies; ``d1``/``d2`` are the distances (in pixels, between pixel centres) from
``x`` to the nearest and the second-nearest instance, so the second term is large in the thin background gaps
between touching objects and makes the network learn to separate them. Inside instance ``i`` the distance to
``i`` is 0, so there ``d1 = 0`` and ``d2`` is the distance to the closest other instance.

Two implementations of the border term share one formula (:func:`_border_term`):

- :func:`border_weights_reference`: one full-image distance transform per instance, a ``(K, H, W)`` stack;
  the plain method, kept as the reference for tests and benchmarks.
- :func:`border_weights`: the fast method used by the pipeline; each distance transform only inside the
  instance's bounding box grown by the cut-off radius, two running ``(H, W)`` minima, memory independent of K.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

# The fast method may drop border terms smaller than this fraction of w0 (see _cutoff_radius).
NEGLIGIBLE_FRACTION = 1e-6


def _check_class_mask(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Return ``mask`` as an array after checking it holds integer class ids in ``[0, num_classes)``."""
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biu":
        raise ValueError(f"class mask must hold integer class ids, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
        raise ValueError(f"class mask values must lie in [0, {num_classes}), got min {mask.min()} and max {mask.max()}")
    return mask


def class_pixel_counts(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Count the pixels of each class in an integer class mask.

    Args:
        mask: integer (or bool) array of any shape, e.g. one ``(H, W)`` mask or an ``(N, H, W)`` stack;
            values are class ids in ``[0, num_classes)``.
        num_classes: K, the number of classes including background (>= 1).

    Returns:
        ``int64`` ``(K,)``: ``counts[k]`` = number of pixels with class ``k`` (0 for absent classes).

    Raises:
        ValueError: ``num_classes < 1``, a non-integer mask, or a value outside ``[0, num_classes)``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    mask = _check_class_mask(mask, num_classes)
    return np.bincount(mask.ravel().astype(np.intp), minlength=num_classes).astype(np.int64)


def class_weights_from_counts(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency class weights ``w_c``, normalised to a pixel-weighted mean of 1.

    For a class with ``counts[k] > 0``: ``w_k = total / (K_present * counts[k])``, where ``total`` is the sum
    of all counts and ``K_present`` the number of classes with a nonzero count. Then
    ``sum_k counts[k] * w_k / total = 1``: every present class carries the same share of the loss and the
    average pixel weight over the counted pixels is 1, so the loss scale does not depend on class balance.

    Classes with zero pixels get weight **1.0**, the neutral weight (that of a class in a perfectly balanced
    set). Their weight cannot change the mean above since no counted pixel has them, but the weights may
    be counted on one split and applied to another (or to a later image that does contain the class): 1.0
    keeps such pixels in the loss at the average weight, where 0.0 would silently drop them from training.

    Args:
        counts: ``(K,)`` non-negative pixel counts, e.g. from :func:`class_pixel_counts` summed over the
            training set; at least one must be positive.

    Returns:
        ``float32`` ``(K,)`` class weights.

    Raises:
        ValueError: counts not 1-D, negative or non-finite, or all zero.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"class counts must be a 1-D array, got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"class counts must be finite and non-negative, got {counts.tolist()}")
    present = counts > 0
    if not present.any():
        raise ValueError("class counts are all zero: no labelled pixels to derive class weights from")
    weights = np.ones(counts.shape, dtype=np.float64)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _check_instances(instances: np.ndarray) -> np.ndarray:
    """Return ``instances`` as an array after checking it is a 2-D non-negative integer label image."""
    instances = np.asarray(instances)
    if instances.ndim != 2:
        raise ValueError(f"instance mask must be 2-D (H, W), got shape {instances.shape}")
    if instances.dtype.kind not in "iu":
        raise ValueError(f"instance mask must hold integer ids, got dtype {instances.dtype}")
    if instances.size and instances.min() < 0:
        raise ValueError(f"instance ids must be >= 0 (0 = no object), got min {instances.min()}")
    return instances


def _check_border_params(w0: float, sigma: float) -> None:
    """Raise ValueError unless ``w0 >= 0`` and ``sigma > 0`` are finite numbers."""
    if not (math.isfinite(w0) and w0 >= 0):
        raise ValueError(f"w0 must be a finite number >= 0, got {w0}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")


def _cutoff_radius(sigma: float) -> float:
    """Distance R beyond which an instance cannot contribute a non-negligible border term.

    The term is below ``NEGLIGIBLE_FRACTION * w0`` exactly when ``d1 + d2 > R`` with
    ``R = sigma * sqrt(2 ln(1 / NEGLIGIBLE_FRACTION))`` (26.3 px for sigma = 5). If a pixel is farther than R
    from instance i and i is its nearest or second-nearest instance, then ``d2 >= dist(x, i) > R`` (``d2`` is
    the larger of the two), so ``d1 + d2 >= d2 > R``: i only ever enters a negligible term there.
    """
    return sigma * math.sqrt(2.0 * math.log(1.0 / NEGLIGIBLE_FRACTION))


def _border_term(nearest: np.ndarray, second: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """``float32`` ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` from ``(H, W)`` distances; inf gives 0."""
    total = nearest.astype(np.float64)
    total += second
    return (w0 * np.exp(-(total * total) / (2.0 * sigma * sigma))).astype(np.float32)


def border_weights_reference(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Border term of eq. 2 by the plain method: a full-image distance transform per instance.

    Stacks ``distance_transform_edt(instances != i)`` for every instance id i into a ``float32`` ``(K, H, W)``
    array and takes the two smallest values per pixel. Time O(K H W), memory O(K H W): the reference for
    tests and benchmarks, not for the pipeline (use :func:`border_weights`).

    Args:
        instances: ``(H, W)`` non-negative integer ids, 0 = no object; ids need not be consecutive.
        w0: weight of the border term (>= 0).
        sigma: length scale in pixels (> 0).

    Returns:
        ``float32`` ``(H, W)``; all zeros when fewer than two instances are present (no second distance).
    """
    instances = _check_instances(instances)
    _check_border_params(w0, sigma)
    ids = np.unique(instances)
    ids = ids[ids != 0]
    if ids.size < 2:
        return np.zeros(instances.shape, dtype=np.float32)
    distances = np.empty((ids.size, *instances.shape), dtype=np.float32)
    for layer, instance_id in zip(distances, ids):
        layer[...] = ndi.distance_transform_edt(instances != instance_id)
    two_smallest = np.partition(distances, 1, axis=0)
    return _border_term(two_smallest[0], two_smallest[1], w0, sigma)


def border_weights(instances: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Border term of eq. 2, computing each instance's distances only where they can matter.

    For each instance (boxes from ``scipy.ndimage.find_objects``) the distance transform runs only inside
    its bounding box grown by ``ceil(R)`` pixels (R from :func:`_cutoff_radius`); every pixel outside that box
    is at least ``ceil(R) + 1 > R`` pixels from the instance, so by the argument there the instance cannot be
    one of the two distances of a term >= ``NEGLIGIBLE_FRACTION * w0``. Distances inside the box are exact:
    the whole instance lies in its box. Two running ``(H, W)`` arrays keep the smallest and second-smallest
    distance seen per pixel (inf where no box reached), so memory is O(H W) whatever the number of instances.

    Agreement with :func:`border_weights_reference` (``ref``), per pixel: every distance kept here is either
    exact or inf, so the kept d1, d2 are never smaller than the true ones and the result lies in ``[0, ref]``.
    Where ``ref >= 1e-6 * w0`` we have ``d1 <= d2 <= R``, so both nearest instances' boxes cover the pixel:
    the same d1 and d2 and the identical value. Elsewhere ``|result - ref| <= ref < 1e-6 * w0`` (1e-5 for
    w0 = 10).

    Args:
        instances: ``(H, W)`` non-negative integer ids, 0 = no object; ids need not be consecutive.
        w0: weight of the border term (>= 0).
        sigma: length scale in pixels (> 0).

    Returns:
        ``float32`` ``(H, W)``; all zeros when fewer than two instances are present.
    """
    instances = _check_instances(instances)
    _check_border_params(w0, sigma)
    if instances.size and instances.max() > instances.size:
        # find_objects returns one entry per id up to the largest; renumbering bounds that list by H * W.
        instances = relabel_sequential(instances)[0]
    boxes = [(label, box) for label, box in enumerate(ndi.find_objects(instances), 1) if box is not None]
    if len(boxes) < 2:
        return np.zeros(instances.shape, dtype=np.float32)
    margin = math.ceil(_cutoff_radius(sigma))
    nearest = np.full(instances.shape, np.inf, dtype=np.float32)
    second = np.full(instances.shape, np.inf, dtype=np.float32)
    for label, box in boxes:
        grown = tuple(
            slice(max(axis.start - margin, 0), min(axis.stop + margin, size))
            for axis, size in zip(box, instances.shape)
        )
        distance = ndi.distance_transform_edt(instances[grown] != label)
        nearest_view, second_view = nearest[grown], second[grown]
        # Order matters: the old nearest, if beaten, becomes the new second.
        np.minimum(second_view, np.maximum(nearest_view, distance), out=second_view)
        np.minimum(nearest_view, distance, out=nearest_view)
    return _border_term(nearest, second, w0, sigma)


def weight_map(
    mask: np.ndarray,
    instances: np.ndarray,
    class_weights: np.ndarray,
    w0: float,
    sigma: float,
    background_only: bool,
) -> np.ndarray:
    """Full U-Net weight map ``w_c(x) + border term`` for one image.

    Args:
        mask: ``(H, W)`` integer class ids in ``[0, K)``, 0 = background.
        instances: ``(H, W)`` non-negative integer instance ids, 0 = no object.
        class_weights: ``(K,)`` class weights, e.g. from :func:`class_weights_from_counts`.
        w0: weight of the border term (>= 0); ``weights.w0`` of the config.
        sigma: length scale of the border term in pixels (> 0); ``weights.sigma``.
        background_only: ``weights.background_only``. True (the paper's intent) adds the border term only
            where ``mask == 0``, so the large weight lands on the background gaps separating touching
            objects; False adds it at every pixel, which also up-weights object pixels near another object
            (inside an object d1 = 0, so its rim next to a touching neighbour gets nearly w0).

    Returns:
        ``float32`` ``(H, W)`` weight map (fast border method, :func:`border_weights`).

    Raises:
        ValueError: shapes differ, class_weights not 1-D, or mask values outside ``[0, K)``.
    """
    mask = np.asarray(mask)
    instances = np.asarray(instances)
    class_weights = np.asarray(class_weights, dtype=np.float32)
    if mask.shape != instances.shape:
        raise ValueError(f"class mask shape {mask.shape} differs from instance mask shape {instances.shape}")
    if class_weights.ndim != 1:
        raise ValueError(f"class_weights must be 1-D (K,), got shape {class_weights.shape}")
    mask = _check_class_mask(mask, class_weights.size)
    border = border_weights(instances, w0=w0, sigma=sigma)
    if background_only:
        border[mask != 0] = 0.0
    return class_weights[mask] + border
