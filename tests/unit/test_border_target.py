"""Tests for segcore.augment.border_target (the border class) and its use by the training data loader.

References: hand-built touching squares with their border pixels written out; scikit-image's
``segmentation.find_boundaries`` (width 1: the pixels of an object next to another object) and scipy's
Euclidean distance transform (any width), each applied object by object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import find_boundaries

from segcore.augment.border_target import border_target, border_width_of, disk_footprint, touching_border
from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.io import InputError
from segcore.train.data import load_labelled_images


def two_touching_squares() -> np.ndarray:
    """uint16 (10, 12): object 1 at rows 2..5, cols 2..5; object 2 at rows 2..5, cols 6..9 (they share the
    edge between columns 5 and 6); object 3 alone at rows 8..9, cols 0..1 (touching the image edge)."""
    instances = np.zeros((10, 12), np.uint16)
    instances[2:6, 2:6] = 1
    instances[2:6, 6:10] = 2
    instances[8:10, 0:2] = 3
    return instances


def reference_width_1(instances: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour in another object, one object at a time with find_boundaries: the
    'outer' boundary of the other objects (pixels outside them with a 4-neighbour inside) within object i."""
    border = np.zeros(instances.shape, bool)
    for object_id in np.unique(instances[instances > 0]):
        others = (instances > 0) & (instances != object_id)
        border |= (instances == object_id) & find_boundaries(others, connectivity=1, mode="outer")
    return border


def reference_width(instances: np.ndarray, width: int) -> np.ndarray:
    """Object pixels within Euclidean distance ``width`` of another object, from scipy's EDT per object."""
    border = np.zeros(instances.shape, bool)
    for object_id in np.unique(instances[instances > 0]):
        others = (instances > 0) & (instances != object_id)
        if others.any():
            border |= (instances == object_id) & (ndimage.distance_transform_edt(~others) <= width)
    return border


def random_instances(seed: int, shape=(40, 50), count: int = 12) -> np.ndarray:
    """Touching random objects: the nearest of ``count`` random centres (a Voronoi tiling) inside random
    discs, so objects touch along irregular edges and some stand alone; ids shuffled, not consecutive."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, shape, (count, 2))
    rows, cols = np.indices(shape)
    distances = np.hypot(rows[..., None] - centres[:, 0], cols[..., None] - centres[:, 1])
    nearest = distances.argmin(axis=-1)
    ids = rng.permutation(np.arange(5, 5 + 3 * count, 3))  # gaps and a random order of ids
    inside = distances.min(axis=-1) < rng.uniform(3, 9)
    return np.where(inside, ids[nearest], 0).astype(np.uint16)


def test_two_touching_squares_width_1_and_2_by_hand():
    instances = two_touching_squares()
    expected_1 = np.zeros(instances.shape, bool)
    expected_1[2:6, 5:7] = True  # the two columns along the shared edge
    np.testing.assert_array_equal(touching_border(instances, 1), expected_1)
    expected_2 = np.zeros(instances.shape, bool)
    expected_2[2:6, 4:8] = True  # two columns on each side: column 4 is 2 px from column 6
    np.testing.assert_array_equal(touching_border(instances, 2), expected_2)
    # The lone object at the image edge and the squares' other sides (next to background) are never border.
    assert not touching_border(instances, 3)[8:, :2].any()


def test_the_target_sets_class_k_on_the_border_and_keeps_every_other_class():
    instances = two_touching_squares()
    class_mask = np.where(instances == 1, 1, np.where(instances == 2, 2, np.where(instances == 3, 1, 0)))
    target = border_target(class_mask.astype(np.uint8), instances, width=1, num_classes=3)
    assert target.dtype == np.uint8
    expected = class_mask.copy()
    expected[2:6, 5:7] = 3
    np.testing.assert_array_equal(target, expected)


@pytest.mark.parametrize("seed", range(4))
def test_width_1_matches_find_boundaries(seed):
    instances = random_instances(seed)
    expected = reference_width_1(instances)
    assert expected.any()  # the random objects do touch
    np.testing.assert_array_equal(touching_border(instances, 1), expected)


@pytest.mark.parametrize(("seed", "width"), [(0, 2), (1, 3), (2, 2), (3, 5)])
def test_any_width_matches_the_distance_transform(seed, width):
    instances = random_instances(seed)
    np.testing.assert_array_equal(touching_border(instances, width), reference_width(instances, width))


def test_objects_touching_at_a_corner_are_border_from_width_2():
    # Diagonal neighbours are sqrt(2) apart: not within width 1, within width 2.
    instances = np.zeros((6, 6), np.uint16)
    instances[1:3, 1:3] = 1
    instances[3:5, 3:5] = 2
    assert not touching_border(instances, 1).any()
    assert touching_border(instances, 2)[2, 2] and touching_border(instances, 2)[3, 3]


def test_no_touching_objects_leave_the_mask_unchanged():
    instances = np.zeros((8, 8), np.uint16)
    instances[1:3, 1:3], instances[5:7, 5:7] = 1, 2
    mask = (instances > 0).astype(np.uint8)
    np.testing.assert_array_equal(border_target(mask, instances, 2, num_classes=2), mask)
    empty = np.zeros((4, 4), np.uint8)
    np.testing.assert_array_equal(border_target(empty, empty.astype(np.uint16), 2, num_classes=2), empty)


def test_bad_arguments_are_refused():
    instances = two_touching_squares()
    mask = (instances > 0).astype(np.uint8)
    with pytest.raises(ValueError, match="width"):
        touching_border(instances, 0)
    with pytest.raises(ValueError, match="shape"):
        border_target(mask[:-1], instances, 1, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        border_target(mask, instances, 1, num_classes=1)  # the mask holds class 1
    with pytest.raises(ValueError, match="num_classes"):
        border_target(mask, instances, 1, num_classes=256)


def test_disk_footprint_is_the_euclidean_disk():
    np.testing.assert_array_equal(disk_footprint(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    rows, cols = np.indices((7, 7)) - 3
    np.testing.assert_array_equal(disk_footprint(3), rows**2 + cols**2 <= 9)


def experiment(**keys) -> dict:
    return with_defaults("experiments.*", {"model": {"name": "unet"}, "loss": {"name": "ce"}, **keys})


def test_border_width_of_the_experiment_section():
    assert border_width_of(experiment(), "experiments.x") is None  # border_class defaults to off
    assert border_width_of(experiment(border_class=True), "experiments.x") == 2  # the schema's default width
    assert border_width_of(experiment(border_class=True, border_width=4), "experiments.x") == 4
    with pytest.raises(InputError, match=r"experiments\.x\.border_class.*bce"):
        border_width_of(experiment(border_class=True, loss={"name": "bce"}), "experiments.x")
    combo = {"name": "combo", "terms": [{"name": "dice"}, {"name": "bce"}]}
    with pytest.raises(InputError, match="bce"):
        border_width_of(experiment(border_class=True, loss=combo), "experiments.x")


def test_the_loader_adds_the_border_class_from_the_instances(tmp_path: Path):
    instances = two_touching_squares()
    mask = (instances > 0).astype(np.uint8)
    image = np.zeros((10, 12), np.uint8)
    write_canonical(tmp_path / "data", [Sample("a", image, mask, instances)], num_classes=2)
    plain = load_labelled_images([tmp_path / "data"])
    np.testing.assert_array_equal(plain.masks[0], mask)
    bordered = load_labelled_images([tmp_path / "data"], border_width=1, num_classes=2)
    expected = mask.copy()
    expected[reference_width_1(instances)] = 2
    np.testing.assert_array_equal(bordered.masks[0], expected)
