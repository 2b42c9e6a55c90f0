"""Rule split: the train/val/test table from the canonical manifest, or the user's table checked against it.

Config section ``split`` (segcore.data.split.split_dataset): ``method`` with ``counts`` or ``ratios``
(sizes), ``stratify_bins`` (foreground coverage strata), ``group_by_group`` with optional ``group_pattern``
(groups kept whole), ``table`` (an existing table used instead of drawing one; also the rule's input).
"""

from segcore.data.canonical import read_manifest
from segcore.data.split import split_dataset
from segcore.io import write_table
from segcore.rule_runner import run_rule


def main(smk) -> None:
    table = split_dataset(read_manifest(smk.input.data), smk.params.split, smk.params.seed)
    write_table(smk.output.split, table)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
