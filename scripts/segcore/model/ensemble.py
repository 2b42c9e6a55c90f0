"""An ensemble of trained models (the folds of a cross-validation) that predicts like one model.

:class:`SoftmaxEnsemble` maps a batch of tiles to the log of its members' mean softmax. Everything that
runs a model on tiles takes the softmax of its output (:func:`segcore.model.tta.averaged_softmax`), and
``softmax(log(mean_i p_i)) = mean_i p_i`` because the mean sums to 1 over the classes; so the ensemble goes
through the one overlap-tile / TTA path (:func:`segcore.predict.inference.segment_image`) unchanged, and its
memory beyond the members' weights is that of one batch of tiles, whatever the number of members: the k
models are averaged per batch, never as k whole-image probability maps.

:func:`load_models` loads the model files of rule predict: one file gives that model itself (prepared for
inference, no wrapper), several an ensemble of them; :func:`ensemble_metadata` is the metadata the
ensemble predicts with.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from segcore.model.model_file import load_model
from segcore.model.unet import prepare_for_inference

# Metadata that must agree between members: they must map the same input to the same classes.
SHARED_METADATA = ("model_spec", "in_channels", "num_classes", "class_names", "border_class")


class SoftmaxEnsemble(nn.Module):
    """Members' softmax averaged: ``forward(x) = log(mean_i softmax(member_i(x)))``.

    ``members``: eval-mode models with equal ``depth`` and ``margin`` (so one tiling suits all) mapping
    float32 ``(N, C, T, T)`` to ``(N, K, S, S)`` logits. The output is float32 ``(N, K, S, S)``
    log-probabilities: its softmax is the members' mean probability. Computed as a running
    ``logaddexp`` of the members' ``log_softmax`` (minus ``log k``): exact where a probability underflows, and
    only two ``(N, K, S, S)`` tensors alive at a time. Raises ValueError for no members or members whose
    depth or margin differ.

    The module is TorchScript-scriptable (the model bundle scripts it: :mod:`segcore.predict.bundle`).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        geometry = {(getattr(m, "depth", None), getattr(m, "margin", None)) for m in members}
        if len(geometry) != 1:
            raise ValueError(f"ensemble members differ in (depth, margin): {sorted(geometry, key=str)}")
        self.members = nn.ModuleList(members)
        self.depth, self.margin = geometry.pop()
        # A plain float attribute: TorchScript compiles no math.log(len(ModuleList)) in forward.
        self.log_members = math.log(len(members))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        log_sum: torch.Tensor | None = None
        for member in self.members:
            logits = member(batch)
            # A U-Net may return a list (deep supervision in training); members are in eval mode, and the
            # check tells TorchScript the type.
            assert isinstance(logits, torch.Tensor), "ensemble members must be in eval mode"
            log_probabilities = torch.log_softmax(logits, dim=1)
            log_sum = log_probabilities if log_sum is None else torch.logaddexp(log_sum, log_probabilities)
        assert log_sum is not None  # __init__ refuses an empty ensemble
        return log_sum - self.log_members


def mean_threshold(thresholds: Sequence[float | None]) -> float | None:
    """The ensemble's foreground threshold: the mean of its members' (each chosen on its own validation
    fold), or None when any member has none (argmax)."""
    if not thresholds or any(value is None for value in thresholds):
        return None
    return float(sum(thresholds) / len(thresholds))


def ensemble_metadata(metadata: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The model-file metadata an ensemble predicts with: the members' shared keys
    (:data:`SHARED_METADATA`), ``foreground_threshold`` from :func:`mean_threshold` and ``members`` (k).

    Raises ValueError naming the first shared key on which two members disagree.
    """
    first = dict(metadata[0])
    for key in SHARED_METADATA:
        values = [entry.get(key) for entry in metadata]
        if any(value != values[0] for value in values):
            raise ValueError(f"ensemble members disagree on {key}: {values}")
    thresholds = [entry.get("foreground_threshold") for entry in metadata]
    return first | {"foreground_threshold": mean_threshold(thresholds), "members": len(metadata)}


def model_files(model_path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """``model_path`` as a list of model files: one path (a str or path object) becomes a list of one; a
    sequence of paths (a rule's ``input.model`` with cross-validation) a list of its entries."""
    return [model_path] if isinstance(model_path, (str, os.PathLike)) else list(model_path)


def load_models(
    paths: Sequence[str | os.PathLike], device: torch.device | str = "cpu", *, prepare: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """(model, metadata) of the model files ``paths`` (:func:`segcore.model.model_file.save_model`), each
    prepared for inference (:func:`segcore.model.unet.prepare_for_inference`), in eval mode on ``device``.

    One path: that model and its metadata, exactly as a single model predicts. Several: a
    :class:`SoftmaxEnsemble` of them with :func:`ensemble_metadata`. Each member is prepared as it is
    loaded, so no more than one unprepared copy is held at a time. ``prepare=False`` keeps the members as
    trained (BatchNorm unfused, eval mode): the model bundle folds and verifies them itself
    (:func:`segcore.predict.portable.script_for_inference`). Raises ValueError for no paths or members that
    disagree.
    """
    if not paths:
        raise ValueError("no model files to load")
    members, metadata = [], []
    for path in paths:
        model, entry = load_model(path, device)
        members.append(prepare_for_inference(model) if prepare else model)
        metadata.append(entry)
        del model
    if len(members) == 1:
        return members[0], metadata[0]
    return SoftmaxEnsemble(members).to(device).eval(), ensemble_metadata(metadata)
