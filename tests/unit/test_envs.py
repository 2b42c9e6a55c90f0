"""Software environments: valid, pinned, conda-forge only, in step with requirements.txt; every rule uses one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
# conda-forge package name -> PyPI name, where they differ
CONDA_TO_PYPI = {"matplotlib-base": "matplotlib"}
# conda-only build tools (the compiler that builds elasticdeform from source): not Python requirements
BUILD_TOOLS = {"c-compiler"}


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("--"):  # pip options such as --no-binary
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def env_pins(env: dict) -> dict[str, str]:
    """name -> version of every conda and pip dependency; fails on any unpinned one."""
    pins = {}
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            for item in dependency["pip"]:
                if item.startswith("--"):
                    continue
                assert "==" in item, f"unpinned pip dependency {item!r}"
                name, version = item.split("==")
                pins[name.lower()] = version.strip()
        elif dependency != "pip":
            assert re.fullmatch(r"[A-Za-z0-9_.-]+=[0-9][0-9A-Za-z_.]*", dependency), f"unpinned {dependency!r}"
            name, version = dependency.split("=")
            pins[CONDA_TO_PYPI.get(name, name).lower()] = version
    return pins


def test_there_are_a_cpu_a_cuda_and_a_data_environment():
    assert {path.stem for path in ENVS} >= {"data", "torch-cpu", "torch-cuda"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.stem)
def test_environment_is_pinned_conda_forge_and_agrees_with_requirements(path: Path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    pins = env_pins(env)
    requirements = requirement_pins()
    assert pins.get("python") == "3.11"
    assert pins["numpy"] == requirements["numpy"]
    for name, version in pins.items():
        if name != "python" and name not in BUILD_TOOLS:
            assert name in requirements, f"{path.name}: {name} is not in requirements.txt"
            assert version == requirements[name], f"{path.name}: {name} {version} != {requirements[name]}"


def test_every_rule_names_a_conda_environment_that_exists():
    rule_files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    checked = 0
    for rule_file in rule_files:
        text = rule_file.read_text()
        # a rule's block runs from "rule name:" to the next top-level statement
        for match in re.finditer(r"^\s*rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE):
            name, body = match.groups()
            if name == "all":
                continue
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', body)
            assert env, f"rule {name} in {rule_file.name} has no conda: directive"
            assert (rule_file.parent / env.group(1)).resolve().is_file(), f"rule {name}: {env.group(1)} missing"
            checked += 1
    assert checked >= 9


def test_the_workflow_sets_every_job_environment_variable():
    """segcore.compute.JOB_ENVIRONMENT must reach every job: rules/common.smk sets it before jobs start."""
    from segcore.compute import JOB_ENVIRONMENT

    common = (REPO / "rules" / "common.smk").read_text()
    for name, value in JOB_ENVIRONMENT.items():
        assert f'os.environ.setdefault("{name}", "{value}")' in common
