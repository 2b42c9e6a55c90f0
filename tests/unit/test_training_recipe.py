"""Tests for the training recipe: learning-rate schedules, gradient clipping, online flips and quarter turns,
and foreground-aware patch sampling (segcore.train.schedules, .loop, .sampling, .data).

References: schedule values worked out by hand from the formulas, SGD updates computed by hand, numpy's
flip/rot90 applied to the draws of an identically seeded generator, and exact counts of patch positions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segcore.config_schema import with_defaults
from segcore.io import InputError
from segcore.train.data import BatchSampler, LabelledImages
from segcore.train.loop import optimiser_step
from segcore.train.sampling import OnlineAugmentation, foreground_patch_count
from segcore.train.schedules import LearningRateSchedule, decay_factor, warmup_factors

pytestmark = pytest.mark.usefixtures("single_torch_thread")


# --- schedules -------------------------------------------------------------------------------------------


def test_poly_and_cosine_factors_per_epoch_by_hand():
    # 4 epochs: poly (1 - (e-1)/4)^0.9, cosine (1 + cos(pi (e-1)/4)) / 2
    assert [decay_factor("poly", epoch, 4) for epoch in (1, 2, 3, 4)] == pytest.approx(
        [1.0, 0.75**0.9, 0.5**0.9, 0.25**0.9]
    )
    assert decay_factor("poly", 3, 4) == pytest.approx(0.535887, abs=1e-6)  # 2 ** -0.9
    assert [decay_factor("cosine", epoch, 4) for epoch in (1, 2, 3, 4)] == pytest.approx(
        [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2]
    )
    with pytest.raises(ValueError, match="epoch 5 outside 1..4"):
        decay_factor("poly", 5, 4)
    with pytest.raises(ValueError, match="plateau"):
        decay_factor("plateau", 1, 4)


def test_warmup_rises_linearly_per_step_over_the_warmup_epochs():
    np.testing.assert_allclose(warmup_factors(1, 4, 1), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(warmup_factors(2, 4, 1), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(warmup_factors(1, 2, 2), [0.25, 0.5])
    np.testing.assert_allclose(warmup_factors(2, 2, 2), [0.75, 1.0])
    np.testing.assert_allclose(warmup_factors(1, 3, 0), [1.0, 1.0, 1.0])


def optimizer(rate: float = 0.01) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=rate)


def test_poly_schedule_with_warmup_sets_step_rates_and_restores_the_base_rate():
    opt = optimizer()
    schedule = LearningRateSchedule(
        opt, schedule="poly", learning_rate=0.01, epochs=4, warmup_epochs=1, lr_factor=0.5, lr_patience=0, mode="max"
    )
    base, rates = schedule.begin_epoch(1, 2)
    assert base == 0.01
    np.testing.assert_allclose(rates, [0.005, 0.01])
    schedule.end_epoch(0.3)
    assert opt.param_groups[0]["lr"] == 0.01
    base, rates = schedule.begin_epoch(3, 2)
    assert base == pytest.approx(0.01 * 0.5**0.9)
    np.testing.assert_allclose(rates, [0.01 * 0.5**0.9] * 2)
    assert schedule.state_dict() == {}


@pytest.mark.parametrize(("mode", "measures", "expected"), [
    ("max", [0.5, 0.4, 0.6, 0.6], [0.01, 0.01, 0.005, 0.005]),  # Dice: 0.4 is worse, then 0.6 improves
    ("min", [0.5, 0.4, 0.6, 0.6], [0.01, 0.01, 0.01, 0.005]),  # loss: 0.6 is worse
])  # fmt: skip
def test_plateau_schedule_follows_the_selection_measure_in_its_direction(mode, measures, expected):
    opt = optimizer()
    schedule = LearningRateSchedule(
        opt, schedule="plateau", learning_rate=0.01, epochs=9, warmup_epochs=0, lr_factor=0.5, lr_patience=0, mode=mode
    )
    seen = []
    for epoch, measure in enumerate(measures, 1):
        base, rates = schedule.begin_epoch(epoch, 3)
        np.testing.assert_allclose(rates, [base] * 3)
        seen.append(base)
        schedule.end_epoch(measure)
    assert seen == pytest.approx(expected)


# --- gradient clipping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize(("clip", "expected"), [(5.0, [-3.0, -4.0, 0.0]), (None, [-30.0, -40.0, 0.0])])
def test_gradient_clipping_bounds_the_true_gradient_norm(clip, expected, scaled):
    # loss = w . x with x = (30, 40, 0): gradient x, norm 50; SGD at rate 1 from w = 0 steps by -gradient,
    # clipped to norm 5: -(3, 4, 0). With a (large) gradient scale the clip must apply to the unscaled norm.
    weight = torch.nn.Parameter(torch.zeros(3))
    model = torch.nn.Module()
    model.weight = weight
    opt = torch.optim.SGD([weight], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=scaled, init_scale=1024.0)
    loss = (weight * torch.tensor([30.0, 40.0, 0.0])).sum()
    optimiser_step(model, opt, scaler, loss, clip)
    np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-6)


# --- online augmentation ---------------------------------------------------------------------------------


def reference_transform(array: np.ndarray, flips: np.ndarray, turns: int) -> np.ndarray:
    """numpy's flips of the last two axes (horizontal first, then vertical), then quarter turns."""
    if flips[0]:
        array = np.flip(array, -1)
    if flips[1]:
        array = np.flip(array, -2)
    return np.rot90(array, turns, axes=(-2, -1))


def test_online_flips_and_turns_transform_image_mask_and_weights_alike():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((40, 2, 5, 5), dtype=np.float32))
    masks = torch.from_numpy(rng.integers(0, 4, (40, 5, 5)))
    weights = torch.from_numpy(rng.random((40, 5, 5), dtype=np.float32))
    before_apply = images.clone()
    out = OnlineAugmentation(flips=True, rot90=True).apply(np.random.default_rng(7), images, masks, weights)
    reference = np.random.default_rng(7)
    flips, turns = reference.integers(0, 2, size=(40, 2)).astype(bool), reference.integers(0, 4, size=40)
    for index in range(40):
        for before, after in zip((images, masks, weights), out):
            expected = reference_transform(before[index].numpy(), flips[index], int(turns[index]))
            np.testing.assert_array_equal(after[index].numpy(), expected)
    assert [tensor.dtype for tensor in out] == [torch.float32, torch.int64, torch.float32]
    assert len({(tuple(f), t) for f, t in zip(flips, turns)}) > 8  # many distinct transforms drawn
    assert torch.equal(images, before_apply)  # the input batch is left as it was


def test_online_augmentation_turns_only_square_samples_and_off_passes_batches_through():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((6, 1, 4, 6), dtype=np.float32))
    masks = torch.from_numpy(rng.integers(0, 2, (6, 4, 6)))
    drawn = np.random.default_rng(3)
    out_images, out_masks, out_weights = OnlineAugmentation(flips=True, rot90=True).apply(drawn, images, masks, None)
    reference = np.random.default_rng(3)
    flips = reference.integers(0, 2, size=(6, 2)).astype(bool)  # no turns drawn for 4x6 samples
    assert drawn.integers(1 << 30) == reference.integers(1 << 30)
    for index in range(6):
        np.testing.assert_array_equal(
            out_images[index].numpy(), reference_transform(images[index].numpy(), flips[index], 0)
        )
    assert out_weights is None and out_masks.shape == masks.shape
    off = OnlineAugmentation(flips=False, rot90=False)
    untouched = np.random.default_rng(3)
    assert off.apply(untouched, images, masks, None)[0] is images
    assert untouched.integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)  # nothing drawn


# --- foreground-aware patches ----------------------------------------------------------------------------


def test_foreground_patch_count_rounds_up():
    assert [foreground_patch_count(n, 0.333) for n in (1, 3, 16, 2)] == [1, 1, 6, 1]
    assert [foreground_patch_count(n, 1 / 3) for n in (3, 6, 7)] == [1, 2, 3]
    assert foreground_patch_count(16, 0.0) == 0 and foreground_patch_count(4, 1.0) == 4


def sparse_images(copies: int) -> LabelledImages:
    """``copies`` 256x256 images holding one 5x5 object of class 2 at rows 100..104, columns 200..204."""
    mask = np.zeros((256, 256), np.uint8)
    mask[100:105, 200:205] = 2
    image = mask[None].astype(np.float32)
    return LabelledImages([f"s{i}" for i in range(copies)], [image] * copies, [mask] * copies)


def share_with_foreground(sampler: BatchSampler, epochs: int) -> tuple[float, list[float]]:
    """Share of all patches holding foreground, and that share per position in the batch."""
    hits = []
    for epoch in range(epochs):
        for _, masks, _ in sampler.epoch(np.random.default_rng([5, epoch])):
            hits.append((masks.flatten(1) > 0).any(dim=1).numpy())
    hits = np.stack(hits)
    return float(hits.mean()), hits.mean(axis=0).tolist()


def test_foreground_patches_reach_at_least_the_fraction_on_a_sparse_image():
    sampler = BatchSampler(sparse_images(6), batch_size=6, patch_size=32, foreground_fraction=1 / 3)
    share, per_position = share_with_foreground(sampler, epochs=60)
    assert share >= 1 / 3
    assert per_position[:2] == [1.0, 1.0]  # ceil(6 / 3) = 2 patches per batch centred on foreground


def test_without_foreground_fraction_patches_are_uniform():
    # A 32 px window (top, left in 0..224) overlaps rows 100..104 for top in 69..104 and columns 200..204 for
    # left in 169..204: 36 x 36 of the 225 x 225 positions.
    expected = 36 * 36 / 225**2
    sampler = BatchSampler(sparse_images(8), batch_size=8, patch_size=32, foreground_fraction=0.0)
    share, _ = share_with_foreground(sampler, epochs=250)
    standard_error = math.sqrt(expected * (1 - expected) / 2000)
    assert abs(share - expected) < 4 * standard_error


def test_foreground_classes_are_drawn_uniformly_not_by_area():
    # Class 1 fills the left half; class 2 is one pixel at (60, 60), out of reach of any window centred on
    # class 1 (those end at column 35): about half the foreground patches must hold it.
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 1
    mask[60, 60] = 2
    data = LabelledImages(["a"] * 4, [mask[None].astype(np.float32)] * 4, [mask] * 4)
    sampler = BatchSampler(data, batch_size=4, patch_size=8, foreground_fraction=1.0)
    holds = [
        bool((patch == 2).any())
        for epoch in range(150)
        for _, masks, _ in sampler.epoch(np.random.default_rng(epoch))
        for patch in masks
    ]
    assert 0.42 < np.mean(holds) < 0.58


def test_foreground_fraction_changes_nothing_on_whole_images():
    data = sparse_images(5)
    plain = BatchSampler(data, batch_size=2, patch_size=256)
    oversampling = BatchSampler(data, batch_size=2, patch_size=256, foreground_fraction=0.5)
    for first, second in zip(plain.epoch(np.random.default_rng(2)), oversampling.epoch(np.random.default_rng(2))):
        assert all(torch.equal(a, b) for a, b in zip(first[:2], second[:2]))


def test_sampler_is_reproducible_with_every_option():
    rng = np.random.default_rng(0)
    masks = [(rng.random((20, 20)) > 0.9).astype(np.uint8) for _ in range(5)]
    weights = [(m + 1).astype(np.float32) for m in masks]
    data = LabelledImages(list("abcde"), [m[None].astype(np.float32) for m in masks], masks, weights)
    augmentation = OnlineAugmentation(flips=True, rot90=True)

    def batches() -> list[tuple[torch.Tensor, ...]]:
        sampler = BatchSampler(data, 2, 8, foreground_fraction=0.5, augmentation=augmentation)
        return list(sampler.epoch(np.random.default_rng([1, 2])))

    for first, second in zip(batches(), batches()):
        assert all(torch.equal(a, b) for a, b in zip(first, second))
        images, masks_out, weights = first
        assert torch.equal(images[:, 0].long(), masks_out) and torch.equal(weights, masks_out.float() + 1)


# --- the config keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("training", {"schedule": "step"}, "training.schedule: 'step' is not one of ['plateau', 'poly', 'cosine']"),
        ("training", {"warmup_epochs": -1}, "training.warmup_epochs: -1 is less than the minimum of 0"),
        ("training", {"gradient_clip": 0}, "training.gradient_clip: 0 is less than or equal to the minimum of 0"),
        ("training", {"foreground_fraction": 1.5}, "training.foreground_fraction: 1.5 is greater than the maximum"),
        ("training", {"val_patches": "all"}, "training.val_patches: 'all' does not match '^auto$'"),
        ("training", {"val_patches": -2}, "training.val_patches: -2 is less than the minimum of 0"),
        ("training", {"select_by": "val_iou"}, "training.select_by: 'val_iou' is not one of ['val_dice', 'val_loss']"),
        ("prediction", {"threshold": 0.5}, "prediction.threshold: 0.5 is not of type 'string'"),
        ("weights", {"class_balance": "yes"}, "weights.class_balance: 'yes' is not of type 'boolean'"),
    ],
)
def test_bad_recipe_keys_are_named(section, values, message):
    with pytest.raises(InputError) as error:
        with_defaults(section, values)
    assert f"config key {message}" in str(error.value)


def test_recipe_defaults():
    training = with_defaults("training", {})
    assert {key: training[key] for key in RECIPE_DEFAULTS} == RECIPE_DEFAULTS
    assert with_defaults("training", {"gradient_clip": None, "val_patches": 0})["gradient_clip"] is None
    assert with_defaults("prediction", {})["threshold"] == "argmax"
    assert with_defaults("weights", {})["class_balance"] is True


RECIPE_DEFAULTS = {
    "schedule": "poly", "warmup_epochs": 1, "gradient_clip": 12, "online_flips": True, "online_rot90": True,
    "foreground_fraction": 0.333, "val_patches": "auto", "select_by": "val_dice", "keep": "best",
}  # fmt: skip
