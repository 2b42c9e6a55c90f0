"""Rule evaluate: per-image and summary metrics of one experiment's test predictions."""

from pathlib import Path

import numpy as np
import pandas as pd

from segcore.canonical import read_sample
from segcore.io import read_table, read_tiff, write_table
from segcore.metrics import confusion_matrix, image_metrics, summarise
from segcore.rule_runner import log, run_rule
from segcore.split import ids_of


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    predicted = {path.stem: path for folder in smk.input.predictions for path in Path(folder, "masks").glob("*.tif")}
    rows, pooled = [], np.zeros((len(class_names), len(class_names)), np.int64)
    for sample_id in ids_of(read_table(smk.input.split), "test"):
        truth = read_sample(smk.input.data, sample_id)
        prediction = read_tiff(predicted[sample_id])
        pooled += confusion_matrix(truth.mask, prediction, len(class_names))
        rows.append({"id": sample_id, **image_metrics(truth.mask, prediction, class_names, truth.instances)})
    per_image = pd.DataFrame(rows)
    summary = summarise(per_image, pooled, class_names)
    write_table(smk.output.per_image, per_image)
    write_table(smk.output.summary, summary)
    mean_fg = summary.set_index("metric").loc["mean_fg_dice"]
    log.info("%d test images: mean foreground Dice %.4f per image, %.4f pooled", len(per_image), mean_fg["per_image_mean"], mean_fg["pooled"])


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
