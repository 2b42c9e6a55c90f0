"""The README's configuration reference stays in step with config/schema.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def schema_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf setting in the schema (sections are documented through their keys;
    map-valued sections such as ``experiments`` are shown as ``<name>``)."""
    keys = []
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        if not (isinstance(child, dict) and "properties" in child):
            keys.append(path)
        if isinstance(child, dict):
            keys += schema_keys(child, f"{path}.")
            if isinstance(child.get("additionalProperties"), dict) and "properties" in child["additionalProperties"]:
                keys += schema_keys(child["additionalProperties"], f"{path}.<name>.")
    return keys


def test_every_config_key_is_documented_in_the_readme():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`([A-Za-z_<>.]+)`", readme))
    # a table row may name siblings together: `a.b` / `c` documents a.c too
    for row in re.findall(r"^\| (`[^|]+`) \|", readme, re.MULTILINE):
        names = re.findall(r"`([^`]+)`", row)
        parent = names[0].rsplit(".", 1)[0] if "." in names[0] else ""
        documented |= {f"{parent}.{name}" if parent and "." not in name else name for name in names}
    keys = [key for key in schema_keys(schema) if ".model." not in key and ".loss." not in key]
    # a documented section (e.g. `split.counts`) documents its fixed sub-keys (train, val, test)
    missing = [key for key in keys if key not in documented and key.rsplit(".", 1)[0] not in documented]
    assert not missing, f"config keys missing from the README's configuration reference: {missing}"
