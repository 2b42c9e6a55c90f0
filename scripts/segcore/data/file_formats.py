"""What a file holds, told from its first bytes, and PNG/JPEG files read with every byte checked.

The format is decided by the file's signature, never by its name alone: an empty file, a file of no
supported format (its first bytes are quoted) and a file whose content disagrees with its suffix (a PNG
named ``.tif``) each raise :class:`InputError` naming the file. PNG and JPEG are decoded by Pillow with
truncated images refused (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays False); a PNG is first verified chunk by
chunk (checksums, the end chunk), so a cut or damaged file stops instead of yielding zero-filled rows.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from segcore.io import InputError

# Signatures of the formats read here (classic and BigTIFF, both byte orders).
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"\xff\xd8\xff", "JPEG"),
)
# Formats people save images in by mistake, named so the message says what the file is.
OTHER_SIGNATURES = (
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%PDF", "a PDF document"),
    (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
)
SUFFIX_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}
SHOWN_BYTES = 8  # bytes quoted from a file of unknown format
PALETTE_USES = ("index", "colour")
# What Pillow raises for a damaged file: truncation (OSError), bad chunks (SyntaxError), bad zlib data.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


def file_format(path: Path) -> str:
    """``"PNG"``, ``"TIFF"`` or ``"JPEG"``: the format of ``path``'s content, checked against its suffix.

    A suffix other than .png/.tif/.tiff/.jpg/.jpeg (a stack named ``.ome.btf``, say) is not checked.
    Raises :class:`InputError` naming ``path`` if it cannot be opened, is empty, holds no supported format
    (quoting its first bytes) or holds another format than its suffix says.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as error:
        raise InputError(f"{path}: cannot open the file ({error.strerror or error})") from error
    if not head:
        raise InputError(f"{path}: is empty (0 bytes)")
    found = next((name for signature, name in SIGNATURES if head.startswith(signature)), None)
    cut_short = next(
        (name for signature, name in SIGNATURES if len(head) < len(signature) and signature.startswith(head)), None
    )
    if cut_short is not None:
        raise InputError(f"{path}: is truncated: it holds only {len(head)} bytes, the start of a {cut_short} file")
    if found is None:
        other = next((name for signature, name in OTHER_SIGNATURES if head.startswith(signature)), None)
        what = f"is {other}" if other else f"starts with {head[:SHOWN_BYTES]!r}"
        raise InputError(f"{path}: not an image of a supported format (PNG, TIFF, JPEG): the file {what}")
    expected = SUFFIX_FORMATS.get(path.suffix.lower())
    if expected is not None and expected != found:
        raise InputError(f"{path}: is a {found} file but its name ends in {path.suffix}; rename it to .{found.lower()}")
    return found


def _png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk (bytes 24 and 25 of the file)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header[24], header[25]


def _png16_colour(path: Path, decoded: np.ndarray, colour_type: int) -> np.ndarray:
    """The 16-bit values of a colour or grey+alpha PNG, which Pillow reduces to 8 bits; OpenCV keeps them.

    Called after Pillow decoded the whole file (so it is intact); ``decoded`` gives the expected size.
    """
    import cv2  # only here: one format needs it

    array = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.shape[:2] != decoded.shape[:2]:
        raise InputError(f"{path}: the 16-bit colour PNG could not be decoded")
    if colour_type == 4:  # grey + alpha, which OpenCV spreads to BGRA: the grey is any colour channel
        return array[..., 0] if array.ndim == 3 else array
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = np.concatenate([array[..., 2::-1], array[..., 3:]], axis=2)  # OpenCV's BGR(A) -> RGB(A)
    return array


def _pil_array(image: Image.Image, palette: str) -> np.ndarray:
    """The pixels of a loaded Pillow image; palette images give indices or RGB colours (``palette``)."""
    if image.mode in ("P", "PA"):
        if palette == "index":
            return np.asarray(image.getchannel(0))  # the index as stored, not a colour
        return np.asarray(image.convert("RGB"))
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


def read_pillow(path: Path, file_kind: str, palette: str = "colour") -> np.ndarray:
    """Pixels of a PNG or JPEG file: (H, W) or (H, W, C), as stored (``bool`` for 1-bit, ``uint16`` for
    16-bit PNG, grey+alpha (H, W, 2), RGBA (H, W, 4)).

    ``palette`` says what a palette ('P' mode) PNG yields: ``"index"`` the (H, W) palette indices (for
    masks, whose palette index is the class value), ``"colour"`` the (H, W, 3) colours. Raises
    :class:`InputError` naming ``path`` and the decoder's complaint if the file is truncated or corrupt.
    """
    if palette not in PALETTE_USES:
        raise ValueError(f"palette must be one of {PALETTE_USES}, got {palette!r}")
    try:
        with Image.open(path) as image:
            image.verify()  # PNG: every chunk's checksum and the end chunk; reading pixels does not check them
        with Image.open(path) as image:
            image.load()
            array = _pil_array(image, palette)
    except DECODE_ERRORS as error:
        raise InputError(
            f"{path}: the {file_kind} file is truncated or corrupt (decoder: {type(error).__name__}: {error})"
        ) from error
    if array.dtype == np.int32 and array.size and 0 <= array.min() and array.max() <= np.iinfo(np.uint16).max:
        array = array.astype(np.uint16)  # 16-bit grey that Pillow widened to 32-bit ("I" mode)
    if file_kind == "PNG":
        bit_depth, colour_type = _png_header(path)
        if bit_depth == 16 and colour_type in (2, 4, 6):
            array = _png16_colour(path, array, colour_type)
    return array
