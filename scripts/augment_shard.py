"""Rule augment: one shard of the training set, originals plus augmented copies, as a canonical folder."""

from collections.abc import Iterator

from segcore.augment.transforms import AugmentSettings, augment_sample
from segcore.data.canonical import Sample, read_sample, write_canonical
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.io import read_table
from segcore.rule_runner import log, run_rule


def training_samples(
    data_dir: str, ids: list[str], copies: int, seed: int, settings: AugmentSettings
) -> Iterator[Sample]:
    """Each original followed by its augmented copies 1..copies."""
    for sample_id in ids:
        original = read_sample(data_dir, sample_id)
        yield original
        for copy_index in range(1, copies + 1):
            yield augment_sample(original, seed, copy_index, settings)


def main(smk) -> None:
    augment = dict(smk.params.augment)
    copies = augment.pop("copies")
    ids = shard_ids(ids_of(read_table(smk.input.split), "train"), int(smk.wildcards.shard), smk.params.n_shards)
    samples = training_samples(smk.input.data, ids, copies, smk.params.seed, AugmentSettings(**augment))
    manifest = write_canonical(smk.output.samples, samples, num_classes=len(smk.params.class_names))
    log.info(
        "shard %s: %d originals, %d samples with %d copies each", smk.wildcards.shard, len(ids), len(manifest), copies
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
