"""Rule augment: one shard of the training set, originals plus augmented copies, as a canonical folder."""

from segcore.augment.transforms import training_samples
from segcore.data.canonical import write_canonical
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.io import read_table
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    ids = shard_ids(ids_of(read_table(smk.input.split), "train"), int(smk.wildcards.shard), smk.params.n_shards)
    samples = training_samples(smk.input.data, ids, smk.params.seed, smk.params.augment)
    manifest = write_canonical(smk.output.samples, samples, num_classes=len(smk.params.class_names))
    log.info(
        "shard %s: %d originals, %d samples with %d copies each",
        smk.wildcards.shard, len(ids), len(manifest), smk.params.augment["copies"],
    )  # fmt: skip


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
