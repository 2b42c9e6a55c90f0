"""Augmentation keeps image and labels aligned, and each copy is a pure function of (seed, id, copy)."""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from segcore.augment.transforms import AugmentSettings, augment_sample, augmented_id, training_samples
from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.data.shapes import generate_sample

# The schema's augment defaults: the paper's mirrors and 3x3-point elastic deformation with sigma 10 px.
PAPER = AugmentSettings(flips=True, elastic=True, elastic_points=3, elastic_sigma=10.0)


def shapes_sample(seed: int, index: int, size: int = 128) -> Sample:
    return generate_sample(seed, index, size=size, max_objects=5)


def label_coded_sample() -> Sample:
    """A sample whose image encodes its mask (grey = 60 * class + 20), so alignment is checkable."""
    base = shapes_sample(1, 0, size=96)
    image = (60 * base.mask + 20).astype(np.uint8)
    return Sample("coded", np.repeat(image[..., None], 3, axis=2), base.mask, base.instances)


def test_flips_are_one_of_the_four_mirrors_of_image_and_masks_together():
    sample = shapes_sample(2, 7)
    seen = set()
    for copy_index in range(1, 13):
        out = augment_sample(sample, 0, copy_index, replace(PAPER, elastic=False))
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
    out = augment_sample(sample, 4, 1, replace(PAPER, image_order=0))
    assert not np.array_equal(out.mask, sample.mask)  # something moved
    assert np.array_equal(out.image[..., 0], (60 * out.mask + 20).astype(np.uint8))
    assert np.array_equal(out.mask > 0, out.instances > 0)


def test_cubic_image_agrees_with_nearest_masks_away_from_edges():
    sample = label_coded_sample()
    out = augment_sample(sample, 4, 1, PAPER)
    expected = 60.0 * out.mask + 20
    # Cubic splines ring for a few pixels beside a step; 6 px from any label edge they have settled.
    edges = ndimage.maximum_filter(out.mask, 3) != ndimage.minimum_filter(out.mask, 3)
    interior = ndimage.distance_transform_edt(~edges) >= 6
    assert interior.sum() > 0.3 * out.mask.size
    assert np.max(np.abs(out.image[..., 0][interior] - expected[interior])) <= 1


def test_masks_gain_no_new_values_and_keep_dtypes():
    sample = shapes_sample(3, 1)
    out = augment_sample(sample, 9, 2, PAPER)
    assert set(np.unique(out.mask)) <= set(np.unique(sample.mask))
    assert set(np.unique(out.instances)) <= set(np.unique(sample.instances))
    assert (out.image.dtype, out.mask.dtype, out.instances.dtype) == (np.uint8, np.uint8, np.uint16)
    assert out.id == "0001_aug2"


@pytest.mark.parametrize("settings", [PAPER, replace(PAPER, elastic=False), replace(PAPER, flips=False)])
def test_copies_are_reproducible_and_distinct(settings):
    sample = shapes_sample(3, 2)
    first = augment_sample(sample, 5, 1, settings)
    again = augment_sample(sample, 5, 1, settings)
    for a, b in [(first.image, again.image), (first.mask, again.mask), (first.instances, again.instances)]:
        assert np.array_equal(a, b)
    if settings.elastic:
        assert not np.array_equal(first.image, augment_sample(sample, 5, 2, settings).image)
        assert not np.array_equal(first.image, augment_sample(sample, 6, 1, settings).image)


def test_settings_from_the_config_section():
    assert AugmentSettings.from_config(with_defaults("augment", {})) == PAPER
    section = with_defaults("augment", {"flips": False, "elastic_sigma": 2.5, "copies": 4})
    assert AugmentSettings.from_config(section) == replace(PAPER, flips=False, elastic_sigma=2.5)


def test_training_samples_are_each_original_then_its_copies(tmp_path):
    originals = [shapes_sample(4, index, size=64) for index in range(3)]
    write_canonical(tmp_path / "data", originals, num_classes=4)
    section = with_defaults("augment", {"copies": 2})
    samples = list(training_samples(str(tmp_path / "data"), ["0002", "0000"], 8, section))
    assert [sample.id for sample in samples] == ["0002", "0002_aug1", "0002_aug2", "0000", "0000_aug1", "0000_aug2"]
    np.testing.assert_array_equal(samples[0].image, originals[2].image)
    expected = augment_sample(originals[2], 8, 2, PAPER)
    assert samples[2].id == augmented_id("0002", 2)
    np.testing.assert_array_equal(samples[2].image, expected.image)
    np.testing.assert_array_equal(samples[2].mask, expected.mask)
    no_copies = list(training_samples(str(tmp_path / "data"), ["0001"], 8, with_defaults("augment", {"copies": 0})))
    assert [sample.id for sample in no_copies] == ["0001"]


def test_float_images_are_deformed_without_rounding_or_clipping():
    """Canonical float32 images (from float TIFFs) keep fractional and negative values through elastic."""
    base = label_coded_sample()
    image = (base.mask.astype(np.float32) - 1.5) * 0.25  # values -0.375 .. 0.375: no integer range
    out = augment_sample(Sample("f", image, base.mask, base.instances), 4, 1, replace(PAPER, image_order=0))
    assert out.image.dtype == np.float32
    np.testing.assert_array_equal(out.image, (out.mask.astype(np.float32) - 1.5) * 0.25)
