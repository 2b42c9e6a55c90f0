"""The report's "Plan and fingerprint" section (segcore.report.plan_tables, segcore.report.html).

References: the hand-built fingerprint's values and the plan's own table, found again in the tables and
in the rendered page.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segcore.report.html import ExperimentSection, render_report
from segcore.report.plan_tables import plan_tables
from tests.unit.test_plan import fingerprint, per_image, plan


def test_plan_tables_show_every_planned_key_with_its_source_and_the_fingerprint():
    fp = fingerprint((101, 101, 101), (101, 101, 101))
    result = plan(fp, batch_size=4)
    tables = dict(plan_tables(result, fp))
    assert list(tables) == ["Plan", "Dataset fingerprint", "Classes"]
    settings = tables["Plan"].set_index("key")
    assert settings.loc["training.batch_size", "value"] == "4"
    assert settings.loc["training.batch_size", "source"] == "config"
    assert settings.loc["training.patch_size", "value"] == "null (whole images)"
    assert settings.loc["prediction.tile_size", ["value", "source"]].tolist() == ["112", "auto"]
    assert settings.loc["normalisation mean / sd", "value"] == "100; 20"
    summary = tables["Dataset fingerprint"].set_index("fingerprint")["value"]
    assert summary["height min / median / max"] == "101 / 101 / 101"
    assert summary["intensity sample"] == "1000 pixels of 90 train+val images"
    assert tables["Classes"]["class"].tolist() == ["bg", "fg"]


def test_an_image_zscore_plan_shows_why_and_the_images_spread_instead_of_dataset_statistics():
    fp = fingerprint((64, 64, 64), (64, 64, 64), images=per_image([4.5]))
    tables = dict(plan_tables(plan(fp), fp))
    settings = tables["Plan"].set_index("key")
    assert settings.loc["training.normalisation", "value"] == "image_zscore"
    assert "4.50 x the median per-image sd" in settings.loc["training.normalisation", "reason"]
    assert settings.loc["normalisation mean / sd", ["value", "source"]].tolist() == [
        "each image's own, per channel", "image",
    ]  # fmt: skip
    summary = tables["Dataset fingerprint"].set_index("fingerprint")["value"]
    assert summary["per-image means sd / median per-image sd"] == "90; 20"
    assert summary["per-image means min / max"] == "90; 110"
    old = fingerprint((64, 64, 64), (64, 64, 64))
    del old["intensity"]["per_image"]  # written before the per-image statistics: dashes, no error
    summary = dict(plan_tables(plan(old), old))["Dataset fingerprint"].set_index("fingerprint")["value"]
    assert summary["per-image means sd / median per-image sd"] == "-; -"


def test_the_page_holds_the_section_collapsed(tmp_path: Path):
    fp = fingerprint((64, 64, 64), (64, 64, 64))
    curves = tmp_path / "curves.png"
    curves.write_bytes(b"\x89PNG\r\n\x1a\n")
    section = ExperimentSection("e", pd.DataFrame({"metric": ["x"]}), {}, plan=plan_tables(plan(fp), fp))
    page = render_report("d", pd.DataFrame({"experiment": ["e"]}), [section], str(curves), [])
    assert "<details><summary>Plan and fingerprint</summary>" in page
    assert "training.normalisation" in page and "zscore" in page and "Dataset fingerprint" in page
    bare = render_report("d", pd.DataFrame({"experiment": ["e"]}), [ExperimentSection("e", pd.DataFrame(), {})],
                         str(curves), [])  # fmt: skip
    assert "<details>" not in bare
