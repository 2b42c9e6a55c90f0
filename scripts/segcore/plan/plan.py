"""The experiment plan: every training and prediction setting whose config value is ``"auto"``, resolved
from the dataset fingerprint, the experiment's model and a memory budget; and the one writer and reader of
``fingerprint.json`` and ``plan.json``.

Each planned value comes from its config key when that is not ``"auto"`` (source ``config``), else from the
rules below (source ``auto``); ``plan.json`` records value, source and the reason for each:

- ``normalisation`` (``training.normalisation``): :func:`segcore.plan.normalise.choose_normalisation` (its
  module docstring has the rule): ``image_zscore`` (each image by its own mean and sd, nnU-Net's rule for
  non-CT images) when the images' means differ by more than their own contrast, else ``zscore`` with the
  dataset's train+val mean and sd per channel, or ``percentile`` when the data are heavy-tailed.
- ``patch_size`` (``training.patch_size``): whole images (null) when all images share one size and two of
  them fit the memory budget; else a square patch: the median of the images' longer sides rounded up to a
  multiple of ``2**depth`` (nnU-Net's median-shape target), reduced to the largest multiple of ``2**depth``
  whose batch of two fits the budget.
- ``batch_size`` (``training.batch_size``): as many training samples as fit the budget, at most the samples
  of 5 % of an epoch (nnU-Net's cap, so an epoch has enough steps), clamped to [2, 32].
- ``tile_size`` (``prediction.tile_size``): the training sample's side (the context the net learned with;
  for whole images the longer side, padded to ``2**depth``); ``overlap`` (``prediction.overlap``): a
  quarter of the tile, so every tile border (where a same-padding net sees zeros) lies inside a neighbour at
  1.8x the tiles of no overlap (nnU-Net overlaps by half: 4x).
- ``validation_every`` (``training.validation_every``): 1 (every epoch) unless a whole-image validation pass
  costs more than a quarter of a training epoch (forward only, a third of a training step per pixel); then
  every ``k`` epochs so that it averages a quarter, at most ``epochs // 4`` so at least four validations run.

Memory estimate (:func:`training_bytes`) for a same-padding U-Net of widths ``w_0..w_d`` at float32: the
tensors autograd saves for the backward pass, per input pixel, ``sum_l c_l * w_l / 4**l`` floats, with per
level ``l < d`` two convolution blocks (each convolution saves its output and, with BatchNorm, the normalised
output too: 2 or 1 widths), the pooling indices (int64 at a quarter of the pixels: half a width) and the
decoder's fused input (concatenation: 2 widths; addition: 1); residual blocks with BatchNorm add a width
per block; the bottleneck block and the input and logits add their channels. Checked against the bytes
autograd really saves (tests/unit/test_plan.py: within 15 %), times an allowance of 1.5 for the gradients
alive during the backward pass and allocator overhead (peak resident memory measured on the CPU: 1.2-1.4x
the saved tensors), plus 16 bytes per parameter (weights, gradients and Adam's two moments, float32).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segcore.io import InputError, atomic_path
from segcore.plan.normalise import AUTO, Normalisation, choose_normalisation

PLANNED = ("normalisation", "patch_size", "batch_size", "tile_size", "overlap", "validation_every")
CONFIG_KEYS = {
    "normalisation": "training.normalisation",
    "patch_size": "training.patch_size",
    "batch_size": "training.batch_size",
    "tile_size": "prediction.tile_size",
    "overlap": "prediction.overlap",
    "validation_every": "training.validation_every",
}
BATCH_RANGE = (2, 32)
BATCH_DATASET_SHARE = 0.05
MEMORY_ALLOWANCE = 1.5
BYTES_PER_PARAMETER = 16
VALIDATION_SHARE = 0.25
MIB = 2**20


@dataclass(frozen=True)
class Plan:
    """The resolved settings of one experiment.

    ``patch_size``: square training sample side (the config's meaning: for valid padding, the output side),
    None for whole images; ``tile_size``/``overlap``: prediction and validation tiling; ``sources``: planned
    key -> "auto" or "config"; ``reasons``: planned key -> why this value; ``memory``: the estimate's terms.
    """

    experiment: str
    depth: int
    normalisation: Normalisation
    patch_size: int | None
    batch_size: int
    tile_size: int
    overlap: int
    validation_every: int
    sources: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        """The planned value of ``key`` (one of :data:`PLANNED`); the normalisation as its mode."""
        return self.normalisation.mode if key == "normalisation" else getattr(self, key)

    def table(self) -> list[dict[str, Any]]:
        """One row per planned key: key (the config key), value, source, reason."""
        return [
            {"key": CONFIG_KEYS[key], "value": self.value(key), "source": self.sources.get(key, ""),
             "reason": self.reasons.get(key, "")}
            for key in PLANNED
        ]  # fmt: skip


# --- the model's memory ----------------------------------------------------------------------------------


def model_widths(spec: Mapping[str, Any], where: str = "model") -> tuple[int, ...]:
    """Channels per level of a filled ``model`` section: ``widths``, else ``base_width * 2**level`` for
    ``depth`` levels (segcore.model.spec checks the combinations; this only reads them)."""
    if "widths" in spec:
        return tuple(int(width) for width in spec["widths"])
    if "base_width" in spec and "depth" in spec:
        return tuple(int(spec["base_width"]) * 2**level for level in range(int(spec["depth"]) + 1))
    raise InputError(f"config key {where}.widths: not given (nor base_width and depth)")


def activation_floats_per_pixel(spec: Mapping[str, Any], in_channels: int, num_classes: int) -> float:
    """Floats autograd saves per input pixel in a training forward pass (module docstring), batch of one."""
    widths = model_widths(spec)
    depth = len(widths) - 1
    per_conv = 2 if spec.get("batchnorm") else 1
    # A residual block's shortcut BatchNorm saves one more width; without BatchNorm nothing measurable.
    residual = 1 if spec.get("residual") and spec.get("batchnorm") else 0
    fused = 1 if spec.get("fusion") == "add" else 2
    encoder = 2 * per_conv + 0.5 + residual
    decoder = fused + 2 * per_conv + residual
    total = sum((encoder + decoder) * widths[level] / 4**level for level in range(depth))
    total += (2 * per_conv + residual) * widths[depth] / 4**depth
    return total + in_channels + 2 * num_classes


def parameter_count(spec: Mapping[str, Any], in_channels: int, num_classes: int) -> int:
    """Approximate trainable parameters: 3x3 convolution weights of every block, the 2x2 up-convolutions
    and the 1x1 head (biases and BatchNorm's few per channel left out)."""
    widths = model_widths(spec)
    fused = 1 if spec.get("fusion") == "add" else 2
    count, previous = 0, in_channels
    for width in widths:  # encoder blocks and the bottleneck
        count += 9 * (previous * width + width * width)
        previous = width
    for level in range(len(widths) - 1):  # decoder: up-convolution, then the block on the fused input
        count += 4 * widths[level + 1] * widths[level] + 9 * (fused * widths[level] ** 2 + widths[level] ** 2)
    return count + widths[0] * num_classes


def training_bytes(spec: Mapping[str, Any], in_channels: int, num_classes: int, pixels: int, batch: int) -> float:
    """Estimated peak bytes of a training step on ``batch`` samples of ``pixels`` pixels (module docstring)."""
    activations = activation_floats_per_pixel(spec, in_channels, num_classes) * 4 * MEMORY_ALLOWANCE
    return batch * pixels * activations + BYTES_PER_PARAMETER * parameter_count(spec, in_channels, num_classes)


# --- the planned values ----------------------------------------------------------------------------------


def round_up(value: float, multiple: int) -> int:
    """The smallest positive multiple of ``multiple`` at least ``value``."""
    return max(multiple, math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class _Geometry:
    """What the plan needs of the images: sizes and counts, from the fingerprint."""

    same_size: bool
    max_side: int
    median_side: float
    median_pixels: float
    height: int
    width: int

    @classmethod
    def of(cls, fingerprint: Mapping[str, Any]) -> _Geometry:
        height, width = fingerprint["size"]["height"], fingerprint["size"]["width"]
        return cls(
            same_size=height["min"] == height["max"] and width["min"] == width["max"],
            max_side=int(max(height["max"], width["max"])),
            median_side=float(max(height["median"], width["median"])),
            median_pixels=float(height["median"]) * float(width["median"]),
            height=int(height["max"]),
            width=int(width["max"]),
        )


def plan_experiment(
    fingerprint: Mapping[str, Any],
    *,
    experiment: str,
    experiment_config: Mapping[str, Any],
    training: Mapping[str, Any],
    prediction: Mapping[str, Any],
    memory_budget_mb: float,
    augment_copies: int,
) -> Plan:
    """The plan of one experiment (module docstring) from the fingerprint and the filled config sections.

    ``experiment_config``: ``experiments.<experiment>`` (model, augmentation); ``training``/``prediction``:
    the config sections; ``augment_copies``: ``augment.copies`` (training samples per train image are
    ``1 + copies`` when the experiment trains on augmented copies). Raises :class:`InputError` naming the
    config key for values that cannot work with this data: a ``training.patch_size`` larger than the
    largest image rounded up to ``2**depth``, or null (whole images) when images differ in size.
    """
    where = f"experiments.{experiment}.model"
    spec = experiment_config["model"]
    widths = model_widths(spec, where)
    depth = len(widths) - 1
    multiple = 2**depth
    channels = int(fingerprint["channels"])
    num_classes = len(fingerprint["classes"])
    geometry = _Geometry.of(fingerprint)
    budget = float(memory_budget_mb) * MIB
    sources = {key: "auto" if _config_value(key, training, prediction) == AUTO else "config" for key in PLANNED}
    reasons: dict[str, str] = {}

    normalisation, reasons["normalisation"] = choose_normalisation(fingerprint, training["normalisation"])

    def fits(pixels: int, batch: int) -> bool:
        return training_bytes(spec, channels, num_classes, pixels, batch) <= budget

    whole_pixels = round_up(geometry.height, multiple) * round_up(geometry.width, multiple)
    patch_size = training["patch_size"]
    needed = round_up(geometry.max_side, multiple)
    if patch_size == AUTO:
        if geometry.same_size and fits(whole_pixels, BATCH_RANGE[0]):
            patch_size, reasons["patch_size"] = None, "whole images: all share one size and a batch of 2 fits"
        else:
            target = round_up(geometry.median_side, multiple)
            side = target
            while side > multiple and not fits(side * side, BATCH_RANGE[0]):
                side -= multiple
            patch_size = side
            why = "images differ in size" if not geometry.same_size else "whole images exceed the memory budget"
            reasons["patch_size"] = (
                f"{why}: median longer side {geometry.median_side:g} px rounded up to a multiple of {multiple} "
                f"is {target}" + (f", reduced to {side} to fit a batch of 2" if side < target else "")
            )
    else:
        if patch_size is None and not geometry.same_size:
            raise InputError(
                "config key training.patch_size: null (whole images) needs images of one size, but they range "
                f"from {fingerprint['size']['height']['min']}x{fingerprint['size']['width']['min']} to "
                f"{geometry.height}x{geometry.width} (height x width); set a patch size or auto"
            )
        if patch_size is not None and patch_size > needed:
            raise InputError(
                f"config key training.patch_size: {patch_size} is larger than needed: the largest image side is "
                f"{geometry.max_side} px, {needed} after rounding up to a multiple of {multiple} (2**depth, depth "
                f"{depth} of {where}); use at most {needed}, null (whole images) or auto"
            )
        reasons["patch_size"] = "set in the config"
    sample_pixels = whole_pixels if patch_size is None else round_up(patch_size, multiple) ** 2
    samples_per_epoch = int(fingerprint["subsets"]["train"]) * (
        1 + int(augment_copies) if experiment_config.get("augmentation", True) else 1
    )

    batch_size = training["batch_size"]
    if batch_size == AUTO:
        fitting = BATCH_RANGE[0]
        while fitting < BATCH_RANGE[1] and fits(sample_pixels, fitting + 1):
            fitting += 1
        share = max(1, math.floor(BATCH_DATASET_SHARE * samples_per_epoch))
        batch_size = int(np.clip(min(fitting, share), *BATCH_RANGE))
        reasons["batch_size"] = (
            f"{fitting} samples of {sample_pixels} px fit {memory_budget_mb:g} MB; 5 % of the {samples_per_epoch} "
            f"samples per epoch is {share}; clamped to {list(BATCH_RANGE)}"
        )
    else:
        reasons["batch_size"] = "set in the config"

    tile_size = prediction["tile_size"]
    if tile_size == AUTO:
        tile_size = round_up(max(geometry.height, geometry.width) if patch_size is None else patch_size, multiple)
        reasons["tile_size"] = "the training sample's side" + (" (whole images)" if patch_size is None else "")
    else:
        reasons["tile_size"] = "set in the config"
    overlap = prediction["overlap"]
    if overlap == AUTO:
        overlap, reasons["overlap"] = tile_size // 4, "a quarter of the tile"
    else:
        reasons["overlap"] = "set in the config"

    validation_every = training["validation_every"]
    train_cost = 3.0 * samples_per_epoch * sample_pixels
    val_cost = float(fingerprint["subsets"]["val"]) * geometry.median_pixels
    if validation_every == AUTO:
        ratio = val_cost / max(train_cost, 1.0)
        every = 1 if ratio <= VALIDATION_SHARE else math.ceil(ratio / VALIDATION_SHARE)
        validation_every = max(1, min(every, int(training["epochs"]) // 4))
        reasons["validation_every"] = (
            f"a validation pass costs {ratio:.3f} of a training epoch (every epoch up to {VALIDATION_SHARE})"
        )
    else:
        reasons["validation_every"] = "set in the config"

    memory = {
        "budget_mb": float(memory_budget_mb),
        "activation_bytes_per_pixel": round(activation_floats_per_pixel(spec, channels, num_classes) * 4, 1),
        "allowance": MEMORY_ALLOWANCE,
        "parameters": parameter_count(spec, channels, num_classes),
        "sample_pixels": int(sample_pixels),
        "estimated_mb": round(training_bytes(spec, channels, num_classes, sample_pixels, batch_size) / MIB, 1),
    }
    return Plan(
        experiment=experiment, depth=depth, normalisation=normalisation, patch_size=patch_size,
        batch_size=int(batch_size), tile_size=int(tile_size), overlap=int(overlap),
        validation_every=int(validation_every), sources=sources, reasons=reasons, memory=memory,
    )  # fmt: skip


def _config_value(key: str, training: Mapping[str, Any], prediction: Mapping[str, Any]) -> Any:
    section, name = CONFIG_KEYS[key].split(".")
    return (training if section == "training" else prediction)[name]


def resolve_training(training: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """A copy of the ``training`` section with the plan's values for ``patch_size``, ``batch_size``,
    ``normalisation`` (its mode) and ``validation_every``, so no planned key is left ``"auto"``."""
    return {**training, **{key: plan.value(key) for key in PLANNED if CONFIG_KEYS[key].startswith("training.")}}


def resolve_prediction(prediction: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    """A copy of the ``prediction`` section with the plan's ``tile_size`` and ``overlap``."""
    return {**prediction, "tile_size": plan.tile_size, "overlap": plan.overlap}


# --- the files -------------------------------------------------------------------------------------------


def _write_json(path: str | os.PathLike, values: Mapping[str, Any]) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(dict(values), indent=2) + "\n")


def write_fingerprint(path: str | os.PathLike, fingerprint: Mapping[str, Any]) -> None:
    """Write a fingerprint (:func:`segcore.plan.fingerprint.dataset_fingerprint`) as indented JSON, atomically."""
    _write_json(path, fingerprint)


def read_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """The fingerprint :func:`write_fingerprint` wrote."""
    return json.loads(Path(path).read_text())


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON form of ``plan``: experiment, depth, one {value, source, reason} per planned key, the
    normalisation's parameters and the memory estimate."""
    return {
        "experiment": plan.experiment,
        "depth": plan.depth,
        "settings": {
            key: {"value": plan.value(key), "source": plan.sources.get(key, ""), "reason": plan.reasons.get(key, "")}
            for key in PLANNED
        },
        "normalisation": plan.normalisation.as_dict(),
        "memory": dict(plan.memory),
    }


def write_plan(path: str | os.PathLike, plan: Plan) -> None:
    """Write ``plan`` (:func:`plan_document`) as indented JSON, atomically."""
    _write_json(path, plan_document(plan))


def read_plan(path: str | os.PathLike) -> Plan:
    """The plan :func:`write_plan` wrote."""
    document = json.loads(Path(path).read_text())
    settings = document["settings"]
    return Plan(
        experiment=document["experiment"],
        depth=int(document["depth"]),
        normalisation=Normalisation.from_dict(document["normalisation"]),
        patch_size=settings["patch_size"]["value"],
        batch_size=int(settings["batch_size"]["value"]),
        tile_size=int(settings["tile_size"]["value"]),
        overlap=int(settings["overlap"]["value"]),
        validation_every=int(settings["validation_every"]["value"]),
        sources={key: settings[key]["source"] for key in PLANNED},
        reasons={key: settings[key]["reason"] for key in PLANNED},
        memory=dict(document["memory"]),
    )
