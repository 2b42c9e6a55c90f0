"""Build the training loss from the ``loss`` config section; target alignment and deep supervision.

Spec (see :mod:`segcore.train.loss_terms` for the formulas)::

    {name: ce}                          softmax cross-entropy (optional pixel_weights: true)
    {name: weighted_ce}                 cross-entropy weighted by the per-pixel weight map (which is required)
    {name: bce}                         one foreground class; logits (N, 1, h, w) or (N, 2, h, w)
    {name: focal, gamma: 2.0, alpha: [0.25, 0.75] or null}
    {name: dice, include_background: true, smooth: 1.0}      never uses the weight map
    ce, bce and focal take ``pixel_weights: true`` to weight pixels by the map (then required);
    weighted_ce is ce with it always on. Otherwise a given weight map is ignored.
    {name: combo, terms: [{name: ce, weight: 1.0}, {name: dice, weight: 1.0}]}   weighted sum, not normalised
    deep_supervision_weights: [1, 0.5, 0.25]   (any name) one weight per model output, main first

The built loss is called as ``loss(outputs, target, weight_map)``: ``outputs`` is logits ``(N, K, h, w)`` or
the list ``[main, aux_1, ...]`` a deep-supervision model returns in train mode; ``target`` ``(N, H, W)``
integer classes; ``weight_map`` ``(N, H, W)`` float or None. Steps:

1. When the main output is smaller than the target (valid padding), the target and weight map are
   center-cropped to it (:func:`center_crop`: the network's output is the centre of its input).
2. Each auxiliary output gets the cropped target and weight map nearest-downsampled to its own size (exact
   2x subsampling for same-padding networks; a close approximation for valid padding, whose deeper decoder
   levels cover slightly more than the main output).
3. The total is ``sum_k v_k * loss(output_k)`` with the weights ``v`` normalised to sum to 1, so enabling deep
   supervision does not change the loss's scale. Without ``deep_supervision_weights`` a list of n outputs
   uses ``1, 1/2, 1/4, ...`` (normalised). A single tensor (e.g. eval mode) is scored alone with weight 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from segcore.io import InputError
from segcore.model.blocks import center_crop
from segcore.train.loss_terms import binary_cross_entropy, cross_entropy, focal_loss, soft_dice_loss

__all__ = [
    "LossTerm", "SegmentationLoss", "build_loss", "center_crop", "normalised_weights", "resize_nearest",
]  # fmt: skip

# (logits (N, K, h, w), target (N, h, w), weight map (N, h, w) or None) -> scalar
LossTerm = Callable[[Tensor, Tensor, Tensor | None], Tensor]

TERM_KEYS: dict[str, tuple[str, ...]] = {
    "ce": ("pixel_weights",),
    "weighted_ce": (),
    "bce": ("pixel_weights",),
    "focal": ("gamma", "alpha", "pixel_weights"),
    "dice": ("include_background", "smooth"),
}


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


def _use_weight_map(function: LossTerm, required: bool, name: str) -> LossTerm:
    """``function`` given the weight map when ``required`` (error if missing), else given None."""

    def term(logits: Tensor, target: Tensor, weight_map: Tensor | None) -> Tensor:
        if not required:
            return function(logits, target, None)
        if weight_map is None:
            raise ValueError(f"loss {name!r} weights pixels but no weight map was given")
        return function(logits, target, weight_map)

    return term


def _number(spec: Mapping[str, Any], key: str, default: float, where: str, minimum: float = 0.0) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise InputError(f"{where}.{key}: {value!r} is not a number >= {minimum}")
    return float(value)


def _flag(spec: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"{where}.{key}: {value!r} is not true or false")
    return value


def _weights_list(value: Any, where: str) -> tuple[float, ...]:
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
        or not sum(value) > 0
    ):
        raise InputError(f"{where}: {value!r} is not a list of non-negative numbers with a positive sum")
    return tuple(float(v) for v in value)


def _build_term(spec: Mapping[str, Any], where: str, extra_keys: tuple[str, ...] = ()) -> LossTerm:
    """One loss term (not combo) from its spec; ``extra_keys`` are keys the caller handles."""
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}: expected a mapping with a name, got {spec!r}")
    name = spec.get("name")
    if name not in TERM_KEYS:
        raise InputError(f"{where}.name: {name!r} is not one of {', '.join([*TERM_KEYS, 'combo'])}")
    allowed = ("name", *TERM_KEYS[name], *extra_keys)
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown key for loss {name} (known: {', '.join(allowed)})")
    if name == "dice":
        dice = functools.partial(
            soft_dice_loss,
            include_background=_flag(spec, "include_background", True, where),
            smooth=_number(spec, "smooth", 1.0, where),
        )
        return lambda logits, target, weight_map: dice(logits, target)
    if name == "focal":
        alpha = spec.get("alpha")
        function: LossTerm = functools.partial(
            focal_loss,
            gamma=_number(spec, "gamma", 2.0, where),
            alpha=None if alpha is None else _weights_list(alpha, f"{where}.alpha"),
        )
    else:
        function = binary_cross_entropy if name == "bce" else cross_entropy
    required = name == "weighted_ce" or _flag(spec, "pixel_weights", False, where)
    return _use_weight_map(function, required, name)


def _build_combo(spec: Mapping[str, Any], where: str) -> LossTerm:
    terms_spec = spec.get("terms")
    if not isinstance(terms_spec, (list, tuple)) or not terms_spec:
        raise InputError(f"{where}.terms: expected a non-empty list of loss terms, got {terms_spec!r}")
    weighted_terms: list[tuple[float, LossTerm]] = []
    for index, term_spec in enumerate(terms_spec):
        term_where = f"{where}.terms[{index}]"
        term = _build_term(term_spec, term_where, extra_keys=("weight",))
        weighted_terms.append((_number(term_spec, "weight", 1.0, term_where), term))

    def combo(logits: Tensor, target: Tensor, weight_map: Tensor | None) -> Tensor:
        return sum(weight * term(logits, target, weight_map) for weight, term in weighted_terms)

    return combo


def build_loss(spec: Mapping[str, Any], *, where: str = "loss") -> SegmentationLoss:
    """The loss a ``loss`` config section describes; InputError naming ``where.<key>`` if it is invalid."""
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}: expected a mapping with a name, got {spec!r}")
    output_weights = None
    if "deep_supervision_weights" in spec:
        output_weights = _weights_list(spec["deep_supervision_weights"], f"{where}.deep_supervision_weights")
    term_spec = {key: value for key, value in spec.items() if key != "deep_supervision_weights"}
    if term_spec.get("name") == "combo":
        unknown = sorted(set(term_spec) - {"name", "terms"})
        if unknown:
            raise InputError(f"{where}.{unknown[0]}: unknown key for loss combo (known: name, terms)")
        return SegmentationLoss(_build_combo(term_spec, where), output_weights)
    return SegmentationLoss(_build_term(term_spec, where), output_weights)
