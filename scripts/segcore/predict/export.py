"""Rule export_model's work: a trained experiment's files -> its model bundle (:mod:`segcore.predict.bundle`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from segcore.model.ensemble import load_models, model_files
from segcore.plan.plan import read_plan, resolve_prediction
from segcore.predict.bundle import ModelCard, write_bundle
from segcore.predict.shard import PredictionSettings, inference_settings
from segcore.train.run import read_training_facts

log = logging.getLogger(__name__)


def export_model(
    model_path: str | os.PathLike | Sequence[str | os.PathLike],
    plan_path: str | os.PathLike,
    facts_path: str | os.PathLike,
    prediction: Mapping[str, Any],
    folder: str | os.PathLike,
    *,
    experiment: str,
    pipeline_commit: str | None,
) -> ModelCard:
    """Write the bundle of the model at ``model_path`` into ``folder``, with rule predict's settings.

    ``model_path``: one model file, or several (the folds of a cross-validation), bundled as the one
    ensemble rule predict runs (:func:`segcore.model.ensemble.load_models`: its metadata, mean threshold
    included, feed :func:`segcore.predict.shard.inference_settings` exactly as in rule predict).
    ``plan_path``: the experiment's plan (normalisation, tile size and overlap when ``"auto"``);
    ``facts_path``: its ``training.json``; ``prediction``: the config section ``prediction``;
    ``pipeline_commit``: the workflow's git commit, None when unknown. Returns the card written.
    """
    plan = read_plan(plan_path)
    settings = PredictionSettings.from_config(resolve_prediction(prediction, plan))
    paths = model_files(model_path)
    # Unfused: the bundle folds BatchNorm itself and checks the result against these very networks.
    model, metadata = load_models(paths, prepare=False)
    inference = inference_settings(metadata, settings, plan.normalisation, model.depth, model.margin)
    card = write_bundle(
        folder, model, metadata, inference, experiment=experiment, training=read_training_facts(facts_path),
        pipeline_commit=pipeline_commit,
    )  # fmt: skip
    members = f"an ensemble of {card.members} models" if card.members > 1 else "one model"
    log.info("bundle of %s (%s) written to %s; ONNX: %s", experiment, members, folder, card.onnx_note)
    return card
