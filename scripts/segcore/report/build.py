"""What the report shows: the experiments' comparison table, their sections, and the notes on the metrics.

:func:`build_report` reads every experiment's results through their readers (run facts, metric tables,
history, predictions) and hands the page to :func:`segcore.report.html.render_report`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from segcore.data.canonical import read_sample
from segcore.evaluate.metrics import best_and_worst, metric_names
from segcore.evaluate.tables import read_confusion, read_per_image, read_summary
from segcore.io import atomic_path
from segcore.plan.plan import read_fingerprint, read_plan
from segcore.predict.outputs import read_instance_method, read_predicted_mask
from segcore.predict.visual import colourise, to_display_rgb
from segcore.report.durations import format_duration
from segcore.report.figures import class_score_chart, confusion_chart
from segcore.report.gallery import InferenceSetResults, inference_gallery
from segcore.report.html import Chart, ExampleImage, ExperimentSection, render_report
from segcore.report.overlays import contour_thickness, error_overlay
from segcore.report.plan_tables import plan_tables
from segcore.train.curves import plot_history
from segcore.train.folds import read_fold_metrics
from segcore.train.run import read_history, read_training_facts

# Test metrics in the comparison table: per-image means (and the pooled mean foreground Dice).
HEADLINE_METRICS = ["pixel_accuracy", "mean_fg_dice", "mean_fg_iou", "tgs_map", "object_f1", "rand_error", "hd95"]
NOTES = [
    "Per-image mean: the metric computed on each test image, then averaged over images (NaN values skipped; "
    "count says how many images had a value). Pooled: computed once from the confusion matrix summed over "
    "all test images.",
    "Dice and IoU per class: a class absent from both truth and prediction in an image is skipped (NaN); a "
    "class predicted but absent from the truth scores 0. Mean foreground Dice/IoU average classes 1..K-1.",
    "TGS mAP: mean over IoU thresholds 0.50:0.05:0.95 of (foreground IoU > t); empty truth and empty "
    "prediction score 1, empty truth with any prediction 0.",
    "Object precision/recall/F1: one-to-one matching of the predicted objects with the truth instances "
    '(same class) at IoU > 0.5. Column "objects by" says how the predicted objects were found '
    "(prediction.instances): connected components per class, or a seeded watershed that splits touching "
    "objects (on the border class, or on the distance transform).",
    "Operating point: the test metrics of an experiment score the class masks of its operating point: argmax "
    "(the most probable class) or, with prediction.threshold auto on a two-class task, foreground where its "
    "probability reaches the threshold chosen on the validation set (training.json foreground_threshold). "
    "Validation Dice (best val Dice, image_val_dice) is scored at argmax.",
    "Pixel error: fraction of misclassified foreground/background pixels. Rand error: 1 - foreground-"
    "restricted Rand F-score (ISBI 2012). HD95: 95th-percentile symmetric boundary distance in pixels; a "
    "missed or spurious object counts as the image diagonal.",
    "Errors panel: the test image in grey with the truth's object outlines in white; false positives "
    "(foreground predicted on truth background), false negatives (truth foreground predicted as background) "
    "and, with several foreground classes, wrong-class pixels painted over it. Confusion matrix: pixels of "
    "the whole test set, each row divided by its true class's pixel count. Durations are h:mm:ss.",
]


@dataclass(frozen=True)
class ExperimentResults:
    """Where one experiment's results are: run facts (``training.json``), history table, merged per-image
    and summary tables, the predictions root (the folder holding its prediction shards), and optionally its
    plan and merged confusion matrix (``metrics/confusion.tsv``; without it the section has no heat map)."""

    name: str
    facts: Path
    history: Path
    summary: Path
    per_image: Path
    predictions: Path
    plan: Path | None = None
    confusion: Path | None = None
    # Cross-validation only: the per-fold validation table (segcore.train.folds.fold_metrics).
    folds: Path | None = None


def operating_point(threshold_setting: str, facts: Mapping[str, Any]) -> str:
    """How an experiment's test masks were made (as :func:`segcore.predict.shard.operating_threshold`
    decides): ``"argmax"``, or ``"p(foreground) >= t"`` for ``prediction.threshold`` auto and a run that
    recorded a ``foreground_threshold`` (two classes)."""
    threshold = facts.get("foreground_threshold") if threshold_setting == "auto" else None
    return "argmax" if threshold is None else f"p(foreground) >= {threshold:g}"


def mean_epoch_seconds(history: pd.DataFrame | None, column: str = "seconds") -> float:
    """Mean of a history table's per-epoch ``column`` (:func:`segcore.train.run.read_history`); NaN without
    a history, the column or any epoch."""
    if history is None or column not in history or history.empty:
        return float("nan")
    return float(history[column].astype(float).mean())


def shown_facts(facts: Mapping[str, Any], history: pd.DataFrame | None = None) -> dict[str, str]:
    """The run facts as the section's table shows them: values as text, and every ``<name>_seconds`` as
    ``<name>_time`` in h:mm:ss, followed by the mean epoch and validation times of ``history``."""
    shown = {}
    for key, value in facts.items():
        if key.endswith("_seconds") and isinstance(value, (int, float)):
            shown[key.removesuffix("_seconds") + "_time"] = format_duration(value)
        else:
            shown[key] = str(value)
    shown["mean_epoch_time"] = format_duration(mean_epoch_seconds(history), decimals=1)
    shown["mean_validation_time"] = format_duration(mean_epoch_seconds(history, "validation_seconds"), decimals=1)
    return shown


def fold_table(path: str | os.PathLike) -> tuple[str, pd.DataFrame]:
    """The titled per-fold validation table of a cross-validated experiment (rows per fold, mean, sd)."""
    return "Cross-validation: validation metrics per fold", read_fold_metrics(path)


def overview_row(
    name: str, facts: Mapping[str, Any], summary: pd.DataFrame, history: pd.DataFrame | None = None
) -> dict[str, Any]:
    """One row of the comparison table: training facts (durations in h:mm:ss, the time per epoch the mean
    over ``history``), the per-image means of :data:`HEADLINE_METRICS` (columns ``test <metric>``) and the
    pooled mean foreground Dice. ``summary``: indexed by metric (:func:`segcore.evaluate.tables.read_summary`)."""
    return {
        "experiment": name,
        "parameters": facts["parameters"],
        "training time": format_duration(facts["training_seconds"]),
        "time per epoch": format_duration(mean_epoch_seconds(history), decimals=1),
        "epochs run": facts["epochs_run"],
        "best val loss": facts["best_val_loss"],
        "best val Dice": facts["best_val_dice"],
        "model kept": f"epoch {facts['kept_epoch']} ({facts['keep']})",
        **{f"test {metric}": summary.loc[metric, "per_image_mean"] for metric in HEADLINE_METRICS},
        "test mean_fg_dice (pooled)": summary.loc["mean_fg_dice", "pooled"],
    }


def extremes_table(per_image: pd.DataFrame, class_names: list[str], n: int) -> pd.DataFrame:
    """Per metric, the ``n`` best and worst test images as ``"id (value)"`` lists, values to 3 decimals.

    Columns ``metric``, ``best``, ``worst``; one row per metric of
    :func:`segcore.evaluate.metrics.metric_names`. Images with a NaN value are left out
    (:func:`segcore.evaluate.metrics.best_and_worst`), so a metric no image scores has empty lists.
    """
    values_by_id = per_image.set_index("id")
    rows = []
    for metric in metric_names(class_names):
        best, worst = best_and_worst(per_image, metric, n)
        values = values_by_id[metric]
        rows.append({
            "metric": metric,
            "best": ", ".join(f"{i} ({values[i]:.3f})" for i in best),
            "worst": ", ".join(f"{i} ({values[i]:.3f})" for i in worst),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["metric", "best", "worst"])


def example_images(
    data: str | os.PathLike, predictions: str | os.PathLike, ids: Sequence[str], scores: pd.Series, num_classes: int
) -> list[ExampleImage]:
    """The report's panels of ``ids``: image (stretched to its range), truth and prediction in palette colours,
    and the error overlay (:func:`segcore.report.overlays.error_overlay`, outlines about one screen pixel wide).

    ``scores``: mean foreground Dice by id, shown in the caption. Raises :class:`segcore.io.InputError` when
    an id has no prediction under the ``predictions`` root.
    """
    shown = []
    for sample_id in ids:
        sample = read_sample(data, sample_id)
        prediction = read_predicted_mask(predictions, sample_id)
        thickness = contour_thickness(sample.mask.shape)
        shown.append(
            ExampleImage(
                sample_id,
                f"{sample_id}: mean foreground Dice {scores[sample_id]:.4f}",
                to_display_rgb(sample.image),
                colourise(sample.mask, num_classes),
                colourise(prediction, num_classes),
                error_overlay(sample.image, sample.mask, prediction, sample.instances, thickness),
            )
        )
    return shown


def section_charts(results: ExperimentResults, summary: pd.DataFrame, class_names: list[str]) -> list[Chart]:
    """The section's charts: Dice and IoU per class, then the confusion heat map when ``results`` names its
    merged confusion matrix."""
    charts = [Chart("Dice and IoU per class", class_score_chart(summary, class_names))]
    if results.confusion is not None:
        cm = read_confusion(results.confusion, class_names)
        charts.append(Chart("confusion matrix", confusion_chart(cm, class_names)))
    return charts


def experiment_section(
    results: ExperimentResults,
    facts: Mapping[str, Any],
    summary: pd.DataFrame,
    data: str | os.PathLike,
    class_names: list[str],
    n_examples: int,
    history: pd.DataFrame | None = None,
) -> ExperimentSection:
    """One experiment's section: facts (:func:`shown_facts`), charts (:func:`section_charts`), summary,
    per-metric extremes, and the ``n_examples`` best and worst test images by mean foreground Dice."""
    per_image = read_per_image(results.per_image, class_names)
    best, worst = best_and_worst(per_image, "mean_fg_dice", n_examples)
    scores = per_image.set_index("id")["mean_fg_dice"]
    return ExperimentSection(
        name=results.name,
        summary=summary.reset_index(),
        extremes=extremes_table(per_image, class_names, n_examples),
        facts=shown_facts(facts, history),
        best=example_images(data, results.predictions, best, scores, len(class_names)),
        worst=example_images(data, results.predictions, worst, scores, len(class_names)),
        charts=section_charts(results, summary, class_names),
    )


def build_report(
    dataset: str,
    experiments: Sequence[ExperimentResults],
    data: str | os.PathLike,
    class_names: list[str],
    n_examples: int,
    curves: str | os.PathLike,
    *,
    threshold: str,
    fingerprint: str | os.PathLike | None = None,
    inference_sets: Sequence[InferenceSetResults] = (),
    inference_examples: int = 3,
) -> str:
    """The report page (HTML) comparing ``experiments``, in the given order.

    ``threshold``: ``prediction.threshold``, shown per experiment as its operating point (:func:`operating_point`).
    ``fingerprint``: the dataset's fingerprint.json; with it, each experiment that names its ``plan`` gets a
    collapsed "Plan and fingerprint" section (:func:`plan_tables`). ``inference_sets``: each gets a gallery of
    ``inference_examples`` images (:func:`segcore.report.gallery.inference_gallery`).

    Also writes ``curves`` (PNG): the training curves of every experiment in one figure, which the page
    embeds.
    """
    overview, sections, histories = [], [], {}
    for results in experiments:
        facts = read_training_facts(results.facts)
        summary = read_summary(results.summary)
        history = histories[results.name] = read_history(results.history)
        objects_by = read_instance_method(results.predictions)
        overview.append({
            **overview_row(results.name, facts, summary, history), "objects by": objects_by,
            "operating point": operating_point(threshold, facts),
        })  # fmt: skip
        sections.append(experiment_section(results, facts, summary, data, class_names, n_examples, history))
        if results.plan is not None and fingerprint is not None:
            sections[-1].plan = plan_tables(read_plan(results.plan), read_fingerprint(fingerprint))
        if results.folds is not None:
            sections[-1].plan.insert(0, fold_table(results.folds))
    plot_history(histories, curves)
    gallery = inference_gallery(inference_sets, inference_examples)
    return render_report(dataset, pd.DataFrame(overview), sections, str(curves), NOTES, extra_html=gallery)


def write_report(path: str | os.PathLike, page: str) -> None:
    """Write the page as UTF-8, atomically."""
    with atomic_path(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
