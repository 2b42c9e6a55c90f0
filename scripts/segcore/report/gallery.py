"""The report's inference-set galleries: a few images of each set with their predicted overlays and masks."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segcore.predict.outputs import COLOUR, OVERLAYS, read_shard_picture
from segcore.predict.sets import read_set_table
from segcore.report.html import png_data_uri

PANELS = (("overlay", OVERLAYS), ("prediction", COLOUR))  # (caption, picture kind) per image


@dataclass(frozen=True)
class InferenceSetResults:
    """One experiment's predictions of one inference set: its table ``images.tsv`` (the shards are beside it)."""

    experiment: str
    name: str
    table: Path


def spread_positions(count: int, shown: int) -> list[int]:
    """``shown`` positions of ``count`` images spread evenly, first and last included (all when fewer)."""
    if shown <= 0 or count <= 0:
        return []
    return sorted({int(round(value)) for value in np.linspace(0, count - 1, min(shown, count))})


def inference_gallery(sets: Sequence[InferenceSetResults], shown: int) -> str:
    """HTML of the section "Inference sets": per experiment and set, the image count, where the outputs are,
    and ``shown`` images (spread over the set) as overlay and colour mask; empty without sets."""
    if not sets:
        return ""
    parts = ["<h2>Inference sets</h2>"]
    for results in sets:
        table = read_set_table(results.table)
        folder = os.path.dirname(results.table)
        parts.append(
            f"<h3>{html.escape(results.name)} ({html.escape(results.experiment)})</h3>"
            f"<p class='note'>{len(table)} images, segmented into {html.escape(folder)}</p>"
        )
        for position in spread_positions(len(table), shown):
            row = table.iloc[position]
            shard = Path(folder) / row["shard"]
            pictures = {label: read_shard_picture(shard, row["id"], kind) for label, kind in PANELS}
            panels = "".join(
                f'<figure><img class="sample" alt="{html.escape(row["id"])} {label}" src="{png_data_uri(picture)}">'
                f"<figcaption>{label}</figcaption></figure>"
                for label, picture in pictures.items()
            )
            parts.append(f"<div><p>{html.escape(row['id'])} (image {position + 1} of {len(table)})</p>{panels}</div>")
    return "".join(parts)
