"""Safe archive extraction: archives built here with tarfile / zipfile, good ones and hostile ones."""

import io
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from segcore.data.archives import extract_archive, unpacked_folder
from segcore.io import InputError

GOOD_FILES = {"data/a.txt": b"alpha", "data/sub/b.bin": bytes(range(256)), "top.txt": b"top"}


def tar_with(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> Path:
    """Write a tar whose entries are (name, bytes) regular files or prepared TarInfo headers."""
    with tarfile.open(path, mode) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def link_info(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def zip_with(path: Path, files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in files.items():
            zipped.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16  # how Info-ZIP marks a symlink
            zipped.writestr(info, target)
    return path


def assert_nothing_left(tmp_path: Path, archive: Path) -> None:
    """Only the archive itself remains: no target folder and no temporary folder beside it."""
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".zip"])
def test_good_archives_extract_every_file(tmp_path, suffix):
    archive = tmp_path / f"good{suffix}"
    if suffix == ".zip":
        zip_with(archive, GOOD_FILES)
    else:
        tar_with(archive, list(GOOD_FILES.items()), "w" if suffix == ".tar" else "w:gz")
    target = tmp_path / "out"
    extracted = extract_archive(archive, target)
    assert extracted == sorted(target / name for name in GOOD_FILES)
    for name, data in GOOD_FILES.items():
        assert (target / name).read_bytes() == data


def test_an_existing_target_is_replaced_whole(tmp_path):
    archive = zip_with(tmp_path / "a.zip", {"new.txt": b"new"})
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    extract_archive(archive, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_links_inside_the_target_are_kept_as_links(tmp_path):
    entries = [
        ("data/a.txt", b"alpha"),
        link_info("data/alias", "a.txt"),
        link_info("hard", "data/a.txt", tarfile.LNKTYPE),
    ]
    archive = tar_with(tmp_path / "links.tar", entries)
    target = tmp_path / "out"
    extract_archive(archive, target)
    assert (target / "data" / "alias").is_symlink() and (target / "data" / "alias").read_bytes() == b"alpha"
    assert (target / "hard").read_bytes() == b"alpha"
    zipped = zip_with(tmp_path / "links.zip", {"d/a.txt": b"alpha"}, {"d/alias": "a.txt"})
    extract_archive(zipped, tmp_path / "zout")
    assert (tmp_path / "zout" / "d" / "alias").is_symlink()
    assert (tmp_path / "zout" / "d" / "alias").read_bytes() == b"alpha"


HOSTILE_TARS = {
    "dotdot": ([("ok.txt", b"x"), ("data/../../evil.txt", b"x")], "'data/../../evil.txt' escapes"),
    "absolute": ([("ok.txt", b"x"), ("/tmp/evil.txt", b"x")], "'/tmp/evil.txt' has an absolute path"),
    "symlink_out": ([("ok.txt", b"x"), link_info("data/link", "../../etc")], "'data/link' links to '../../"),
    "symlink_abs": ([link_info("link", "/etc/passwd")], "'link' links to absolute path '/etc/passwd'"),
    "hardlink_out": ([link_info("hard", "../out.txt", tarfile.LNKTYPE)], "'hard' links to '../out.txt'"),
    "through_link": ([link_info("sub", "."), ("sub/x.txt", b"x")], "'sub/x.txt' lies beneath link 'sub'"),
    # Lexically "a/.." is the root; on disk, with a -> ".", it is the folder above.
    "target_through_link": ([link_info("a", "."), link_info("b", "a/..")], "'b' links to 'a/..', through"),
    "name_through_link": ([link_info("a", "."), ("a/../up.txt", b"x")], "'a/../up.txt' lies beneath link"),
    "duplicate": ([("x.txt", b"1"), link_info("x.txt", "y")], "'x.txt' appears more than once"),
    "device": ([link_info("null", "", tarfile.CHRTYPE)], "'null' is a device or FIFO"),
    "fifo": ([link_info("pipe", "", tarfile.FIFOTYPE)], "'pipe' is a device or FIFO"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
def test_hostile_tar_members_are_refused_before_anything_is_written(tmp_path, case):
    entries, message = HOSTILE_TARS[case]
    archive = tar_with(tmp_path / f"{case}.tar.gz", entries, "w:gz")
    with pytest.raises(InputError, match=re.escape(message)) as error:
        extract_archive(archive, tmp_path / "out")
    assert str(archive) in str(error.value)
    assert_nothing_left(tmp_path, archive)


@pytest.mark.parametrize(
    ("files", "symlinks", "message"),
    [
        ({"ok.txt": b"x", "../up.txt": b"x"}, {}, "'../up.txt' escapes"),
        ({"ok.txt": b"x", "/abs.txt": b"x"}, {}, "'/abs.txt' has an absolute path"),
        ({"ok.txt": b"x"}, {"link": "../../etc/passwd"}, "'link' links to '../../etc/passwd'"),
        ({"ok.txt": b"x"}, {"link": "/etc/passwd"}, "'link' links to absolute path"),
    ],
)
def test_hostile_zip_members_are_refused(tmp_path, files, symlinks, message):
    archive = zip_with(tmp_path / "bad.zip", files, symlinks)
    with pytest.raises(InputError, match=re.escape(message)):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_left(tmp_path, archive)


def test_a_refusal_keeps_the_previous_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("kept")
    archive = tar_with(tmp_path / "bad.tar", [("fine.txt", b"x"), ("../evil", b"x")])
    with pytest.raises(InputError, match="escapes"):
        extract_archive(archive, target)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert not (tmp_path / "evil").exists()


def test_corrupt_and_unknown_archives(tmp_path):
    good = tar_with(tmp_path / "good.tar.gz", list(GOOD_FILES.items()), "w:gz")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match=f"{truncated}: cannot extract archive"):
        extract_archive(truncated, tmp_path / "out")
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"not a zip at all")
    with pytest.raises(InputError, match=f"{not_zip}: cannot extract archive"):
        extract_archive(not_zip, tmp_path / "out")
    with pytest.raises(InputError, match="unsupported archive type"):
        extract_archive(tmp_path / "data.rar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("archive", "folder"),
    [
        ("x.zip", "x"),
        ("data/x.tar", "data/x"),
        ("data/x.tar.gz", "data/x"),  # the longest suffix, not ".tar" of "x.tar" + ".gz"
        ("x.tgz", "x"),
        ("v1.0.tar.bz2", "v1.0"),
        ("X.TAR.XZ", "X"),
    ],
)
def test_unpacked_folder_drops_the_archive_suffix(archive, folder):
    assert unpacked_folder(archive) == folder


@pytest.mark.parametrize("name", ["x.gz", ".zip", "x.rar"])
def test_unpacked_folder_needs_a_name_and_an_archive_suffix(name):
    with pytest.raises(ValueError, match="has no archive suffix"):
        unpacked_folder(name)
