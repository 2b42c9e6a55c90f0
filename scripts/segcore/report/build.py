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
from segcore.evaluate.tables import read_per_image, read_summary
from segcore.io import atomic_path
from segcore.plan.plan import Plan, read_fingerprint, read_plan
from segcore.predict.outputs import read_instance_method, read_predicted_mask
from segcore.predict.visual import colourise, to_display_rgb
from segcore.report.html import ExampleImage, ExperimentSection, render_report
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
]


@dataclass(frozen=True)
class ExperimentResults:
    """Where one experiment's results are: run facts (``training.json``), history table, merged per-image
    and summary tables, and the predictions root (the folder holding its prediction shards)."""

    name: str
    facts: Path
    history: Path
    summary: Path
    per_image: Path
    predictions: Path
    plan: Path | None = None
    # Cross-validation only: the per-fold validation table (segcore.train.folds.fold_metrics).
    folds: Path | None = None


def operating_point(threshold_setting: str, facts: Mapping[str, Any]) -> str:
    """How an experiment's test masks were made (as :func:`segcore.predict.shard.operating_threshold`
    decides): ``"argmax"``, or ``"p(foreground) >= t"`` for ``prediction.threshold`` auto and a run that
    recorded a ``foreground_threshold`` (two classes)."""
    threshold = facts.get("foreground_threshold") if threshold_setting == "auto" else None
    return "argmax" if threshold is None else f"p(foreground) >= {threshold:g}"


def _per_channel(values: Sequence[float] | None) -> str:
    """Per-channel numbers as "a / b / c" with 4 significant digits; a dash for none."""
    return " / ".join(f"{value:.4g}" for value in values) if values else "-"


def plan_tables(plan: Plan, fingerprint: Mapping[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """The report's "Plan and fingerprint" tables of one experiment: the planned settings (config key,
    value, source auto/config, reason) with the normalisation's parameters and the memory estimate; the
    dataset fingerprint's summary; its classes (pixel fraction, objects and their sizes)."""
    settings = pd.DataFrame(plan.table())
    settings["value"] = settings["value"].map(lambda value: "null (whole images)" if value is None else str(value))
    norm = plan.normalisation
    extra = [
        {"key": "normalisation mean / sd", "value": f"{_per_channel(norm.mean)}; {_per_channel(norm.sd)}",
         "source": "fingerprint", "reason": "train+val pixels"},
        {"key": "memory estimate", "value": f"{plan.memory.get('estimated_mb', '-')} MB of "
         f"{plan.memory.get('budget_mb', '-')} MB", "source": "plan", "reason": "per training step"},
    ]  # fmt: skip
    if norm.mode == "percentile":
        extra.insert(1, {"key": "clip to", "value": f"{_per_channel(norm.low)} .. {_per_channel(norm.high)}",
                         "source": "fingerprint", "reason": "0.5 / 99.5 percentiles"})  # fmt: skip
    settings = pd.concat([settings, pd.DataFrame(extra)], ignore_index=True)
    size = fingerprint["size"]
    intensity = fingerprint["intensity"]
    stats = intensity["all"] or {}
    summary = pd.DataFrame(
        [
            ("images", f"{fingerprint['images']} ({', '.join(f'{k} {v}' for k, v in fingerprint['subsets'].items())})"),
            ("height min / median / max", "{min} / {median} / {max}".format(**size["height"])),
            ("width min / median / max", "{min} / {median} / {max}".format(**size["width"])),
            ("channels, dtype", f"{fingerprint['channels']}, {fingerprint['dtype']}"),
            ("intensity mean (per channel)", _per_channel(stats.get("mean"))),
            ("intensity sd", _per_channel(stats.get("sd"))),
            ("intensity 0.5 / 99.5 percentiles",
             f"{_per_channel(stats.get('p0_5'))}; {_per_channel(stats.get('p99_5'))}"),
            ("intensity sample", f"{intensity['pixels']} pixels of {intensity['images']} {intensity['ids']} images"),
            ("objects", f"{fingerprint['objects']['count']}, {100 * fingerprint['objects']['touching_fraction']:.1f} % "
             "touching another"),
        ],
        columns=["fingerprint", "value"],
    )  # fmt: skip
    classes = pd.DataFrame([
        {"class": entry["name"], "pixel fraction": entry["pixel_fraction"], "images": entry["images"],
         "objects": entry["objects"],
         "object px min / median / max": "-" if entry["object_size"] is None else
         "{min} / {median} / {max}".format(**entry["object_size"])}
        for entry in fingerprint["classes"]
    ])  # fmt: skip
    return [("Plan", settings), ("Dataset fingerprint", summary), ("Classes", classes)]


def fold_table(path: str | os.PathLike) -> tuple[str, pd.DataFrame]:
    """The titled per-fold validation table of a cross-validated experiment (rows per fold, mean, sd)."""
    return "Cross-validation: validation metrics per fold", read_fold_metrics(path)


def overview_row(name: str, facts: Mapping[str, Any], summary: pd.DataFrame) -> dict[str, Any]:
    """One row of the comparison table: training facts, the per-image means of :data:`HEADLINE_METRICS`
    (columns ``test <metric>``) and the pooled mean foreground Dice. ``summary``: indexed by metric
    (:func:`segcore.evaluate.tables.read_summary`)."""
    return {
        "experiment": name,
        "parameters": facts["parameters"],
        "training s": facts["training_seconds"],
        "epochs run": facts["epochs_run"],
        "best val loss": facts["best_val_loss"],
        "best val Dice": facts["best_val_dice"],
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
    """The report's panels of ``ids``: image (stretched to its range), truth and prediction in palette colours.

    ``scores``: mean foreground Dice by id, shown in the caption. Raises :class:`segcore.io.InputError` when
    an id has no prediction under the ``predictions`` root.
    """
    shown = []
    for sample_id in ids:
        sample = read_sample(data, sample_id)
        prediction = read_predicted_mask(predictions, sample_id)
        shown.append(
            ExampleImage(
                sample_id,
                f"{sample_id}: mean foreground Dice {scores[sample_id]:.4f}",
                to_display_rgb(sample.image),
                colourise(sample.mask, num_classes),
                colourise(prediction, num_classes),
            )
        )
    return shown


def experiment_section(
    results: ExperimentResults,
    facts: Mapping[str, Any],
    summary: pd.DataFrame,
    data: str | os.PathLike,
    class_names: list[str],
    n_examples: int,
) -> ExperimentSection:
    """One experiment's section: facts, summary, per-metric extremes, and the ``n_examples`` best and worst
    test images by mean foreground Dice."""
    per_image = read_per_image(results.per_image, class_names)
    best, worst = best_and_worst(per_image, "mean_fg_dice", n_examples)
    scores = per_image.set_index("id")["mean_fg_dice"]
    return ExperimentSection(
        name=results.name,
        summary=summary.reset_index(),
        extremes=extremes_table(per_image, class_names, n_examples),
        facts={key: str(value) for key, value in facts.items()},
        best=example_images(data, results.predictions, best, scores, len(class_names)),
        worst=example_images(data, results.predictions, worst, scores, len(class_names)),
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
) -> str:
    """The report page (HTML) comparing ``experiments``, in the given order.

    ``threshold``: ``prediction.threshold``, shown per experiment as its operating point (:func:`operating_point`).
    ``fingerprint``: the dataset's fingerprint.json; with it, each experiment that names its ``plan`` gets a
    collapsed "Plan and fingerprint" section (:func:`plan_tables`).

    Also writes ``curves`` (PNG): the training curves of every experiment in one figure, which the page
    embeds.
    """
    overview, sections, histories = [], [], {}
    for results in experiments:
        facts = read_training_facts(results.facts)
        summary = read_summary(results.summary)
        histories[results.name] = read_history(results.history)
        objects_by = read_instance_method(results.predictions)
        overview.append({
            **overview_row(results.name, facts, summary), "objects by": objects_by,
            "operating point": operating_point(threshold, facts),
        })  # fmt: skip
        sections.append(experiment_section(results, facts, summary, data, class_names, n_examples))
        if results.plan is not None and fingerprint is not None:
            sections[-1].plan = plan_tables(read_plan(results.plan), read_fingerprint(fingerprint))
        if results.folds is not None:
            sections[-1].plan.insert(0, fold_table(results.folds))
    plot_history(histories, curves)
    return render_report(dataset, pd.DataFrame(overview), sections, str(curves), NOTES)


def write_report(path: str | os.PathLike, page: str) -> None:
    """Write the page as UTF-8, atomically."""
    with atomic_path(path, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
