"""Checksum-verified downloads over http(s):// and file:// with retries (standard library only).

A file is streamed to a temporary name beside its destination and hashed on the way; it is renamed into
place only when its SHA-256 matches, so the destination either holds the verified bytes or does not exist.
Transient failures (refused or reset connections, timeouts, a body shorter than its Content-Length) are
retried with exponential backoff; permanent ones (HTTP 4xx, a missing local file, a checksum mismatch) are
not, because repeating them cannot help. :func:`fetch_dataset` applies the ``dataset.download`` config
section: every file verified, then the listed archives unpacked, all in a folder that appears only whole.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from segcore.data.archives import extract_archive, unpacked_folder
from segcore.io import InputError, atomic_dir, atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# HTTP codes worth retrying: request timeout, rate limiting and every server-side (5xx) error.
RETRYABLE_HTTP_CODES = frozenset({408, 429})
PERMANENT_URL_REASONS = (FileNotFoundError, PermissionError, IsADirectoryError, ssl.SSLCertVerificationError)


class _TransientError(Exception):
    """A failure that a later attempt may not repeat (a cut-off body)."""


def sha256_of_file(path: str | os.PathLike) -> str:
    """Lower-case hex SHA-256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_retryable(error: BaseException) -> bool:
    """True for network hiccups; False for answers that a retry would only repeat."""
    if isinstance(error, urllib.error.HTTPError):  # must precede URLError, its base class
        return error.code >= 500 or error.code in RETRYABLE_HTTP_CODES
    if isinstance(error, urllib.error.URLError):
        # Only socket-level failures may pass; a malformed URL ("no host given"), a missing local file
        # (file:// wraps the OS error) or a rejected certificate would fail the same way again.
        return isinstance(error.reason, OSError) and not isinstance(error.reason, PERMANENT_URL_REASONS)
    if isinstance(error, http.client.InvalidURL):
        return False
    return isinstance(error, (_TransientError, http.client.HTTPException, ConnectionError, TimeoutError))


def _fetch_once(url: str, tmp: Path, timeout_s: float) -> str:
    """Stream ``url`` into ``tmp``; return the SHA-256 of the bytes; raise _TransientError if cut short."""
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as out:
        declared = response.headers.get("Content-Length")
        # http.client returns a short body without complaint when the peer closes early; count it ourselves.
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
    if declared is not None and declared.isdigit() and received != int(declared):
        raise _TransientError(f"incomplete body: received {received} of {declared} bytes")
    return digest.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str,
    *,
    retries: int,
    backoff_s: float,
    timeout_s: float,
) -> Path:
    """Download ``url`` to ``dest`` and verify its SHA-256; return ``dest`` as a Path.

    ``url`` is http://, https:// or file://; ``sha256`` is 64 hex digits (config/schema.yaml checks both in
    ``dataset.download``, and ``retries >= 0``, ``backoff_s >= 0``, ``timeout_s > 0``, with their defaults).
    If ``dest`` already holds a file with digest ``sha256`` it is
    kept and nothing is fetched; a file with another digest is deleted first. Transient failures are
    retried up to ``retries`` times (so at most ``retries + 1`` attempts), sleeping
    ``backoff_s * 2**attempt`` seconds before retry number ``attempt + 1``; ``timeout_s`` bounds each
    socket wait.

    Raises :class:`InputError` naming the URL on a digest mismatch (expected and actual digests in the
    message; never retried), an HTTP 4xx answer or a missing local file (not retried), or when every
    attempt failed (the last error in the message). In every error case no file is left at ``dest`` or
    beside it.
    """
    expected = sha256.lower()
    dest_path = Path(dest)
    if dest_path.is_file():
        if sha256_of_file(dest_path) == expected:
            return dest_path
        dest_path.unlink()  # stale or corrupt: never leave it for a later step to mistake as verified

    for attempt in range(retries + 1):
        try:
            with atomic_path(dest_path) as tmp:
                actual = _fetch_once(url, tmp, timeout_s)
                if actual != expected:
                    # Raised inside the block so atomic_path deletes the temporary file.
                    raise InputError(
                        f"{url}: sha256 mismatch: expected {expected}, got {actual}; the download was deleted"
                    )
            return dest_path
        except InputError:
            raise
        except Exception as error:  # classified below; anything unexpected propagates unchanged
            if isinstance(error, urllib.error.HTTPError):
                error.close()  # an HTTPError holds the open response
            if not _is_retryable(error):
                if isinstance(error, (urllib.error.URLError, http.client.HTTPException)):
                    raise InputError(f"{url}: download failed: {error}") from error
                raise
            if attempt == retries:
                raise InputError(
                    f"{url}: download failed after {retries + 1} attempts; last error: {type(error).__name__}: {error}"
                ) from error
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable: the loop returns or raises")


def _safe_relative(path_text: str, where: str) -> str:
    """``path_text`` as a normalised relative POSIX path; InputError (naming ``where``) if it could escape."""
    posix = PurePosixPath(path_text)
    parts = [part for part in posix.parts if part != "."]
    if posix.is_absolute() or ".." in parts or not parts:
        raise InputError(f"{where}: path {path_text!r} must be relative and free of '..'")
    return "/".join(parts)


def join_url(base_url: str, relative_path: str) -> str:
    """``base_url`` + ``/`` + ``relative_path`` with each path segment percent-encoded.

    Works for http(s):// and file:// bases with or without a trailing slash; ``./`` segments are dropped.
    Raises :class:`InputError` for an absolute ``relative_path`` or one containing ``..``.
    """
    relative = _safe_relative(relative_path, base_url)
    quoted = "/".join(urllib.parse.quote(segment, safe="") for segment in relative.split("/"))
    return f"{base_url.rstrip('/')}/{quoted}"


def download_files(
    base_url: str,
    checksums: Mapping[str, str],
    dest_dir: str | os.PathLike,
    **download_options,
) -> list[Path]:
    """Download every ``relative path -> sha256`` of ``checksums`` from under ``base_url`` into ``dest_dir``.

    Each file lands at ``dest_dir/<relative path>`` (see :func:`download_file` for verification, retries
    and ``download_options``). Files already present with the right digest are kept. Returns the paths in
    the order of ``checksums``; the first failure raises and leaves the files verified so far in place.
    """
    root = Path(dest_dir)
    paths = []
    for relative, digest in checksums.items():
        safe = _safe_relative(relative, str(root))
        paths.append(download_file(join_url(base_url, safe), root / safe, digest, **download_options))
    return paths


def fetch_dataset(settings: Mapping[str, Any], dest_dir: str | os.PathLike) -> list[Path]:
    """Every file of the ``dataset.download`` section into ``dest_dir``, verified, with archives unpacked.

    ``settings`` has the schema's defaults filled in. Files come from ``mirror_url`` when set, else from
    ``base_url``; each archive in ``extract`` is unpacked beside itself into a folder named without its
    suffix (:func:`segcore.data.archives.unpacked_folder`). Everything happens in a temporary folder that
    replaces ``dest_dir`` only once every file is verified and every archive unpacked, so a failure keeps
    nothing. Returns the downloaded files (not the unpacked ones).

    Raises :class:`InputError` naming ``dataset.download.extract`` for an archive that ``files`` does not
    list (a rule spanning two keys), and naming the URL or archive member for a failed download or an
    unsafe archive.
    """
    files = settings["files"]
    unlisted = [archive for archive in settings["extract"] if archive not in files]
    if unlisted:
        raise InputError(
            f"config key dataset.download.extract: {unlisted[0]!r} is not listed in dataset.download.files"
        )
    base_url = settings["mirror_url"] or settings["base_url"]
    log.info("downloading %d files from %s", len(files), base_url)
    with atomic_dir(dest_dir) as folder:
        paths = download_files(
            base_url, files, folder,
            retries=settings["retries"], backoff_s=settings["backoff_s"], timeout_s=settings["timeout_s"],
        )  # fmt: skip
        log.info("verified %d files, %d bytes", len(paths), sum(path.stat().st_size for path in paths))
        for archive in settings["extract"]:
            target = unpacked_folder(archive)
            label = f"downloaded archive {archive} (dataset.download.extract)"  # not the temporary folder
            members = extract_archive(folder / archive, folder / target, label=label)
            log.info("unpacked %s: %d files into %s", archive, len(members), Path(dest_dir) / target)
    return [Path(dest_dir) / path.relative_to(folder) for path in paths]
