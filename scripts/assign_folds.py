"""Rule folds: the train and val ids of the split dealt into ``split.folds`` cross-validation folds, seeded,
stratified and grouped as the split is (:func:`segcore.data.folds.dataset_folds`) -> folds.tsv."""

from segcore.data.canonical import read_manifest
from segcore.data.folds import dataset_folds, write_folds
from segcore.io import read_table
from segcore.rule_runner import run_rule


def main(smk) -> None:
    table = dataset_folds(read_manifest(smk.input.data), read_table(smk.input.split), smk.params.split, smk.params.seed)
    write_folds(smk.output.folds, table)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
