"""Rule stack_inference: a stacked inference set's shards -> ``masks.tif`` and one float32
``<class>_probability.tif`` per class, page i = image i of the set (:func:`segcore.predict.sets.write_set_stacks`)."""

from segcore.predict.sets import write_set_stacks
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    pages = write_set_stacks(
        smk.input.table, smk.output.masks, list(smk.output.probabilities), set_name=smk.wildcards.set
    )
    log.info("wrote %d pages per stack of inference set %s", pages, smk.wildcards.set)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
