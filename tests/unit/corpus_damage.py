"""The input corpus, part two: TIFF stacks and hyperstacks, truncated and corrupt files, files that are not
what their name says, and damaged archives. Cases register into :data:`corpus_cases.CASES`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tifffile
from corpus_cases import CASES, case, single
from corpus_files import (
    SHAPE,
    Setup,
    cut,
    flip_byte,
    labels,
    page_data_range,
    pixels,
    save_jpeg,
    save_png,
    save_tiff,
    stack_source,
    tar_bytes,
    zip_bytes,
)

from segcore.config_schema import with_defaults
from segcore.data.archives import extract_archive
from segcore.data.download import fetch_dataset

PAGES = 5

# --- stacks -------------------------------------------------------------------------------------------


def stack(root: Path, images: np.ndarray, masks: np.ndarray, image_options=None, mask_options=None, **source):
    """images.tif and labels.tif; the expected samples are ``images[i]`` / ``masks[i]`` with ids "i"."""
    save_tiff(root / "images.tif", images, **(image_options or {}))
    save_tiff(root / "labels.tif", masks, **(mask_options or {}))
    return stack_source(**source)


def stack_ok(root: Path, images, masks, image_options=None, mask_options=None, stored=None, **source) -> Setup:
    """:func:`stack` expecting the samples back; ``stored``: the image array as written, if not ``images``."""
    source = stack(root, images if stored is None else stored, masks, image_options, mask_options, **source)
    ids = [str(index) for index in range(len(images))]
    return Setup(source, images=dict(zip(ids, images)), masks=dict(zip(ids, masks)))


def page_stack(count: int = PAGES, channels: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([pixels((*SHAPE, *channels), seed=index) for index in range(count)])
    masks = np.stack([labels(seed=index + 10) for index in range(count)])
    return images, masks


MINISBLACK = {"photometric": "minisblack"}
HYPER = page_stack(6)  # 2 time points x 3 depths
HYPER_IJ = {"imagej": True, "metadata": {"axes": "TZYX"}}
HYPER_OME = {"ome": True, "metadata": {"axes": "TZYX"}}
SHAPE_TZ = (2, 3, *SHAPE)

CASES["stack-plain-pages"] = lambda root: stack_ok(root, *page_stack(), MINISBLACK, MINISBLACK)
CASES["stack-rgb-pages"] = lambda root: stack_ok(
    root, page_stack(channels=(3,))[0], page_stack()[1], {"photometric": "rgb"}, MINISBLACK
)
CASES["stack-single-page"] = lambda root: stack_ok(root, *page_stack(1))
CASES["stack-imagej-z-only"] = lambda root: stack_ok(
    root, *page_stack(3), {"imagej": True, "metadata": {"axes": "ZYX"}}, MINISBLACK
)
CASES["stack-imagej-tz-with-stack-axis-tz"] = lambda root: stack_ok(
    root, *HYPER, HYPER_IJ, MINISBLACK, stored=HYPER[0].reshape(SHAPE_TZ), stack_axis="TZ"
)
CASES["stack-ome-tz-with-stack-axis-tz"] = lambda root: stack_ok(
    root, *HYPER, HYPER_OME, MINISBLACK, stored=HYPER[0].reshape(SHAPE_TZ), stack_axis="TZ"
)
CASES["stack-ome-zt-samples-time-major"] = lambda root: stack_ok(
    root, *HYPER, {"ome": True, "metadata": {"axes": "ZTYX"}}, MINISBLACK,
    stored=HYPER[0].reshape(SHAPE_TZ).transpose(1, 0, 2, 3), stack_axis="TZ",
)  # fmt: skip


@case("stack-imagej-tz-without-stack-axis")
def _ambiguous(root: Path) -> Setup:
    source = stack(root, HYPER[0].reshape(SHAPE_TZ), HYPER[1], HYPER_IJ, MINISBLACK)
    return Setup(source, error=(str(root / "images.tif"), "T (time) 2, Z (depth) 3", "dataset.import.stack_axis"))


@case("stack-ome-tz-with-stack-axis-t-only")
def _leftover(root: Path) -> Setup:
    source = stack(root, HYPER[0].reshape(SHAPE_TZ), HYPER[1], HYPER_OME, MINISBLACK, stack_axis="T")
    return Setup(source, error=(str(root / "images.tif"), "axes Z also have more than one entry", "'TZ'"))


@case("stack-page-counts-differ")
def _counts(root: Path) -> Setup:
    images, masks = page_stack()
    source = stack(root, images, masks[:4], MINISBLACK, MINISBLACK)
    return Setup(source, error=(f"{root / 'images.tif'} has 5 pages", f"{root / 'labels.tif'} has 4 pages"))


@case("stack-given-a-png")
def _png_stack(root: Path) -> Setup:
    save_png(root / "images.png", pixels())
    save_tiff(root / "labels.tif", labels())
    return Setup(stack_source(images="images.png"), error=(str(root / "images.png"), "needs TIFF files"))


# --- truncated and corrupt files ----------------------------------------------------------------------


def damaged_image(root: Path, file: str, write, damage, *fragments: str) -> Setup:
    """A folder sample whose image is written by ``write(path)`` and then damaged by ``damage(path)``."""

    def writer(path: Path) -> tuple[str, ...]:
        write(path)
        damage(path)
        return fragments

    return single(root, writer, file)


PNG = ("a.png", lambda p: save_png(p, pixels((64, 64))))
for _fraction in (0.1, 0.5, 0.9):
    CASES[f"png-cut-at-{int(_fraction * 100)}pct"] = lambda root, f=_fraction: damaged_image(
        root, *PNG, lambda p: cut(p, f), "the PNG file is truncated or corrupt"
    )
for _name, _keep, _says in (
    ("png-cut-in-signature", 5, "is truncated: it holds only 5 bytes"),
    ("png-cut-in-header", 20, "truncated or corrupt"),
    ("png-cut-before-end-chunk", -12, "truncated or corrupt"),
):
    CASES[_name] = lambda root, keep=_keep, says=_says: damaged_image(
        root, *PNG, lambda p: cut(p, keep if keep > 0 else p.stat().st_size + keep), says
    )
CASES["png-flipped-byte-in-pixel-data"] = lambda root: damaged_image(
    root, *PNG, lambda p: flip_byte(p, p.stat().st_size // 2), "truncated or corrupt"
)
CASES["png-flipped-byte-in-header-chunk"] = lambda root: damaged_image(
    root, *PNG, lambda p: flip_byte(p, 18), "truncated or corrupt"
)
CASES["jpeg-cut-at-50pct"] = lambda root: damaged_image(
    root, "a.jpg", lambda p: save_jpeg(p, pixels((64, 64))), lambda p: cut(p, 0.5), "the JPEG file is truncated"
)
CASES["tiff-single-page-cut-at-50pct"] = lambda root: damaged_image(
    root, "a.tif", lambda p: save_tiff(p, pixels((64, 64))), lambda p: cut(p, 0.5), "page 0", "truncated"
)
CASES["tiff-zlib-flipped-byte"] = lambda root: damaged_image(
    root,
    "a.tif",
    lambda p: save_tiff(p, pixels((64, 64)), compression="zlib"),
    lambda p: flip_byte(p, sum(page_data_range(p, 0)) // 2),
    "page 0 is corrupt",
)


def save_page_by_page(path: Path, pages: np.ndarray) -> None:
    """A multi-page TIFF written one page at a time, each page's header before its data (as many tools do)."""
    with tifffile.TiffWriter(path) as writer:
        for page in pages:
            writer.write(page, photometric="minisblack", contiguous=False)


def damaged_stack(root: Path, damage, *fragments: str, options=None, page_by_page=False) -> Setup:
    """A 5-page image stack damaged by ``damage(path)``; the message must name it and ``fragments``."""
    source = stack(root, *page_stack(), options or MINISBLACK, MINISBLACK)
    if page_by_page:
        save_page_by_page(root / "images.tif", page_stack()[0])
    damage(root / "images.tif")
    return Setup(source, error=(str(root / "images.tif"), *fragments))


for _fraction in (0.1, 0.5, 0.9):
    CASES[f"stack-cut-at-{int(_fraction * 100)}pct"] = lambda root, f=_fraction: damaged_stack(
        root, lambda p: cut(p, f), "truncated"
    )
CASES["stack-cut-mid-page-3"] = lambda root: damaged_stack(
    root, lambda p: cut(p, sum(page_data_range(p, 3)) // 2), "page 3", "truncated", page_by_page=True
)
CASES["stack-contiguous-cut-mid-page-3"] = lambda root: damaged_stack(
    root, lambda p: cut(p, sum(page_data_range(p, 3)) // 2), "truncated"
)
CASES["stack-page-by-page-cut-last-byte"] = lambda root: damaged_stack(
    root, lambda p: cut(p, p.stat().st_size - 1), "page 4", "truncated", page_by_page=True
)


@case("stack-cut-in-unused-tail-still-imports")
def _unused_tail(root: Path) -> Setup:
    """tifffile leaves 16 unused bytes after its last header; cutting one loses nothing, so it imports."""
    setup = stack_ok(root, *page_stack(), MINISBLACK, MINISBLACK)
    cut(root / "images.tif", (root / "images.tif").stat().st_size - 1)
    return setup


CASES["stack-cut-to-signature"] = lambda root: damaged_stack(root, lambda p: cut(p, 4), "truncated or corrupt")
CASES["stack-zlib-page-2-corrupt"] = lambda root: damaged_stack(
    root,
    lambda p: flip_byte(p, sum(page_data_range(p, 2)) // 2),
    "page 2 is corrupt",
    options={**MINISBLACK, "compression": "zlib"},
)
CASES["stack-imagej-cut-at-50pct"] = lambda root: damaged_stack(
    root, lambda p: cut(p, 0.5), "truncated", options={"imagej": True}
)


@case("stack-label-stack-cut-mid-page-1")
def _labels_cut(root: Path) -> Setup:
    source = stack(root, *page_stack(), MINISBLACK, MINISBLACK)
    path = root / "labels.tif"
    cut(path, sum(page_data_range(path, 1)) // 2)
    return Setup(source, error=(str(path), "page 1", "truncated"))


# --- files that are not what they seem ----------------------------------------------------------------


def imposter(root: Path, file: str, content: bytes, *fragments: str) -> Setup:
    def writer(path: Path) -> tuple[str, ...]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return fragments

    return single(root, writer, file)


def _bytes_of(save, suffix: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"x{suffix}"
        save(path, pixels())
        return path.read_bytes()


IMPOSTERS = {
    "empty-png": ("a.png", lambda: b"", "is empty (0 bytes)"),
    "empty-tiff": ("a.tif", lambda: b"", "is empty (0 bytes)"),
    "text-named-png": ("a.png", lambda: b"hello world\n", "not an image of a supported format", "b'hello wo'"),
    "png-named-tif": ("a.tif", lambda: _bytes_of(save_png, ".png"), "is a PNG file but its name ends in .tif"),
    "tiff-named-png": ("a.png", lambda: _bytes_of(save_tiff, ".tif"), "is a TIFF file but its name ends in .png"),
    "jpeg-named-png": ("a.png", lambda: _bytes_of(save_jpeg, ".jpg"), "is a JPEG file but its name ends in .png"),
    "gif-named-png": ("a.png", lambda: b"GIF89a" + bytes(40), "is a GIF image"),
    "zip-named-tif": ("a.tif", lambda: zip_bytes({"a.png": b"x"}), "is a zip archive"),
}
for _name, (_file, _content, *_fragments) in IMPOSTERS.items():
    CASES[_name] = lambda root, file=_file, content=_content, fragments=tuple(_fragments): imposter(
        root, file, content(), *fragments
    )


# --- damaged archives ---------------------------------------------------------------------------------

MEMBERS = {"images/a.png": bytes(range(256)) * 64, "masks/a.png": bytes(range(255, -1, -1)) * 64}


def damaged_archive(root: Path, name: str, data: bytes) -> Setup:
    """extract_archive of a damaged archive, labelled as a download: the label is named, the path is not."""
    archive = root / "tmp-download-folder" / name
    archive.parent.mkdir()
    archive.write_bytes(data)
    label = f"downloaded archive {name} (dataset.download.extract)"

    def action(dest: Path) -> None:
        extract_archive(archive, dest, label=label)

    return Setup(None, error=(label, "truncated or corrupt"), absent=(str(archive),), action=action)


ARCHIVES = {
    "zip-cut-at-50pct": ("data.zip", lambda: zip_bytes(MEMBERS)[: len(zip_bytes(MEMBERS)) // 2]),
    "zip-cut-at-90pct": ("data.zip", lambda: zip_bytes(MEMBERS)[: len(zip_bytes(MEMBERS)) * 9 // 10]),
    "tar-gz-cut-at-50pct": ("data.tar.gz", lambda: tar_bytes(MEMBERS)[: len(tar_bytes(MEMBERS)) // 2]),
    "tar-cut-at-50pct": ("data.tar", lambda: tar_bytes(MEMBERS, "w")[: len(tar_bytes(MEMBERS, "w")) // 2]),
    "zip-that-is-text": ("data.zip", lambda: b"<html>Not Found</html>"),
}
for _name, (_file, _data) in ARCHIVES.items():
    CASES[_name] = lambda root, file=_file, data=_data: damaged_archive(root, file, data())


@case("download-truncated-zip-named-by-config-path")
def _download(root: Path) -> Setup:
    mirror = root / "mirror"
    mirror.mkdir()
    data = zip_bytes(MEMBERS)[:300]
    (mirror / "set.zip").write_bytes(data)
    settings = with_defaults(
        "dataset.download",
        {
            "base_url": mirror.as_uri(),
            "files": {"set.zip": hashlib.sha256(data).hexdigest()},
            "extract": ["set.zip"],
            "retries": 0,
        },
    )
    fragments = ("downloaded archive set.zip (dataset.download.extract)", "truncated or corrupt")
    return Setup(None, error=fragments, absent=(".canonical.",), action=lambda dest: fetch_dataset(settings, dest))
