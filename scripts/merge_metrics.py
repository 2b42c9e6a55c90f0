"""Rule merge_metrics: the shards' per-image tables and confusion matrices -> per_image.tsv, summary.tsv and
the pooled confusion.tsv (the report's heat map).

Rows are sorted by id, so the result does not depend on the number of shards; the pooled confusion matrix is
the exact sum of the shards' integer matrices. Every test id of the split must appear exactly once
(:func:`segcore.evaluate.tables.merge_shards`).
"""

from segcore.evaluate.tables import merge_shards, pool_confusion, write_confusion, write_per_image, write_summary
from segcore.predict.shard import split_test_ids
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    test_ids = split_test_ids(smk.input.split)
    per_image, summary = merge_shards(list(smk.input.per_image), list(smk.input.confusion), test_ids, class_names)
    write_per_image(smk.output.per_image, per_image)
    write_summary(smk.output.summary, summary)
    write_confusion(smk.output.confusion, pool_confusion(list(smk.input.confusion), class_names), class_names)
    mean_fg = summary.set_index("metric").loc["mean_fg_dice"]
    log.info(
        "%d test images from %d shards: mean foreground Dice %.4f per image, %.4f pooled",
        len(per_image),
        len(smk.input.per_image),
        mean_fg["per_image_mean"],
        mean_fg["pooled"],
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
