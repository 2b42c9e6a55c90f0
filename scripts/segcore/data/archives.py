"""Safe extraction of downloaded .zip and .tar(.gz) archives.

Every member is checked before anything is written: absolute names, names that climb out with ``..``,
links whose target lies outside the extraction folder, members reached through a link, and device or FIFO
files are refused with an :class:`InputError` naming the member. Extraction then goes into a temporary
folder that is renamed into place (:func:`segcore.io.atomic_dir`), so a refusal or a corrupt archive
leaves nothing behind. Tar archives are additionally extracted with the standard library's ``"data"``
filter, a second line of defence that applies the same rules.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from segcore.io import InputError, atomic_dir

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
ZIP_SUFFIXES = (".zip",)
# What a truncated or corrupt archive raises while it is listed or read.
ARCHIVE_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


@dataclass(frozen=True)
class ArchiveMember:
    """One archive entry as stored: ``name`` unchecked; ``link_target`` for links only."""

    name: str
    kind: str  # "file", "dir", "symlink" or "hardlink"
    link_target: str = ""


def _tar_members(tar: tarfile.TarFile, archive: Path) -> list[ArchiveMember]:
    members = []
    for info in tar.getmembers():
        if info.isdev():  # character/block devices and FIFOs
            raise InputError(f"{archive}: member {info.name!r} is a device or FIFO file")
        if info.issym():
            members.append(ArchiveMember(info.name, "symlink", info.linkname))
        elif info.islnk():
            members.append(ArchiveMember(info.name, "hardlink", info.linkname))
        elif info.isdir():
            members.append(ArchiveMember(info.name, "dir"))
        elif info.isfile():
            members.append(ArchiveMember(info.name, "file"))
        else:
            raise InputError(f"{archive}: member {info.name!r} has an unsupported type {info.type!r}")
    return members


def _zip_members(zipped: zipfile.ZipFile, archive: Path) -> list[ArchiveMember]:
    members = []
    for info in zipped.infolist():
        mode = info.external_attr >> 16  # Unix mode bits, 0 when the zip was made elsewhere
        if stat.S_ISLNK(mode):
            target = zipped.read(info).decode("utf-8", errors="surrogateescape")
            members.append(ArchiveMember(info.filename, "symlink", target))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise InputError(f"{archive}: member {info.filename!r} is a device, FIFO or socket file")
        elif info.is_dir():
            members.append(ArchiveMember(info.filename, "dir"))
        else:
            members.append(ArchiveMember(info.filename, "file"))
    return members


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":")  # POSIX, UNC or drive


def _walk(path: str, link_names: set[str]) -> tuple[str | None, str | None]:
    """Resolve relative ``path`` step by step from the archive root, as the file system would.

    Returns (the normalised path, or None if a ``..`` climbs above the root; the first link member the
    path continues through, or None). Lexical normalisation alone is not enough: ``a/..`` is ``.`` on
    paper but the parent of the target when ``a`` is a symlink to ``.``.
    """
    parts = [part for part in path.split("/") if part not in ("", ".")]
    stack: list[str] = []
    for index, part in enumerate(parts):
        if part == "..":
            if not stack:
                return None, None
            stack.pop()
        else:
            stack.append(part)
        if index < len(parts) - 1 and "/".join(stack) in link_names:
            return "/".join(stack), "/".join(stack)
    return "/".join(stack), None


def check_members(members: list[ArchiveMember], archive: Path) -> list[str]:
    """The normalised name of each member; InputError naming the first unsafe one.

    Refused: absolute names, names climbing out with ``..``, names continuing through a link member,
    links whose target is absolute, climbs out or continues through a link, and one name used twice for
    anything but a folder.
    """
    link_names = {posixpath.normpath(m.name) for m in members if m.kind in ("symlink", "hardlink")}
    names: list[str] = []
    kinds_by_name: dict[str, str] = {}
    for member in members:
        if _is_absolute(member.name):
            raise InputError(f"{archive}: member {member.name!r} has an absolute path")
        name, through_link = _walk(member.name, link_names)
        if name is None:
            raise InputError(f"{archive}: member {member.name!r} escapes the extraction folder with '..'")
        if through_link is not None:
            raise InputError(f"{archive}: member {member.name!r} lies beneath link {through_link!r}")
        if member.kind in ("symlink", "hardlink"):
            if _is_absolute(member.link_target):
                raise InputError(f"{archive}: member {member.name!r} links to absolute path {member.link_target!r}")
            # A symlink target is relative to the link's folder, a hardlink target to the archive root.
            base = posixpath.dirname(name) if member.kind == "symlink" else ""
            target, through_link = _walk(posixpath.join(base, member.link_target), link_names)
            if target is None or through_link is not None:
                where = f"through link {through_link!r}" if through_link else "outside the extraction folder"
                raise InputError(f"{archive}: member {member.name!r} links to {member.link_target!r}, {where}")
        previous_kind = kinds_by_name.get(name)
        if previous_kind is not None and (previous_kind, member.kind) != ("dir", "dir"):
            raise InputError(f"{archive}: member {member.name!r} appears more than once")
        kinds_by_name[name] = member.kind
        names.append(name)
    return names


def unpacked_folder(archive: str) -> str:
    """The folder an archive unpacks into beside itself: its relative path without the archive suffix.

    ``"data/x.tar.gz"`` -> ``"data/x"`` (the longest matching suffix, case-insensitive). config/schema.yaml
    admits only such names in ``dataset.download.extract``; any other raises ValueError.
    """
    for suffix in sorted(TAR_SUFFIXES + ZIP_SUFFIXES, key=len, reverse=True):  # ".tar.gz" before ".tar"
        if archive.lower().endswith(suffix) and len(archive) > len(suffix):
            return archive[: -len(suffix)]
    raise ValueError(f"{archive!r} has no archive suffix ({', '.join(ZIP_SUFFIXES + TAR_SUFFIXES)})")


def _archive_kind(archive: Path, shown: Path) -> str:
    name = archive.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    raise InputError(f"{shown}: unsupported archive type (expected one of {', '.join(ZIP_SUFFIXES + TAR_SUFFIXES)})")


def _extract_zip(zipped: zipfile.ZipFile, members: list[ArchiveMember], names: list[str], folder: Path) -> None:
    """Write checked zip ``members`` at their normalised ``names`` under ``folder``.

    Symlinks become real symlinks rather than text files holding the target, as ``zipfile`` would write.
    """
    for info, member, name in zip(zipped.infolist(), members, names):
        if not name:
            continue
        path = folder / name
        if member.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if member.kind == "symlink":
            os.symlink(member.link_target, path)
        else:
            with zipped.open(info) as source, open(path, "wb") as out:
                shutil.copyfileobj(source, out)


def extract_archive(
    archive: str | os.PathLike, target_dir: str | os.PathLike, *, label: str | None = None
) -> list[Path]:
    """Extract a .zip, .tar, .tar.gz/.tgz, .tar.bz2 or .tar.xz ``archive`` into ``target_dir``, atomically.

    ``target_dir`` is replaced as a whole once extraction has succeeded (an existing folder is swapped
    out, not merged). Returns the extracted files and links (not folders) under ``target_dir``, sorted.
    Raises :class:`InputError` naming the archive (and the member, for a refused one) for an unknown
    suffix, a corrupt or truncated archive, or any unsafe member; ``target_dir`` is then left as it was.
    ``label`` names the archive in messages instead of its path (a download still in a temporary folder is
    named by its config entry).
    """
    source = Path(archive)
    shown = Path(label) if label else source  # only ever formatted into messages
    kind = _archive_kind(source, shown)
    try:
        with atomic_dir(target_dir) as tmp:
            if kind == "zip":
                with zipfile.ZipFile(source) as zipped:
                    members = _zip_members(zipped, shown)
                    names = check_members(members, shown)
                    _extract_zip(zipped, members, names, tmp)
            else:
                with tarfile.open(source, "r:*") as tar:
                    members = _tar_members(tar, shown)
                    names = check_members(members, shown)
                    tar.extractall(tmp, filter="data")
    except InputError:
        raise
    except ARCHIVE_READ_ERRORS as error:
        raise InputError(
            f"{shown}: cannot extract archive: it is truncated or corrupt ({type(error).__name__}: {error})"
        ) from error
    final = Path(target_dir)
    return sorted(final / name for member, name in zip(members, names) if member.kind != "dir" and name)
