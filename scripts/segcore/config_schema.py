"""config/schema.yaml applied to one config section: checked, with the schema's defaults filled in.

The Snakefile checks the whole config against the schema and fills every default before any rule runs
(``rules/common.smk``), so rule scripts hand segcore complete sections and segcore keeps no defaults of its
own. Code that writes a section by hand (tests, benchmarks, notebooks) gets the same complete section from
:func:`with_defaults`::

    build_model(with_defaults("experiments.*.model", {"name": "unet_small"}), 3, 4)

Defaults are filled the way ``snakemake.utils.validate(config, schema, set_default=True)`` fills them: a
``properties`` keyword sets each absent key that has a ``default``, also inside an ``if``'s ``then`` that
applies. This module needs ``jsonschema`` (installed with Snakemake); rule scripts never import it, so the
rules' conda environments do without it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from segcore.io import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


@functools.cache
def load_schema() -> dict[str, Any]:
    """The parsed config/schema.yaml (cached: treat it as read-only)."""
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def section_schema(section: str) -> dict[str, Any]:
    """The sub-schema of a dotted section path; ``*`` stands for any key of a map (``experiments.*.model``).

    Raises KeyError for a path the schema does not declare.
    """
    node = load_schema()
    for part in section.split("."):
        node = node["additionalProperties"] if part == "*" else node["properties"][part]
    return node


def _set_defaults(validator_class: type) -> type:
    """``validator_class`` whose ``properties`` keyword first sets the absent keys that have a default.

    Each default is deep-copied, so filled sections never share (and cannot change) the cached schema.
    """
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, subschemas: dict, instance: Any, schema: dict) -> Iterator:
        if isinstance(instance, dict):
            for key, subschema in subschemas.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(key, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, subschemas, instance, schema)

    return validators.extend(validator_class, {"properties": properties})


_FillingValidator = _set_defaults(Draft202012Validator)


def with_defaults(section: str, values: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
    """A deep copy of ``values`` checked against the schema of ``section``, with its defaults filled in.

    ``where`` (default: ``section``) is the config path in messages. Like the Snakefile's check, every
    violation of the values as given is reported, one ``config key <where>.<key>: <problem>`` line each, in
    one :class:`InputError`. A filled section that breaks the schema is a bug in the schema's defaults and
    raises ``jsonschema.ValidationError``.
    """
    where = where or section
    subschema = section_schema(section)
    root = load_schema()  # $ref targets ("#/$defs/...") resolve in the whole schema
    errors = sorted(
        Draft202012Validator(root).evolve(schema=subschema).iter_errors(values),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    if errors:
        lines = [
            f"config key {'.'.join([where, *(str(part) for part in error.absolute_path)])}: {error.message}"
            for error in errors
        ]
        raise InputError("\n".join(lines))
    filled = copy.deepcopy(dict(values))
    _FillingValidator(root).evolve(schema=subschema).validate(filled)
    return filled
