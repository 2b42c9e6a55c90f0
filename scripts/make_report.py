"""Rule report: one self-contained HTML page comparing the experiments of a dataset."""

import json
from pathlib import Path

import pandas as pd

from segcore.data.canonical import read_sample
from segcore.evaluate.metrics import best_and_worst, metric_names
from segcore.io import atomic_path, read_table, read_tiff
from segcore.predict.visual import colourise, to_display_rgb
from segcore.report.html import ExampleImage, ExperimentSection, render_report
from segcore.rule_runner import log, run_rule
from segcore.train.curves import plot_history

HEADLINE_METRICS = ["pixel_accuracy", "mean_fg_dice", "mean_fg_iou", "tgs_map", "object_f1", "rand_error", "hd95"]
NOTES = [
    "Per-image mean: the metric computed on each test image, then averaged over images (NaN values skipped; "
    "count says how many images had a value). Pooled: computed once from the confusion matrix summed over "
    "all test images.",
    "Dice and IoU per class: a class absent from both truth and prediction in an image is skipped (NaN); a "
    "class predicted but absent from the truth scores 0. Mean foreground Dice/IoU average classes 1..K-1.",
    "TGS mAP: mean over IoU thresholds 0.50:0.05:0.95 of (foreground IoU > t); empty truth and empty "
    "prediction score 1, empty truth with any prediction 0.",
    "Object precision/recall/F1: one-to-one matching of connected components (per class) at IoU > 0.5.",
    "Pixel error: fraction of misclassified foreground/background pixels. Rand error: 1 - foreground-"
    "restricted Rand F-score (ISBI 2012). HD95: 95th-percentile symmetric boundary distance in pixels; a "
    "missed or spurious object counts as the image diagonal.",
]


def examples(
    data_dir: str, predictions: dict, ids: list[str], per_image: pd.DataFrame, num_classes: int
) -> list[ExampleImage]:
    scores = per_image.set_index("id")["mean_fg_dice"]
    shown = []
    for sample_id in ids:
        sample = read_sample(data_dir, sample_id)
        prediction = read_tiff(predictions[sample_id])
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


def extremes_table(per_image: pd.DataFrame, class_names: list[str], n: int) -> pd.DataFrame:
    """Per metric, the best and worst test images with their values ("id (value)")."""
    rows = []
    for metric in metric_names(class_names):
        best, worst = best_and_worst(per_image, metric, n)
        values = per_image.set_index("id")[metric]
        rows.append({
            "metric": metric,
            "best": ", ".join(f"{i} ({values[i]:.3f})" for i in best),
            "worst": ", ".join(f"{i} ({values[i]:.3f})" for i in worst),
        })  # fmt: skip
    return pd.DataFrame(rows)


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    experiments = list(smk.params.experiments)
    overview_rows, sections, histories = [], [], {}
    for index, name in enumerate(experiments):
        facts = json.loads(Path(smk.input.facts[index]).read_text())
        summary = read_table(smk.input.summary[index]).set_index("metric")
        per_image = read_table(smk.input.per_image[index])
        histories[name] = read_table(smk.input.history[index])
        overview_rows.append({
            "experiment": name, "parameters": facts["parameters"], "training s": facts["training_seconds"],
            "epochs run": facts["epochs_run"], "best val loss": facts["best_val_loss"], "best val Dice": facts["best_val_dice"],
            **{f"test {m}": summary.loc[m, "per_image_mean"] for m in HEADLINE_METRICS},
            "test mean_fg_dice (pooled)": summary.loc["mean_fg_dice", "pooled"],
        })  # fmt: skip
        shards = Path(smk.params.prediction_roots[index]).glob("shard-*")
        predictions = {path.stem: path for shard in shards for path in (shard / "masks").glob("*.tif")}
        best, worst = best_and_worst(per_image, "mean_fg_dice", smk.params.n_examples)
        sections.append(ExperimentSection(
            name=name, summary=summary.reset_index(),
            extremes=extremes_table(per_image, class_names, smk.params.n_examples),
            facts={key: str(value) for key, value in facts.items()},
            best=examples(smk.input.data, predictions, best, per_image, len(class_names)),
            worst=examples(smk.input.data, predictions, worst, per_image, len(class_names)),
        ))  # fmt: skip
    plot_history(histories, smk.output.curves)
    page = render_report(smk.params.dataset, pd.DataFrame(overview_rows), sections, smk.output.curves, NOTES)
    with atomic_path(smk.output.html, ".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("report for %d experiments written", len(experiments))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
