"""config/schema.yaml: the one place that checks config keys, types and ranges and holds every default.

The checks run three ways and must agree: the Snakefile's ``check_config`` (taken from rules/common.smk),
Snakemake's default filling (``snakemake.utils.validate``), and :func:`segcore.config_schema.with_defaults`
for one section. Expected defaults and messages are written out by hand below.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from snakemake.utils import validate

from segcore.config_schema import SCHEMA_PATH, load_schema, with_defaults
from segcore.data.archives import TAR_SUFFIXES, ZIP_SUFFIXES
from segcore.io import InputError

REPO = Path(__file__).resolve().parents[2]
MODEL, LOSS, IMPORT = "experiments.*.model", "experiments.*.loss", "dataset.import"
ORIGINAL = [64, 128, 256, 512, 1024]
SMALL = [32, 32, 64, 128, 256]
FREE_MODEL_DEFAULTS = {
    "dropout": 0.0, "upsampling": "transpose", "fusion": "concat", "deep_supervision": False,
    "deep_supervision_levels": None,
}  # fmt: skip


def check_config_from_rules():
    """``check_config`` exactly as rules/common.smk defines it (the .smk file also runs workflow code)."""
    source = (REPO / "rules" / "common.smk").read_text()
    (function,) = [node for node in ast.parse(source).body if getattr(node, "name", None) == "check_config"]
    namespace = {"jsonschema": jsonschema, "yaml": yaml, "validate": validate}
    exec(compile(ast.Module([function], type_ignores=[]), "common.smk", "exec"), namespace)
    return namespace["check_config"]


check_config = check_config_from_rules()


def merged_config(*presets: str) -> dict[str, Any]:
    """config/config.yaml with each preset merged over it as Snakemake does (experiments replaced whole)."""

    def merge(base: dict, update: dict) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "experiments":
                merge(base[key], value)
            else:
                base[key] = value

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for preset in presets:
        merge(config, yaml.safe_load((REPO / "config" / preset).read_text()))
    return config


def schema_error(section: str, values: Any, where: str | None = None) -> str:
    with pytest.raises(InputError) as error:
        with_defaults(section, values, where)
    return str(error.value)


# --- the whole config, as the Snakefile checks it ---------------------------------------------------------


@pytest.mark.parametrize("presets", [(), ("isbi2012.yaml",), ("custom.yaml",), ("ablation.yaml",), ("dsb2018.yaml",)])
def test_every_shipped_config_passes_and_fills_like_with_defaults(presets):
    config = merged_config(*presets)
    check_config(config, str(SCHEMA_PATH))  # raises on any violation, then fills the defaults
    for name, experiment in config["experiments"].items():
        raw = merged_config(*presets)["experiments"][name]
        assert experiment["model"] == with_defaults(MODEL, raw["model"])
        assert experiment["loss"] == with_defaults(LOSS, raw["loss"])
    if "import" in config["dataset"]:
        assert config["dataset"]["import"] == with_defaults(IMPORT, merged_config(*presets)["dataset"]["import"])


def test_check_config_names_every_bad_key():
    config = merged_config("ablation.yaml")
    config["experiments"]["focal"]["loss"]["gamma"] = -1
    config["experiments"]["weighted_ce_deep_supervision"]["model"]["padding"] = "full"  # not a YAML alias
    with pytest.raises(ValueError) as error:
        check_config(config, str(SCHEMA_PATH))
    lines = str(error.value).splitlines()[1:]
    assert lines == [
        "  config key experiments.focal.loss.gamma: -1 is less than the minimum of 0",
        "  config key experiments.weighted_ce_deep_supervision.model.padding: 'full' is not one of ['same', 'valid']",
    ]


def test_with_defaults_reports_every_violation_and_leaves_its_input_alone():
    spec = {"name": "unet", "dropout": 2, "fusion": "mul"}
    message = schema_error(MODEL, spec, "experiments.a.model")
    assert message.splitlines() == [
        "config key experiments.a.model.dropout: 2 is greater than or equal to the maximum of 1",
        "config key experiments.a.model.fusion: 'mul' is not one of ['concat', 'add']",
    ]
    assert spec == {"name": "unet", "dropout": 2, "fusion": "mul"}


def test_filled_sections_do_not_share_the_schemas_defaults():
    first = with_defaults(MODEL, {"name": "unet"})
    first["widths"].append(2048)
    assert with_defaults(MODEL, {"name": "unet"})["widths"] == ORIGINAL
    assert load_schema()["properties"]["split"]["properties"]["counts"]["default"]["train"] == 800


# --- experiments.*.model --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "unet"}, {"widths": ORIGINAL, "padding": "same", "batchnorm": False, "residual": False}),
        ({"name": "unet_small"}, {"widths": SMALL, "padding": "same", "batchnorm": False, "residual": False}),
        ({"name": "unet_original"}, {"widths": ORIGINAL, "padding": "valid", "batchnorm": False, "residual": False}),
        ({"name": "unet_residual"}, {"widths": SMALL, "padding": "same", "batchnorm": True, "residual": True}),
        # base_width and depth replace the default widths
        ({"name": "unet", "base_width": 8, "depth": 2}, {"padding": "same", "batchnorm": False, "residual": False}),
        ({"name": "unet_residual", "depth": 3}, {"padding": "same", "batchnorm": True, "residual": True}),
        # a preset's free keys keep the values given
        ({"name": "unet_original", "batchnorm": True}, {"widths": ORIGINAL, "padding": "valid", "residual": False}),
    ],
)
def test_model_defaults_per_preset(spec, expected):
    assert with_defaults(MODEL, spec) == {**spec, **FREE_MODEL_DEFAULTS, **expected}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"name": "unet", "upsampling": "foo"},
            "model.upsampling: 'foo' is not one of ['transpose', 'interp', 'unpool']",
        ),
        ({"name": "unet", "colour": 1}, "model: Unevaluated properties are not allowed ('colour' was unexpected)"),
        ({"name": "vnet"}, "model.name: 'vnet' is not one of"),
        ({"widths": [4, 8]}, "model: 'name' is a required property"),
        ({"name": "unet", "padding": "full"}, "model.padding: 'full' is not one of"),
        ({"name": "unet", "batchnorm": "yes"}, "model.batchnorm: 'yes' is not of type 'boolean'"),
        ({"name": "unet", "dropout": 1.0}, "model.dropout: 1.0 is greater than or equal to the maximum of 1"),
        ({"name": "unet", "widths": [4]}, "model.widths: [4] is too short"),
        ({"name": "unet", "widths": [4, 0]}, "model.widths.1: 0 is less than the minimum of 1"),
        ({"name": "unet", "base_width": 0, "depth": 2}, "model.base_width: 0 is less than the minimum of 1"),
        ({"name": "unet", "deep_supervision_levels": 0}, "model.deep_supervision_levels: 0 is less than the minimum"),
        ({"name": "unet_small", "widths": [8, 16]}, "model.widths: [32, 32, 64, 128, 256] was expected"),
        ({"name": "unet_original", "padding": "same"}, "model.padding: 'valid' was expected"),
        ({"name": "unet_original", "fusion": "add"}, "model.fusion: 'concat' was expected"),
        ({"name": "unet_residual", "residual": False}, "model.residual: True was expected"),
        (
            {"name": "unet_small", "base_width": 8, "depth": 3},
            "model: Unevaluated properties are not allowed ('base_width', 'depth' were unexpected)",
        ),
    ],
)
def test_bad_model_keys_are_named(spec, message):
    error = schema_error(MODEL, spec, "experiments.a.model")
    assert error.startswith(f"config key experiments.a.{message}") and "\n" not in error


# --- experiments.*.loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"name": "ce"}, {"pixel_weights": False}),
        ({"name": "weighted_ce"}, {}),
        ({"name": "bce"}, {"pixel_weights": False}),
        ({"name": "focal"}, {"pixel_weights": False, "gamma": 2.0, "alpha": None}),
        ({"name": "dice"}, {"include_background": True, "smooth": 1.0}),
        (
            {"name": "combo", "terms": [{"name": "weighted_ce"}, {"name": "dice", "weight": 0.5}]},
            {
                "terms": [
                    {"name": "weighted_ce", "weight": 1.0},
                    {"name": "dice", "weight": 0.5, "include_background": True, "smooth": 1.0},
                ]
            },
        ),
    ],
)
def test_loss_defaults_per_name(spec, expected):
    assert with_defaults(LOSS, spec) == {**spec, "deep_supervision_weights": None, **expected}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "l2"}, "loss.name: 'l2' is not one of"),
        ({"name": "focal", "gama": 2}, "loss: Unevaluated properties are not allowed ('gama' was unexpected)"),
        ({"name": "ce", "smooth": 1}, "loss: Unevaluated properties are not allowed ('smooth' was unexpected)"),
        ({"name": "weighted_ce", "pixel_weights": True}, "loss: Unevaluated properties are not allowed"),
        ({"name": "focal", "gamma": -1}, "loss.gamma: -1 is less than the minimum of 0"),
        ({"name": "focal", "alpha": [0.5, -1]}, "loss.alpha.1: -1 is less than the minimum of 0"),
        ({"name": "focal", "alpha": [0, 0]}, "loss.alpha: [0, 0] does not contain items matching"),
        ({"name": "dice", "include_background": "no"}, "loss.include_background: 'no' is not of type 'boolean'"),
        ({"name": "dice", "smooth": -1}, "loss.smooth: -1 is less than the minimum of 0"),
        ({"name": "ce", "pixel_weights": 1}, "loss.pixel_weights: 1 is not of type 'boolean'"),
        ({"name": "combo"}, "loss: 'terms' is a required property"),
        ({"name": "combo", "terms": []}, "loss.terms: [] should be non-empty"),
        ({"name": "combo", "terms": [{"name": "combo"}]}, "loss.terms.0.name: 'combo' is not one of"),
        ({"name": "combo", "terms": [{"name": "ce", "weight": "x"}]}, "loss.terms.0.weight: 'x' is not of type"),
        ({"name": "combo", "terms": [{"name": "ce"}], "gamma": 1}, "loss: Unevaluated properties are not allowed"),
        ({"name": "ce", "weight": 1}, "loss: Unevaluated properties are not allowed ('weight' was unexpected)"),
        ({"name": "ce", "deep_supervision_weights": [0, 0]}, "loss.deep_supervision_weights: [0, 0] does not"),
        ("ce", "loss: 'ce' is not of type 'object'"),
    ],
)
def test_bad_loss_keys_are_named(spec, message):
    error = schema_error(LOSS, spec, "experiments.a.loss")
    assert error.startswith(f"config key experiments.a.{message}") and "\n" not in error


# --- dataset.import -------------------------------------------------------------------------------------


def test_import_defaults_depend_on_the_format():
    folder = {"format": "folder", "images": "i", "masks": "m"}
    assert with_defaults(IMPORT, folder) == {
        **folder, "encoding": "classes", "connectivity": 1, "channels": None,
        "image_pattern": "{id}.png", "mask_pattern": "{id}.png", "instance_pattern": None,
    }  # fmt: skip
    stack = {"format": "tiff_stack", "images": "i.tif", "masks": "m.tif", "encoding": "binary"}
    assert with_defaults(IMPORT, stack) == {**stack, "connectivity": 1, "channels": None, "stack_axis": None}


@pytest.mark.parametrize(
    "encoding",
    [
        "classes",
        "binary",
        {"type": "classes"},
        {"type": "binary", "threshold": 127},
        {"type": "value_table", "values": {0: 0, 255: 1}},
        {"type": "value_table", "values": {"0": 0, "65535": 2}},
        {"type": "colour_table", "colours": {"#00FF7f": 1, "255,0,0": 2, " 0, 0 ,255 ": 3, "0,0,0": 0}},
    ],
)
def test_good_encodings_pass_unchanged(encoding):
    settings = {"format": "folder", "images": "i", "masks": "m", "encoding": encoding}
    assert with_defaults(IMPORT, settings)["encoding"] == encoding


COLOUR_PATTERN = "does not match '^(#[0-9a-fA-F]{6}|"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "hdf5"}, "import.format: 'hdf5' is not one of ['folder', 'tiff_stack']"),
        ({"colour": 1}, "import: Unevaluated properties are not allowed ('colour' was unexpected)"),
        ({"connectivity": 3}, "import.connectivity: 3 is not one of [1, 2]"),
        ({"images": ""}, "import.images: '' should be non-empty"),
        ({"image_pattern": "x.png"}, "import.image_pattern: 'x.png' does not match"),
        ({"mask_pattern": "{id}_{id}.png"}, "import.mask_pattern: '{id}_{id}.png' does not match"),
        ({"instance_pattern": 3}, "import.instance_pattern: 3 is not of type 'string', 'null'"),
        ({"format": "tiff_stack", "image_pattern": "{id}.png"}, "import: Unevaluated properties are not allowed"),
        ({"stack_axis": "Z"}, "import: Unevaluated properties are not allowed ('stack_axis' was unexpected)"),
        ({"format": "tiff_stack", "stack_axis": "z"}, "import.stack_axis: 'z' does not match"),
        ({"channels": 2}, "import.channels: 2 is not one of [None, 1, 3]"),
        ({"encoding": "palette"}, "import.encoding: 'palette' is not one of ['classes', 'binary']"),
        ({"encoding": ["classes"]}, "import.encoding: ['classes'] is not of type 'object'"),
        ({"encoding": {"type": "palette"}}, "import.encoding.type: 'palette' is not one of"),
        ({"encoding": {"type": "binary", "colours": {}}}, "import.encoding: Unevaluated properties are not allowed"),
        ({"encoding": {"type": "binary", "threshold": "high"}}, "import.encoding.threshold: 'high' is not of type"),
        ({"encoding": {"type": "value_table"}}, "import.encoding: 'values' is a required property"),
        ({"encoding": {"type": "value_table", "values": {}}}, "import.encoding.values: {} should be non-empty"),
        ({"encoding": {"type": "value_table", "values": {"x": 1}}}, "import.encoding.values: 'x' does not match"),
        ({"encoding": {"type": "value_table", "values": {9: 1.5}}}, "import.encoding.values.9: 1.5 is not of type"),
        ({"encoding": {"type": "value_table", "values": {9: -1}}}, "import.encoding.values.9: -1 is less than"),
        ({"encoding": {"type": "colour_table", "colours": {"#ff00": 1}}}, f"colours: '#ff00' {COLOUR_PATTERN}"),
        ({"encoding": {"type": "colour_table", "colours": {"256,0,0": 1}}}, f"colours: '256,0,0' {COLOUR_PATTERN}"),
        ({"encoding": {"type": "colour_table", "colours": {"1,2": 1}}}, f"colours: '1,2' {COLOUR_PATTERN}"),
    ],
)
def test_bad_import_keys_are_named(change, message):
    settings = {"format": "folder", "images": "i", "masks": "m", **change}
    error = schema_error(IMPORT, settings)
    assert message in error and error.startswith("config key dataset.") and "\n" not in error


def test_missing_import_keys_are_named():
    assert schema_error(IMPORT, {"format": "folder", "images": "i"}) == (
        "config key dataset.import: 'masks' is a required property"
    )


# --- other sections whose checks moved out of segcore ------------------------------------------------------


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"counts": {"train": -1, "val": 1, "test": 1}}, "split.counts.train: -1 is less than the minimum of 0"),
        ({"counts": {"train": 1.5, "val": 1, "test": 1}}, "split.counts.train: 1.5 is not of type 'integer'"),
        ({"counts": {"train": 1, "val": 1}}, "split.counts: 'test' is a required property"),
        ({"ratios": {"train": 6, "val": -2, "test": 2}}, "split.ratios.val: -2 is less than the minimum of 0"),
        ({"ratios": {"train": "six", "val": 2, "test": 2}}, "split.ratios.train: 'six' is not of type 'number'"),
        ({"method": "thirds"}, "split.method: 'thirds' is not one of ['counts', 'ratios']"),
    ],
)
def test_bad_split_sizes_are_named(split, message):
    assert schema_error("split", split) == f"config key {message}"


def test_split_defaults():
    assert with_defaults("split", {}) == {
        "method": "counts", "counts": {"train": 800, "val": 100, "test": 100},
        "ratios": {"train": 6, "val": 2, "test": 2},
        "stratify_bins": 0, "group_by_group": False, "group_pattern": None, "table": None, "folds": 0,
    }  # fmt: skip


DIGEST = "ab" * 32


@pytest.mark.parametrize("archive", [f"data/x{suffix}" for suffix in ZIP_SUFFIXES + TAR_SUFFIXES] + ["X.TAR.GZ"])
def test_extract_accepts_every_archive_suffix_segcore_unpacks(archive):
    download = {"base_url": "https://h/", "files": {archive: DIGEST}, "extract": [archive]}
    assert with_defaults("dataset.download", download) == {
        **download, "mirror_url": None, "retries": 4, "backoff_s": 0.5, "timeout_s": 30,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extract": ["x.gz"]}, "dataset.download.extract.0: 'x.gz' does not match"),
        ({"extract": [".tar.gz"]}, "dataset.download.extract.0: '.tar.gz' does not match"),
        ({"files": {"x.png": "abc"}}, "dataset.download.files.x.png: 'abc' does not match"),
        ({"base_url": "ftp://h/"}, "dataset.download.base_url: 'ftp://h/' does not match"),
        ({"retries": -1}, "dataset.download.retries: -1 is less than the minimum of 0"),
        ({"timeout_s": 0}, "dataset.download.timeout_s: 0 is less than or equal to the minimum of 0"),
    ],
)
def test_bad_download_keys_are_named(change, message):
    download = {"base_url": "https://h/", "files": {"x.png": DIGEST}, **change}
    assert re.match(rf"config key {re.escape(message)}", schema_error("dataset.download", download))


def test_augment_and_weights_defaults_are_the_papers():
    assert with_defaults("augment", {}) == {
        "copies": 1, "flips": True, "elastic": True, "elastic_points": 3, "elastic_sigma": 10.0,
    }  # fmt: skip
    assert with_defaults("weights", {}) == {"w0": 10.0, "sigma": 5.0, "background_only": True, "class_balance": True}
    assert with_defaults("dataset.shapes", {}) == {"count": 1000, "size": 128, "max_objects": 5}


def test_unknown_section_paths_are_key_errors():
    with pytest.raises(KeyError):
        with_defaults("experiments.model", {})
    assert copy.deepcopy(load_schema()) == yaml.safe_load(SCHEMA_PATH.read_text())  # nothing wrote into it
