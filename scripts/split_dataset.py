"""Rule split: seeded train/val/test table from the canonical manifest."""

from segcore.canonical import read_manifest
from segcore.io import write_table
from segcore.rule_runner import log, run_rule
from segcore.split import split_ids, subset_sizes


def main(smk) -> None:
    manifest = read_manifest(smk.input.data)
    settings = smk.params.split
    sizes = subset_sizes(len(manifest), settings["method"], settings.get("counts"), settings.get("ratios"))
    table = split_ids(list(manifest["id"]), sizes, smk.params.seed)
    write_table(smk.output.split, table)
    log.info("split %d ids: %s", len(table), table["subset"].value_counts().to_dict())


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
