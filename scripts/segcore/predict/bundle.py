"""The model bundle: a trained model that works outside the pipeline; the one writer and reader of its folder.

Rule export_model writes, in the experiment's folder (beside ``model.pt``, or beside the ``fold-<f>`` folders
with cross-validation)::

    bundle/
        model.ts          TorchScript of the inference network: eval mode, every BatchNorm folded into the
                          convolution before it. float32 (N, C, H, W) -> logits (N, K, H - 2m, W - 2m), m the
                          card's margin; H, W multiples of 2**depth (same padding) or valid sizes (valid
                          padding). With cross-validation the network is the folds' ensemble
                          (:class:`segcore.model.ensemble.SoftmaxEnsemble`), whose "logits" are the log of
                          the members' mean softmax, so anything that takes their softmax gets rule predict's
                          probabilities. The card is also stored inside it (extra file ``model_card.json``).
        model_card.json   everything prediction needs besides the weights (below)
        model.onnx        the same network as ONNX (opset 17, dynamic batch, height and width), only when the
                          optional ``onnx`` package is installed and the network exports with dynamic sizes
                          (same padding, no unpooling, not an ensemble); the card's ``files.onnx_note`` says
                          why when absent (:mod:`segcore.predict.portable`)

``model_card.json``: ``classes`` (the mask's classes, 0 first), ``border_class`` and ``output_classes`` (the
network's planes: the classes, then ``border`` for a border-class model), ``input`` (channels; images as
stored, uint8 or uint16), ``normalisation`` (mode and per-channel statistics,
:class:`segcore.plan.normalise.Normalisation`; empty lists for image_zscore and dtype, which need none),
``network`` (config spec, depth, margin, padding multiple 2**depth, ``members``: 1, or the number of folds of
an ensemble), ``prediction`` (tile size, overlap, blend, batch size, TTA, operating point and threshold,
instance method and watershed h; an ensemble's threshold is the mean of its folds'), ``training`` (the run
facts of ``training.json``; an ensemble's summarise its folds), ``pipeline_commit`` (null when unknown),
``files`` and the torch version. :class:`ModelCard` is its parsed form; its ``inference`` is what
:func:`segcore.predict.inference.segment_image` takes, so predictions through the bundle repeat rule
predict's.

BatchNorm folding is verified when the bundle is written (:func:`segcore.predict.portable.check_folded`): the
TorchScript graph holds no batch-norm operation and its logits equal the unfused eval-mode network's (or
ensemble's) on a probe batch.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segcore.io import InputError, atomic_dir
from segcore.plan.normalise import Normalisation
from segcore.predict.inference import InferenceSettings
from segcore.predict.portable import export_onnx, script_for_inference

TORCHSCRIPT, CARD, ONNX = "model.ts", "model_card.json", "model.onnx"
CARD_FORMAT, CARD_VERSION = "segcore-model-card", 1


@dataclass(frozen=True)
class ModelCard:
    """The parsed ``model_card.json`` (see the module docstring).

    ``class_names``: the mask's classes; ``output_classes``: the network's output planes (``class_names``
    plus ``border`` for a border-class model); ``model_spec``: the experiment's ``model`` section;
    ``training``: the run facts; ``members``: the models averaged by the network (1, or k folds);
    ``onnx``: the ONNX file's name or None, ``onnx_note`` why or how.
    """

    experiment: str
    class_names: tuple[str, ...]
    output_classes: tuple[str, ...]
    in_channels: int
    model_spec: dict[str, Any]
    inference: InferenceSettings
    training: dict[str, Any] = field(default_factory=dict)
    members: int = 1
    pipeline_commit: str | None = None
    onnx: str | None = None
    onnx_note: str = ""
    torch_version: str = torch.__version__

    def as_dict(self) -> dict[str, Any]:
        """The JSON form written to ``model_card.json``; :meth:`from_dict` reads it back."""
        settings = self.inference
        threshold = settings.threshold
        return {
            "format": CARD_FORMAT,
            "version": CARD_VERSION,
            "experiment": self.experiment,
            "classes": list(self.class_names),
            "border_class": settings.border_class,
            "output_classes": list(self.output_classes),
            "input": {"channels": self.in_channels, "dtypes": ["uint8", "uint16"]},
            "normalisation": settings.normalisation.as_dict(),
            "network": {
                "spec": self.model_spec,
                "depth": settings.depth,
                "margin": settings.margin,
                "padding": "same" if settings.margin == 0 else "valid",
                "padding_multiple": 2**settings.depth,
                "members": self.members,
            },
            "prediction": {
                "tile_size": settings.tile_size,
                "overlap": settings.overlap,
                "blend": settings.blend,
                "batch_size": settings.batch_size,
                "tta": settings.tta,
                "operating_point": "argmax" if threshold is None else f"foreground probability >= {threshold}",
                "threshold": threshold,
                "instances": settings.instances,
                "watershed_h": settings.watershed_h,
            },
            "training": self.training,
            "pipeline_commit": self.pipeline_commit,
            "files": {"torchscript": TORCHSCRIPT, "onnx": self.onnx, "onnx_note": self.onnx_note},
            "torch": self.torch_version,
        }

    @classmethod
    def from_dict(cls, card: Mapping[str, Any]) -> ModelCard:
        """The card :meth:`as_dict` wrote; KeyError for a missing key, ValueError for another format."""
        if card.get("format") != CARD_FORMAT or card.get("version") != CARD_VERSION:
            raise ValueError(f"not a {CARD_FORMAT} version {CARD_VERSION} (format {card.get('format')!r})")
        network, prediction = card["network"], card["prediction"]
        threshold = prediction["threshold"]
        inference = InferenceSettings(
            num_classes=len(card["output_classes"]), depth=int(network["depth"]), margin=int(network["margin"]),
            normalisation=Normalisation.from_dict(card["normalisation"]), tile_size=int(prediction["tile_size"]),
            overlap=int(prediction["overlap"]), blend=prediction["blend"], batch_size=int(prediction["batch_size"]),
            tta=prediction["tta"], threshold=None if threshold is None else float(threshold),
            border_class=bool(card["border_class"]), instances=prediction["instances"],
            watershed_h=float(prediction["watershed_h"]),
        )  # fmt: skip
        return cls(
            experiment=card["experiment"], class_names=tuple(card["classes"]),
            output_classes=tuple(card["output_classes"]), in_channels=int(card["input"]["channels"]),
            model_spec=dict(network["spec"]), inference=inference, training=dict(card["training"]),
            members=int(network.get("members", 1)),  # absent from cards written before ensembles
            pipeline_commit=card["pipeline_commit"], onnx=card["files"]["onnx"],
            onnx_note=card["files"]["onnx_note"], torch_version=card["torch"],
        )  # fmt: skip


def write_bundle(
    folder: str | os.PathLike,
    model: nn.Module,
    metadata: Mapping[str, Any],
    inference: InferenceSettings,
    *,
    experiment: str,
    training: Mapping[str, Any],
    pipeline_commit: str | None,
) -> ModelCard:
    """Write the bundle folder (module docstring) atomically; returns its card.

    ``model``/``metadata``: as :func:`segcore.model.ensemble.load_models` returns them with ``prepare=False``
    (a U-Net, or the folds' :class:`segcore.model.ensemble.SoftmaxEnsemble` with the ensemble's metadata, its
    ``members`` and mean threshold), BatchNorm not yet folded; ``inference``: the settings rule predict uses
    (:func:`segcore.predict.shard.inference_settings`); ``training``: the run facts. Raises RuntimeError when
    the folded model fails verification (:func:`segcore.predict.portable.check_folded`).
    """
    in_channels = int(metadata["in_channels"])
    output_classes = tuple(metadata["class_names"])
    scripted = script_for_inference(model, in_channels)
    with atomic_dir(folder) as tmp:
        onnx_file, onnx_note = export_onnx(model, in_channels, tmp / ONNX)
        card = ModelCard(
            experiment=experiment, class_names=output_classes[: inference.mask_classes],
            output_classes=output_classes, in_channels=in_channels, model_spec=dict(metadata["model_spec"]),
            inference=inference, training=dict(training), members=int(metadata.get("members", 1)),
            pipeline_commit=pipeline_commit, onnx=onnx_file, onnx_note=onnx_note,
        )  # fmt: skip
        text = json.dumps(card.as_dict(), indent=2) + "\n"
        (tmp / CARD).write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # see script_for_inference
            torch.jit.save(scripted, str(tmp / TORCHSCRIPT), _extra_files={CARD: text})
    return card


def read_card(folder: str | os.PathLike) -> ModelCard:
    """The card of the bundle ``folder``; :class:`InputError` naming the file when it is missing or bad."""
    path = Path(folder, CARD)
    if not Path(folder).is_dir():
        raise InputError(f"{folder}: not a model bundle folder (no such folder)")
    try:
        return ModelCard.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InputError(f"{path}: missing; {folder} is not a model bundle (rule export_model writes one)") from None
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not a readable model card ({type(error).__name__}: {error})") from error


def read_bundle(
    folder: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[torch.jit.ScriptModule, ModelCard]:
    """(TorchScript model in eval mode on ``device``, card) of the bundle ``folder``.

    Raises :class:`InputError` naming the file when the card or the TorchScript model is missing or
    cannot be read.
    """
    card = read_card(folder)
    path = Path(folder, TORCHSCRIPT)
    if not path.is_file():
        raise InputError(f"{path}: missing from the model bundle")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # see script_for_inference
            model = torch.jit.load(str(path), map_location=device)
    except Exception as error:  # torch raises RuntimeError or ValueError for a damaged archive
        raise InputError(f"{path}: cannot load the TorchScript model ({type(error).__name__}: {error})") from error
    return model.eval(), card
