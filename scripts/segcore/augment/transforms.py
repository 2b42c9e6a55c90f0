"""Offline augmentation: mirrors (imgaug) and elastic deformation on a coarse grid (elasticdeform).

Every augmented copy is a pure function of ``(seed, sample id, copy index)``: its random generator is seeded
from those three, so copies can be made in any order, in any shard, and are byte-identical on every run.
Image and labels receive the same transform: the image is interpolated (cubic by default), class and instance
masks use nearest-neighbour interpolation so no new label values appear.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import elasticdeform
import numpy as np

from segcore.augment.imgaug_compat import iaa
from segcore.augment.naming import augmented_id
from segcore.data.canonical import Sample, read_sample


@dataclass(frozen=True)
class AugmentSettings:
    """What an augmented copy may do: the ``augment`` config section's transform keys (defaults in
    config/schema.yaml: the U-Net paper's elastic deformation) and the image's interpolation order."""

    flips: bool
    elastic: bool
    elastic_points: int  # control points per axis of the coarse displacement grid
    elastic_sigma: float  # standard deviation of the displacements, in pixels
    image_order: int = 3  # not a config key: spline order for the image (3 = cubic); masks always use 0

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> AugmentSettings:
        """The settings of an ``augment`` section with its defaults filled in (``copies`` is not one)."""
        return cls(
            flips=bool(section["flips"]),
            elastic=bool(section["elastic"]),
            elastic_points=int(section["elastic_points"]),
            elastic_sigma=float(section["elastic_sigma"]),
        )


def copy_seed(seed: int, sample_id: str, copy_index: int) -> list[int]:
    """Seed sequence for one augmented copy; crc32 gives a stable integer for a string id across runs."""
    return [seed, zlib.crc32(sample_id.encode("utf-8")), copy_index]


def _mirror(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Flip all arrays left-right and/or up-down together, each with probability 0.5."""
    # The coin flips come from the copy's own generator: imgaug children draw their random state from
    # imgaug's global generator at construction, which would make the copy depend on call history.
    chosen = [
        flip for flip, heads in ((iaa.Fliplr(1.0), rng.random() < 0.5), (iaa.Flipud(1.0), rng.random() < 0.5)) if heads
    ]
    if not chosen:
        return arrays
    flips = iaa.Sequential(chosen)
    return [flips(image=array) for array in arrays]


def _elastic(arrays: list[np.ndarray], rng: np.random.Generator, settings: AugmentSettings) -> list[np.ndarray]:
    """Deform all arrays with one random displacement grid; first array cubic, the others nearest."""
    # elasticdeform.deform_random_grid draws from NumPy's global generator; drawing the displacement here
    # keeps the copy a function of its own seed.
    displacement = rng.standard_normal((2, settings.elastic_points, settings.elastic_points))
    displacement *= settings.elastic_sigma
    image = arrays[0].astype(np.float32)
    labels = [array.astype(np.int32) for array in arrays[1:]]
    deformed = elasticdeform.deform_grid(
        [image, *labels],
        displacement,
        order=[settings.image_order] + [0] * len(labels),
        mode="mirror",
        axis=[(0, 1)] * (1 + len(labels)),
    )
    if np.issubdtype(arrays[0].dtype, np.integer):  # float images keep the interpolated values
        info = np.iinfo(arrays[0].dtype)
        deformed[0] = np.clip(np.rint(deformed[0]), info.min, info.max)
    return [out.astype(original.dtype) for out, original in zip(deformed, arrays)]


def augment_sample(sample: Sample, seed: int, copy_index: int, settings: AugmentSettings) -> Sample:
    """One augmented copy of ``sample`` (image uint8/uint16/float32 (H, W[, C]); masks (H, W)).

    Returns a new :class:`Sample` with id ``augmented_id(sample.id, copy_index)``, the same shapes and dtypes.
    With flips and elastic both off the copy equals the original.
    """
    rng = np.random.default_rng(copy_seed(seed, sample.id, copy_index))
    arrays = [sample.image, sample.mask, sample.instances]
    if settings.flips:
        arrays = _mirror(arrays, rng)
    if settings.elastic:
        arrays = _elastic(arrays, rng, settings)
    image, mask, instances = (np.ascontiguousarray(array) for array in arrays)
    return Sample(
        id=augmented_id(sample.id, copy_index), image=image, mask=mask, instances=instances, group=sample.group
    )


def training_samples(data_dir: str, ids: Sequence[str], seed: int, section: Mapping[str, Any]) -> Iterator[Sample]:
    """Each training original of ``ids`` (read from the canonical folder ``data_dir``), followed by its
    augmented copies 1..``copies``; ``section`` is the ``augment`` config section with its defaults filled in.

    Samples are produced one at a time, so a shard never sits in memory whole.
    """
    settings = AugmentSettings.from_config(section)
    for sample_id in ids:
        original = read_sample(data_dir, sample_id)
        yield original
        for copy_index in range(1, section["copies"] + 1):
            yield augment_sample(original, seed, copy_index, settings)
