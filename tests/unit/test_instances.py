"""Tests for segcore.predict.instances (objects from a prediction), the predictions folder's instances and
their use by the object metrics.

References: hand-drawn discs and squares with their true objects; scikit-image's ``measure.label`` (the
components); the border class of the truth (segcore.augment.border_target, tested against scikit-image in
test_border_target.py) as a perfect border-class prediction; a whole-image forward pass with torch.softmax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.measure import label

from segcore.augment.border_target import border_target
from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.evaluate.metrics import image_metrics
from segcore.evaluate.object_metrics import object_scores
from segcore.evaluate.shard import evaluate_shard
from segcore.model.model_file import save_model
from segcore.model.unet import build_model
from segcore.predict.instances import (
    border_watershed,
    component_instances,
    distance_watershed,
    fold_border,
    method_label,
    predicted_instances,
    resolve_method,
)
from segcore.predict.outputs import read_instance_method, read_shard_instances, read_shard_mask, shard_writer
from segcore.predict.shard import PredictionSettings, predict_shard


def two_touching_discs(shape=(48, 64), radius=11, gap=18, count=2) -> np.ndarray:
    """uint16 (H, W) truth: ``count`` discs of ``radius`` in a row, centres ``gap`` px apart, so neighbours
    overlap; each overlap pixel belongs to the nearer centre (ids 1, 2, ... from the left)."""
    rows, cols = np.indices(shape)
    first = shape[1] / 2 - gap * (count - 1) / 2
    centres = [(shape[0] // 2, first + gap * k) for k in range(count)]
    distances = np.stack([np.hypot(rows - r, cols - c) for r, c in centres])
    inside = distances.min(axis=0) <= radius
    return np.where(inside, distances.argmin(axis=0) + 1, 0).astype(np.uint16)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def best_iou_per_truth(truth: np.ndarray, predicted: np.ndarray) -> list[float]:
    """For each truth object, its best IoU with any predicted object."""
    ids = [i for i in np.unique(predicted) if i]
    return [max(iou(truth == t, predicted == p) for p in ids) for t in np.unique(truth) if t]


def one_hot(mask: np.ndarray, planes: int) -> np.ndarray:
    return np.stack([mask == k for k in range(planes)]).astype(np.float32)


# --- components and the distance-transform watershed -----------------------------------------------------


def test_touching_discs_merge_in_components_and_split_in_the_watershed():
    truth = two_touching_discs()
    foreground = (truth > 0).astype(np.uint8)
    assert label(foreground, connectivity=1).max() == 1  # the discs form one blob
    assert component_instances(foreground).max() == 1
    split = distance_watershed(foreground, h=1.0)
    assert split.dtype == np.int32 and split.max() == 2
    assert np.array_equal(split > 0, foreground > 0)  # the foreground is kept whole
    assert min(best_iou_per_truth(truth, split)) > 0.8


def test_the_watershed_keeps_convex_objects_and_thin_ones_whole():
    mask = np.zeros((40, 40), np.uint8)
    mask[3:15, 3:30] = 1  # a rectangle: its distance ridge is one plateau, one seed
    rows, cols = np.indices(mask.shape)
    mask[np.hypot(rows - 28, cols - 28) <= 8] = 1  # a disc
    mask[20:38, 5] = 1  # a line one pixel wide: its maxima stand below h, it stays one object
    np.testing.assert_array_equal(distance_watershed(mask, h=1.5), label(mask, connectivity=1))


def test_components_and_watershed_are_per_class():
    truth = two_touching_discs()
    mask = truth.astype(np.uint8)  # disc 1 is class 1, disc 2 class 2: touching but of different classes
    components = component_instances(mask)
    assert components.max() == 2
    split = distance_watershed(mask, h=1.0)
    for instances in (components, split):
        for object_id in (1, 2):
            assert len(np.unique(mask[instances == object_id])) == 1  # one class per object
    # Class by class like skimage's labelling of each class, offset by the previous classes' counts.
    np.testing.assert_array_equal(components, label(mask == 1, connectivity=1) + 2 * (mask == 2))


def test_the_watershed_is_deterministic_and_refuses_a_bad_h():
    foreground = (two_touching_discs() > 0).astype(np.uint8)
    np.testing.assert_array_equal(distance_watershed(foreground, 1.0), distance_watershed(foreground, 1.0))
    with pytest.raises(ValueError, match="h"):
        distance_watershed(foreground, 0.0)


# --- the border-class watershed --------------------------------------------------------------------------


def test_a_perfect_border_prediction_gives_back_the_truth_objects():
    truth = two_touching_discs()
    class_mask = (truth > 0).astype(np.uint8)
    target = border_target(class_mask, truth, width=2, num_classes=2)  # classes 0, 1 and border 2
    assert (target == 2).any()
    mask, instances = border_watershed(one_hot(target, 3), target)
    np.testing.assert_array_equal(mask, class_mask)  # border pixels back in their object's class
    assert instances.max() == 2
    assert min(best_iou_per_truth(truth, instances)) > 0.95
    # Folding alone merges them again: the border is foreground of class 1.
    folded = fold_border(one_hot(target, 3), target)
    np.testing.assert_array_equal(folded, class_mask)
    assert component_instances(folded).max() == 1


def test_border_pixels_flood_by_rising_border_probability():
    # One row: seed 1 | three border pixels | seed 2. The border probability dips next to seed 2, so the
    # flood from seed 2 takes pixels 2 and 3 before seed 1's flood reaches them.
    target = np.array([[1, 2, 2, 2, 1]], np.uint8)
    probabilities = one_hot(target, 3)
    probabilities[2, 0] = [0.0, 0.5, 0.2, 0.1, 0.0]
    _, instances = border_watershed(probabilities, target)
    np.testing.assert_array_equal(instances, [[1, 1, 2, 2, 2]])


def test_a_border_blob_without_a_seed_is_an_object_of_its_most_probable_class():
    target = np.zeros((5, 9), np.uint8)
    target[1:4, 1:3] = 1  # an interior (class 1)
    target[1:4, 6:8] = 3  # a blob of border pixels only, away from every seed
    probabilities = one_hot(target, 4)  # classes 0, 1, 2 and border 3
    probabilities[2, 1:4, 6:8] = 0.3  # of the object classes 1 and 2, class 2 is the more probable there
    mask, instances = border_watershed(probabilities, target)
    np.testing.assert_array_equal(instances, label(target > 0, connectivity=1))
    assert set(mask[1:4, 6:8].ravel()) == {2} and set(mask[1:4, 1:3].ravel()) == {1}


def test_methods_resolve_and_name_themselves():
    assert resolve_method("auto", border_class=True) == "watershed"
    assert resolve_method("auto", border_class=False) == "components"
    assert resolve_method("components", border_class=True) == "components"
    with pytest.raises(ValueError, match="instances"):
        resolve_method("voronoi", border_class=False)
    labels = {method_label(m, b) for m in ("components", "watershed") for b in (False, True)}
    assert len(labels) == 4


def test_predicted_instances_dispatch():
    truth = two_touching_discs()
    class_mask = (truth > 0).astype(np.uint8)
    target = border_target(class_mask, truth, width=2, num_classes=2)
    for method, count in (("components", 1), ("watershed", 2)):
        mask, instances = predicted_instances(one_hot(target, 3), target, border_class=True, method=method, h=1.0)
        np.testing.assert_array_equal(mask, class_mask)
        assert instances.max() == count
        mask, instances = predicted_instances(
            one_hot(class_mask, 2), class_mask, border_class=False, method=method, h=1.0
        )
        np.testing.assert_array_equal(mask, class_mask)
        assert instances.max() == count
    with pytest.raises(ValueError, match="auto"):
        predicted_instances(one_hot(class_mask, 2), class_mask, border_class=False, method="auto", h=1.0)


# --- the object metrics score the predicted instances ----------------------------------------------------


def test_object_scores_use_the_predicted_instances():
    truth = two_touching_discs(shape=(40, 80), count=3)  # the merged blob overlaps each disc at IoU ~ 1/3
    mask = (truth > 0).astype(np.uint8)
    merged = object_scores(mask, mask, truth_instances=truth)
    assert (merged["true_positives"], merged["false_positives"], merged["false_negatives"]) == (0, 1, 3)
    split = object_scores(mask, mask, truth_instances=truth, pred_instances=distance_watershed(mask, 1.0))
    assert (split["true_positives"], split["false_positives"], split["false_negatives"]) == (3, 0, 0)
    assert split["f1"] == 1.0
    metrics = image_metrics(mask, mask, ["bg", "fg"], truth, truth.astype(np.int32))
    assert metrics["object_f1"] == 1.0 and metrics["rand_error"] == 0.0


# --- the predictions folder --------------------------------------------------------------------------------


def test_the_shard_holds_instances_and_their_method(tmp_path: Path):
    truth = two_touching_discs()
    mask = (truth > 0).astype(np.uint8)
    image = np.zeros(mask.shape, np.uint8)
    root = tmp_path / "predictions"
    with shard_writer(root / "shard-0", 2, False, method_label("watershed", False)) as writer:
        writer.write("split", image, mask, one_hot(mask, 2), truth)
        writer.write("default", image, mask, one_hot(mask, 2))  # no instances given: the components
    np.testing.assert_array_equal(read_shard_instances(root / "shard-0", "split"), truth)
    assert read_shard_instances(root / "shard-0", "split").dtype == np.int32
    np.testing.assert_array_equal(read_shard_instances(root / "shard-0", "default"), component_instances(mask))
    assert read_instance_method(root) == "watershed on the distance transform"
    with shard_writer(root / "shard-1", 2, False) as writer:
        pass
    assert read_instance_method(root) == "connected components; watershed on the distance transform"
    with shard_writer(tmp_path / "bad", 2, False) as writer, pytest.raises(ValueError, match="instances"):
        writer.write("x", image, mask, one_hot(mask, 2), truth[:-1])


def test_a_shard_without_instances_is_scored_by_components(tmp_path: Path):
    truth = two_touching_discs(shape=(40, 80), count=3)
    mask = (truth > 0).astype(np.uint8)
    write_canonical(tmp_path / "data", [Sample("a", np.zeros(mask.shape, np.uint8), mask, truth)], 2)
    shard = tmp_path / "shard-0"
    with shard_writer(shard, 2, False) as writer:
        writer.write("a", np.zeros(mask.shape, np.uint8), mask, one_hot(mask, 2), truth)
    split, _ = evaluate_shard(tmp_path / "data", shard, ["a"], ["bg", "fg"])
    for path in (shard / "instances").iterdir():
        path.unlink()  # as a shard written before predictions held instances
    (shard / "instances").rmdir()
    assert read_shard_instances(shard, "a") is None
    merged, _ = evaluate_shard(tmp_path / "data", shard, ["a"], ["bg", "fg"])
    assert split.loc[0, "object_f1"] == 1.0 and merged.loc[0, "object_f1"] == 0.0


def test_predict_shard_folds_the_border_class_of_a_border_model(tmp_path: Path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    samples = [Sample("s0", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), np.zeros((16, 16), np.uint8),
                      np.zeros((16, 16), np.uint16))]  # fmt: skip
    write_canonical(tmp_path / "data", samples, num_classes=2)
    torch.manual_seed(0)
    spec = with_defaults("experiments.*.model", {"name": "unet", "widths": [4, 8]})
    model = build_model(spec, 3, 3).eval()  # background, nucleus, border
    metadata = {"model_spec": spec, "in_channels": 3, "num_classes": 3, "class_names": ["bg", "fg", "border"],
                "border_class": True}  # fmt: skip
    save_model(tmp_path / "model.pt", model, metadata)
    # tile_size and overlap as a plan resolves them (the schema's "auto").
    settings = PredictionSettings.from_config(with_defaults("prediction", {"tile_size": 256, "overlap": 32}))
    folder = tmp_path / "shard-0"
    predict_shard(tmp_path / "model.pt", tmp_path / "data", ["s0"], settings, "cpu", folder)
    image = torch.from_numpy(np.moveaxis(samples[0].image, -1, 0).astype(np.float32) / 255)[None]
    with torch.no_grad():
        probabilities = torch.softmax(model(image), dim=1)[0].numpy()
    expected_mask, expected_instances = border_watershed(probabilities, probabilities.argmax(axis=0))
    np.testing.assert_array_equal(read_shard_mask(folder, "s0"), expected_mask)
    np.testing.assert_array_equal(read_shard_instances(folder, "s0"), expected_instances)
    assert read_shard_mask(folder, "s0").max() <= 1  # the dataset's two classes only
    assert read_instance_method(tmp_path) == "watershed on the border class"  # auto with a border model
