"""Tests for segcore.report.build: the comparison row, the facts, the extremes table, example panels and the
whole page.

References: hand-built tables and the values expected in them, the palette colours written out by hand,
and the page's text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segcore.data.canonical import Sample, write_canonical
from segcore.evaluate.metrics import metric_names
from segcore.evaluate.tables import (
    per_image_table,
    read_summary,
    write_confusion,
    write_per_image,
    write_summary,
)
from segcore.io import InputError, write_table
from segcore.predict.outputs import shard_writer
from segcore.report.build import (
    HEADLINE_METRICS,
    NOTES,
    ExperimentResults,
    build_report,
    example_images,
    extremes_table,
    overview_row,
    shown_facts,
    write_report,
)
from segcore.train.run import write_training_facts

CLASSES = ["bg", "fg"]
FACTS = {
    "experiment": "x", "parameters": 1234, "training_seconds": 5.5, "epochs_run": 2, "best_epoch": 1,
    "best_val_loss": 0.25, "best_val_dice": 0.75, "keep": "best", "kept_epoch": 1, "training_samples": 3,
    "device": "cpu",
}  # fmt: skip


def summary_for(names: list[str]) -> pd.DataFrame:
    """Summary table: per-image mean = 0.01 * row number, pooled = 1 + that."""
    means = [0.01 * k for k in range(len(names))]
    return pd.DataFrame({
        "metric": names, "per_image_mean": means, "per_image_std": 0.0, "pooled": [1 + m for m in means],
        "count": 2,
    })  # fmt: skip


HISTORY = pd.DataFrame({"epoch": [1, 2], "seconds": [1.5, 2.0], "validation_seconds": [0.25, 0.5]})


def test_overview_row_has_facts_then_headline_test_metrics():
    names = metric_names(CLASSES)
    row = overview_row("x", FACTS, summary_for(names).set_index("metric"), HISTORY)
    assert list(row)[:7] == [
        "experiment", "parameters", "training time", "time per epoch", "epochs run", "best val loss", "best val Dice",
    ]  # fmt: skip
    assert [row["parameters"], row["training time"], row["best val Dice"]] == [1234, "0:00:06", 0.75]  # 5.5 s
    assert row["time per epoch"] == "0:00:01.8"  # mean of 1.5 and 2.0 s
    assert overview_row("x", FACTS, summary_for(names).set_index("metric"))["time per epoch"] == "-"
    for metric in HEADLINE_METRICS:
        assert row[f"test {metric}"] == pytest.approx(0.01 * names.index(metric))
    assert row["test mean_fg_dice (pooled)"] == pytest.approx(1 + 0.01 * names.index("mean_fg_dice"))


def test_shown_facts_give_durations_in_h_mm_ss():
    shown = shown_facts({**FACTS, "training_seconds": 3725.4}, HISTORY)
    assert "training_seconds" not in shown and shown["training_time"] == "1:02:05"
    assert list(shown)[:3] == ["experiment", "parameters", "training_time"]  # in the facts' order
    assert shown["best_val_dice"] == "0.75" and shown["device"] == "cpu"
    assert (shown["mean_epoch_time"], shown["mean_validation_time"]) == ("0:00:01.8", "0:00:00.4")
    assert shown_facts(FACTS)["mean_epoch_time"] == "-"


def test_extremes_table_lists_best_and_worst_with_values():
    names = metric_names(CLASSES)
    per_image = pd.DataFrame({"id": ["a", "b", "c"], **{name: [0.5, 0.9, np.nan] for name in names}})
    per_image["hd95"] = [3.0, 1.0, 2.0]  # lower is better
    table = extremes_table(per_image, CLASSES, n=1).set_index("metric")
    assert list(table.index) == names
    assert (table.loc["dice_fg", "best"], table.loc["dice_fg", "worst"]) == ("b (0.900)", "a (0.500)")  # NaN left out
    assert (table.loc["hd95", "best"], table.loc["hd95", "worst"]) == ("b (1.000)", "a (3.000)")
    wide = extremes_table(per_image, CLASSES, n=2).set_index("metric")
    assert wide.loc["hd95", "best"] == "b (1.000), c (2.000)"


def write_results(root: Path) -> ExperimentResults:
    """One experiment's complete results for two test images s0, s1 (16x12) under ``root``."""
    masks = {"s0": np.zeros((16, 12), np.uint8), "s1": np.ones((16, 12), np.uint8)}
    samples = [Sample(i, np.full((16, 12), 7, np.uint8), m, m.astype(np.uint16)) for i, m in masks.items()]
    write_canonical(root / "data", samples, num_classes=2)
    for shard, sample_id in enumerate(masks):
        with shard_writer(root / "x" / "predictions" / f"shard-{shard}", 2, False) as writer:
            prediction = 1 - masks[sample_id]  # everything wrong
            writer.write(sample_id, samples[0].image, prediction, np.zeros((2, 16, 12), np.float32))
    names = metric_names(CLASSES)
    rows = [{"id": i, **{name: 0.25 * k for name in names}} for k, i in enumerate(masks)]
    write_per_image(root / "x" / "per_image.tsv", per_image_table(rows, CLASSES))
    write_summary(root / "x" / "summary.tsv", summary_for(names))
    write_confusion(root / "x" / "confusion.tsv", np.array([[0, 192], [192, 0]]), CLASSES)
    write_training_facts(root / "x" / "training.json", FACTS)
    history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [0.25, 0.3], "val_dice": [0.75, 0.7]}
    write_table(root / "x" / "history.tsv", pd.DataFrame({**history, "learning_rate": [1e-3, 1e-3], "seconds": 1.0}))
    return ExperimentResults(
        name="x", facts=root / "x" / "training.json", history=root / "x" / "history.tsv",
        summary=root / "x" / "summary.tsv", per_image=root / "x" / "per_image.tsv",
        predictions=root / "x" / "predictions", confusion=root / "x" / "confusion.tsv",
    )  # fmt: skip


def test_example_images_show_image_truth_and_prediction_from_any_shard(tmp_path: Path):
    results = write_results(tmp_path)
    scores = pd.Series({"s0": 0.0, "s1": 0.5})
    shown = example_images(tmp_path / "data", results.predictions, ["s1", "s0"], scores, num_classes=2)
    assert [example.sample_id for example in shown] == ["s1", "s0"]
    assert shown[0].caption == "s1: mean foreground Dice 0.5000"
    blue, black = [31, 119, 180], [0, 0, 0]  # palette: class 1, class 0
    assert (shown[0].truth == blue).all() and (shown[0].prediction == black).all()  # s1 is all class 1
    assert (shown[1].truth == black).all() and (shown[1].prediction == blue).all()  # s0, from shard-0
    sky_blue, orange = [86, 180, 233], [230, 159, 0]  # error overlay: false negative, false positive
    assert (shown[0].errors == sky_blue).all() and (shown[1].errors == orange).all()  # everything wrong
    assert shown[0].image.shape == (16, 12, 3) and not shown[0].image.any()  # a flat image stretches to 0
    (results.predictions / "shard-1" / "masks" / "s1.tif").unlink()
    with pytest.raises(InputError, match="prediction of 's1'.*found 0"):
        example_images(tmp_path / "data", results.predictions, ["s1"], scores, num_classes=2)


def test_build_report_renders_every_part_and_writes_the_curves(tmp_path: Path):
    results = write_results(tmp_path)
    curves = tmp_path / "out" / "curves.png"
    page = build_report("tiny", [results], tmp_path / "data", CLASSES, n_examples=1, curves=curves, threshold="argmax")
    assert curves.read_bytes()[:4] == b"\x89PNG"
    assert "Experiment x" in page and "<th>best_val_dice</th><td>0.75</td>" in page
    assert "<th>training_time</th><td>0:00:06</td>" in page and "<td>0:00:01.0</td>" in page  # 1 s per epoch
    assert 'alt="Dice and IoU per class"' in page and 'alt="confusion matrix"' in page
    assert 'alt="s1 errors"' in page and "Errors panel:" in page
    assert "s1: mean foreground Dice 0.2500" in page and "s0: mean foreground Dice 0.0000" in page
    assert all(note.split(":")[0] in page for note in NOTES)
    assert read_summary(results.summary).loc["mean_fg_dice", "pooled"] == pytest.approx(1.0 + 0.01 * 9)
    without = build_report("tiny", [replace(results, confusion=None)], tmp_path / "data", CLASSES, n_examples=1,
                           curves=curves, threshold="argmax")  # fmt: skip
    assert 'alt="confusion matrix"' not in without and 'alt="Dice and IoU per class"' in without
    write_report(tmp_path / "out" / "report.html", page + "\u00e9")
    assert (tmp_path / "out" / "report.html").read_text(encoding="utf-8").endswith("</html>\u00e9")
