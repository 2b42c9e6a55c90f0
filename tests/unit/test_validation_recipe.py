"""Tests for validation during training, model selection and the binary operating point
(segcore.train.validation, .operating_point, .loop selection and resume, predict and report operating points).

References: torch.nn.functional.cross_entropy, scikit-learn's f1_score (zero_division NaN for classes absent
from truth and prediction), brute-force thresholding in numpy, and an uninterrupted run compared bit for
bit with one interrupted and resumed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from segcore.config_schema import with_defaults
from segcore.model.unet import build_model
from segcore.predict.shard import operating_threshold
from segcore.report.build import operating_point
from segcore.train.checkpoint import ResumeFile, fingerprint
from segcore.train.data import LabelledImages
from segcore.train.hardware import Hardware
from segcore.train.loop import TrainSettings, best_epoch_index, fit, is_better
from segcore.train.losses import build_loss
from segcore.train.operating_point import THRESHOLDS, ThresholdSearch, foreground_mask
from segcore.train.sampling import OnlineAugmentation
from segcore.train.validation import (
    PatchSet,
    Validation,
    image_scores,
    patch_count,
    patch_scores,
    validation_patches,
)
from tests.unit.helpers_training import Interrupt, StopAtEpoch

CPU = Hardware(torch.device("cpu"), channels_last=False)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def images(count: int, side: int, seed: int, classes: int = 3) -> LabelledImages:
    """``count`` random 2-channel images with masks of ``classes`` classes (bands of channel 0)."""
    rng = np.random.default_rng(seed)
    pictures = [rng.random((2, side, side), dtype=np.float32) for _ in range(count)]
    masks = [np.minimum((picture[0] * classes).astype(np.uint8), classes - 1) for picture in pictures]
    return LabelledImages([f"s{i}" for i in range(count)], pictures, masks)


def weighted_ce():
    return build_loss(with_defaults("experiments.*.loss", {"name": "weighted_ce"}))


def reference_dice(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Mean foreground F1 by scikit-learn, classes absent from both skipped; NaN when all are."""
    scores = f1_score(
        truth.ravel(), predicted.ravel(), labels=list(range(1, num_classes)), average=None, zero_division=np.nan
    )
    return math.nan if np.all(np.isnan(scores)) else float(np.nanmean(scores))


# --- the validation set ----------------------------------------------------------------------------------


def test_auto_patch_count_covers_the_validation_pixels_once_up_to_64():
    data = images(3, 16, seed=0)  # 768 pixels
    assert patch_count("auto", data, 8, 3) == 12 and patch_count("auto", data, 16, 3) == 3
    assert patch_count("auto", data, 2, 3) == 64 and patch_count(5, data, 8, 3) == 5 and patch_count(0, data, 8, 3) == 0
    # whole images every epoch anyway: auto adds no patches, an explicit count still does
    assert patch_count("auto", data, 8, 1) == 0 and patch_count(5, data, 8, 1) == 5


def test_validation_patches_are_whole_images_or_seeded_patches():
    data = images(5, 16, seed=0)
    whole = validation_patches(data, "auto", None, (16, 16), 0.333, seed=3, validation_every=5)
    assert len(whole) == 5
    stored = {tuple(image.ravel()[:4]) for image in data.images}
    assert {tuple(image.numpy().ravel()[:4]) for image in whole.images} == stored  # each image once
    patches = validation_patches(data, 7, 8, (16, 16), 0.5, seed=3, validation_every=5)
    again = validation_patches(data, 7, 8, (16, 16), 0.5, seed=3, validation_every=5)
    assert patches.images.shape == (7, 2, 8, 8) and patches.masks.shape == (7, 8, 8)
    assert torch.equal(patches.images, again.images) and torch.equal(patches.masks, again.masks)
    assert not torch.equal(
        validation_patches(data, 7, 8, (16, 16), 0.5, seed=4, validation_every=5).images, patches.images
    )
    assert validation_patches(data, 0, 8, (16, 16), 0.5, seed=3, validation_every=5) is None
    mixed = LabelledImages(["a", "b"], [np.zeros((2, 16, 16), np.float32), np.zeros((2, 12, 20), np.float32)],
                           [np.zeros((16, 16), np.uint8), np.zeros((12, 20), np.uint8)])  # fmt: skip
    assert validation_patches(mixed, 2, None, (16, 16), 0.0, seed=0, validation_every=5).images.shape == (2, 2, 16, 16)


# --- scores ----------------------------------------------------------------------------------------------


def conv_model(num_classes: int = 3) -> torch.nn.Module:
    """A tiny same-padding U-Net (one pooling: even sides pass unpadded) with seeded weights."""
    torch.manual_seed(0)
    return build_model(with_defaults("experiments.*.model", {"name": "unet", "widths": [4, 8]}), 2, num_classes)


def test_patch_scores_are_the_unweighted_training_loss_and_per_patch_dice():
    data = images(6, 8, seed=1)
    patches = PatchSet(torch.from_numpy(np.stack(data.images)), torch.from_numpy(np.stack(data.masks)).long())
    model = conv_model()
    scores = patch_scores(model, patches, weighted_ce(), 3, CPU, batch_size=4)
    with torch.no_grad():
        logits = model(patches.images)
    assert scores.loss == pytest.approx(float(F.cross_entropy(logits, patches.masks)), rel=1e-5)
    predicted = logits.argmax(1).numpy()
    expected = np.nanmean([reference_dice(t, p, 3) for t, p in zip(data.masks, predicted)])
    assert scores.dice == pytest.approx(expected, rel=1e-9)


def test_image_scores_match_cross_entropy_of_the_probabilities_and_per_image_dice():
    data = images(3, 12, seed=2)
    model = conv_model().eval()
    scores = image_scores(model, data, weighted_ce(), 3, tile_size=12, margin=0, device=torch.device("cpu"))
    losses, dice = [], []
    with torch.no_grad():
        for image, mask in zip(data.images, data.masks):
            logits = model(torch.from_numpy(image)[None])
            losses.append(float(F.cross_entropy(logits, torch.from_numpy(mask)[None].long())))
            dice.append(reference_dice(mask, logits.argmax(1)[0].numpy(), 3))
    assert scores.loss == pytest.approx(np.mean(losses), rel=1e-4)
    assert scores.dice == pytest.approx(np.nanmean(dice), rel=1e-9)


def test_whole_images_of_one_tile_validate_batched_with_the_same_scores():
    data = images(5, 12, seed=3, classes=2)
    model = conv_model(num_classes=2).eval()
    validation = Validation(data, None, weighted_ce(), 2, tile_size=12, margin=0, hardware=CPU, batch_size=2)
    assert validation.stacked is not None and len(validation.stacked) == 5
    batched_search, reference_search = ThresholdSearch(), ThresholdSearch()
    batched = validation.on_images(model, batched_search)
    reference = image_scores(model, data, weighted_ce(), 2, 12, 0, torch.device("cpu"), reference_search)
    assert batched.loss == pytest.approx(reference.loss, rel=1e-5)
    assert batched.dice == pytest.approx(reference.dice, abs=1e-12)
    np.testing.assert_allclose(batched_search.mean_dice(), reference_search.mean_dice(), atol=1e-12)
    # another tile, or a valid-padding margin: image by image
    assert Validation(data, None, weighted_ce(), 2, 16, 0, CPU, 2).stacked is None
    assert Validation(data, None, weighted_ce(), 2, 12, 2, CPU, 2).stacked is None


# --- model selection -------------------------------------------------------------------------------------


def test_selection_prefers_higher_dice_lower_loss_and_never_nan():
    assert is_better(0.5, None, "val_dice") and is_better(math.nan, None, "val_dice")
    assert is_better(0.6, 0.5, "val_dice") and not is_better(0.5, 0.5, "val_dice")
    assert is_better(0.4, 0.5, "val_loss") and not is_better(0.6, 0.5, "val_loss")
    assert not is_better(math.nan, 0.5, "val_dice") and is_better(0.1, math.nan, "val_dice")
    assert best_epoch_index([0.2, 0.7, 0.7, 0.6], "val_dice") == 1
    assert best_epoch_index([0.2, 0.1, 0.1, 0.6], "val_loss") == 1


def new_recipe_run(stop_at: int, resume: ResumeFile | None, keep: str = "best"):
    """5 epochs of the new recipe on 16x16 images: poly with warm-up, clipping, flips and turns, 8 px
    patches half on foreground, fixed validation patches, whole images every 2 epochs, Dice selection."""
    train, val = images(8, 16, seed=1, classes=2), images(3, 16, seed=2, classes=2)
    train.weights = [1 + mask.astype(np.float32) for mask in train.masks]
    sampler = StopAtEpoch(
        train, 4, 8, foreground_fraction=0.5, augmentation=OnlineAugmentation(flips=True, rot90=True), stop_at=stop_at
    )
    settings = TrainSettings(
        epochs=5, batch_size=4, learning_rate=0.01, lr_factor=0.5, lr_patience=3, early_stopping_patience=10,
        schedule="poly", warmup_epochs=1, gradient_clip=1.0, select_by="val_dice", keep=keep, validation_every=2,
        seed=5,
    )  # fmt: skip
    torch.manual_seed(settings.seed)
    spec = {"name": "unet", "widths": [4, 8], "batchnorm": True, "dropout": 0.2}
    model = build_model(with_defaults("experiments.*.model", spec), 2, 2)
    patches = validation_patches(val, 6, 8, (16, 16), 0.5, seed=5, validation_every=5)
    history, best = fit(
        model, sampler, val, weighted_ce(), settings, CPU, num_classes=2, tile_size=16, margin=0, resume=resume,
        val_patches=patches,
    )  # fmt: skip
    return history, best, sampler


def without_seconds(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in history]


def test_new_recipe_resumed_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path):
    reference_history, reference_best, _ = new_recipe_run(stop_at=99, resume=None)
    assert [row["epoch"] for row in reference_history] == [1, 2, 3, 4, 5]
    assert [row["image_val_dice"] is None for row in reference_history] == [True, False, True, False, False]
    assert [row["learning_rate"] for row in reference_history] == pytest.approx(
        [0.01 * (1 - (epoch - 1) / 5) ** 0.9 for epoch in range(1, 6)]
    )
    resume = ResumeFile(tmp_path / "state.pt", fingerprint({"run": 1}))
    with pytest.raises(Interrupt):
        new_recipe_run(stop_at=3, resume=resume)
    history, best, sampler = new_recipe_run(stop_at=99, resume=resume)
    assert sampler.epochs_started == 3  # epochs 3, 4 and 5 only
    assert without_seconds(history) == without_seconds(reference_history)
    assert all(torch.equal(best[name], tensor) for name, tensor in reference_best.items())
    kept = best_epoch_index([row["val_dice"] for row in history], "val_dice")
    assert torch.load(resume.path, weights_only=True)["progress"]["best_epoch"] == kept + 1


def test_keep_last_returns_the_last_epochs_model_and_trains_the_same(tmp_path: Path):
    best_history, best, _ = new_recipe_run(stop_at=99, resume=None)
    resume = ResumeFile(tmp_path / "state.pt", fingerprint({"run": 2}))
    last_history, last, _ = new_recipe_run(stop_at=99, resume=resume, keep="last")
    assert without_seconds(last_history) == without_seconds(best_history)  # keep changes no step of training
    saved = torch.load(resume.path, weights_only=True)
    assert all(torch.equal(last[name], tensor) for name, tensor in saved["model"].items())  # after epoch 5
    assert all(torch.equal(best[name], tensor) for name, tensor in saved["best_model"].items())
    kept = best_epoch_index([row["val_dice"] for row in best_history], "val_dice")
    assert kept + 1 < 5, "the test needs a run whose best epoch is not its last"
    assert not all(torch.equal(best[name], last[name]) for name in best)


# --- the binary operating point --------------------------------------------------------------------------


def brute_force_dice(probabilities: list[np.ndarray], truths: list[np.ndarray]) -> np.ndarray:
    """Mean per-image foreground Dice at every candidate threshold, thresholding each image in numpy."""
    means = []
    for threshold in THRESHOLDS:
        values = []
        for probability, truth in zip(probabilities, truths):
            predicted = probability.astype(np.float32) >= threshold
            true_pos = np.sum(predicted & (truth == 1))
            wrong = np.sum(predicted != (truth == 1))
            if 2 * true_pos + wrong:
                values.append(2 * true_pos / (2 * true_pos + wrong))
        means.append(np.mean(values) if values else np.nan)
    return np.array(means)


def test_threshold_search_matches_brute_force_and_picks_the_best():
    rng = np.random.default_rng(4)
    truths = [rng.random((20, 30)) > 0.7 for _ in range(3)] + [np.zeros((5, 5), bool)]
    # Foreground scored low (a model calibrated away from 0.5): the best threshold lies below 0.5.
    probabilities = [np.clip(0.3 * t + 0.25 * rng.random(t.shape), 0, 1).astype(np.float32) for t in truths]
    probabilities.append(np.full((3, 3), 0.3, np.float32))  # an empty image predicted empty above 0.3
    truths.append(np.zeros((3, 3), bool))
    search = ThresholdSearch()
    for probability, truth in zip(probabilities, truths):
        search.add(probability, truth.astype(np.uint8))
    expected = brute_force_dice(probabilities, [t.astype(np.uint8) for t in truths])
    np.testing.assert_allclose(search.mean_dice(), expected, rtol=1e-12, equal_nan=True)
    threshold, dice = search.best()
    assert dice == pytest.approx(np.nanmax(expected)) and threshold < 0.5
    assert THRESHOLDS[round(threshold * 100) - 1] == np.float32(threshold)
    np.testing.assert_array_equal(
        foreground_mask(probabilities[0], threshold), probabilities[0] >= np.float32(threshold)
    )


def test_threshold_ties_go_to_the_one_nearest_half_and_no_foreground_gives_nan():
    search = ThresholdSearch()
    search.add(np.array([[0.05, 0.95]], np.float32), np.array([[0, 1]]))  # any threshold in (0.05, 0.95]
    assert search.best() == (0.5, 1.0)
    empty = ThresholdSearch()
    empty.add(np.zeros((2, 2), np.float32), np.zeros((2, 2)))
    threshold, dice = empty.best()
    assert threshold == 0.5 and math.isnan(dice)


def test_operating_threshold_applies_to_two_class_models_with_auto_only():
    binary = {"num_classes": 2, "foreground_threshold": 0.37}
    assert operating_threshold("auto", binary) == 0.37
    assert operating_threshold("argmax", binary) is None
    assert operating_threshold("auto", {"num_classes": 4, "foreground_threshold": None}) is None
    assert operating_threshold("auto", {"num_classes": 2}) is None  # a model saved without one
    assert operating_point("auto", {"foreground_threshold": 0.37}) == "p(foreground) >= 0.37"
    assert operating_point("argmax", {"foreground_threshold": 0.37}) == "argmax"
    assert operating_point("auto", {"foreground_threshold": None}) == "argmax"
