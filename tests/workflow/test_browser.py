"""The HTML report rendered in a real headless Chromium: metrics table present, every figure loaded."""

from __future__ import annotations

import shutil
from pathlib import Path

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
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()

    assert title == "Segmentation report: tiny"
    assert {"experiment", "test mean_fg_dice", "metric", "per_image_mean", "pooled"} <= set(headers)
    assert "mean_fg_dice" in rows and "small" in rows
    # training curves + (best + worst) x (image, truth, prediction) for up to 3 images each
    assert len(images) >= 1 + 2 * 3
    broken = [image["alt"] for image in images if not image["ok"] or image["width"] == 0]
    assert not broken, f"broken or invisible images: {broken}"
    pixels = skio.imread(screenshot)[..., :3].astype(float)
    assert pixels.shape[0] > 900  # full page, longer than one screen
    assert pixels.std() > 20  # not a blank page
