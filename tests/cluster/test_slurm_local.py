"""Workflows submitted through the SLURM profiles to a real one-node SLURM on 127.0.0.1.

The cluster comes from ``cluster/slurm-local.sh`` (root, apt-get). Where it cannot run the tests skip;
with ``CI=true`` and ``SLURM_REQUIRED=1`` they fail instead, so CI cannot go green without them.
Each workflow run takes about 45 s or more (the plugin's polling), hence the ``cluster`` marker.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

pytestmark = pytest.mark.cluster

REPO_ROOT = Path(__file__).resolve().parents[2]
SLURM_LOCAL = REPO_ROOT / "cluster" / "slurm-local.sh"
CLUSTER_PROFILES = (
    "--profile",
    str(REPO_ROOT / "profiles" / "slurm"),
    "--profile",
    str(REPO_ROOT / "profiles" / "slurm-local"),
)
TINY_CONFIG_MODULE = REPO_ROOT / "tests" / "workflow" / "tiny_config.py"
SNAKEMAKE_TIMEOUT_S = 600
# Exit status of slurm-local.sh meaning "cannot run on this machine" (see the script's header).
SLURM_LOCAL_UNSUPPORTED = 4

# Snakemake's log line for each sbatch submission (plugin 2.x).
SUBMITTED_RE = re.compile(r"^Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.$", re.M)
# Snakemake's line for every finished job, local or remote (job headers are not printed by every plugin
# version); the pipeline's localrules run on the submitting host and are not SLURM jobs.
FINISHED_RE = re.compile(r"^Finished jobid: \d+ \(Rule: (\w+)\)$", re.M)
LOCAL_RULES = {"all", "report", "download"}

TOY_SNAKEFILE = """\
rule merge:
    input: "b.txt"
    output: "c.txt"
    shell: "cat {input} > {output}; echo merge $SLURM_JOB_ID >> {output}"

rule gpu_step:
    input: "a.txt"
    output: "b.txt"
    threads: 1
    resources: gpu=1
    shell: "cat {input} > {output}; echo gpu_step $SLURM_JOB_ID gpus=$CUDA_VISIBLE_DEVICES >> {output}"

rule make:
    output: "a.txt"
    shell: "echo make $SLURM_JOB_ID > {output}"
"""


def _cluster_unavailable(reason: str) -> NoReturn:
    """Skip, or fail where CI demands the cluster tests (CI=true and SLURM_REQUIRED=1)."""
    if os.environ.get("CI") == "true" and os.environ.get("SLURM_REQUIRED") == "1":
        pytest.fail(f"SLURM is required here (CI=true, SLURM_REQUIRED=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """A running one-node SLURM; stopped at the end only if this fixture started it."""
    if os.geteuid() != 0:
        _cluster_unavailable("not root: cluster/slurm-local.sh installs packages and starts daemons")
    if shutil.which("slurmctld", path="/usr/sbin:/usr/bin") is None and shutil.which("apt-get") is None:
        _cluster_unavailable("SLURM is not installed and there is no apt-get to install it")
    already_up = subprocess.run([str(SLURM_LOCAL), "status"], capture_output=True, timeout=60).returncode == 0
    if not already_up:
        start = subprocess.run([str(SLURM_LOCAL), "start"], capture_output=True, text=True, timeout=900)
        if start.returncode == SLURM_LOCAL_UNSUPPORTED:
            _cluster_unavailable(f"cluster/slurm-local.sh cannot run here:\n{start.stderr[-2000:]}")
        elif start.returncode != 0:
            pytest.fail(f"cluster/slurm-local.sh start failed (exit {start.returncode}):\n{start.stderr[-4000:]}")
    yield
    if not already_up:
        subprocess.run([str(SLURM_LOCAL), "stop"], capture_output=True, timeout=120)


def _run_snakemake(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run Snakemake under `timeout -k` (a lost status poll must not hang the test session)."""
    command = ["timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT_S), sys.executable, "-m", "snakemake", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=SNAKEMAKE_TIMEOUT_S + 30)


def _submissions(log_text: str) -> dict[str, str]:
    """SLURM job id -> rule name, from Snakemake's submission lines and the rule_NAME log folders."""
    jobs = {}
    for job_id, log_path in SUBMITTED_RE.findall(log_text):
        rule_dirs = [part for part in Path(log_path).parts if part.startswith("rule_")]
        assert rule_dirs, f"no rule_NAME folder in the SLURM log path {log_path}"
        jobs[job_id] = rule_dirs[0].removeprefix("rule_")
    return jobs


def _slurm_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM job id -> state, as squeue reports it (finished jobs stay visible for MinJobAge = 1 h)."""
    listing = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T", "--jobs", ",".join(job_ids)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return dict(line.split("|") for line in listing.split())


def _assert_every_remote_job_went_through_sbatch(log_text: str, workdir: Path) -> dict[str, str]:
    """Check that each non-local job Snakemake ran was one SLURM job that completed; returns id -> rule."""
    submitted = _submissions(log_text)
    remote_jobs = Counter(rule for rule in FINISHED_RE.findall(log_text) if rule not in LOCAL_RULES)
    assert remote_jobs, f"Snakemake ran no remote job:\n{log_text[-3000:]}"
    assert Counter(submitted.values()) == remote_jobs, log_text[-3000:]
    states = _slurm_states(sorted(submitted))
    assert states == dict.fromkeys(submitted, "COMPLETED")
    # The plugin keeps these logs because profiles/slurm-local sets slurm-keep-successful-logs.
    for job_id, rule in submitted.items():
        assert list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{job_id}.log"))
    return submitted


def _dry_run_has_nothing_to_do(args: list[str], cwd: Path) -> None:
    dry_run = _run_snakemake([*args, "--dry-run"], cwd)
    assert dry_run.returncode == 0, dry_run.stderr[-3000:]
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr


def test_toy_workflow_runs_each_job_as_one_slurm_job(slurm_cluster: None, tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    # The real pipeline picks profiles/default up as its workflow profile; give it here too.
    args = [*CLUSTER_PROFILES, "--workflow-profile", str(REPO_ROOT / "profiles" / "default")]

    run = _run_snakemake(args, tmp_path)

    log_text = run.stdout + run.stderr
    assert run.returncode == 0, log_text[-4000:]
    submitted = _assert_every_remote_job_went_through_sbatch(log_text, tmp_path)
    assert sorted(submitted.values()) == ["gpu_step", "make", "merge"]
    job_id_of = {rule: job_id for job_id, rule in submitted.items()}
    # Each shell command ran inside its own SLURM job: it saw that job's $SLURM_JOB_ID.
    assert (tmp_path / "c.txt").read_text().splitlines() == [
        f"make {job_id_of['make']}",
        f"gpu_step {job_id_of['gpu_step']} gpus=0",
        f"merge {job_id_of['merge']}",
    ]
    gpu_job = subprocess.run(
        ["scontrol", "show", "job", job_id_of["gpu_step"]], capture_output=True, text=True, check=True
    ).stdout
    assert "TresPerJob=gres:gpu:1" in gpu_job
    _dry_run_has_nothing_to_do(args, tmp_path)


def _load_tiny_config() -> ModuleType:
    """tests/workflow/tiny_config.py, loaded by path (tests/ is not a package); skip if not there yet."""
    if not TINY_CONFIG_MODULE.is_file():
        pytest.skip(f"{TINY_CONFIG_MODULE.relative_to(REPO_ROOT)} not written yet")
    spec = importlib.util.spec_from_file_location("tiny_config", TINY_CONFIG_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_real_pipeline_runs_through_slurm(slurm_cluster: None, tmp_path: Path) -> None:
    config_path = _load_tiny_config().tiny_workflow_config(tmp_path)
    # No --workflow-profile: Snakemake finds profiles/default next to the Snakefile, as for users.
    args = [
        *CLUSTER_PROFILES,
        "--snakefile",
        str(REPO_ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(config_path),
    ]

    started = time.perf_counter()
    run = _run_snakemake(args, tmp_path)
    seconds = time.perf_counter() - started

    log_text = run.stdout + run.stderr
    assert run.returncode == 0, log_text[-4000:]
    submitted = _assert_every_remote_job_went_through_sbatch(log_text, tmp_path)
    # generate_shapes, split, fingerprint, plan, class_weights, train, export_model, merge_metrics + 2 shards x
    # (augment, weight_maps, predict, evaluate); report and all are localrules and run on the submitting host.
    assert len(submitted) == 16, sorted(submitted.values())
    assert "report" in FINISHED_RE.findall(log_text) and "report" not in submitted.values()
    print(f"\nreal pipeline through SLURM: {len(submitted)} sbatch jobs in {seconds:.0f} s")
    _dry_run_has_nothing_to_do(args, tmp_path)
