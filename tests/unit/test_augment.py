"""Augmentation keeps image and labels aligned, and each copy is a pure function of (seed, id, copy)."""

import numpy as np
import pytest
from scipy import ndimage

from segcore.augment.transforms import AugmentSettings, augment_sample
from segcore.data.canonical import Sample
from segcore.data.shapes import generate_sample


def label_coded_sample() -> Sample:
    """A sample whose image encodes its mask (grey = 60 * class + 20), so alignment is checkable."""
    base = generate_sample(1, 0, size=96)
    image = (60 * base.mask + 20).astype(np.uint8)
    return Sample("coded", np.repeat(image[..., None], 3, axis=2), base.mask, base.instances)


def test_flips_are_one_of_the_four_mirrors_of_image_and_masks_together():
    sample = generate_sample(2, 7)
    seen = set()
    for copy_index in range(1, 13):
        out = augment_sample(sample, 0, copy_index, AugmentSettings(elastic=False))
        matches = [
            axes
            for axes in [(), (0,), (1,), (0, 1)]
            if np.array_equal(out.image, np.flip(sample.image, axes) if axes else sample.image)
            and np.array_equal(out.mask, np.flip(sample.mask, axes) if axes else sample.mask)
            and np.array_equal(out.instances, np.flip(sample.instances, axes) if axes else sample.instances)
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) >= 3  # the coin flips vary between copies


def test_elastic_deformation_moves_image_and_masks_identically():
    sample = label_coded_sample()
    # With nearest-neighbour interpolation for the image too, the image must still encode the mask exactly.
    out = augment_sample(sample, 4, 1, AugmentSettings(image_order=0))
    assert not np.array_equal(out.mask, sample.mask)  # something moved
    assert np.array_equal(out.image[..., 0], (60 * out.mask + 20).astype(np.uint8))
    assert np.array_equal(out.mask > 0, out.instances > 0)


def test_cubic_image_agrees_with_nearest_masks_away_from_edges():
    sample = label_coded_sample()
    out = augment_sample(sample, 4, 1, AugmentSettings())
    expected = 60.0 * out.mask + 20
    # Cubic splines ring for a few pixels beside a step; 6 px from any label edge they have settled.
    edges = ndimage.maximum_filter(out.mask, 3) != ndimage.minimum_filter(out.mask, 3)
    interior = ndimage.distance_transform_edt(~edges) >= 6
    assert interior.sum() > 0.3 * out.mask.size
    assert np.max(np.abs(out.image[..., 0][interior] - expected[interior])) <= 1


def test_masks_gain_no_new_values_and_keep_dtypes():
    sample = generate_sample(3, 1)
    out = augment_sample(sample, 9, 2, AugmentSettings())
    assert set(np.unique(out.mask)) <= set(np.unique(sample.mask))
    assert set(np.unique(out.instances)) <= set(np.unique(sample.instances))
    assert (out.image.dtype, out.mask.dtype, out.instances.dtype) == (np.uint8, np.uint8, np.uint16)
    assert out.id == "0001_aug2"


@pytest.mark.parametrize("settings", [AugmentSettings(), AugmentSettings(elastic=False), AugmentSettings(flips=False)])
def test_copies_are_reproducible_and_distinct(settings):
    sample = generate_sample(3, 2)
    first = augment_sample(sample, 5, 1, settings)
    again = augment_sample(sample, 5, 1, settings)
    for a, b in [(first.image, again.image), (first.mask, again.mask), (first.instances, again.instances)]:
        assert np.array_equal(a, b)
    if settings.elastic:
        assert not np.array_equal(first.image, augment_sample(sample, 5, 2, settings).image)
        assert not np.array_equal(first.image, augment_sample(sample, 6, 1, settings).image)
