"""The input corpus: image, mask and stack files as microscopes and annotation tools write them, and broken
ones. Each case writes its files under a root folder and returns a :class:`corpus_files.Setup` saying what
the import must give: canonical arrays equal pixel by pixel, or an InputError naming the file and cause.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from corpus_files import (
    SHAPE,
    Setup,
    folder_source,
    labels,
    pixels,
    save_jpeg,
    save_palette_png,
    save_png,
    save_png16_colour,
    save_tiff,
)
from PIL import Image

from segcore.data.channels import LUMINANCE

CASES: dict[str, Callable[[Path], Setup]] = {}
COLOURS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9), (200, 100, 50)]


def case(name: str):
    def register(build: Callable[[Path], Setup]) -> Callable[[Path], Setup]:
        assert name not in CASES, name
        CASES[name] = build
        return build

    return register


def written(save, array: np.ndarray, expected=None, **options):
    """A writer for :func:`single` and :func:`masked`: ``save(path, array, **options)``, then the expected
    result: ``expected`` (an array, or a tuple of message fragments), by default ``array`` itself."""

    def write(path: Path):
        save(path, array, **options)
        return array if expected is None else expected

    return write


def single(root: Path, write, file: str = "a.png", **source) -> Setup:
    """One sample "a": images/<file> written by ``write(path)``, which returns the expected canonical image
    or a tuple of message fragments (the file's path is added to them); masks/a.png holds label blocks."""
    path = root / "images" / file
    expected = write(path)
    mask = labels(expected.shape[:2] if isinstance(expected, np.ndarray) else SHAPE)
    save_png(root / "masks" / "a.png", mask)
    pattern = {"image_pattern": "{id}" + Path(file).suffix} if not file.endswith(".png") else {}
    if isinstance(expected, tuple):
        return Setup(folder_source(**pattern, **source), error=(str(path), *expected))
    return Setup(folder_source(**pattern, **source), images={"a": expected}, masks={"a": mask})


def register_all(table: dict[str, tuple[str, Callable]]) -> None:
    """One case per entry of ``table``: name -> (image file name, writer as :func:`single` takes it)."""
    for name, (file, write) in table.items():
        CASES[name] = lambda root, file=file, write=write: single(root, write, file)


# --- image formats that import ------------------------------------------------------------------------

GREY, GREY16, RGB, RGBA = pixels(), pixels(dtype=np.uint16), pixels((*SHAPE, 3)), pixels((*SHAPE, 4))
RGB16, RGBA16, PLANAR = pixels((*SHAPE, 3), np.uint16), pixels((*SHAPE, 4), np.uint16), pixels((3, *SHAPE))
PLANAR16, FLOAT32, FLOAT64 = pixels((3, *SHAPE), np.uint16), pixels(dtype=np.float32), pixels(dtype=np.float64)
FLOAT16, BLOCKS = pixels(dtype=np.float16), labels(classes=6)
GOOD_IMAGES = {
    # name: (file name, writer returning the expected canonical image)
    "png-grey-8bit": ("a.png", written(save_png, GREY)),
    "png-grey-16bit": ("a.png", written(save_png, GREY16)),
    "png-rgb-8bit": ("a.png", written(save_png, RGB)),
    "png-rgba-alpha-dropped": ("a.png", written(save_png, RGBA, RGBA[..., :3])),
    "png-grey-alpha-dropped": ("a.png", written(save_png, RGBA[..., :2], RGBA[..., 0])),
    "png-rgb-16bit": ("a.png", written(save_png16_colour, RGB16)),
    "png-rgba-16bit": ("a.png", written(save_png16_colour, RGBA16, RGBA16[..., :3])),
    "png-1bit": ("a.png", written(save_png, GREY > 127, (GREY > 127).astype(np.uint8) * 255)),
    "png-palette-image-gives-colours": (
        "a.png",
        written(save_palette_png, BLOCKS, np.array(COLOURS, np.uint8)[BLOCKS], colours=COLOURS),
    ),
    "tiff-grey-8bit": ("a.tif", written(save_tiff, GREY)),
    "tiff-grey-16bit-zlib": ("a.tif", written(save_tiff, GREY16, compression="zlib")),
    "tiff-float32": ("a.tif", written(save_tiff, FLOAT32)),
    "tiff-float64-as-float32": ("a.tif", written(save_tiff, FLOAT64, FLOAT64.astype(np.float32))),
    "tiff-float16-as-float32": ("a.tif", written(save_tiff, FLOAT16, FLOAT16.astype(np.float32))),
    "tiff-rgb-interleaved": ("a.tif", written(save_tiff, RGB, photometric="rgb")),
    "tiff-rgb-planar": (
        "a.tif",
        written(save_tiff, PLANAR, PLANAR.transpose(1, 2, 0), photometric="rgb", planarconfig="separate"),
    ),
    "tiff-rgb-planar-16bit": (
        "a.tif",
        written(save_tiff, PLANAR16, PLANAR16.transpose(1, 2, 0), photometric="rgb", planarconfig="separate"),
    ),
    "tiff-bigtiff": ("a.tif", written(save_tiff, GREY, bigtiff=True)),
    "tiff-big-endian": ("a.tif", written(save_tiff, GREY16, byteorder=">")),
    "tiff-tiled": ("a.tif", written(save_tiff, pixels((32, 32)), tile=(16, 16))),
    "tiff-imagej-single-image": ("a.tif", written(save_tiff, GREY, imagej=True)),
    "tiff-ome-single-image": ("a.tif", written(save_tiff, GREY, ome=True)),
    "tiff-minimum-side-8px": ("a.tif", written(save_tiff, pixels((8, 8)))),
}
register_all(GOOD_IMAGES)


@case("jpeg-grey-lossy-as-decoded")
def _jpeg(root: Path) -> Setup:
    def write(path: Path) -> np.ndarray:
        save_jpeg(path, pixels())
        return np.asarray(Image.open(path))  # lossy: the decoded values are the truth

    return single(root, write, "a.jpg")


# --- image values and shapes that stop the import -----------------------------------------------------


def with_values(value: float, count: int) -> np.ndarray:
    """FLOAT32 with its first ``count`` pixels set to ``value``."""
    image = FLOAT32.copy()
    image.ravel()[:count] = value
    return image


def non_finite(count: int) -> tuple[str]:
    return (f"{count} of {FLOAT32.size} pixel values are NaN or infinite",)


BAD_IMAGES = {
    "tiff-float-nan": ("a.tif", written(save_tiff, with_values(np.nan, 1), non_finite(1))),
    "tiff-float-inf": ("a.tif", written(save_tiff, with_values(np.inf, 3), non_finite(3))),
    "tiff-float-minus-inf": ("a.tif", written(save_tiff, with_values(-np.inf, 2), non_finite(2))),
    "tiff-float64-beyond-float32": ("a.tif", written(save_tiff, np.full(SHAPE, 1e300), ("do not fit the float32",))),
    "tiff-int16": ("a.tif", written(save_tiff, pixels(dtype=np.int16), ("dtype int16 is not supported",))),
    "tiff-uint32": ("a.tif", written(save_tiff, pixels(dtype=np.uint32), ("dtype uint32",))),
    "tiff-three-pages-in-folder": (
        "a.tif",
        written(save_tiff, PLANAR, ("holds 3 images", "use format tiff_stack"), photometric="minisblack"),
    ),
    "image-1x1": ("a.png", written(save_png, pixels((1, 1)), ("1x1 pixels", "at least 8 pixels"))),
    "image-7px-high": ("a.png", written(save_png, pixels((7, 100)), ("100x7 pixels",))),
}
register_all(BAD_IMAGES)


# --- masks and their encodings ------------------------------------------------------------------------


def masked(root: Path, mask_file: str, write_mask, encoding) -> Setup:
    """One sample "a": a grey PNG image and masks/<mask_file> written by ``write_mask(path)``, which returns
    the expected class mask or a tuple of message fragments (the mask's path is added to them)."""
    save_png(root / "images" / "a.png", GREY)
    path = root / "masks" / mask_file
    expected = write_mask(path)
    source = folder_source(encoding=encoding, mask_pattern="{id}" + Path(mask_file).suffix)
    if isinstance(expected, tuple):
        return Setup(source, error=(str(path), *expected))
    return Setup(source, images={"a": GREY}, masks={"a": expected})


LABELS = labels()
COLOUR_MASK = np.array(COLOURS, np.uint8)[LABELS]
VALUE_TABLE = {"type": "value_table", "values": {0: 0, 4: 1, 5: 2}}
COLOUR_TABLE = {"type": "colour_table", "colours": {"#000000": 0, "#ff0000": 1, "0,255,0": 2}}
MASKS = {
    # name: (mask file, writer returning the expected class mask or message fragments, encoding)
    "palette-mask-index-is-the-class": (
        "a.png", written(save_palette_png, LABELS, colours=COLOURS[3:]), "classes"),
    "palette-mask-value-table": (  # palette indices 3, 4, 5 are classes 0, 1, 2
        "a.png", written(save_palette_png, LABELS + 3, LABELS, colours=COLOURS),
        {"type": "value_table", "values": {3: 0, 4: 1, 5: 2}}),
    "palette-mask-colour-table": ("a.png", written(save_palette_png, LABELS, colours=COLOURS), COLOUR_TABLE),
    "palette-mask-index-beyond-classes": (
        "a.png", written(save_palette_png, LABELS + 3, ("mask value 5 is not a class id",), colours=COLOURS),
        "classes"),
    "palette-mask-index-not-in-value-table": (
        "a.png", written(save_palette_png, LABELS * 3, ("mask value 3 is not declared",), colours=COLOURS),
        VALUE_TABLE),
    "mask-16bit-value-table": (
        "a.png", written(save_png, LABELS.astype(np.uint16) * 30000, LABELS),
        {"type": "value_table", "values": {0: 0, 30000: 1, 60000: 2}}),
    "mask-grey-saved-as-rgb": ("a.png", written(save_png, np.repeat(LABELS[..., None], 3, 2), LABELS), "classes"),
    "mask-colour-with-classes-encoding": ("a.png", written(save_png, COLOUR_MASK, ("colour pixels",)), "classes"),
    "mask-rgb-colour-table": ("a.png", written(save_png, COLOUR_MASK, LABELS), COLOUR_TABLE),
    "mask-float-integral-values": ("a.tif", written(save_tiff, LABELS.astype(np.float32), LABELS), "classes"),
    "mask-float-fractions": ("a.tif", written(save_tiff, LABELS + np.float32(0.5), ("non-integer values",)), "classes"),
    "mask-binary-threshold": (
        "a.png", written(save_png, LABELS * 100, (LABELS > 0).astype(np.uint8)), {"type": "binary", "threshold": 50}),
}  # fmt: skip
for _name, (_file, _write, _encoding) in MASKS.items():
    CASES[_name] = lambda root, file=_file, write=_write, encoding=_encoding: masked(root, file, write, encoding)


# --- channel counts across a dataset ------------------------------------------------------------------


def mixed(root: Path, channels) -> Setup:
    """a.png grey and b.png RGB; ``channels`` as dataset.import.channels."""
    grey, rgb = pixels(seed=2), pixels((*SHAPE, 3), seed=3)
    save_png(root / "images" / "a.png", grey)
    save_png(root / "images" / "b.png", rgb)
    for sample_id in "ab":
        save_png(root / "masks" / f"{sample_id}.png", labels())
    source = folder_source(channels=channels)
    masks = {"a": labels(), "b": labels()}
    if channels is None:
        fragments = ("1 channel (grey): " + str(root / "images" / "a.png"), "3 channels (RGB): ", "b.png",
                     "dataset.import.channels")  # fmt: skip
        return Setup(source, error=fragments)
    if channels == 3:
        return Setup(source, images={"a": np.repeat(grey[..., None], 3, 2), "b": rgb}, masks=masks)
    luminance = np.clip(np.rint(rgb.astype(np.float64) @ LUMINANCE), 0, 255).astype(np.uint8)
    return Setup(source, images={"a": grey, "b": luminance}, masks=masks)


for _channels, _name in ((None, "mixed-grey-and-rgb-stop"), (3, "mixed-channels-3-repeats-grey"),
                         (1, "mixed-channels-1-luminance")):  # fmt: skip
    CASES[_name] = lambda root, channels=_channels: mixed(root, channels)
