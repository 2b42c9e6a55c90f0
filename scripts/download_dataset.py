"""Rule download: fetch every file of ``dataset.download`` with its sha256 checked, then unpack archives.

Everything lands in a temporary folder that replaces the output folder only when every file has been
verified and every listed archive unpacked, so a failed download (checksum mismatch, server gone, unsafe
archive member) keeps nothing and the error message names the URL or file (segcore.data.download).
"""

from segcore.data.download import fetch_dataset
from segcore.rule_runner import run_rule


def main(smk) -> None:
    fetch_dataset(smk.params.download, smk.output.files)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
