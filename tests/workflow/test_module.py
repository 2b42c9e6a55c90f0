"""The repository used as a Snakemake module, the way snakedeploy deploys it: from a local path and over HTTP.

The using workflow is what ``snakedeploy deploy-workflow`` writes: ``configfile: "config/config.yaml"`` (a copy
of this repository's) and ``module unet: snakefile: <source>; config: config`` with ``use rule * from unet``,
run with the tiny config as ``--configfile``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.workflow.tiny_config import REPO_ROOT, TINY_CONFIG, snakemake_command, tiny_workflow_config

SEGCORE = REPO_ROOT / "scripts" / "segcore"
MANIFEST = SEGCORE / "FILES.txt"


def manifest_entries() -> list[str]:
    lines = (line.strip() for line in MANIFEST.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def using_workflow(directory: Path, snakefile: str, **overrides) -> Path:
    """Write the using workflow into ``directory``; return the tiny config file to pass as --configfile."""
    (directory / "config").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "config" / "config.yaml", directory / "config" / "config.yaml")
    (directory / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        f"module unet:\n    snakefile:\n        {snakefile!r}\n    config:\n        config\n\n\n"
        "use rule * from unet\n"
    )
    return tiny_workflow_config(directory, **overrides)


def module_command(directory: Path, configfile: Path, *extra: str) -> list[str]:
    """``snakemake_command`` for the using workflow in ``directory`` instead of the repository's Snakefile."""
    command = snakemake_command(directory, configfile, *extra)
    command[command.index("-s") + 1] = str(directory / "Snakefile")
    return command


def run(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key in ("no_proxy", "NO_PROXY"):  # the loopback server, never through a proxy
        env[key] = ",".join(filter(None, [env.get(key), "127.0.0.1"]))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves a folder and records the requested paths instead of logging them."""

    requested: list[str]

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.requested.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def served_repository(tmp_path_factory) -> Iterator[tuple[str, list[str]]]:
    """(base URL, requested paths) of a loopback HTTP server serving the repository's files.

    The files are what a push would publish: tracked ones and new ones not ignored (``git ls-files``), copied
    so that nothing of the checkout (results, caches) is served.
    """
    root = tmp_path_factory.mktemp("served")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not published
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    requested: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requested": requested})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()


def test_segcore_manifest_lists_every_file_of_the_package():
    """A remote source cannot be listed: rules/common.smk caches exactly the files FILES.txt names."""
    present = {str(path.relative_to(SEGCORE)) for path in SEGCORE.rglob("*.py")}
    listed = set(manifest_entries())
    assert listed == present, (
        f"scripts/segcore/FILES.txt is out of date: add {sorted(present - listed)}, remove "
        f"{sorted(listed - present)} (its first lines say how to regenerate it)"
    )


@pytest.mark.workflow
def test_module_from_a_local_path_runs_its_scripts(tmp_path: Path):
    """Split only: a local module's scripts import segcore from the repository's scripts/ (the same path as a
    direct run, which test_pipeline covers end to end); what is new here is the module wiring (config given by
    the using workflow, the repository's configfile skipped, the schema found relative to rules/)."""
    configfile = using_workflow(tmp_path, str(REPO_ROOT / "Snakefile"))
    result = run(module_command(tmp_path, configfile, "results/tiny/split.tsv"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ModuleNotFoundError" not in result.stderr
    split = (tmp_path / "results" / "tiny" / "split.tsv").read_text().splitlines()
    assert len(split) == 1 + 40
    assert not (tmp_path / "scripts").exists()


@pytest.mark.workflow
def test_module_over_http_runs_every_rule_and_builds_the_report(
    served_repository: tuple[str, list[str]], tmp_path: Path
):
    """Every rule of the shapes source (each script imports segcore from Snakemake's source cache), one epoch,
    then ``--report`` (captions and the workflow description fetched from the same source)."""
    base_url, requested = served_repository
    configfile = using_workflow(tmp_path, f"{base_url}/Snakefile", training={**TINY_CONFIG["training"], "epochs": 1})
    result = run(module_command(tmp_path, configfile))
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ModuleNotFoundError" not in result.stderr

    results = tmp_path / "results" / "tiny"
    assert (results / "small" / "metrics" / "summary.tsv").stat().st_size > 0
    assert "mean_fg_dice" in (results / "report.html").read_text()
    assert not (tmp_path / "scripts").exists()  # nothing was copied into the user's folder
    fetched = set(requested)
    assert {f"/scripts/segcore/{name}" for name in manifest_entries()} <= fetched
    assert "/scripts/make_report.py" in fetched

    report = tmp_path / "snakemake-report.html"
    result = run(module_command(tmp_path, configfile, "--report", str(report)), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    text = report.read_text()
    assert "Per-image test metrics of experiment small" in text  # report/per_image.rst, rendered
    assert "U-Net image segmentation of dataset" in text  # report/workflow.rst
