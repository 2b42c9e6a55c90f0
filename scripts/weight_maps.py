"""Rule weight_maps: the U-Net pixel weight map of every training sample of one shard."""

from segcore.augment.weight_files import write_weight_maps
from segcore.io import read_table
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    class_weights = read_table(smk.input.class_weights)["weight"].to_numpy("float32")
    settings = smk.params.weights
    count = write_weight_maps(
        smk.input.samples, smk.output.weights, class_weights,
        w0=settings["w0"], sigma=settings["sigma"], background_only=settings["background_only"],
    )  # fmt: skip
    log.info("wrote %d weight maps", count)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
