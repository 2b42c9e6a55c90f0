"""The report's per-experiment charts: Dice and IoU per class, and the confusion matrix as a heat map.

Each chart is a PNG (bytes) from matplotlib, written without matplotlib's version in its metadata so that
the same tables give the same bytes; the data behind a chart is its own function (:func:`class_scores`,
:func:`row_normalise`), tested without drawing.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Okabe-Ito blue and orange: the two bars of a class stay distinguishable with colour-vision deficiencies.
PER_IMAGE_COLOUR = "#0072B2"
POOLED_COLOUR = "#E69F00"


def figure_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (without matplotlib's version, so reruns are identical); closes it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def class_scores(summary: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Dice and IoU per class from a summary table indexed by metric
    (:func:`segcore.evaluate.tables.read_summary`, rows ``dice_<class>``, ``iou_<class>``).

    Returns one row per (kind, class), kinds ``dice`` then ``iou``, classes in order, with columns
    ``kind``, ``class``, float64 ``per_image_mean``, ``per_image_std`` and ``pooled`` (NaN where undefined).
    """
    rows = []
    for kind in ("dice", "iou"):
        for name in class_names:
            values = summary.loc[f"{kind}_{name}"]
            rows.append({
                "kind": kind, "class": name, "per_image_mean": float(values["per_image_mean"]),
                "per_image_std": float(values["per_image_std"]), "pooled": float(values["pooled"]),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "class", "per_image_mean", "per_image_std", "pooled"])


def _value_labels(values: np.ndarray) -> list[str]:
    return ["n/a" if np.isnan(value) else f"{value:.2f}" for value in values]


def class_score_chart(summary: pd.DataFrame, class_names: list[str]) -> bytes:
    """PNG: two bar charts (Dice, IoU), per class a per-image-mean bar (with its standard deviation over
    images) and a pooled bar, each labelled with its value; "n/a" where a class has no value."""
    scores = class_scores(summary, class_names)
    positions = np.arange(len(class_names))
    width = 0.38
    figure, axes = plt.subplots(
        1, 2, figsize=(max(7.0, 1.5 * len(class_names) + 3.0), 3.4), constrained_layout=True, sharey=True
    )
    for axis, (kind, title) in zip(axes, (("dice", "Dice per class"), ("iou", "IoU per class"))):
        rows = scores[scores["kind"] == kind]
        for offset, column, colour, label in (
            (-width / 2, "per_image_mean", PER_IMAGE_COLOUR, "per-image mean (± sd)"),
            (width / 2, "pooled", POOLED_COLOUR, "pooled"),
        ):
            values = rows[column].to_numpy()
            errors = rows["per_image_std"].to_numpy() if column == "per_image_mean" else None
            # A missing value is drawn as no bar (height 0) with an "n/a" label, not left out silently.
            bars = axis.bar(
                positions + offset, np.nan_to_num(values), width, yerr=None if errors is None else
                np.nan_to_num(errors), capsize=3, color=colour, label=label, error_kw={"elinewidth": 0.8},
            )  # fmt: skip
            axis.bar_label(bars, labels=_value_labels(values), fontsize="x-small", padding=2)
        axis.set_title(title)
        axis.set_xticks(positions, class_names, rotation=30 if len(class_names) > 5 else 0)
        axis.set_ylim(0, 1.15)  # room for the labels above a bar of 1
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score (test set)")
    # One legend below both panels: inside an axis it would cover the bars of some class.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    return figure_png(figure)


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """float64 (K, K): each row of the integer (K, K) confusion matrix ``cm`` (rows truth) divided by its sum,
    the fraction of a true class's pixels predicted as each class; NaN rows for classes absent from the truth."""
    counts = np.asarray(cm, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def confusion_chart(cm: np.ndarray, class_names: list[str]) -> bytes:
    """PNG: the row-normalised confusion matrix (:func:`row_normalise`) as a heat map, truth classes down,
    predicted classes across; each cell annotated with its percentage and its pixel count."""
    fractions = row_normalise(cm)
    k = len(class_names)
    side = max(3.6, 0.95 * k + 2.2)
    figure, axis = plt.subplots(figsize=(side + 1.0, side), constrained_layout=True)
    shown = np.ma.masked_invalid(fractions)
    colours = matplotlib.colormaps["Blues"].with_extremes(bad="#dddddd")  # grey: a class absent from the truth
    image = axis.imshow(shown, cmap=colours, vmin=0.0, vmax=1.0, interpolation="nearest")
    font = "small" if k <= 6 else "x-small"
    for row in range(k):
        for column in range(k):
            fraction = fractions[row, column]
            text = "–" if np.isnan(fraction) else f"{100 * fraction:.1f} %\n{int(cm[row, column]):,}"
            # Dark text on light cells, white on dark ones.
            colour = "white" if not np.isnan(fraction) and fraction > 0.6 else "black"
            axis.text(column, row, text, ha="center", va="center", color=colour, fontsize=font)
    axis.set_xticks(range(k), class_names, rotation=30 if k > 4 else 0)
    axis.set_yticks(range(k), class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title("Confusion matrix (row %, pixel count)", fontsize="medium")
    figure.colorbar(image, ax=axis, shrink=0.8, label="fraction of the true class's pixels")
    return figure_png(figure)
