"""Downloads against a real HTTP server on 127.0.0.1 serving the real ISBI 2012 PNGs (zhixuhao layout)."""

import hashlib
import io
import socket
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers_http import FileServer
from skimage import io as skio

from segcore.config_schema import with_defaults
from segcore.data.canonical import read_manifest, read_sample
from segcore.data.download import download_file, download_files, fetch_dataset, join_url
from segcore.data.importers import import_dataset
from segcore.io import InputError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ISBI = SHARED / "data" / "isbi2012"
LAYOUT = "data/membrane/train"  # github.com/zhixuhao/unet keeps ISBI 2012 as train/{image,label}/N.png
FAST = {"retries": 4, "backoff_s": 0.01, "timeout_s": 5}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def shared_sums(isbi: Path) -> dict[str, str]:
    """Relative path -> digest from ../shared's ``sha256sum`` listing (lines ``<digest>  ./<path>``)."""
    sums = {}
    for line in (isbi / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.removeprefix("./")] = digest
    return sums


@pytest.fixture(scope="module")
def isbi() -> Path:
    if not (ISBI / "SHA256SUMS").is_file():
        pytest.skip(f"the shared ISBI 2012 data is not at {ISBI} (checkout without ../shared)")
    return ISBI


@pytest.fixture(scope="module")
def zhixuhao(isbi):
    """(routes, checksums) of the 60 train PNGs under the zhixuhao paths; checksums from SHA256SUMS."""
    sums = shared_sums(isbi)
    routes, checksums = {}, {}
    for kind in ("image", "label"):
        for n in range(30):
            relative = f"{LAYOUT}/{kind}/{n}.png"
            routes["/" + relative] = isbi / "png" / "train" / kind / f"{n}.png"
            checksums[relative] = sums[f"png/train/{kind}/{n}.png"]
    return routes, checksums


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_the_shared_listing_matches_the_files(isbi):
    sums = shared_sums(isbi)
    assert len(sums) == 93  # 30 test + 60 train PNGs + 3 TIFF stacks
    for relative in ("png/train/label/7.png", "train-labels.tif"):
        assert sums[relative] == sha256_bytes((isbi / relative).read_bytes())


def test_join_url():
    assert join_url("http://h/a/", "./b/c d.png") == "http://h/a/b/c%20d.png"
    assert join_url("http://h/a", "b/1.png") == "http://h/a/b/1.png"
    assert join_url("file:///data", "x#1.png") == "file:///data/x%231.png"
    for bad in ("../x.png", "/etc/passwd", "a/../../x"):
        with pytest.raises(InputError, match="relative and free of"):
            join_url("http://h/", bad)


def test_download_a_few_verifies_bytes_and_keeps_a_verified_file(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    with FileServer(routes) as server:
        for relative in (f"{LAYOUT}/image/0.png", f"{LAYOUT}/label/0.png", f"{LAYOUT}/label/29.png"):
            dest = download_file(server.url("/" + relative), tmp_path / relative, checksums[relative], **FAST)
            assert dest.read_bytes() == routes["/" + relative].read_bytes()
        before = dest.stat().st_mtime_ns
        download_file(server.url(f"/{LAYOUT}/label/29.png"), dest, checksums[f"{LAYOUT}/label/29.png"], **FAST)
        assert server.requests[f"/{LAYOUT}/label/29.png"] == 1  # the second call fetched nothing
    assert dest.stat().st_mtime_ns == before
    assert leftovers(dest.parent) == ["0.png", "29.png"]  # no temporary files beside them


def test_a_stale_destination_is_replaced_or_removed(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    relative = f"{LAYOUT}/image/3.png"
    dest = tmp_path / "3.png"
    dest.write_bytes(b"stale")
    with FileServer(routes) as server:
        download_file(server.url("/" + relative), dest, checksums[relative], **FAST)
        assert sha256_bytes(dest.read_bytes()) == checksums[relative]
        dest.write_bytes(b"stale")
        with pytest.raises(InputError, match="404"):
            download_file(server.url("/gone.png"), dest, checksums[relative], **FAST)
    assert leftovers(tmp_path) == []  # the stale file did not survive the failed download


def test_download_all_60_and_import_with_value_table(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    with FileServer(routes) as server:
        paths = download_files(server.base_url + "/", checksums, tmp_path / "raw", **FAST)
    assert len(paths) == 60 and all(
        sha256_bytes(p.read_bytes()) == checksums[p.relative_to(tmp_path / "raw").as_posix()] for p in paths
    )
    source = {
        "format": "folder",
        "images": f"{LAYOUT}/image",
        "masks": f"{LAYOUT}/label",
        "encoding": {"type": "value_table", "values": {0: 0, 255: 1}},
    }
    settings = with_defaults("dataset.import", source)
    manifest = import_dataset(settings, tmp_path / "raw", tmp_path / "canonical", ["membrane", "cell"])
    assert list(manifest["id"]) == [str(n) for n in range(30)]
    assert (manifest[["height", "width", "channels"]] == [512, 512, 1]).all().all()
    assert list(read_manifest(tmp_path / "canonical")["id"]) == list(manifest["id"])
    for n in (0, 17):
        sample = read_sample(tmp_path / "canonical", str(n))
        label = skio.imread(routes[f"/{LAYOUT}/label/{n}.png"])
        np.testing.assert_array_equal(sample.mask, (label == 255).astype(np.uint8))  # 255 = cell = class 1
        np.testing.assert_array_equal(sample.image, skio.imread(routes[f"/{LAYOUT}/image/{n}.png"]))
        fraction = manifest.loc[manifest["id"] == str(n), "foreground_fraction"].item()
        assert fraction == pytest.approx(np.mean(label == 255), abs=1e-6)


def test_checksum_mismatch_names_both_digests_and_leaves_nothing(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    relative = f"{LAYOUT}/label/5.png"
    served = bytearray(routes["/" + relative].read_bytes())
    served[0] ^= 0xFF
    with FileServer(routes, mode="wrong_bytes") as server:
        url = server.url("/" + relative)
        with pytest.raises(InputError) as error:
            download_file(url, tmp_path / "5.png", checksums[relative], **FAST)
        assert server.requests["/" + relative] == 1  # a mismatch is not retried
    message = str(error.value)
    assert url in message and checksums[relative] in message and sha256_bytes(bytes(served)) in message
    assert leftovers(tmp_path) == []


def test_a_connection_dropped_once_is_retried(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    relative = f"{LAYOUT}/image/9.png"
    with FileServer(routes, mode="drop_once") as server:
        dest = download_file(server.url("/" + relative), tmp_path / "9.png", checksums[relative], **FAST)
        assert server.requests["/" + relative] == 2
    assert dest.read_bytes() == routes["/" + relative].read_bytes()
    assert leftovers(tmp_path) == ["9.png"]


def test_a_connection_always_dropped_fails_clearly_without_partial_file(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    relative = f"{LAYOUT}/image/9.png"
    with FileServer(routes, mode="drop_always") as server:
        url = server.url("/" + relative)
        cut_short = "after 3 attempts; last error: .*(incomplete body|Connection)"
        with pytest.raises(InputError, match=cut_short) as error:
            download_file(url, tmp_path / "9.png", checksums[relative], **{**FAST, "retries": 2})
        assert server.requests["/" + relative] == 3
    assert url in str(error.value)
    assert leftovers(tmp_path) == []


def test_a_stalled_body_times_out_and_is_retried(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    relative = f"{LAYOUT}/image/1.png"
    with FileServer(routes, mode="stall") as server:
        with pytest.raises(InputError, match="after 2 attempts; last error: .*timed out"):
            download_file(
                server.url("/" + relative),
                tmp_path / "1.png",
                checksums[relative],
                retries=1,
                backoff_s=0.01,
                timeout_s=0.3,
            )
        assert server.requests["/" + relative] == 2
    assert leftovers(tmp_path) == []


def test_a_server_error_is_retried(zhixuhao, tmp_path):
    routes, checksums = zhixuhao
    relative = f"{LAYOUT}/label/11.png"
    with FileServer(routes, mode="busy_once") as server:
        dest = download_file(server.url("/" + relative), tmp_path / "11.png", checksums[relative], **FAST)
        assert server.requests["/" + relative] == 2
    assert dest.read_bytes() == routes["/" + relative].read_bytes()


def test_404_is_not_retried(tmp_path):
    with FileServer({}) as server:
        url = server.url("/missing.png")
        with pytest.raises(InputError, match="404") as error:
            download_file(url, tmp_path / "missing.png", "0" * 64, **FAST)
        assert server.requests["/missing.png"] == 1
    assert url in str(error.value)
    assert leftovers(tmp_path) == []


def test_refused_connection_is_retried_then_named(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.png"
    with pytest.raises(InputError, match=f"{url}: download failed after 2 attempts; last error: URLError"):
        download_file(url, tmp_path / "x.png", "0" * 64, **{**FAST, "retries": 1})
    assert leftovers(tmp_path) == []


def test_file_url(isbi, tmp_path):
    source = isbi / "png" / "train" / "label" / "2.png"
    digest = shared_sums(isbi)["png/train/label/2.png"]
    dest = download_file(source.as_uri(), tmp_path / "sub" / "2.png", digest, **FAST)
    assert dest.read_bytes() == source.read_bytes()
    missing = (tmp_path / "absent.png").as_uri()
    with pytest.raises(InputError, match=f"{missing}: download failed: .*No such file"):
        download_file(missing, tmp_path / "absent-copy.png", digest, **FAST)
    assert leftovers(tmp_path) == ["sub"]


# --- fetch_dataset: the dataset.download section -------------------------------------------------------


def archive_mirror(folder: Path) -> dict[str, str]:
    """A mirror folder with a plain file, a zip and a tar.gz; returns relative path -> sha256."""
    files = {"notes/readme.txt": b"hello", "a/b.txt": b"inside zip", "c.txt": b"inside tar"}
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "readme.txt").write_bytes(files["notes/readme.txt"])
    with zipfile.ZipFile(folder / "set-1.zip", "w") as zipped:
        zipped.writestr("a/b.txt", files["a/b.txt"])
    with tarfile.open(folder / "set-2.TAR.GZ", "w:gz") as tar:
        info = tarfile.TarInfo("c.txt")
        info.size = len(files["c.txt"])
        tar.addfile(info, io.BytesIO(files["c.txt"]))
    names = ("notes/readme.txt", "set-1.zip", "set-2.TAR.GZ")
    return {name: sha256_bytes((folder / name).read_bytes()) for name in names}


def test_fetch_verifies_every_file_and_unpacks_the_listed_archives(tmp_path):
    checksums = archive_mirror(tmp_path / "mirror")
    settings = with_defaults(
        "dataset.download",
        {
            # base_url names a server that is not there: the mirror must replace it
            "base_url": "http://127.0.0.1:9/nowhere/",
            "mirror_url": (tmp_path / "mirror").as_uri(),
            "files": checksums,
            "extract": ["set-1.zip", "set-2.TAR.GZ"],
            "retries": 0,
        },
    )
    dest = tmp_path / "download"
    paths = fetch_dataset(settings, dest)
    assert paths == [dest / name for name in checksums]
    assert (dest / "set-1" / "a" / "b.txt").read_bytes() == b"inside zip"
    assert (dest / "set-2" / "c.txt").read_bytes() == b"inside tar"
    assert (dest / "notes" / "readme.txt").read_bytes() == b"hello"
    assert leftovers(tmp_path) == ["download", "mirror"]


def test_fetch_refuses_an_archive_not_listed_in_files(tmp_path):
    checksums = archive_mirror(tmp_path / "mirror")
    settings = with_defaults(
        "dataset.download",
        {"base_url": (tmp_path / "mirror").as_uri(), "files": checksums, "extract": ["other.zip"]},
    )
    message = "config key dataset.download.extract: 'other.zip' is not listed in dataset.download.files"
    with pytest.raises(InputError, match=f"^{message}$"):
        fetch_dataset(settings, tmp_path / "download")
    assert not (tmp_path / "download").exists()


def test_a_failed_fetch_keeps_the_previous_folder_and_no_partial_one(tmp_path):
    checksums = archive_mirror(tmp_path / "mirror")
    dest = tmp_path / "download"
    dest.mkdir()
    (dest / "old.txt").write_text("kept")
    bad = {**checksums, "notes/readme.txt": "0" * 64}
    settings = with_defaults("dataset.download", {"base_url": (tmp_path / "mirror").as_uri(), "files": bad})
    with pytest.raises(InputError, match="readme.txt: sha256 mismatch"):
        fetch_dataset({**settings, "retries": 0}, dest)
    assert leftovers(tmp_path) == ["download", "mirror"] and leftovers(dest) == ["old.txt"]
