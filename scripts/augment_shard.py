"""Rule augment: one shard of the training set, originals plus augmented copies, as a canonical folder.

The training set is the split's train ids, or with cross-validation the pool of every fold (train and val),
of which each fold's run takes its own (:func:`segcore.train.folds.fold_samples`).
"""

from segcore.augment.transforms import training_samples
from segcore.data.canonical import write_canonical
from segcore.data.folds import read_folds
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.io import read_table
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    # With cross-validation (a fold table given) every pool id trains in some fold; else the train ids.
    if smk.input.folds:
        originals = list(read_folds(smk.input.folds[0])["id"])
    else:
        originals = ids_of(read_table(smk.input.split), "train")
    ids = shard_ids(originals, int(smk.wildcards.shard), smk.params.n_shards)
    samples = training_samples(smk.input.data, ids, smk.params.seed, smk.params.augment)
    manifest = write_canonical(smk.output.samples, samples, num_classes=len(smk.params.class_names))
    log.info(
        "shard %s: %d originals, %d samples with %d copies each",
        smk.wildcards.shard, len(ids), len(manifest), smk.params.augment["copies"],
    )  # fmt: skip


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
