"""Rule evaluate: per-image metrics and the summed confusion matrix of one shard of the test predictions.

The shard's test ids are :func:`segcore.data.shards.shard_ids` of the split's test ids, the same ids rule predict
wrote into this shard's folder. The confusion matrix (rows truth, columns prediction, pixel counts) is the
exact sum over the shard's images, so summing the shards' matrices gives the pooled matrix of the whole test
set; rule merge_metrics does that.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from segcore.confusion import confusion_matrix
from segcore.data.canonical import read_sample
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.evaluate.metrics import image_metrics, metric_names
from segcore.io import InputError, read_table, read_tiff, write_table
from segcore.rule_runner import log, run_rule


def confusion_table(cm: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """``cm`` int64 (K, K) as a table: column ``truth`` (class name), then one count column per predicted class."""
    return pd.DataFrame({"truth": class_names, **{name: cm[:, k] for k, name in enumerate(class_names)}})


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    ids = shard_ids(ids_of(read_table(smk.input.split), "test"), int(smk.wildcards.shard), smk.params.n_shards)
    rows, pooled = [], np.zeros((len(class_names), len(class_names)), np.int64)
    for sample_id in ids:
        mask_path = Path(smk.input.predictions, "masks", f"{sample_id}.tif")
        if not mask_path.exists():
            raise InputError(f"{mask_path}: no prediction for test image {sample_id!r}")
        truth = read_sample(smk.input.data, sample_id)
        prediction = read_tiff(mask_path)
        pooled += confusion_matrix(truth.mask, prediction, len(class_names))
        rows.append({"id": sample_id, **image_metrics(truth.mask, prediction, class_names, truth.instances)})
    write_table(smk.output.per_image, pd.DataFrame(rows, columns=["id", *metric_names(class_names)]))
    write_table(smk.output.confusion, confusion_table(pooled, class_names))
    log.info("shard %s: %d test images, %d pixels", smk.wildcards.shard, len(rows), int(pooled.sum()))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
