"""The HTML report rendered in a real headless Chromium: metrics table present, every figure loaded and drawn
(charts, error overlays), the plan collapsed, and a page that is not blank."""

from __future__ import annotations

import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest
from skimage import io as skio

pytestmark = pytest.mark.workflow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
# Without the background-networking flags Chromium keeps trying to reach Google hosts on a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (.ci/run installs Debian's chromium)")
def test_report_renders_with_metrics_table_and_figures(tiny_run: Path, tmp_path: Path):
    report = tiny_run / "results" / "tiny" / "report.html"
    screenshot = tmp_path / "report.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,"
            " width: i.getBoundingClientRect().width}))"
        )
        headers = page.evaluate("Array.from(document.querySelectorAll('th')).map(th => th.textContent)")
        rows = page.evaluate("Array.from(document.querySelectorAll('td')).map(td => td.textContent)")
        title = page.title()
        details = page.evaluate("Array.from(document.querySelectorAll('details')).map(d => d.open)")
        legends = page.locator("p.legend").count()
        # Each chart as drawn on the page (decoded and laid out), not just its data URI.
        charts = [iio.imread(page.locator("img.chart").nth(k).screenshot(), extension=".png")
                  for k in range(page.locator("img.chart").count())]  # fmt: skip
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()

    assert title == "Segmentation report: tiny"
    assert {"experiment", "test mean_fg_dice", "metric", "per_image_mean", "pooled"} <= set(headers)
    assert "mean_fg_dice" in rows and "small" in rows
    # training curves + per experiment: 2 charts, (best + worst) x (image, truth, prediction, errors)
    alts = [image["alt"] for image in images]
    experiments = alts.count("confusion matrix")
    assert experiments >= 1 and alts.count("Dice and IoU per class") == experiments
    assert len(images) >= 1 + experiments * (2 + 2 * 4)
    panels = {label: sum(alt.endswith(f" {label}") for alt in alts) for label in ("image", "truth", "errors")}
    assert panels["image"] == panels["truth"] == panels["errors"] >= 2 * experiments  # an overlay per example
    assert legends == experiments  # one colour legend above each experiment's examples
    assert details and not any(details), "the plan and fingerprint tables are collapsed"
    broken = [image["alt"] for image in images if not image["ok"] or image["width"] == 0]
    assert not broken, f"broken or invisible images: {broken}"
    assert len(charts) == 2 * experiments and all(chart[..., :3].std() > 10 for chart in charts), "a blank chart"
    pixels = skio.imread(screenshot)[..., :3].astype(float)
    assert pixels.shape[0] > 900  # full page, longer than one screen
    assert pixels.std() > 20  # not a blank page
