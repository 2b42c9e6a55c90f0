"""Tests for segcore.plan.plan and segcore.plan.normalise: planned values for hand-built fingerprints, the
memory estimate, the plan file, and the normalisations.

References: numpy arithmetic written out per mode; the bytes autograd really saves in a training forward
pass (torch.autograd.graph.saved_tensors_hooks) and count_parameters of the built model; hand-computed
sizes, batch counts and validation intervals.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from segcore.config_schema import with_defaults
from segcore.io import InputError
from segcore.model.unet import build_model, count_parameters
from segcore.plan.normalise import DTYPE_SCALING, Normalisation, normalise_image
from segcore.plan.plan import (
    MIB,
    activation_floats_per_pixel,
    parameter_count,
    plan_experiment,
    read_plan,
    resolve_prediction,
    resolve_training,
    training_bytes,
    write_plan,
)

SMALL = {"name": "unet", "widths": [16, 32, 64, 128, 256], "batchnorm": True}


# --- normalisation ---------------------------------------------------------------------------------------


def test_zscore_per_channel():
    image = np.random.default_rng(0).integers(0, 4096, (5, 6, 2)).astype(np.uint16)
    norm = Normalisation("zscore", mean=(100.0, 2000.0), sd=(10.0, 500.0))
    out = normalise_image(image, norm)
    assert out.dtype == np.float32 and out.shape == (2, 5, 6)
    np.testing.assert_allclose(out[0], (image[..., 0] - 100.0) / 10.0, rtol=1e-6)
    np.testing.assert_allclose(out[1], (image[..., 1] - 2000.0) / 500.0, rtol=1e-6)


def test_percentile_clips_then_zscores():
    image = np.array([[0.0, 5.0], [10.0, 1000.0]], np.float32)
    norm = Normalisation("percentile", mean=(4.0,), sd=(2.0,), low=(1.0,), high=(10.0,))
    expected = (np.clip(image, 1.0, 10.0) - 4.0) / 2.0
    np.testing.assert_allclose(normalise_image(image, norm)[0], expected)


def test_dtype_scaling_and_float_passthrough():
    image = np.array([[0, 255], [51, 102]], np.uint8)
    np.testing.assert_allclose(normalise_image(image, DTYPE_SCALING)[0], image / 255.0, rtol=1e-6)
    wide = np.array([[65535, 0]], np.uint16)
    np.testing.assert_allclose(normalise_image(wide, DTYPE_SCALING)[0], [[1.0, 0.0]])
    floats = np.array([[-3.5, 2.0]], np.float32)
    np.testing.assert_array_equal(normalise_image(floats, DTYPE_SCALING)[0], floats)


def test_a_constant_channel_is_shifted_not_divided_by_zero():
    out = normalise_image(np.full((3, 3), 7, np.uint8), Normalisation("zscore", mean=(7.0,), sd=(0.0,)))
    assert np.all(out == 0)


def test_normalisation_checks_channels_and_round_trips():
    norm = Normalisation("zscore", mean=(1.0, 2.0), sd=(1.0, 1.0))
    with pytest.raises(ValueError, match="3 channels but the normalisation has parameters for 2"):
        normalise_image(np.zeros((2, 2, 3), np.uint8), norm)
    with pytest.raises(ValueError, match="mode"):
        Normalisation("minmax")
    with pytest.raises(ValueError, match="equally long"):
        Normalisation("zscore", mean=(1.0,), sd=())
    assert Normalisation.from_dict(norm.as_dict()) == norm


def test_image_zscore_uses_the_grey_images_own_mean_and_sd():
    image = np.array([[0, 2], [4, 6]], np.uint8)
    # By hand: mean 3, population variance (9 + 1 + 1 + 9) / 4 = 5.
    expected = (np.array([[0, 2], [4, 6]]) - 3.0) / math.sqrt(5.0)
    out = normalise_image(image, Normalisation("image_zscore"))
    assert out.dtype == np.float32 and out.shape == (1, 2, 2)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)


def test_image_zscore_is_per_channel_in_uint16_and_only_shifts_a_constant_channel():
    image = np.zeros((2, 2, 3), np.uint16)
    image[..., 0] = [[1000, 3000], [5000, 7000]]  # mean 4000, variance (9 + 1 + 1 + 9) / 4 * 1000**2
    image[..., 1] = [[65535, 65535], [65535, 65533]]  # mean 65534.5, variance (3 * 0.25 + 2.25) / 4 = 0.75
    image[..., 2] = 4321  # constant: shifted to 0, not divided by 0
    out = normalise_image(image, Normalisation("image_zscore"))
    assert out.dtype == np.float32 and out.shape == (3, 2, 2)
    np.testing.assert_allclose(out[0], (image[..., 0] - 4000.0) / (1000.0 * math.sqrt(5.0)), rtol=1e-6)
    np.testing.assert_allclose(out[1], (image[..., 1] - 65534.5) / math.sqrt(0.75), rtol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros((2, 2)))


def test_image_zscore_of_rgb_uint8_matches_numpy_per_channel():
    image = np.random.default_rng(4).integers(0, 256, (7, 5, 3)).astype(np.uint8)
    out = normalise_image(image, Normalisation("image_zscore"))
    for channel in range(3):
        plane = image[..., channel].astype(np.float64)
        mean = plane.sum() / plane.size
        sd = math.sqrt(((plane - mean) ** 2).sum() / plane.size)
        np.testing.assert_allclose(out[channel], (plane - mean) / sd, rtol=1e-5, atol=1e-6)
        assert out[channel].mean() == pytest.approx(0.0, abs=1e-6)
        assert out[channel].std() == pytest.approx(1.0, rel=1e-5)


def test_image_zscore_takes_any_channel_count_and_undoes_an_images_gain_and_offset():
    rng = np.random.default_rng(5)
    for channels in (1, 2, 4):
        dim = rng.integers(5, 40, (9, 11, channels)).astype(np.uint16)
        bright = dim * 7 + 20_000  # another camera gain and offset: the same image to image_zscore
        norm = Normalisation("image_zscore")
        assert norm.channels is None
        np.testing.assert_allclose(normalise_image(bright, norm), normalise_image(dim, norm), atol=1e-5)
    assert Normalisation.from_dict(Normalisation("image_zscore").as_dict()) == Normalisation("image_zscore")


# --- the memory estimate ---------------------------------------------------------------------------------


def saved_floats_per_pixel(spec: dict, channels: int, classes: int, side: int = 64) -> float:
    """Float32 values autograd saves per input pixel in a training forward pass (parameters excluded)."""
    torch.manual_seed(0)
    net = build_model(spec, channels, classes).train()
    parameters = {t.untyped_storage().data_ptr() for t in [*net.parameters(), *net.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        net(torch.randn(2, channels, side, side))
    return sum(saved.values()) / 4 / (2 * side * side)


@pytest.mark.parametrize(
    "spec",
    [
        SMALL,
        {**SMALL, "batchnorm": False},
        {**SMALL, "fusion": "add"},
        {"name": "unet_small"},
        {"name": "unet_residual"},
        {"name": "unet", "widths": [8, 16, 32], "upsampling": "interp", "batchnorm": True},
        {"name": "unet", "base_width": 8, "depth": 5, "residual": True},
    ],
)
def test_activation_estimate_is_within_15_percent_of_what_autograd_saves(spec):
    torch.set_num_threads(1)
    filled = with_defaults("experiments.*.model", spec)
    measured = saved_floats_per_pixel(filled, 3, 4)
    assert activation_floats_per_pixel(filled, 3, 4) == pytest.approx(measured, rel=0.15)
    net = build_model(filled, 3, 4)
    assert parameter_count(filled, 3, 4) == pytest.approx(count_parameters(net), rel=0.1)


# --- planned values --------------------------------------------------------------------------------------


def per_image(ratios, sd_median=20.0) -> dict:
    """Per-image statistics whose means spread by ``ratios`` (one per channel) x the median per-image sd."""
    return {
        "mean_sd": [ratio * sd_median for ratio in ratios], "mean_min": [90.0] * len(ratios),
        "mean_max": [110.0] * len(ratios), "sd_median": [sd_median] * len(ratios),
    }  # fmt: skip


def fingerprint(heights, widths, *, train=80, val=10, channels=1, stats=None, images=None) -> dict:
    """A fingerprint with the given sizes (min/median/max lists) and intensity statistics; the images alike
    (per-image means spread by 0.25 x their sd) unless ``images`` gives other per-image statistics."""
    stats = stats or {
        "mean": [100.0] * channels, "sd": [20.0] * channels, "p0_5": [50.0] * channels,
        "p99_5": [150.0] * channels, "min": [40.0] * channels, "max": [160.0] * channels,
        "clipped_mean": [99.0] * channels, "clipped_sd": [19.0] * channels,
    }  # fmt: skip
    return {
        "images": train + val + 10,
        "subsets": {"train": train, "val": val, "test": 10, "unused": 0},
        "size": {
            "height": dict(zip(("min", "median", "max"), heights)),
            "width": dict(zip(("min", "median", "max"), widths)),
        },
        "channels": channels,
        "dtype": "uint8",
        "intensity": {
            "ids": "train+val",
            "images": train + val,
            "pixels": 1000,
            "seed": 0,
            "all": stats,
            "foreground": stats,
            "per_image": images or per_image([0.25] * channels),
        },  # fmt: skip
        "classes": [
            {"id": 0, "name": "bg", "pixel_fraction": 0.9, "images": 100, "objects": 0, "object_size": None},
            {
                "id": 1,
                "name": "fg",
                "pixel_fraction": 0.1,
                "images": 60,
                "objects": 90,
                "object_size": {"min": 4, "median": 30, "max": 200, "mean": 41.5},
            },
        ],  # fmt: skip
        "objects": {"count": 0, "touching_fraction": 0.0},
    }


def plan(fp, *, model=SMALL, budget=2048, copies=1, augmentation=True, **overrides):
    training = with_defaults("training", {"epochs": 20, **{k: v for k, v in overrides.items() if k in TRAINING}})
    prediction = with_defaults("prediction", {k: v for k, v in overrides.items() if k in ("tile_size", "overlap")})
    experiment = {"model": with_defaults("experiments.*.model", model), "augmentation": augmentation}
    return plan_experiment(
        fp, experiment="e", experiment_config=experiment, training=training, prediction=prediction,
        memory_budget_mb=budget, augment_copies=copies,
    )  # fmt: skip


TRAINING = ("patch_size", "batch_size", "normalisation", "validation_every", "epochs")


def test_odd_sized_images_train_whole_and_predict_in_one_padded_tile():
    result = plan(fingerprint((101, 101, 101), (101, 101, 101)))
    assert result.depth == 4 and result.patch_size is None and result.sources["patch_size"] == "auto"
    assert result.tile_size == 112 and result.overlap == 28  # 101 padded to a multiple of 16; a quarter
    assert result.sources == dict.fromkeys(result.sources, "auto")


def test_patch_size_larger_than_needed_names_the_key():
    fp = fingerprint((101, 101, 101), (101, 101, 101))
    assert plan(fp, patch_size=112).patch_size == 112  # the largest side rounded up to 16 is allowed
    with pytest.raises(InputError, match=r"config key training\.patch_size: 128 is larger than needed.*112"):
        plan(fp, patch_size=128)


def test_whole_images_of_mixed_sizes_name_the_key_and_auto_takes_the_median():
    fp = fingerprint((200, 300, 700), (180, 260, 500))
    with pytest.raises(InputError, match=r"config key training\.patch_size: null \(whole images\) needs images"):
        plan(fp, patch_size=None)
    result = plan(fp)
    assert result.patch_size == 304  # median longer side 300, rounded up to a multiple of 16
    assert result.tile_size == 304 and result.overlap == 76


def test_a_small_budget_shrinks_the_patch_to_the_largest_fitting_multiple():
    fp = fingerprint((512, 512, 512), (512, 512, 512))
    budget = 300
    result = plan(fp, budget=budget)
    side = result.patch_size
    assert side is not None and side % 16 == 0 and side < 512
    spec = with_defaults("experiments.*.model", SMALL)
    # Two samples of the chosen side fit; two of the next multiple do not.
    assert training_bytes(spec, 1, 2, side * side, 2) <= budget * MIB
    assert training_bytes(spec, 1, 2, (side + 16) ** 2, 2) > budget * MIB


def test_batch_size_fills_the_budget_within_the_share_and_the_clamp():
    spec = with_defaults("experiments.*.model", SMALL)
    fp = fingerprint((128, 128, 128), (128, 128, 128), train=800)
    pixels = 128 * 128
    per_sample = training_bytes(spec, 1, 2, pixels, 1) - training_bytes(spec, 1, 2, pixels, 0)
    fixed = training_bytes(spec, 1, 2, pixels, 0)
    budget = (fixed + 10.5 * per_sample) / MIB  # exactly 10 samples fit
    assert plan(fp, budget=budget).batch_size == 10
    assert plan(fp, budget=100_000).batch_size == 32  # the clamp
    # 5 % of 40 training samples (no augmented copies) is 2: the cap wins over the memory.
    assert plan(fingerprint((128,) * 3, (128,) * 3, train=40), budget=100_000, augmentation=False).batch_size == 2
    assert plan(fp, budget=1).batch_size == 2  # below the clamp's minimum
    explicit = plan(fp, batch_size=5)
    assert explicit.batch_size == 5 and explicit.sources["batch_size"] == "config"


# The central 99 % span 100, the brightest 0.5 % almost 4000: heavy-tailed.
HEAVY = {"mean": [100.0], "sd": [40.0], "p0_5": [50.0], "p99_5": [150.0], "min": [40.0], "max": [4095.0],
         "clipped_mean": [99.0], "clipped_sd": [19.0]}  # fmt: skip


def test_normalisation_is_zscore_unless_the_tails_are_heavy():
    result = plan(fingerprint((64,) * 3, (64,) * 3))
    assert result.normalisation == Normalisation("zscore", mean=(100.0,), sd=(20.0,))
    clipped = plan(fingerprint((64,) * 3, (64,) * 3, stats=HEAVY))
    assert clipped.normalisation == Normalisation("percentile", (99.0,), (19.0,), (50.0,), (150.0,))
    assert "heavy tails" in clipped.reasons["normalisation"]
    chosen = plan(fingerprint((64,) * 3, (64,) * 3, stats=HEAVY), normalisation="dtype")
    assert chosen.normalisation == DTYPE_SCALING and chosen.sources["normalisation"] == "config"


def test_images_that_differ_more_than_their_own_contrast_are_zscored_each_by_itself():
    # Dark-field (means ~20) and bright-field (~210) images: means spread 4.5 x the typical in-image sd.
    varied = plan(fingerprint((64,) * 3, (64,) * 3, images=per_image([4.5])))
    assert varied.normalisation == Normalisation("image_zscore") and varied.sources["normalisation"] == "auto"
    assert "4.50 x the median per-image sd" in varied.reasons["normalisation"]
    # Heavy tails do not matter then: each image's own statistics replace the dataset's.
    varied_heavy = plan(fingerprint((64,) * 3, (64,) * 3, stats=HEAVY, images=per_image([4.5])))
    assert varied_heavy.normalisation.mode == "image_zscore"
    # Alike images keep the dataset-wide choice, heavy-tailed or not; the threshold 1.5 itself is alike.
    alike = plan(fingerprint((64,) * 3, (64,) * 3, images=per_image([1.5])))
    assert alike.normalisation == Normalisation("zscore", mean=(100.0,), sd=(20.0,))
    assert "alike" in alike.reasons["normalisation"] and "non-CT" not in alike.reasons["normalisation"]
    alike_heavy = plan(fingerprint((64,) * 3, (64,) * 3, stats=HEAVY, images=per_image([0.8])))
    assert alike_heavy.normalisation.mode == "percentile"


def test_one_varied_channel_is_enough_and_constant_images_count_as_alike():
    three = fingerprint((64,) * 3, (64,) * 3, channels=3, images=per_image([0.3, 1.6, 0.2]))
    result = plan(three)
    assert result.normalisation.mode == "image_zscore" and "channel(s) [1]" in result.reasons["normalisation"]
    flat = plan(fingerprint((64,) * 3, (64,) * 3, images=per_image([0.0], sd_median=0.0) | {"mean_sd": [50.0]}))
    assert flat.normalisation.mode == "zscore"  # no contrast inside the images to compare the spread with


def test_an_explicit_normalisation_wins_over_the_images_spread():
    varied = fingerprint((64,) * 3, (64,) * 3, images=per_image([4.5]))
    kept = plan(varied, normalisation="zscore")
    assert kept.normalisation == Normalisation("zscore", mean=(100.0,), sd=(20.0,))
    assert kept.sources["normalisation"] == "config" and kept.reasons["normalisation"] == "set in the config"
    alike = plan(fingerprint((64,) * 3, (64,) * 3), normalisation="image_zscore")
    assert alike.normalisation == Normalisation("image_zscore") and alike.sources["normalisation"] == "config"


def test_a_fingerprint_without_per_image_statistics_plans_as_before():
    old = fingerprint((64,) * 3, (64,) * 3)
    del old["intensity"]["per_image"]
    result = plan(old)
    assert result.normalisation == Normalisation("zscore", mean=(100.0,), sd=(20.0,))
    assert "predates per-image statistics" in result.reasons["normalisation"]
    old["intensity"]["all"] = HEAVY
    assert plan(old).normalisation.mode == "percentile"


def test_image_zscore_needs_no_train_or_val_statistics():
    empty = fingerprint((64,) * 3, (64,) * 3)
    empty["intensity"] |= {"all": None, "foreground": None, "per_image": None}
    assert plan(empty, normalisation="image_zscore").normalisation == Normalisation("image_zscore")
    with pytest.raises(InputError, match=r"config key training\.normalisation: .*use image_zscore or dtype"):
        plan(empty)


def test_validation_interval_keeps_validation_under_a_quarter_of_training():
    # 20 training samples of 256 px patches, 5 val images of 512 x 512 (the ISBI preset's shape).
    fp = fingerprint((512,) * 3, (512,) * 3, train=20, val=5)
    result = plan(fp, patch_size=256, augmentation=False)
    ratio = 5 * 512 * 512 / (3 * 20 * 256 * 256)  # 0.333: forward-only validation against forward+backward
    assert result.validation_every == math.ceil(ratio / 0.25) == 2
    assert plan(fingerprint((128,) * 3, (128,) * 3, train=800, val=100)).validation_every == 1
    tight = plan(fingerprint((512,) * 3, (512,) * 3, train=1, val=50), patch_size=64, epochs=8)
    assert tight.validation_every == 2  # at most epochs // 4, so four validations still run


def test_plan_file_round_trip_and_resolved_sections(tmp_path: Path):
    result = plan(fingerprint((101,) * 3, (101,) * 3), batch_size=4, tile_size=64)
    write_plan(tmp_path / "plan.json", result)
    assert read_plan(tmp_path / "plan.json") == result
    training = resolve_training(with_defaults("training", {"batch_size": 4}), result)
    assert (training["patch_size"], training["batch_size"], training["normalisation"]) == (None, 4, "zscore")
    assert training["validation_every"] == result.validation_every
    prediction = resolve_prediction(with_defaults("prediction", {"tile_size": 64}), result)
    assert (prediction["tile_size"], prediction["overlap"]) == (64, 16)
    rows = {row["key"]: row for row in result.table()}
    assert rows["training.batch_size"]["source"] == "config" and rows["prediction.overlap"]["source"] == "auto"
    per_image_plan = plan(fingerprint((101,) * 3, (101,) * 3, images=per_image([3.0])))
    write_plan(tmp_path / "image.json", per_image_plan)
    assert read_plan(tmp_path / "image.json") == per_image_plan
    assert resolve_training(with_defaults("training", {}), per_image_plan)["normalisation"] == "image_zscore"
