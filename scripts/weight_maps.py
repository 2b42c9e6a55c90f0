"""Rule weight_maps: the U-Net pixel weight map of every training sample of one shard."""

from segcore.augment.weight_maps import weight_map
from segcore.data.canonical import read_manifest, read_sample
from segcore.io import atomic_dir, read_table, write_tiff
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    class_weights = read_table(smk.input.class_weights)["weight"].to_numpy("float32")
    settings = smk.params.weights
    ids = list(read_manifest(smk.input.samples)["id"])
    with atomic_dir(smk.output.weights) as folder:
        for sample_id in ids:
            sample = read_sample(smk.input.samples, sample_id)
            weights = weight_map(
                sample.mask, sample.instances, class_weights,
                w0=settings["w0"], sigma=settings["sigma"], background_only=settings["background_only"],
            )  # fmt: skip
            write_tiff(folder / f"{sample_id}.tif", weights)
    log.info("wrote %d weight maps", len(ids))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
