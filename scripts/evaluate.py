"""Rule evaluate: per-image metrics and the summed confusion matrix of one shard of the test predictions.

The shard's test ids are the ones rule predict wrote into this shard's folder
(:func:`segcore.predict.shard.shard_test_ids`); rule merge_metrics sums the shards' matrices into the pooled
matrix of the whole test set.
"""

from segcore.evaluate.shard import evaluate_shard
from segcore.evaluate.tables import write_confusion, write_per_image
from segcore.predict.shard import shard_test_ids
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    ids = shard_test_ids(smk.input.split, int(smk.wildcards.shard), smk.params.n_shards)
    per_image, pooled = evaluate_shard(smk.input.data, smk.input.predictions, ids, class_names)
    write_per_image(smk.output.per_image, per_image)
    write_confusion(smk.output.confusion, pooled, class_names)
    log.info("shard %s: %d test images, %d pixels", smk.wildcards.shard, len(per_image), int(pooled.sum()))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
