"""The report's "Plan and fingerprint" tables of an experiment: what was planned, from what, and why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from segcore.plan.normalise import Normalisation
from segcore.plan.plan import Plan


def _per_channel(values: Sequence[float] | None) -> str:
    """Per-channel numbers as "a / b / c" with 4 significant digits; a dash for none."""
    return " / ".join(f"{value:.4g}" for value in values) if values else "-"


def _normalisation_row(norm: Normalisation) -> dict[str, str]:
    """The plan table's row of the normalisation's numbers (key, value, source, reason): the fingerprint's
    mean / sd, or, for the modes that store none, where the numbers come from instead."""
    if norm.mode == "image_zscore":
        return {"key": "normalisation mean / sd", "value": "each image's own, per channel", "source": "image",
                "reason": "computed as each image is loaded"}  # fmt: skip
    if norm.mode == "dtype":
        return {"key": "normalisation scale", "value": "1 / dtype maximum (255, 65535); float as is",
                "source": "dtype", "reason": "no statistics"}  # fmt: skip
    return {"key": "normalisation mean / sd", "value": f"{_per_channel(norm.mean)}; {_per_channel(norm.sd)}",
            "source": "fingerprint", "reason": "train+val pixels"}  # fmt: skip


def plan_tables(plan: Plan, fingerprint: Mapping[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """The report's "Plan and fingerprint" tables of one experiment: the planned settings (config key,
    value, source auto/config, reason) with the normalisation's parameters and the memory estimate; the
    dataset fingerprint's summary; its classes (pixel fraction, objects and their sizes)."""
    settings = pd.DataFrame(plan.table())
    settings["value"] = settings["value"].map(lambda value: "null (whole images)" if value is None else str(value))
    norm = plan.normalisation
    extra = [
        _normalisation_row(norm),
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
    per_image = intensity.get("per_image") or {}  # absent from fingerprints written before it existed
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
            ("per-image means min / max", f"{_per_channel(per_image.get('mean_min'))}; "
             f"{_per_channel(per_image.get('mean_max'))}"),
            ("per-image means sd / median per-image sd", f"{_per_channel(per_image.get('mean_sd'))}; "
             f"{_per_channel(per_image.get('sd_median'))}"),
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
