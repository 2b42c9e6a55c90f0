"""Tests for segcore.augment.weight_maps: class weights and the U-Net border term (Ronneberger et al. 2015, eq. 2).

References are hand-computed numbers and a brute-force distance computation with scipy.spatial's cdist;
the fast border method is checked against the full-image reference, which is itself checked against both.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.spatial.distance import cdist
from skimage.draw import disk
from skimage.segmentation import find_boundaries

from segcore.augment.weight_files import class_weight_table, write_weight_maps
from segcore.augment.weight_maps import (
    border_weights,
    border_weights_reference,
    class_pixel_counts,
    class_weights_from_counts,
    weight_map,
)
from segcore.data.canonical import Sample, write_canonical
from segcore.io import read_tiff

W0, SIGMA = 10.0, 5.0
NEGLIGIBLE = 1e-6 * W0  # the fast method may drop terms below this


def three_points() -> np.ndarray:
    """(3, 12) image, single-pixel instances with ids 3, 17, 900 on row 1 at columns 0, 4 and 10."""
    instances = np.zeros((3, 12), dtype=np.uint16)
    instances[1, 0], instances[1, 4], instances[1, 10] = 3, 17, 900
    return instances


# (pixel, expected 10 * exp(-(d1 + d2)^2 / 50)), distances worked out by hand for three_points():
HAND_CASES = [
    # (1, 2): 2 px to id 3, 2 px to id 17, 8 px to id 900 -> d1 + d2 = 4, exp(-16/50)
    ((1, 2), 7.2614904),
    # (1, 7): 7 to id 3, 3 to id 17, 3 to id 900 -> 6, exp(-36/50)
    ((1, 7), 4.8675226),
    # (1, 4) is id 17 itself: d1 = 0, d2 = 4 (id 3) -> 4, exp(-16/50)
    ((1, 4), 7.2614904),
    # (0, 2): sqrt(1 + 4) to ids 3 and 17 -> (2 sqrt 5)^2 = 20, exp(-20/50)
    ((0, 2), 6.7032005),
    # (2, 11): sqrt(1 + 1) to id 900, sqrt(1 + 49) = 5 sqrt 2 to id 17 -> (6 sqrt 2)^2 = 72, exp(-72/50)
    ((2, 11), 2.3692776),
]


def with_random_ids(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map labels 1..n to distinct random non-consecutive ids in [1, 60000); 0 stays 0."""
    lookup = np.concatenate(([0], rng.choice(np.arange(1, 60000), size=labels.max(), replace=False)))
    return lookup[labels].astype(np.int32)


def voronoi_instances(shape: tuple[int, int], count: int, rng: np.random.Generator, gaps: bool) -> np.ndarray:
    """Voronoi cells of ``count`` random seeds; ``gaps``: a 1-px background line between touching cells."""
    seeds = np.zeros(shape, dtype=np.int32)
    flat = rng.choice(seeds.size, size=count, replace=False)
    seeds.flat[flat] = np.arange(1, count + 1)
    if count == 0:
        return seeds
    _, (rows, cols) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[rows, cols]
    if gaps:
        cells[find_boundaries(cells, mode="inner")] = 0
    return with_random_ids(cells, rng) if cells.max() else cells


def disk_instances(shape: tuple[int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random disks (radius 2..12) that touch, overlap (later wins) and cross the image border."""
    labels = np.zeros(shape, dtype=np.int32)
    for label in range(1, count + 1):
        centre = (rng.integers(0, shape[0]), rng.integers(0, shape[1]))
        labels[disk(centre, rng.integers(2, 13), shape=shape)] = label
    return with_random_ids(labels, rng) if labels.max() else labels


def brute_force_border_term(instances: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """eq. 2 border term from explicit pixel-to-pixel distances (cdist), for small images only."""
    pixels = np.argwhere(np.ones(instances.shape, dtype=bool))
    per_instance = [cdist(pixels, np.argwhere(instances == i)).min(axis=1) for i in np.unique(instances) if i != 0]
    two_smallest = np.sort(np.stack(per_instance), axis=0)[:2]
    term = w0 * np.exp(-((two_smallest[0] + two_smallest[1]) ** 2) / (2 * sigma**2))
    return term.reshape(instances.shape)


def assert_fast_matches_reference(instances: np.ndarray, w0: float = W0, sigma: float = SIGMA) -> None:
    """The documented contract: identical where ref >= 1e-6 w0, within 1e-6 w0 everywhere."""
    fast = border_weights(instances, w0=w0, sigma=sigma)
    reference = border_weights_reference(instances, w0=w0, sigma=sigma)
    assert fast.dtype == np.float32 and fast.shape == instances.shape
    significant = reference >= 1e-6 * w0
    np.testing.assert_array_equal(fast[significant], reference[significant])
    assert np.abs(fast.astype(np.float64) - reference).max(initial=0.0) < 1e-6 * w0


# --- class weights -------------------------------------------------------------------------------------


def test_class_pixel_counts_hand_example():
    mask = np.array([[0, 0, 1], [3, 0, 1]], dtype=np.uint8)
    counts = class_pixel_counts(mask, 4)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [3, 2, 0, 1])


@pytest.mark.parametrize("bad", [np.array([[0, 4]]), np.array([[-1, 0]]), np.array([[0.0, 1.0]])])
def test_class_pixel_counts_rejects_out_of_range_or_float(bad):
    with pytest.raises(ValueError):
        class_pixel_counts(bad, 4)


def test_class_weights_hand_example_and_absent_class_gets_one():
    # total 10, 3 classes present: w = 10 / (3 * count); class 2 has no pixels -> neutral 1.0
    weights = class_weights_from_counts(np.array([6, 3, 0, 1]))
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, [0.5555556, 1.1111112, 1.0, 3.3333333], rtol=1e-6)
    # pixel-weighted mean over the counted pixels: (6 w0 + 3 w1 + 1 w3) / 10 = 1
    assert (6 * weights[0] + 3 * weights[1] + 1 * weights[3]) / 10 == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("bad", [[0, 0, 0], [3, -1], [[1, 2]], [1.0, np.nan]])
def test_class_weights_reject_bad_counts(bad):
    with pytest.raises(ValueError):
        class_weights_from_counts(np.array(bad))


# --- border term: hand values and independent references -------------------------------------------------


@pytest.mark.parametrize("method", [border_weights_reference, border_weights])
def test_border_term_hand_computed(method):
    term = method(three_points(), w0=W0, sigma=SIGMA)
    assert term.dtype == np.float32 and term.shape == (3, 12)
    for pixel, expected in HAND_CASES:
        assert term[pixel] == pytest.approx(expected, abs=1e-5), pixel


def test_reference_equals_brute_force_cdist():
    rng = np.random.default_rng(0)
    instances = disk_instances((19, 31), 5, rng)
    expected = brute_force_border_term(instances, W0, SIGMA)
    np.testing.assert_allclose(border_weights_reference(instances, W0, SIGMA), expected, atol=1e-5)


def test_fast_equals_brute_force_cdist_with_instances_on_image_border():
    instances = np.zeros((17, 29), dtype=np.int32)
    instances[:4, :5] = 3  # top-left corner
    instances[12:, 25:] = 17  # bottom-right corner
    instances[6:10, 0:2] = 900  # left edge
    instances[0:3, 14:29] = 41  # top edge to right edge
    np.testing.assert_allclose(
        border_weights(instances, W0, SIGMA), brute_force_border_term(instances, W0, SIGMA), atol=1e-5
    )


@pytest.mark.parametrize("method", [border_weights_reference, border_weights])
def test_no_border_term_with_fewer_than_two_instances(method):
    empty = np.zeros((8, 13), dtype=np.uint16)
    single = empty.copy()
    single[2:5, 3:9] = 7
    for instances in (empty, single, np.full((5, 6), 4, dtype=np.uint16)):
        term = method(instances)
        assert term.dtype == np.float32 and term.shape == instances.shape
        assert not term.any()


@pytest.mark.parametrize("method", [border_weights_reference, border_weights])
@pytest.mark.parametrize(
    "instances, w0, sigma",
    [
        (np.zeros((4, 4), dtype=np.float32), W0, SIGMA),
        (np.full((4, 4), -1, dtype=np.int32), W0, SIGMA),
        (np.zeros((2, 4, 4), dtype=np.int32), W0, SIGMA),
        (np.zeros((4, 4), dtype=np.int32), W0, 0.0),
        (np.zeros((4, 4), dtype=np.int32), -1.0, SIGMA),
    ],
)
def test_border_term_rejects_bad_input(method, instances, w0, sigma):
    with pytest.raises(ValueError):
        method(instances, w0=w0, sigma=sigma)


# --- fast method == reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (96, 41)])
@pytest.mark.parametrize("count", [0, 1, 2, 50])
@pytest.mark.parametrize("gaps", [True, False])
def test_fast_matches_reference_on_voronoi_cells(shape, count, gaps):
    rng = np.random.default_rng([*shape, count, gaps])
    assert_fast_matches_reference(voronoi_instances(shape, count, rng, gaps))


@pytest.mark.parametrize("shape", [(40, 70), (128, 96)])
@pytest.mark.parametrize("count", [0, 1, 2, 50])
def test_fast_matches_reference_on_random_disks(shape, count):
    rng = np.random.default_rng([*shape, count])
    assert_fast_matches_reference(disk_instances(shape, count, rng))


def test_fast_cutoff_is_exercised_and_within_bound():
    # Few small, far-apart disks with a small sigma: many pixels have a tiny but nonzero reference term that
    # the fast method drops, so both halves of the contract are tested.
    rng = np.random.default_rng(7)
    instances = disk_instances((120, 150), 6, rng)
    assert_fast_matches_reference(instances, w0=W0, sigma=2.0)
    fast = border_weights(instances, sigma=2.0)
    reference = border_weights_reference(instances, sigma=2.0)
    assert np.any((reference > 0) & (fast != reference))


def test_fast_keeps_a_term_just_above_the_cutoff():
    # Cut-off R = 5 sqrt(2 ln 1e6) = 26.28 px. Two pixels 26 px apart: on each, d1 = 0 and d2 = 26, so the
    # term 10 exp(-676/50) = 1.3438e-5 is just above 1e-6 * w0 and must survive the cropping.
    instances = np.zeros((3, 40), dtype=np.uint16)
    instances[1, 5], instances[1, 31] = 1, 2
    fast = border_weights(instances, W0, SIGMA)
    assert fast[1, 5] == pytest.approx(1.3438123e-5, rel=1e-5)
    assert fast[1, 31] == pytest.approx(1.3438123e-5, rel=1e-5)
    assert_fast_matches_reference(instances)


def test_fast_handles_huge_ids():
    instances = np.zeros((30, 40), dtype=np.int64)
    instances[3:9, 4:12] = 2**40
    instances[9:20, 12:30] = 5
    instances[22:, :] = 2**50 + 3
    assert_fast_matches_reference(instances)


def test_fast_memory_does_not_grow_with_instance_count():
    # The reference holds a (K, H, W) float32 stack (K * 256 kB here); the fast one only (H, W) arrays.
    rng = np.random.default_rng(3)
    peaks = []
    for count in (3, 120):
        instances = voronoi_instances((256, 256), count, rng, gaps=True)
        tracemalloc.start()
        border_weights(instances)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0], peaks


# --- full weight map ------------------------------------------------------------------------------------


def test_weight_map_background_only_and_everywhere():
    instances = three_points()
    mask = (instances > 0).astype(np.uint8)
    class_weights = np.array([0.5, 2.0], dtype=np.float32)
    only_background = weight_map(mask, instances, class_weights, W0, SIGMA, background_only=True)
    everywhere = weight_map(mask, instances, class_weights, W0, SIGMA, background_only=False)
    assert only_background.dtype == np.float32 and only_background.shape == (3, 12)
    # background pixel (1, 2): 0.5 + 10 exp(-16/50) either way
    assert only_background[1, 2] == pytest.approx(0.5 + 7.2614904, abs=1e-5)
    assert everywhere[1, 2] == pytest.approx(0.5 + 7.2614904, abs=1e-5)
    # object pixel (1, 4) (id 17, d1 = 0, d2 = 4): class weight only, or plus the border term
    assert only_background[1, 4] == pytest.approx(2.0, abs=1e-6)
    assert everywhere[1, 4] == pytest.approx(2.0 + 7.2614904, abs=1e-5)


def test_weight_map_without_instances_is_class_weights():
    mask = np.array([[0, 1, 2], [2, 2, 0]], dtype=np.uint8)
    result = weight_map(mask, np.zeros_like(mask, dtype=np.uint16), np.array([0.25, 1.5, 4.0]), W0, SIGMA, True)
    np.testing.assert_array_equal(result, np.array([[0.25, 1.5, 4.0], [4.0, 4.0, 0.25]], dtype=np.float32))


def test_weight_map_rejects_mismatched_shapes_and_unknown_classes():
    weights = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        weight_map(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint16), weights, W0, SIGMA, True)
    with pytest.raises(ValueError, match="class mask values"):
        weight_map(np.full((4, 5), 2, np.uint8), np.zeros((4, 5), np.uint16), weights, W0, SIGMA, True)


# --- the weights step's files ---------------------------------------------------------------------------


def tiny_shard(folder, masks: dict[str, np.ndarray]) -> None:
    """A canonical folder of samples with the given class masks (instances: the mask's components)."""
    samples = [
        Sample(
            sample_id, np.zeros(mask.shape, np.uint8), mask.astype(np.uint8), ndi.label(mask > 0)[0].astype(np.uint16)
        )
        for sample_id, mask in masks.items()
    ]
    write_canonical(folder, samples, num_classes=3)


def test_class_weight_table_counts_every_shard(tmp_path):
    tiny_shard(tmp_path / "s0", {"a": np.array([[0, 0, 1], [0, 0, 1]])})  # 4 background, 2 class 1
    tiny_shard(tmp_path / "s1", {"b": np.array([[0, 0, 0], [0, 0, 0]]), "c": np.array([[1, 0, 0]])})
    table = class_weight_table([tmp_path / "s0", tmp_path / "s1"], ["background", "cell", "nucleus"], balance=True)
    # background 4 + 6 + 2 = 12, class 1 2 + 1 = 3, of 15 pixels: w = 15 / (2 * count) for the two present
    # classes, 1 for the absent one
    assert table["pixels"].tolist() == [12, 3, 0]
    np.testing.assert_allclose(table["weight"], [15 / 24, 15 / 6, 1.0], rtol=1e-6)
    assert table[["class", "name"]].values.tolist() == [[0, "background"], [1, "cell"], [2, "nucleus"]]


def test_class_weight_table_without_balance_weighs_every_class_one(tmp_path):
    tiny_shard(tmp_path / "s0", {"a": np.array([[0, 0, 1], [0, 0, 1]])})
    table = class_weight_table([tmp_path / "s0"], ["background", "cell", "nucleus"], balance=False)
    assert table["pixels"].tolist() == [4, 2, 0]
    assert table["weight"].tolist() == [1.0, 1.0, 1.0] and table["weight"].dtype == np.float32


def test_write_weight_maps_writes_one_map_per_sample_atomically(tmp_path):
    mask = np.zeros((3, 12), np.uint8)
    mask[1, [0, 4, 10]] = 1
    tiny_shard(tmp_path / "s0", {"p": mask, "empty": np.zeros((3, 12), np.uint8)})
    class_weights = np.array([0.5, 2.0], np.float32)
    count = write_weight_maps(tmp_path / "s0", tmp_path / "w", class_weights, w0=W0, sigma=SIGMA, background_only=True)
    assert count == 2 and sorted(path.name for path in (tmp_path / "w").iterdir()) == ["empty.tif", "p.tif"]
    written = read_tiff(tmp_path / "w" / "p.tif")
    assert written.dtype == np.float32 and written.shape == (3, 12)
    # background pixel (1, 2), between single-pixel objects 2 px left and right: 0.5 + 10 exp(-16/50)
    assert written[1, 2] == pytest.approx(0.5 + 7.2614904, abs=1e-5)
    assert written[1, 4] == pytest.approx(2.0)
    np.testing.assert_array_equal(read_tiff(tmp_path / "w" / "empty.tif"), np.full((3, 12), 0.5, np.float32))
