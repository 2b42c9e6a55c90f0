"""Shared fixture: the real pipeline run once on the tiny config, reused by every workflow test module."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.workflow.tiny_config import snakemake_command, tiny_workflow_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """Folder of a complete tiny run (results/tiny/..., logs/tiny/...)."""
    directory = tmp_path_factory.mktemp("tiny")
    configfile = tiny_workflow_config(directory)
    result = subprocess.run(snakemake_command(directory, configfile), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return directory
