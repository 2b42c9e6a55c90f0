"""Rule split: the train/val/test table from the canonical manifest, or the user's table checked against it.

Config section ``split``: ``method`` with ``counts`` or ``ratios`` (sizes), ``stratify_bins`` (foreground
coverage strata), ``group_by_group`` with optional ``group_pattern`` (groups kept whole), ``table`` (an
existing table used instead of drawing one).
"""

from segcore.data.canonical import read_manifest
from segcore.data.split import (
    SUBSETS,
    check_groups,
    groups_from_pattern,
    load_split_table,
    split_ids,
    split_units,
    subset_sizes,
)
from segcore.io import InputError, write_table
from segcore.rule_runner import log, run_rule


def sample_groups(manifest, settings) -> list[str] | None:
    """Group name per manifest row ("" = alone), or None when grouping is off."""
    pattern = settings.get("group_pattern")
    if not settings.get("group_by_group"):
        if pattern:
            raise InputError("config key split.group_pattern: is set but split.group_by_group is false")
        return None
    if pattern:
        return groups_from_pattern(list(manifest["id"]), pattern)
    groups = list(manifest["group"])
    if not any(groups):
        log.warning("split.group_by_group is true but the manifest names no groups: every image stands alone")
    return groups


def main(smk) -> None:
    manifest = read_manifest(smk.input.data)
    settings = smk.params.split
    groups = sample_groups(manifest, settings)
    if settings.get("table"):
        table = load_split_table(smk.input.table, list(manifest["id"]))
        if groups is not None:
            check_groups(table, dict(zip(manifest["id"], groups)), smk.input.table)
        log.info("using the split table %s", smk.input.table)
    else:
        sizes = subset_sizes(len(manifest), settings["method"], settings.get("counts"), settings.get("ratios"))
        stratify_bins = settings.get("stratify_bins", 0)
        if stratify_bins > 1 or groups is not None:
            table = split_units(
                list(manifest["id"]), sizes, smk.params.seed, fractions=list(manifest["foreground_fraction"]),
                stratify_bins=stratify_bins, groups=groups,
            )  # fmt: skip
            drawn = table["subset"].value_counts()
            missed = {name: int(drawn.get(name, 0)) for name in SUBSETS if drawn.get(name, 0) != sizes[name]}
            if missed:
                log.warning("groups kept whole: sizes %s instead of %s", missed, sizes)
        else:
            table = split_ids(list(manifest["id"]), sizes, smk.params.seed)
    write_table(smk.output.split, table)
    coverage = manifest.set_index("id")["foreground_fraction"]
    for name in SUBSETS:
        members = table.loc[table["subset"] == name, "id"]
        log.info("%s: %d images, mean foreground fraction %.3f", name, len(members), coverage[members].mean())


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
