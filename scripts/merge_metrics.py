"""Rule merge_metrics: the shards' per-image tables and confusion matrices -> per_image.tsv and summary.tsv.

Rows are sorted by id, so the result does not depend on the number of shards; the pooled confusion matrix is
the exact sum of the shards' integer matrices. Every test id of the split must appear exactly once.
"""

import numpy as np
import pandas as pd

from segcore.data.split import ids_of
from segcore.evaluate.metrics import summarise
from segcore.io import InputError, read_table, write_table
from segcore.rule_runner import log, run_rule


def read_confusion(path: str, class_names: list[str]) -> np.ndarray:
    """The int64 (K, K) matrix of a table written by rule evaluate; InputError if its classes differ."""
    table = read_table(path)
    if list(table.columns) != ["truth", *class_names] or list(table["truth"]) != class_names:
        raise InputError(f"{path}: confusion matrix is not over the classes {class_names}")
    return table[class_names].to_numpy(dtype=np.int64)


def merged_per_image(paths: list[str], test_ids: list[str]) -> pd.DataFrame:
    """The shards' per-image rows in id order; InputError naming the ids that are missing or repeated."""
    # round_trip: the floats read back are exactly the ones rule evaluate wrote
    tables = [read_table(path, float_precision="round_trip") for path in paths]
    # header-only tables (shards without test images) would turn the metric columns into object columns
    per_image = pd.concat([table for table in tables if len(table)] or tables[:1], ignore_index=True)
    repeated = sorted(set(per_image["id"][per_image["id"].duplicated()]))
    missing = sorted(set(test_ids) - set(per_image["id"]))
    extra = sorted(set(per_image["id"]) - set(test_ids))
    if repeated or missing or extra:
        raise InputError(
            f"shard tables {paths} do not hold each test id once: repeated {repeated[:5]}, missing "
            f"{missing[:5]}, not in the test set {extra[:5]}"
        )
    return per_image.sort_values("id", kind="stable").reset_index(drop=True)


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    per_image = merged_per_image(list(smk.input.per_image), ids_of(read_table(smk.input.split), "test"))
    pooled = sum(read_confusion(path, class_names) for path in smk.input.confusion)
    summary = summarise(per_image, pooled, class_names)
    write_table(smk.output.per_image, per_image)
    write_table(smk.output.summary, summary)
    mean_fg = summary.set_index("metric").loc["mean_fg_dice"]
    log.info(
        "%d test images from %d shards: mean foreground Dice %.4f per image, %.4f pooled",
        len(per_image),
        len(smk.input.per_image),
        mean_fg["per_image_mean"],
        mean_fg["pooled"],
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
