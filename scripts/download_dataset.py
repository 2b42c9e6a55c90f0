"""Rule download: fetch every file of ``dataset.download`` with its sha256 checked, then unpack archives.

Everything lands in a temporary folder that replaces the output folder only when every file has been
verified and every listed archive unpacked, so a failed download (checksum mismatch, server gone, unsafe
archive member) keeps nothing and the error message names the URL or file.
"""

from pathlib import Path

from segcore.data.archives import TAR_SUFFIXES, ZIP_SUFFIXES, extract_archive
from segcore.data.download import download_files
from segcore.io import InputError, atomic_dir
from segcore.rule_runner import log, run_rule


def unpacked_folder(archive: str) -> str:
    """Relative folder an archive of ``dataset.download.extract`` unpacks into: its name without suffix."""
    for suffix in sorted(TAR_SUFFIXES + ZIP_SUFFIXES, key=len, reverse=True):  # ".tar.gz" before ".gz"
        if archive.lower().endswith(suffix) and len(archive) > len(suffix):
            return archive[: -len(suffix)]
    raise InputError(
        f"config key dataset.download.extract: {archive!r} has no archive suffix "
        f"({', '.join(ZIP_SUFFIXES + TAR_SUFFIXES)})"
    )


def main(smk) -> None:
    settings = smk.params.download
    files = settings["files"]
    archives = {archive: unpacked_folder(archive) for archive in settings.get("extract", [])}
    for archive in archives:
        if archive not in files:
            raise InputError(
                f"config key dataset.download.extract: {archive!r} is not listed in dataset.download.files"
            )
    base_url = settings.get("mirror_url") or settings["base_url"]
    log.info("downloading %d files from %s", len(files), base_url)
    with atomic_dir(smk.output.files) as folder:
        paths = download_files(
            base_url, files, folder,
            retries=settings["retries"], backoff_s=settings["backoff_s"], timeout_s=settings["timeout_s"],
        )  # fmt: skip
        log.info("verified %d files, %d bytes", len(paths), sum(path.stat().st_size for path in paths))
        for archive, target in archives.items():
            members = extract_archive(folder / archive, folder / target)
            log.info("unpacked %s: %d files into %s", archive, len(members), Path(smk.output.files) / target)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
