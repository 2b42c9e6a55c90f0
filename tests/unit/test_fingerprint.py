"""Tests for segcore.plan.fingerprint: the dataset fingerprint of a canonical folder.

References: numpy over the same pixels (mean, std, percentile, bincount, median), scipy.ndimage (labels,
dilation) for objects and touching, and hand-built folders whose answers are known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from segcore.data.canonical import Sample, write_canonical
from segcore.io import InputError, write_table
from segcore.plan.fingerprint import (
    channel_statistics,
    dataset_fingerprint,
    object_classes_and_sizes,
    per_image_statistics,
    sample_positions,
    touching_objects,
)
from segcore.plan.normalise import normalise_image
from segcore.plan.plan import choose_normalisation
from segcore.train.data import load_labelled_images

CLASSES = ["background", "a", "b"]


def random_sample(rng: np.random.Generator, sample_id: str, height: int, width: int, offset: int = 0) -> Sample:
    """An RGB uint16 image with a few rectangles of classes 1 and 2 as objects."""
    image = (rng.integers(0, 1000, (height, width, 3)) + offset).astype(np.uint16)
    mask = np.zeros((height, width), np.uint8)
    instances = np.zeros((height, width), np.uint16)
    for index in range(int(rng.integers(1, 4))):
        top, left = int(rng.integers(0, height - 6)), int(rng.integers(0, width - 6))
        h, w = int(rng.integers(2, 6)), int(rng.integers(2, 6))
        mask[top : top + h, left : left + w] = 1 + index % 2
        instances[top : top + h, left : left + w] = index + 1
    return Sample(sample_id, image, mask, instances)


def write_dataset(folder: Path, samples: list[Sample], subsets: list[str]) -> tuple[Path, Path]:
    write_canonical(folder / "data", samples, num_classes=len(CLASSES))
    write_table(folder / "split.tsv", pd.DataFrame({"id": [s.id for s in samples], "subset": subsets}))
    return folder / "data", folder / "split.tsv"


def test_sample_positions_are_even_bounded_and_seeded():
    counts = [100, 5, 1000]
    positions = sample_positions(counts, 60, np.random.default_rng(1))
    assert [len(p) for p in positions] == [20, 5, 20]  # 60 // 3 each; the small image gives all it has
    assert np.array_equal(positions[1], np.arange(5))
    for drawn, count in zip(positions, counts):
        assert len(np.unique(drawn)) == len(drawn) and drawn.min() >= 0 and drawn.max() < count
        assert np.all(np.diff(drawn) > 0)
    again = sample_positions(counts, 60, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(positions, again))
    assert sum(len(p) for p in sample_positions([10**6] * 7, 10**6, np.random.default_rng(0))) <= 10**6


def test_channel_statistics_match_numpy():
    values = np.random.default_rng(0).normal(5, 2, (5000, 2)) ** 2
    stats = channel_statistics(values)
    for channel in range(2):
        column = values[:, channel]
        low, high = np.percentile(column, 0.5), np.percentile(column, 99.5)
        clipped = np.clip(column, low, high)
        expected = [column.mean(), column.std(), low, high, column.min(), column.max(), clipped.mean(), clipped.std()]
        keys = ["mean", "sd", "p0_5", "p99_5", "min", "max", "clipped_mean", "clipped_sd"]
        assert [stats[key][channel] for key in keys] == pytest.approx(expected, rel=1e-12)
    assert channel_statistics(np.zeros((0, 3))) is None


def test_per_image_statistics_by_hand():
    # Image a: 0, 2, 4, 6 (mean 3, sd sqrt(5)); image b: 10, 10, 14, 14 (mean 12, sd 2); image c: no pixels.
    a = np.array([[0.0], [2.0], [4.0], [6.0]])
    b = np.array([[10.0], [10.0], [14.0], [14.0]])
    stats = per_image_statistics([a, np.zeros((0, 1)), b])
    assert stats["mean_sd"] == pytest.approx([4.5])  # population sd of the means 3 and 12
    assert stats["mean_min"] == pytest.approx([3.0]) and stats["mean_max"] == pytest.approx([12.0])
    assert stats["sd_median"] == pytest.approx([(5**0.5 + 2.0) / 2])  # median of two: their mean
    assert per_image_statistics([]) is None and per_image_statistics([np.zeros((0, 2))]) is None


def test_per_image_statistics_match_numpy_per_channel():
    rng = np.random.default_rng(11)
    # Images of different sizes, offsets and gains, two channels; every image counts once.
    samples = [rng.normal(rng.uniform(0, 200), rng.uniform(1, 30), (int(rng.integers(5, 400)), 2)) for _ in range(9)]
    stats = per_image_statistics(samples)
    for channel in range(2):
        means = [float(np.mean(sample[:, channel])) for sample in samples]
        sds = [float(np.std(sample[:, channel])) for sample in samples]
        assert stats["mean_sd"][channel] == pytest.approx(float(np.std(means)), rel=1e-12)
        assert stats["mean_min"][channel] == pytest.approx(min(means), rel=1e-12)
        assert stats["mean_max"][channel] == pytest.approx(max(means), rel=1e-12)
        assert stats["sd_median"][channel] == pytest.approx(float(np.median(sds)), rel=1e-12)


def test_objects_take_their_majority_class_and_pixel_count():
    instances = np.array([[1, 1, 1, 0], [1, 2, 2, 0], [0, 0, 0, 3]], np.uint16)
    mask = np.array([[1, 1, 2, 0], [1, 2, 2, 0], [0, 0, 0, 1]], np.uint8)
    ids, classes, sizes = object_classes_and_sizes(instances, mask, 3)
    assert ids.tolist() == [1, 2, 3] and sizes.tolist() == [4, 2, 1] and classes.tolist() == [1, 2, 1]


def touching_by_dilation(instances: np.ndarray) -> set[int]:
    """Objects whose 4-neighbourhood dilation reaches another object's pixel (scipy reference)."""
    found = set()
    for label in np.unique(instances[instances > 0]):
        grown = ndimage.binary_dilation(instances == label, structure=ndimage.generate_binary_structure(2, 1))
        if np.any((instances[grown] != label) & (instances[grown] > 0)):
            found.add(int(label))
    return found


def test_touching_objects_agree_with_a_dilation_reference():
    rng = np.random.default_rng(3)
    for _ in range(20):
        instances = np.zeros((24, 24), np.uint16)
        for label in range(1, 7):
            top, left = rng.integers(0, 20, 2)
            instances[top : top + rng.integers(2, 6), left : left + rng.integers(2, 6)] = label
        assert set(touching_objects(instances).tolist()) == touching_by_dilation(instances)
    corner_only = np.array([[1, 0], [0, 2]], np.uint16)  # diagonal neighbours do not touch
    assert touching_objects(corner_only).size == 0


def test_fingerprint_of_a_folder_matches_numpy(tmp_path: Path):
    rng = np.random.default_rng(7)
    shapes = [(20, 30), (24, 24), (30, 18), (20, 20), (26, 22)]
    samples = [random_sample(rng, f"s{i}", *shape) for i, shape in enumerate(shapes)]
    # The test image is far brighter: it must not move the intensity statistics.
    samples[4] = random_sample(rng, "s4", 26, 22, offset=50_000)
    subsets = ["train", "train", "val", "unused", "test"]
    data, split = write_dataset(tmp_path, samples, subsets)
    fingerprint = dataset_fingerprint(data, split, CLASSES, seed=5, max_pixels=10**6)

    heights, widths = [h for h, _ in shapes], [w for _, w in shapes]
    assert fingerprint["images"] == 5
    assert fingerprint["subsets"] == {"train": 2, "val": 1, "test": 1, "unused": 1}
    assert fingerprint["size"]["height"] == {"min": min(heights), "median": np.median(heights), "max": max(heights)}
    assert fingerprint["size"]["width"] == {"min": min(widths), "median": np.median(widths), "max": max(widths)}
    assert fingerprint["channels"] == 3 and fingerprint["dtype"] == "uint16"

    # Every train+val pixel fits in the sample: the statistics are numpy's over exactly those pixels.
    fitted = [samples[i] for i in (0, 1, 2)]
    pixels = np.concatenate([s.image.reshape(-1, 3) for s in fitted]).astype(np.float64)
    foreground = np.concatenate([s.mask.ravel() > 0 for s in fitted])
    intensity = fingerprint["intensity"]
    assert intensity["ids"] == "train+val" and intensity["images"] == 3 and intensity["pixels"] == len(pixels)
    assert intensity["all"]["mean"] == pytest.approx(pixels.mean(axis=0).tolist())
    assert intensity["all"]["sd"] == pytest.approx(pixels.std(axis=0).tolist())
    assert intensity["all"]["p99_5"] == pytest.approx(np.percentile(pixels, 99.5, axis=0).tolist())
    assert intensity["foreground"]["mean"] == pytest.approx(pixels[foreground].mean(axis=0).tolist())
    assert max(intensity["all"]["max"]) < 50_000
    # Per image: the train+val images' own means and sds (ids visited in sorted order: s0, s1, s2).
    means = np.array([s.image.reshape(-1, 3).astype(np.float64).mean(axis=0) for s in fitted])
    sds = np.array([s.image.reshape(-1, 3).astype(np.float64).std(axis=0) for s in fitted])
    assert intensity["per_image"]["mean_sd"] == pytest.approx(means.std(axis=0).tolist())
    assert intensity["per_image"]["mean_max"] == pytest.approx(means.max(axis=0).tolist())
    assert intensity["per_image"]["sd_median"] == pytest.approx(np.median(sds, axis=0).tolist())

    masks = np.concatenate([s.mask.ravel() for s in samples])
    fractions = np.bincount(masks, minlength=3) / masks.size
    assert [c["pixel_fraction"] for c in fingerprint["classes"]] == pytest.approx(fractions.tolist())
    assert [c["images"] for c in fingerprint["classes"]] == [
        sum(np.any(s.mask == k) for s in samples) for k in range(3)
    ]
    sizes: dict[int, list[int]] = {1: [], 2: []}
    touching = 0
    for sample in samples:
        for label in np.unique(sample.instances[sample.instances > 0]):
            region = sample.instances == label
            sizes[int(np.bincount(sample.mask[region]).argmax())].append(int(region.sum()))
        touching += len(touching_by_dilation(sample.instances))
    for k in (1, 2):
        entry = fingerprint["classes"][k]
        assert entry["objects"] == len(sizes[k])
        if sizes[k]:
            assert entry["object_size"]["median"] == np.median(sizes[k])
            assert entry["object_size"]["max"] == max(sizes[k])
    assert fingerprint["classes"][0]["objects"] == 0
    total = sum(len(v) for v in sizes.values())
    assert fingerprint["objects"] == {"count": total, "touching_fraction": pytest.approx(touching / total)}


def test_fingerprint_sample_is_bounded_and_reproducible(tmp_path: Path):
    rng = np.random.default_rng(1)
    samples = [random_sample(rng, f"s{i}", 32, 32) for i in range(4)]
    data, split = write_dataset(tmp_path, samples, ["train", "train", "val", "test"])
    first = dataset_fingerprint(data, split, CLASSES, seed=9, max_pixels=300)
    assert first["intensity"]["pixels"] == 300  # 100 from each of the three train+val images
    assert dataset_fingerprint(data, split, CLASSES, seed=9, max_pixels=300) == first
    assert dataset_fingerprint(data, split, CLASSES, seed=10, max_pixels=300)["intensity"] != first["intensity"]


def test_auto_normalises_each_image_by_itself_only_when_the_images_differ(tmp_path: Path):
    """Folder to plan: uniform 0..999 images (sd 289) alike, then two of the five train+val images lifted by
    5000 (dark-field and bright-field): per-image means spread 5000 * sqrt(0.4 * 0.6) = 2449, 8.5 x the sd
    inside an image."""
    rng = np.random.default_rng(4)
    alike = [random_sample(rng, f"s{i}", 24, 24) for i in range(6)]
    data, split = write_dataset(tmp_path / "alike", alike, ["train"] * 4 + ["val", "test"])
    chosen, reason = choose_normalisation(dataset_fingerprint(data, split, CLASSES, seed=0), "auto")
    assert chosen.mode == "zscore" and "alike" in reason
    mixed = [random_sample(rng, f"s{i}", 24, 24, offset=5000 * (i % 2)) for i in range(6)]
    data, split = write_dataset(tmp_path / "mixed", mixed, ["train"] * 4 + ["val", "test"])
    fingerprint = dataset_fingerprint(data, split, CLASSES, seed=0)
    assert fingerprint["intensity"]["per_image"]["mean_sd"] == pytest.approx([2449.0] * 3, rel=0.01)
    chosen, reason = choose_normalisation(fingerprint, "auto")
    assert chosen.mode == "image_zscore" and "the images differ" in reason
    # The training loader (train and val images alike) gives every image, dark or bright, mean 0 and sd 1.
    loaded = load_labelled_images([data], ids=["s0", "s1"], normalisation=chosen)
    for image in loaded.images:
        assert image.dtype == np.float32 and image.shape == (3, 24, 24)
        assert image.mean(axis=(1, 2)) == pytest.approx([0.0] * 3, abs=1e-5)
        assert image.std(axis=(1, 2)) == pytest.approx([1.0] * 3, rel=1e-5)


def test_a_mask_class_beyond_the_declared_classes_names_the_key(tmp_path: Path):
    rng = np.random.default_rng(2)
    samples = [random_sample(rng, f"s{i}", 16, 16) for i in range(3)]
    data, split = write_dataset(tmp_path, samples, ["train", "val", "test"])
    first = next(sample.id for sample in samples if sample.mask.max() == 2)  # ids are visited in sorted order
    with pytest.raises(InputError, match=rf"config key dataset\.classes: the mask of image '{first}' holds class 2"):
        dataset_fingerprint(data, split, ["background", "a"], seed=0)


def test_images_of_different_channel_counts_stop(tmp_path: Path):
    grey = Sample("g", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16))
    rgb = Sample("c", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint16))
    data, split = write_dataset(tmp_path, [grey, rgb], ["train", "val"])
    with pytest.raises(InputError, match="different channel counts"):
        dataset_fingerprint(data, split, CLASSES, seed=0)


def test_float32_images_give_statistics_and_normalise(tmp_path: Path):
    """Float canonical images (float TIFF sources): the fingerprint's statistics and every normalisation work."""
    rng = np.random.default_rng(3)
    samples = [random_sample(rng, f"s{i}", 16, 16) for i in range(3)]
    samples = [Sample(s.id, (s.image.astype(np.float32) - 500) / 7, s.mask, s.instances) for s in samples]
    data, split = write_dataset(tmp_path, samples, ["train", "val", "test"])
    fingerprint = dataset_fingerprint(data, split, CLASSES, seed=0)
    assert fingerprint["dtype"] == "float32" and fingerprint["channels"] == 3
    pixels = np.concatenate([s.image.reshape(-1, 3) for s in samples[:2]]).astype(np.float64)
    np.testing.assert_allclose(fingerprint["intensity"]["all"]["mean"], pixels.mean(axis=0), rtol=1e-6)
    for mode in ("zscore", "image_zscore", "percentile", "dtype"):
        normalisation, _ = choose_normalisation(fingerprint, mode)
        out = normalise_image(samples[0].image, normalisation)
        assert out.dtype == np.float32 and out.shape == (3, 16, 16) and np.isfinite(out).all()
