"""Rule import_dataset: the downloaded or user-provided files -> the canonical folder results/<name>/data.

``dataset.import`` paths are relative to the download folder (source ``download``) or to the working
directory (source ``folder``). Any bad file stops the rule with one line naming it; nothing is written.
"""

from pathlib import Path

from segcore.data.importers import import_dataset
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    root = Path(smk.input.raw[0]) if smk.params.source == "download" else Path.cwd()
    manifest = import_dataset(smk.params.settings, root, Path(smk.output.data), smk.params.class_names)
    sizes = manifest.groupby(["height", "width"]).size()
    log.info(
        "imported %d samples from %s; sizes (height, width): %s; mean foreground fraction %.3f",
        len(manifest), root, sizes.to_dict(), manifest["foreground_fraction"].mean(),
    )  # fmt: skip


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
