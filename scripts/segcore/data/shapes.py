"""The embedded default dataset: seeded synthetic "shapes" images (circles, triangles, squares).

Every sample is a pure function of ``(seed, index)``: its random generator is seeded with both, so samples can
be generated in any order or in parallel and the files are byte-identical on every run.

Classes: 0 background, 1 circle, 2 triangle, 3 square. Objects are drawn with hard edges (no anti-aliasing,
so the true boundary is a pixel boundary) on a noisy, smoothly textured background; later objects are painted
over earlier ones, so objects may touch and overlap, but a placement that would hide too much of an existing
object is redrawn (an object mostly hidden is no longer recognisable as its shape).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import draw

from segcore.data.canonical import Sample

MAX_HIDDEN_FRACTION = 0.25  # of an object's area that a later object may cover
MIN_RADIUS = 10.0  # px; smaller triangles and squares are hard to tell apart at pixel level
MIN_COLOUR_DISTANCE = 0.35  # Euclidean RGB distance (in [0, 1] units) from the background's mean colour


def _object_pixels(kind: int, centre: tuple[float, float], size: float, shape: tuple[int, int]):
    """Row and column indices of a filled shape; ``size`` is the radius / half side / circumradius."""
    row, col = centre
    if kind == 1:
        rows, cols = draw.disk((row, col), size, shape=shape)
    elif kind == 2:  # upright equilateral triangle, circumradius ``size``
        angles = np.deg2rad([-90.0, 30.0, 150.0])
        rows, cols = draw.polygon(row + size * np.sin(angles), col + size * np.cos(angles), shape=shape)
    else:
        rows, cols = draw.rectangle((row - size, col - size), (row + size, col + size), shape=shape)
    return np.ravel(rows).astype(np.intp), np.ravel(cols).astype(np.intp)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float (size, size, 3) background: a random tint with smooth texture and pixel noise."""
    tint = rng.uniform(0.15, 0.6, size=3)
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma=4.0)
    texture *= 0.08 / max(float(texture.std()), 1e-6)
    return tint[None, None, :] + texture[..., None]


def _pick_colour(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """A random RGB colour far enough from the background to be visible."""
    while True:
        colour = rng.uniform(0.0, 1.0, size=3)
        if np.linalg.norm(colour - background_mean) >= MIN_COLOUR_DISTANCE:
            return colour


def generate_sample(seed: int, index: int, size: int, max_objects: int) -> Sample:
    """Generate shapes sample ``index`` of the dataset drawn with ``seed``.

    Returns a :class:`Sample` with id ``f"{index:04d}"``; image uint8 (size, size, 3), class mask uint8
    (size, size) in 0..3, instance mask uint16 (size, size) with ids 1..n (0 = background). Each image holds
    1..``max_objects`` objects of random class, size (radius 10..size/5), colour and position, fully inside the
    image. ``size`` and ``max_objects`` come from ``dataset.shapes`` (defaults in config/schema.yaml).
    """
    rng = np.random.default_rng([seed, index])
    shape = (size, size)
    image = _background(rng, size)
    background_mean = image.reshape(-1, 3).mean(axis=0)
    mask = np.zeros(shape, np.uint8)
    instances = np.zeros(shape, np.uint16)
    areas: dict[int, int] = {}
    max_radius = max(size / 5.0, MIN_RADIUS + 1.0)
    for instance_id in range(1, int(rng.integers(1, max_objects + 1)) + 1):
        for _attempt in range(20):
            kind = int(rng.integers(1, 4))
            radius = rng.uniform(MIN_RADIUS, max_radius)
            centre = tuple(rng.uniform(radius + 1, size - radius - 2, size=2))
            rows, cols = _object_pixels(kind, centre, radius, shape)
            covered = instances[rows, cols]
            hidden = np.bincount(covered, minlength=instance_id)[1:]
            if all(hidden[i - 1] <= MAX_HIDDEN_FRACTION * areas[i] for i in areas):
                break
        else:
            continue  # no acceptable placement: draw fewer objects rather than hide one
        image[rows, cols] = _pick_colour(rng, background_mean)
        mask[rows, cols] = kind
        instances[rows, cols] = instance_id
        areas[instance_id] = rows.size
    image += rng.normal(scale=0.03, size=image.shape)
    image_u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return Sample(id=f"{index:04d}", image=image_u8, mask=mask, instances=instances)
