"""The self-contained HTML report: one page per dataset, figures embedded as data URIs.

Per experiment: its facts, the per-class Dice/IoU chart and the confusion heat map
(:mod:`segcore.report.figures`), the metric tables, the best and worst test images with their error overlays
(:mod:`segcore.report.overlays`) under one colour legend, and the plan and fingerprint tables collapsed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import imageio.v3 as iio
import numpy as np
import pandas as pd

from segcore.report.overlays import LEGEND

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.6em 0 1.2em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top} figcaption{font-size:0.85em;color:#555}
img.sample{image-rendering:pixelated;width:min(256px,28vw)} .note{color:#555;font-size:0.9em}
.wide{overflow-x:auto;max-width:100%} img.chart{max-width:100%;vertical-align:top;margin:0 1em 1em 0}
.legend span.swatch{display:inline-block;width:0.9em;height:0.9em;border:1px solid #777;margin:0 0.3em 0 1em;
vertical-align:middle} .legend{font-size:0.85em;color:#333}
"""


def png_data_uri(rgb: np.ndarray) -> str:
    """uint8 (H, W, 3) -> a ``data:image/png;base64,...`` URI."""
    # imageio (scikit-image's own writer) directly: skimage.io deprecates the format argument a buffer needs.
    png = iio.imwrite("<bytes>", rgb, extension=".png")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_bytes_data_uri(png: bytes) -> str:
    """PNG file contents -> a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def file_data_uri(path: str) -> str:
    """A PNG file on disk as a data URI."""
    with open(path, "rb") as handle:
        return png_bytes_data_uri(handle.read())


def table_html(table: pd.DataFrame, digits: int = 4) -> str:
    """An HTML table of ``table``; floats rounded to ``digits`` decimals, NaN shown as an en dash."""

    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "&ndash;" if np.isnan(value) else f"{value:.{digits}f}"
        return html.escape(str(value))

    header = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in table.itertuples(index=False)
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


@dataclass
class ExampleImage:
    """One test image shown in the report: uint8 (H, W, 3) panels and a caption; ``errors`` is the error
    overlay (:func:`segcore.report.overlays.error_overlay`), when there is one."""

    sample_id: str
    caption: str
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    errors: np.ndarray | None = None


@dataclass(frozen=True)
class Chart:
    """A figure of an experiment's section: PNG file contents and the text that names it (its ``alt``)."""

    alt: str
    png: bytes


@dataclass
class ExperimentSection:
    """What the report shows for one experiment."""

    name: str
    summary: pd.DataFrame
    facts: dict[str, str]
    extremes: pd.DataFrame | None = None
    best: list[ExampleImage] = field(default_factory=list)
    worst: list[ExampleImage] = field(default_factory=list)
    # Titled tables shown collapsed under "Plan and fingerprint" (segcore.report.plan_tables).
    plan: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    # Shown above the tables: the per-class scores and the confusion heat map (segcore.report.figures).
    charts: list[Chart] = field(default_factory=list)


def _details_html(title: str, tables: list[tuple[str, pd.DataFrame]]) -> str:
    """A collapsed ``<details>`` block holding the titled tables; empty without tables."""
    if not tables:
        return ""
    parts = "".join(f"<h4>{html.escape(name)}</h4>{table_html(table)}" for name, table in tables)
    return f"<details><summary>{html.escape(title)}</summary>{parts}</details>"


def legend_html(entries: Sequence[tuple[str, tuple[int, int, int]]] = LEGEND) -> str:
    """The error overlays' legend: a colour swatch and its meaning per entry (name, RGB)."""
    items = "".join(
        f'<span class="swatch" style="background:rgb{colour}"></span>{html.escape(name)}' for name, colour in entries
    )
    return f'<p class="legend">Errors panel:{items}</p>'


def _charts_html(charts: list[Chart]) -> str:
    return "".join(
        f'<img class="chart" alt="{html.escape(chart.alt)}" src="{png_bytes_data_uri(chart.png)}">' for chart in charts
    )


def _examples_html(title: str, examples: list[ExampleImage]) -> str:
    parts = [f"<h4>{html.escape(title)}</h4>"]
    for example in examples:
        shown = [("image", example.image), ("truth", example.truth), ("prediction", example.prediction)]
        if example.errors is not None:
            shown.append(("errors", example.errors))
        panels = "".join(
            f'<figure><img class="sample" alt="{html.escape(example.sample_id)} {label}" '
            f'src="{png_data_uri(panel)}"><figcaption>{label}</figcaption></figure>'
            for label, panel in shown
        )
        parts.append(f"<div><p>{html.escape(example.caption)}</p>{panels}</div>")
    return "".join(parts)


def render_report(
    dataset: str,
    overview: pd.DataFrame,
    sections: list[ExperimentSection],
    curves_png: str,
    notes: list[str],
    extra_html: str = "",
) -> str:
    """The whole report page as a string.

    ``overview``: one row per experiment (the comparison table); ``curves_png``: path of the training-curves
    figure of all experiments; ``notes``: sentences explaining how metrics are computed; ``extra_html``: more
    sections (already HTML), placed before the notes.
    """
    body = [
        f"<h1>U-Net segmentation report: {html.escape(dataset)}</h1>",
        "<h2>Experiments</h2>",
        f'<div class="wide">{table_html(overview)}</div>',
        "<h2>Training curves</h2>",
        f'<img alt="training curves" style="max-width:100%" src="{file_data_uri(curves_png)}">',
    ]
    for section in sections:
        facts = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in section.facts.items()
        )
        body += [
            f"<h2>Experiment {html.escape(section.name)}</h2>",
            f"<table>{facts}</table>",
            "<h3>Test-set metrics</h3>",
            _charts_html(section.charts),
            table_html(section.summary),
            "<h3>Best and worst test images per metric</h3>" if section.extremes is not None else "",
            table_html(section.extremes) if section.extremes is not None else "",
            legend_html() if any(e.errors is not None for e in section.best + section.worst) else "",
            _examples_html("Best test images", section.best),
            _examples_html("Worst test images", section.worst),
            _details_html("Plan and fingerprint", section.plan),
        ]
    body += [
        extra_html,
        "<h2>How the numbers are computed</h2>",
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Segmentation report: {html.escape(dataset)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>"
    )
