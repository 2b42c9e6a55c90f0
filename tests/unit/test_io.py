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
