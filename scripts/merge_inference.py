"""Rule merge_inference: an inference set's prediction shards -> its table ``images.tsv``, one row per image
in set order (:func:`segcore.predict.sets.write_set_table`)."""

from segcore.predict.sets import write_set_table
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    write_set_table(list(smk.input.shards), smk.output.table, list(smk.params.class_names))
    log.info("tabled inference set %s", smk.wildcards.set)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
