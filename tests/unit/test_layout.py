"""segcore's folders show the pipeline: a stage package is used by its own stage and later ones, never earlier.

Read from the source with ``ast`` (no imports run), so a new module or rule script is checked as soon as it
exists: a rule script must be mapped to its stage below, and stay a thin adapter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SEGCORE = SCRIPTS / "segcore"
# Pipeline order of the stage packages.
STAGES = ("data", "plan", "augment", "model", "train", "predict", "evaluate", "report")
# Each rule script and the stage of its rule.
SCRIPT_STAGES = {
    "generate_shapes": "data",
    "download_dataset": "data",
    "import_dataset": "data",
    "split_dataset": "data",
    "assign_folds": "data",
    "fingerprint": "plan",
    "plan": "plan",
    "augment_shard": "augment",
    "class_weights": "augment",
    "weight_maps": "augment",
    "train": "train",
    "summarise_folds": "train",
    "predict": "predict",
    "export_model": "predict",
    "infer": "predict",
    "merge_inference": "predict",
    "stack_inference": "predict",
    "evaluate": "evaluate",
    "merge_metrics": "evaluate",
    "make_report": "report",
}
MAX_SCRIPT_LINES = 60
# Top-level modules that are commands (python -m segcore.<name>), with the latest stage each may use; the
# other top-level modules are shared by every stage and use none.
ENTRY_POINTS = {"segment": "predict"}


def segcore_imports(path: Path) -> set[str]:
    """Dotted names of the segcore modules ``path`` imports (``segcore.train.loop``, ``segcore.io``, ...)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("segcore"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("segcore")}
    return names


def stage_of(module: str) -> str | None:
    """The stage package of a dotted segcore module name; None for the shared top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else None


def test_every_folder_of_segcore_is_a_known_stage():
    folders = {path.name for path in SEGCORE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders <= set(STAGES), f"unknown stage packages: {sorted(folders - set(STAGES))}"


@pytest.mark.parametrize(
    "path", sorted(SEGCORE.rglob("*.py")), ids=lambda p: str(p.relative_to(SEGCORE)).removesuffix(".py")
)
def test_a_module_imports_only_its_own_and_earlier_stages(path: Path):
    relative = path.relative_to(SEGCORE)
    own = relative.parts[0] if len(relative.parts) > 1 else ENTRY_POINTS.get(path.stem)
    for module in segcore_imports(path):
        used = stage_of(module)
        if used is None:
            continue  # io, compute, confusion, rule_runner, config_schema: shared by every stage
        assert own is not None, f"shared module {relative} imports the stage module {module}"
        assert STAGES.index(used) <= STAGES.index(own), f"{relative} (stage {own}) imports the later {module}"


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.py")), ids=lambda p: p.stem)
def test_a_rule_script_is_a_thin_adapter_over_its_stages(path: Path):
    assert path.stem in SCRIPT_STAGES, f"scripts/{path.name}: add its rule's stage to SCRIPT_STAGES"
    own = SCRIPT_STAGES[path.stem]
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_SCRIPT_LINES, f"scripts/{path.name} has {lines} lines: move its logic into segcore"
    for module in segcore_imports(path):
        used = stage_of(module)
        if used is not None:
            assert STAGES.index(used) <= STAGES.index(own), f"scripts/{path.name} ({own}) imports the later {module}"


def test_the_stage_check_itself_catches_a_backward_import(tmp_path: Path):
    """The checker reads ``from segcore.predict.x import y`` inside train/ as a backward import."""
    module = tmp_path / "loop.py"
    module.write_text("from segcore.predict.outputs import shard_writer\nimport segcore.io\n")
    imports = segcore_imports(module)
    assert imports == {"segcore.predict.outputs", "segcore.io"}
    assert STAGES.index(stage_of("segcore.predict.outputs")) > STAGES.index("train")
    assert stage_of("segcore.io") is None
