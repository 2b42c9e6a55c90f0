"""Build the training loss from the ``loss`` config section; target alignment and deep supervision.

config/schema.yaml (``experiments.*.loss``) declares the section: the names, the keys each name takes and
their defaults (see :mod:`segcore.train.loss_terms` for the formulas)::

    {name: ce, pixel_weights: false}                softmax cross-entropy
    {name: weighted_ce}                             cross-entropy weighted by the weight map (then required)
    {name: bce, pixel_weights: false}               one foreground class; logits (N, 1, h, w) or (N, 2, h, w)
    {name: focal, gamma: 2.0, alpha: null, pixel_weights: false}
    {name: dice, include_background: true, smooth: 1.0}          never uses the weight map
    {name: combo, terms: [{name: ce, weight: 1.0}, {name: dice, weight: 1.0}]}   weighted sum, not normalised
    deep_supervision_weights: null or [1, 0.5, 0.25]   (any name) one weight per model output, main first

``pixel_weights: true`` weights pixels by the map (then required); otherwise a given weight map is ignored.
:func:`build_loss` takes the section with those defaults filled in (as the Snakefile leaves it, or from
:func:`segcore.config_schema.with_defaults`).

The built loss is called as ``loss(outputs, target, weight_map)``: ``outputs`` is logits ``(N, K, h, w)`` or
the list ``[main, aux_1, ...]`` a deep-supervision model returns in train mode; ``target`` ``(N, H, W)``
integer classes; ``weight_map`` ``(N, H, W)`` float or None. Steps:

1. When the main output is smaller than the target (valid padding), the target and weight map are
   center-cropped to it (:func:`center_crop`: the network's output is the centre of its input).
2. Each auxiliary output gets the cropped target and weight map nearest-downsampled to its own size (exact
   2x subsampling for same-padding networks; a close approximation for valid padding, whose deeper decoder
   levels cover slightly more than the main output).
3. The total is ``sum_k v_k * loss(output_k)`` with the weights ``v`` normalised to sum to 1, so enabling deep
   supervision does not change the loss's scale. With ``deep_supervision_weights: null`` a list of n outputs
   uses ``1, 1/2, 1/4, ...`` (normalised). A single tensor (e.g. eval mode) is scored alone with weight 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from segcore.model.blocks import center_crop
from segcore.train.loss_terms import binary_cross_entropy, cross_entropy, focal_loss, soft_dice_loss

__all__ = [
    "LossTerm", "SegmentationLoss", "build_loss", "center_crop", "normalised_weights", "resize_nearest",
]  # fmt: skip

# (logits (N, K, h, w), target (N, h, w), weight map (N, h, w) or None) -> scalar
LossTerm = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def normalised_weights(weights: Sequence[float]) -> tuple[float, ...]:
    """``weights`` divided by their sum; ValueError if any is negative or the sum is not positive."""
    if any(weight < 0 for weight in weights) or not sum(weights) > 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    return tuple(float(weight) / total for weight in weights)


def resize_nearest(array: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``(N, H, W)`` labels or weights to ``(N, h, w)``, keeping the dtype.

    Uses ``F.interpolate(mode="nearest")`` (source index ``floor(i * H / h)``: every other pixel for 2x).
    Integer labels go through float32, exact for class indices below 2**24.
    """
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    resized = F.interpolate(array[:, None].float(), size=tuple(size), mode="nearest")[:, 0]
    return resized.to(array.dtype)


class SegmentationLoss:
    """A per-output :data:`LossTerm` applied to one output or a deep-supervision list (module docstring)."""

    def __init__(self, term: LossTerm, output_weights: tuple[float, ...] | None = None) -> None:
        self.term = term
        self.output_weights = normalised_weights(output_weights) if output_weights is not None else None

    def weights_for(self, num_outputs: int) -> tuple[float, ...]:
        """Normalised weight of each of ``num_outputs`` outputs (main first)."""
        if num_outputs == 1:
            return (1.0,)
        if self.output_weights is None:
            return normalised_weights([0.5**index for index in range(num_outputs)])
        if len(self.output_weights) != num_outputs:
            raise ValueError(
                f"deep_supervision_weights has {len(self.output_weights)} entries but the model returned "
                f"{num_outputs} outputs"
            )
        return self.output_weights

    def __call__(self, outputs: Tensor | Sequence[Tensor], target: Tensor, weight_map: Tensor | None = None) -> Tensor:
        outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        if not outputs:
            raise ValueError("the model returned an empty list of outputs")
        main_size = tuple(outputs[0].shape[-2:])
        target = center_crop(target, main_size)
        weight_map = center_crop(weight_map, main_size) if weight_map is not None else None
        total = 0.0
        for output_weight, logits in zip(self.weights_for(len(outputs)), outputs, strict=True):
            size = tuple(logits.shape[-2:])
            level_weights = resize_nearest(weight_map, size) if weight_map is not None else None
            total = total + output_weight * self.term(logits, resize_nearest(target, size), level_weights)
        return total


def _use_weight_map(function: LossTerm, required: bool, where: str) -> LossTerm:
    """``function`` given the weight map when ``required`` (error if missing), else given None."""

    def term(logits: Tensor, target: Tensor, weight_map: Tensor | None) -> Tensor:
        if not required:
            return function(logits, target, None)
        if weight_map is None:
            raise ValueError(f"loss {where} weights pixels but no weight map was given")
        return function(logits, target, weight_map)

    return term


def _build_term(spec: Mapping[str, Any], where: str) -> LossTerm:
    """One loss term (any name but combo) from its filled spec."""
    name = spec["name"]
    if name == "dice":
        dice = functools.partial(
            soft_dice_loss, include_background=bool(spec["include_background"]), smooth=float(spec["smooth"])
        )
        return lambda logits, target, weight_map: dice(logits, target)
    if name == "focal":
        alpha = spec["alpha"]
        function: LossTerm = functools.partial(
            focal_loss,
            gamma=float(spec["gamma"]),
            alpha=None if alpha is None else tuple(float(value) for value in alpha),
        )
    else:
        function = binary_cross_entropy if name == "bce" else cross_entropy
    # weighted_ce has no pixel_weights key: it always weights.
    required = name == "weighted_ce" or bool(spec["pixel_weights"])
    return _use_weight_map(function, required, f"{where} ({name})")


def _build_combo(terms: Sequence[Mapping[str, Any]], where: str) -> LossTerm:
    """The weighted sum of ``terms`` (each a term spec with its ``weight``)."""
    weighted_terms = [
        (float(spec["weight"]), _build_term(spec, f"{where}.terms[{index}]")) for index, spec in enumerate(terms)
    ]

    def combo(logits: Tensor, target: Tensor, weight_map: Tensor | None) -> Tensor:
        return sum(weight * term(logits, target, weight_map) for weight, term in weighted_terms)

    return combo


def build_loss(spec: Mapping[str, Any], *, where: str = "loss") -> SegmentationLoss:
    """The loss a ``loss`` section with its defaults filled in describes (module docstring).

    ``where`` is the section's config path, named when a pixel-weighting loss gets no weight map. Raises
    KeyError for a key the section lacks (its defaults were not filled).
    """
    output_weights = spec["deep_supervision_weights"]
    term = _build_combo(spec["terms"], where) if spec["name"] == "combo" else _build_term(spec, where)
    return SegmentationLoss(term, None if output_weights is None else tuple(float(w) for w in output_weights))
