"""Rule export_model's work: a trained experiment's files -> its model bundle (:mod:`segcore.predict.bundle`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from segcore.model.model_file import load_model
from segcore.plan.plan import read_plan, resolve_prediction
from segcore.predict.bundle import ModelCard, write_bundle
from segcore.predict.shard import PredictionSettings, inference_settings
from segcore.train.run import read_training_facts

log = logging.getLogger(__name__)


def export_model(
    model_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    facts_path: str | os.PathLike,
    prediction: Mapping[str, Any],
    folder: str | os.PathLike,
    *,
    experiment: str,
    pipeline_commit: str | None,
) -> ModelCard:
    """Write the bundle of the model at ``model_path`` into ``folder``, with rule predict's settings.

    ``plan_path``: the experiment's plan (normalisation, tile size and overlap when ``"auto"``);
    ``facts_path``: its ``training.json``; ``prediction``: the config section ``prediction``;
    ``pipeline_commit``: the workflow's git commit, None when unknown. Returns the card written.
    """
    plan = read_plan(plan_path)
    settings = PredictionSettings.from_config(resolve_prediction(prediction, plan))
    model, metadata = load_model(model_path)
    inference = inference_settings(metadata, settings, plan.normalisation, model.depth, model.margin)
    card = write_bundle(
        folder, model, metadata, inference, experiment=experiment, training=read_training_facts(facts_path),
        pipeline_commit=pipeline_commit,
    )  # fmt: skip
    log.info("bundle of %s written to %s; ONNX: %s", experiment, folder, card.onnx_note)
    return card
