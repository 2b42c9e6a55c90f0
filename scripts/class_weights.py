"""Rule class_weights: w_c of the weight maps, from the class frequencies of the whole training set."""

import numpy as np
import pandas as pd

from segcore.augment.weight_maps import class_pixel_counts, class_weights_from_counts
from segcore.data.canonical import read_manifest
from segcore.io import read_tiff, write_table
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    class_names = list(smk.params.class_names)
    counts = np.zeros(len(class_names), np.int64)
    for shard in smk.input.samples:
        for sample_id in read_manifest(shard)["id"]:
            counts += class_pixel_counts(read_tiff(f"{shard}/masks/{sample_id}.tif"), len(class_names))
    weights = class_weights_from_counts(counts)
    table = pd.DataFrame({"class": range(len(class_names)), "name": class_names, "pixels": counts, "weight": weights})
    write_table(smk.output.weights, table)
    log.info("class weights:\n%s", table.to_string(index=False))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
