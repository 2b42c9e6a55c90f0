"""Tests for segcore.train.losses and segcore.train.loss_terms against torch.nn.functional, sklearn and hand values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

import segcore.train.losses as losses
from segcore.config_schema import with_defaults
from segcore.train.losses import SegmentationLoss, center_crop, normalised_weights


def build_loss(spec: dict, where: str = "loss") -> SegmentationLoss:
    """segcore.train.losses.build_loss of ``spec`` with the schema's defaults filled in (the per-key checks
    of the section are tested in test_config_schema.py)."""
    return losses.build_loss(with_defaults("experiments.*.loss", spec), where=where)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _batch(num_classes: int = 3, size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random logits (2, K, size, size), targets (2, size, size) and positive weights (2, size, size)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, size, size, generator=generator) * 3
    target = torch.randint(0, num_classes, (2, size, size), generator=generator)
    weights = torch.rand(2, size, size, generator=generator) * 10 + 0.1
    return logits, target, weights


def test_ce_matches_torch_cross_entropy_and_ignores_weight_map() -> None:
    logits, target, weights = _batch()
    loss = build_loss({"name": "ce"})
    torch.testing.assert_close(loss(logits, target), F.cross_entropy(logits, target))
    torch.testing.assert_close(loss(logits, target, weights), F.cross_entropy(logits, target))


def test_weighted_ce_is_normalised_weighted_mean_of_pixel_ce() -> None:
    logits, target, weights = _batch()
    pixel_ce = F.cross_entropy(logits, target, reduction="none")
    expected = (weights * pixel_ce).sum() / weights.sum()
    torch.testing.assert_close(build_loss({"name": "weighted_ce"})(logits, target, weights), expected)
    torch.testing.assert_close(build_loss({"name": "ce", "pixel_weights": True})(logits, target, weights), expected)


def test_weighted_ce_with_class_weight_map_equals_torch_class_weights() -> None:
    logits, target, _ = _batch()
    class_weights = torch.tensor([0.2, 1.0, 5.0])
    result = build_loss({"name": "weighted_ce"})(logits, target, class_weights[target])
    torch.testing.assert_close(result, F.cross_entropy(logits, target, weight=class_weights))


def test_weighted_ce_hand_value() -> None:
    # Pixel A: logits (0, 0), class 0 -> ln 2, weight 1. Pixel B: logits (0, ln 3), class 0 -> p = 1/4,
    # loss ln 4, weight 3. Weighted mean: (ln 2 + 3 ln 4) / 4 = 7/4 ln 2.
    logits = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3)]]]])
    target = torch.tensor([[[0, 0]]])
    weights = torch.tensor([[[1.0, 3.0]]])
    result = build_loss({"name": "weighted_ce"})(logits, target, weights)
    assert result.item() == pytest.approx(7 / 4 * math.log(2), rel=1e-6)


def test_weighted_ce_needs_a_weight_map() -> None:
    logits, target, _ = _batch()
    with pytest.raises(ValueError, match="weight map"):
        build_loss({"name": "weighted_ce"})(logits, target)


def test_bce_matches_torch_for_one_and_two_channels() -> None:
    logits, target, weights = _batch(num_classes=2)
    reference = F.binary_cross_entropy_with_logits(logits[:, 1], target.float())
    one_channel = build_loss({"name": "bce"})(logits[:, 1:2], target)
    torch.testing.assert_close(one_channel, reference)
    two_channel = build_loss({"name": "bce"})(logits, target)
    torch.testing.assert_close(two_channel, F.cross_entropy(logits, target))
    weighted = build_loss({"name": "bce", "pixel_weights": True})(logits[:, 1:2], target, weights)
    pixel_bce = F.binary_cross_entropy_with_logits(logits[:, 1], target.float(), reduction="none")
    torch.testing.assert_close(weighted, (weights * pixel_bce).sum() / weights.sum())


def test_bce_rejects_more_than_two_classes() -> None:
    logits, target, _ = _batch(num_classes=3)
    with pytest.raises(ValueError, match="0 .* and 1"):
        build_loss({"name": "bce"})(logits[:, :1], target)
    with pytest.raises(ValueError, match="N, 1 or 2"):
        build_loss({"name": "bce"})(logits, target.clamp(max=1))


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy() -> None:
    logits, target, _ = _batch()
    focal = build_loss({"name": "focal", "gamma": 0.0, "alpha": None})
    torch.testing.assert_close(focal(logits, target), F.cross_entropy(logits, target))


def test_focal_alpha_weights_pixel_losses() -> None:
    logits, target, _ = _batch()
    alpha = torch.tensor([0.25, 0.5, 1.0])
    focal = build_loss({"name": "focal", "gamma": 0, "alpha": alpha.tolist()})
    expected = (alpha[target] * F.cross_entropy(logits, target, reduction="none")).mean()
    torch.testing.assert_close(focal(logits, target), expected)


def test_focal_finite_and_exact_at_extreme_logits() -> None:
    # Two classes, logits +-100, mixed right and wrong targets, plus moderate logits.
    logits = torch.tensor([[[[100.0, -100.0, 3.0]], [[-100.0, 100.0, -1.0]]]], requires_grad=True)
    target = torch.tensor([[[0, 0, 1]]])
    gamma = 2.0
    expected = []
    for z0, z1, label in ((100.0, -100.0, 0), (-100.0, 100.0, 0), (3.0, -1.0, 1)):
        log_pt = (z0, z1)[label] - max(z0, z1) - math.log1p(math.exp(-abs(z0 - z1)))  # float64
        expected.append(-((1 - math.exp(log_pt)) ** gamma) * log_pt)
    result = build_loss({"name": "focal", "gamma": gamma})(logits, target)
    assert result.item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert expected[1] == pytest.approx(200.0)
    result.backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_gradient_finite_for_fractional_gamma_at_saturation() -> None:
    logits = torch.tensor([[[[100.0]], [[-100.0]]]], requires_grad=True)
    loss = build_loss({"name": "focal", "gamma": 0.5})(logits, torch.tensor([[[0]]]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_dice_is_zero_for_perfect_prediction() -> None:
    _, target, _ = _batch(num_classes=4)
    perfect = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 100
    for include_background in (True, False):
        dice = build_loss({"name": "dice", "include_background": include_background})
        assert dice(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_hand_values() -> None:
    # Two pixels, logits 0 so p = 1/2 everywhere, both pixels class 1.
    # Class 0: overlap 0, sizes 1 + 0. Class 1: overlap 1, sizes 1 + 2.
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 1]]])
    cases = {
        (True, 1.0): 1 - ((0 + 1) / (1 + 1) + (2 + 1) / (3 + 1)) / 2,
        (False, 1.0): 1 - (2 + 1) / (3 + 1),
        (True, 0.0): 1 - (0 + 2 / 3) / 2,
        (False, 0.0): 1 - 2 / 3,
    }
    for (include_background, smooth), expected in cases.items():
        spec = {"name": "dice", "include_background": include_background, "smooth": smooth}
        assert build_loss(spec)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_of_hard_prediction_is_one_minus_macro_f1() -> None:
    _, target, _ = _batch(num_classes=3, size=8)
    prediction = torch.randint(0, 3, target.shape, generator=torch.Generator().manual_seed(1))
    logits = F.one_hot(prediction, 3).permute(0, 3, 1, 2).float() * 100
    dice = build_loss({"name": "dice", "smooth": 0.0})(logits, target)
    macro_f1 = f1_score(target.flatten().numpy(), prediction.flatten().numpy(), average="macro")
    assert dice.item() == pytest.approx(1 - macro_f1, rel=1e-5)


def test_one_channel_output_is_two_class_with_zero_background_logit() -> None:
    logits, target, _ = _batch(num_classes=2)
    foreground = logits[:, 1:2]
    two_class = torch.cat([torch.zeros_like(foreground), foreground], dim=1)
    for spec in ({"name": "ce"}, {"name": "dice"}, {"name": "focal"}):
        torch.testing.assert_close(build_loss(spec)(foreground, target), build_loss(spec)(two_class, target))


def test_combo_is_weighted_sum_of_terms() -> None:
    # Same hand case as test_dice_hand_values: CE is ln 2 per pixel, Dice (smooth 1) is 0.375.
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 1]]])
    spec = {"name": "combo", "terms": [{"name": "ce", "weight": 1.0}, {"name": "dice", "weight": 0.5}]}
    assert build_loss(spec)(logits, target).item() == pytest.approx(math.log(2) + 0.5 * 0.375, rel=1e-6)


def test_valid_padding_target_and_weights_are_center_cropped() -> None:
    logits, _, _ = _batch(size=4)
    _, target, weights = _batch(size=8, seed=1)
    result = build_loss({"name": "weighted_ce"})(logits, target, weights)
    inner_target, inner_weights = target[:, 2:6, 2:6], weights[:, 2:6, 2:6]
    pixel_ce = F.cross_entropy(logits, inner_target, reduction="none")
    torch.testing.assert_close(result, (inner_weights * pixel_ce).sum() / inner_weights.sum())


def test_center_crop_by_hand() -> None:
    grid = torch.arange(16).reshape(1, 4, 4)
    assert center_crop(grid, (2, 2)).tolist() == [[[5, 6], [9, 10]]]


def test_deep_supervision_weights_normalised_and_targets_subsampled() -> None:
    loss = build_loss({"name": "weighted_ce", "deep_supervision_weights": [1, 0.5, 0.25]})
    assert loss.output_weights == pytest.approx((4 / 7, 2 / 7, 1 / 7))
    assert sum(loss.output_weights) == pytest.approx(1.0)
    _, target, weights = _batch(size=8)
    outputs = [_batch(size=size, seed=size)[0] for size in (8, 4, 2)]
    expected = 0.0
    for output_weight, logits, stride in zip((4 / 7, 2 / 7, 1 / 7), outputs, (1, 2, 4), strict=True):
        level_target, level_weights = target[:, ::stride, ::stride], weights[:, ::stride, ::stride]
        pixel_ce = F.cross_entropy(logits, level_target, reduction="none")
        expected += output_weight * (level_weights * pixel_ce).sum() / level_weights.sum()
    torch.testing.assert_close(loss(outputs, target, weights), expected)
    # A single tensor (eval mode) is scored alone.
    torch.testing.assert_close(
        loss(outputs[0], target, weights), build_loss({"name": "weighted_ce"})(outputs[0], target, weights)
    )
    with pytest.raises(ValueError, match="3 entries"):
        loss(outputs[:2], target, weights)


def test_default_deep_supervision_weights_halve() -> None:
    assert build_loss({"name": "ce"}).weights_for(3) == pytest.approx((4 / 7, 2 / 7, 1 / 7))
    assert normalised_weights([2, 2]) == (0.5, 0.5)


def test_a_pixel_weighting_combo_term_names_itself_when_the_map_is_missing() -> None:
    logits, target, _ = _batch()
    loss = build_loss({"name": "combo", "terms": [{"name": "dice"}, {"name": "ce", "pixel_weights": True}]}, "x.loss")
    with pytest.raises(ValueError, match=r"loss x\.loss\.terms\[1\] \(ce\) weights pixels but no weight map"):
        loss(logits, target)
    assert torch.isfinite(loss(logits, target, torch.ones_like(target, dtype=torch.float32)))


def test_a_section_without_its_defaults_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="deep_supervision_weights"):
        losses.build_loss({"name": "ce"})
