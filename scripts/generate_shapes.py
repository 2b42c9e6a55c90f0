"""Rule generate_shapes: the embedded default dataset, generated from the seed into the canonical folder."""

from segcore.data.canonical import write_canonical
from segcore.data.shapes import generate_sample
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    shapes = smk.params.shapes
    samples = (
        generate_sample(smk.params.seed, index, size=shapes["size"], max_objects=shapes["max_objects"])
        for index in range(shapes["count"])
    )
    manifest = write_canonical(smk.output.data, samples, num_classes=len(smk.params.class_names))
    log.info("generated %d shapes images of %dx%d", len(manifest), shapes["size"], shapes["size"])


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
