"""Atomic writers: nothing half-written survives a failure, and results get ordinary permissions."""

import os
import stat

import numpy as np
import pytest

from segcore.io import atomic_dir, atomic_path, read_tiff, write_tiff


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_failed_folder_leaves_the_previous_folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a").write_text("kept")
    with pytest.raises(RuntimeError):
        with atomic_dir(folder) as tmp:
            (tmp / "b").write_text("new")
            raise RuntimeError("killed")
    assert sorted(p.name for p in folder.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_outputs_get_the_permissions_of_a_plain_write(tmp_path):
    umask = os.umask(0o022)
    try:
        write_tiff(tmp_path / "x.tif", np.arange(6, dtype=np.uint8).reshape(2, 3))
        with atomic_dir(tmp_path / "folder"):
            pass
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.tif").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    assert np.array_equal(read_tiff(tmp_path / "x.tif"), np.arange(6, dtype=np.uint8).reshape(2, 3))


def test_a_rewrite_removes_what_a_killed_write_left(tmp_path):
    """kill -9 runs no cleanup: a temporary file and folder of earlier writes stay until the same outputs
    are written again; then they go, and nothing else in the folder is touched."""
    stale_file = tmp_path / ".image.tif.tmp-k1ll3d.tif"
    stale_file.write_bytes(b"II*\x00trunc")  # an 8-byte truncated TIFF, as a killed writer leaves it
    stale_dir = tmp_path / ".shard-1.tmp-k1ll3d"
    (stale_dir / "masks").mkdir(parents=True)
    (stale_dir / "masks" / "0001.tif").write_bytes(b"partial")
    stale_old = tmp_path / ".shard-1.tmp-old"
    stale_old.mkdir()
    neighbours = [tmp_path / ".image.tif.json", tmp_path / "image.tif.tmp-notes.txt", tmp_path / ".shard-10.tmp-x"]
    for path in neighbours:
        path.write_text("not ours")

    write_tiff(tmp_path / "image.tif", np.zeros((4, 4), np.uint8))
    with atomic_dir(tmp_path / "shard-1") as folder:
        (folder / "done.txt").write_text("ok")

    assert not stale_file.exists() and not stale_dir.exists() and not stale_old.exists()
    assert all(path.read_text() == "not ours" for path in neighbours)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["image.tif", "shard-1", *(path.name for path in neighbours)]
    )
