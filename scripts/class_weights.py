"""Rule class_weights: w_c of the weight maps, from the class frequencies of the whole training set."""

from segcore.augment.weight_files import class_weight_table
from segcore.io import write_table
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    table = class_weight_table(smk.input.samples, smk.params.class_names, balance=smk.params.class_balance)
    write_table(smk.output.weights, table)
    log.info("class weights:\n%s", table.to_string(index=False))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
