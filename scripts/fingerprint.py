"""Rule fingerprint: the canonical dataset folder and its split -> fingerprint.json
(:func:`segcore.plan.fingerprint.dataset_fingerprint`: sizes, channels, dtype, intensity statistics of the
train and val images, class frequencies, objects)."""

from segcore.plan.fingerprint import dataset_fingerprint
from segcore.plan.plan import write_fingerprint
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    fingerprint = dataset_fingerprint(smk.input.data, smk.input.split, list(smk.params.class_names), smk.params.seed)
    write_fingerprint(smk.output.fingerprint, fingerprint)
    log.info(
        "%d images, %d channel(s) %s, sizes %s x %s; %d objects (%.1f %% touching)",
        fingerprint["images"], fingerprint["channels"], fingerprint["dtype"], fingerprint["size"]["height"],
        fingerprint["size"]["width"], fingerprint["objects"]["count"],
        100 * fingerprint["objects"]["touching_fraction"],
    )  # fmt: skip


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
