"""Segmenting image files with a model bundle, outside the pipeline: the work of ``python -m segcore.segment``.

Inputs: PNG, JPEG and TIFF files, and folders of them (their image files, not subfolders, in natural name
order). A TIFF of several pages is a stack: one sample per page. Each file is read as the pipeline stores
images (:func:`segcore.data.image_files.as_image`: uint8 or uint16, grey or RGB, alpha dropped) and must have
the channels the bundle's card names. Every image then takes the path rule predict takes
(:func:`segcore.predict.inference.segment_image`): the card's normalisation, tiling, TTA and operating point.

The output folder holds, per input file ``<stem>.<ext>`` (the one writer of this layout)::

    <stem>.png                     uint8 (H, W) class mask (values 0..K-1, the card's ``classes``): a single image
    <stem>.tif                     uint8 (P, H, W) class masks, one page per input page: a stack
    <stem>.probabilities.tif       float32 (K, H, W), or (P, K, H, W) for a stack: the network's class
                                   probabilities (a border-class model's border plane last); with --probabilities

Bad input (a missing or unreadable file, an empty folder, an image whose channels differ from the card's,
two inputs with one stem) raises :class:`segcore.io.InputError` naming the file before anything is written
for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from segcore.compute import select_device
from segcore.data.image_files import IMAGE_SUFFIXES, natural_key
from segcore.data.image_sets import SetImage, file_images, load_set_image
from segcore.io import InputError, write_pages, write_png
from segcore.predict.bundle import ModelCard, read_bundle
from segcore.predict.inference import segment_image

PROBABILITIES_SUFFIX = ".probabilities.tif"


def input_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by ``paths`` (files, or folders whose image files are taken in natural order).

    Raises :class:`InputError` naming the path for one that does not exist, a file without an image suffix
    (.png, .tif, .tiff, .jpg, .jpeg), a folder without image files, and two files with one stem (their
    outputs would collide).
    """
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = [
                path for path in entry.iterdir()
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            ]  # fmt: skip
            if not found:
                raise InputError(f"{entry}: folder holds no image file ({', '.join(IMAGE_SUFFIXES)})")
            files += sorted(found, key=lambda path: natural_key(path.name))
        elif not entry.exists():
            raise InputError(f"{entry}: no such file or folder")
        elif entry.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{entry}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        else:
            files.append(entry)
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise InputError(f"{stems[path.stem]} and {path}: both would write the outputs named {path.stem!r}")
        stems[path.stem] = path
    return files


def read_pages(path: Path, in_channels: int) -> tuple[list[np.ndarray], bool]:
    """(the images of ``path``, whether it is a stack): one image, or one per page of a multi-page TIFF.

    Each image is uint8/uint16 (H, W) or (H, W, 3), read and checked as an inference set's images are
    (:func:`segcore.data.image_sets.load_set_image`). Raises :class:`InputError` naming the file (and page)
    when it cannot be read or an image's channel count is not ``in_channels``.
    """
    pages = file_images(path)
    stack = len(pages) > 1
    items = [
        SetImage(str(index), f"{path} page {index}" if stack else str(path), lambda raw=raw: raw)
        for index, raw in enumerate(pages)
    ]
    return [load_set_image(item, in_channels) for item in items], stack


def output_paths(path: Path, out: Path, stack: bool) -> tuple[Path, Path]:
    """(mask file, probabilities file) of the input ``path`` in the output folder ``out``."""
    return out / f"{path.stem}{'.tif' if stack else '.png'}", out / f"{path.stem}{PROBABILITIES_SUFFIX}"


@dataclass(frozen=True)
class Segmented:
    """The predictions of one input file: uint8 (P, H, W) masks and float32 (P, K, H, W) probabilities
    (P = 1 for a single image; None unless kept)."""

    path: Path
    stack: bool
    masks: np.ndarray
    probabilities: np.ndarray | None


def segment_files(
    model: torch.nn.Module,
    card: ModelCard,
    files: Sequence[Path],
    device: torch.device,
    *,
    keep_probabilities: bool = False,
    progress: bool = False,
) -> Iterator[Segmented]:
    """Predict every image of ``files`` (from :func:`input_files`) as rule predict would, one file at a time.

    ``model``/``card``: the bundle's (:func:`segcore.predict.bundle.read_bundle`; ``card.inference`` holds the
    settings used, TTA included). A progress bar over the images (stack pages counted one by one) shows on
    stderr when ``progress``.
    """
    with tqdm(unit="image", disable=not progress) as bar:
        for path in files:
            images, stack = read_pages(path, card.in_channels)
            masks, planes = [], []
            for image in images:
                probabilities, mask, _ = segment_image(model, image, card.inference, device)
                masks.append(mask)
                if keep_probabilities:
                    planes.append(probabilities)
                bar.update()
            yield Segmented(path, stack, np.stack(masks), np.stack(planes) if keep_probabilities else None)


def write_segmented(result: Segmented, out: Path, probabilities: bool) -> list[Path]:
    """Write one file's predictions into ``out`` (module docstring); returns the files written."""
    mask_path, probabilities_path = output_paths(result.path, out, result.stack)
    if result.stack:
        write_pages(mask_path, result.masks)
    else:
        write_png(mask_path, result.masks[0])
    if not probabilities or result.probabilities is None:
        return [mask_path]
    write_pages(probabilities_path, result.probabilities if result.stack else result.probabilities[0])
    return [mask_path, probabilities_path]


def segment(
    bundle: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    tta: str | None = None,
    probabilities: bool = False,
    device: str = "auto",
    progress: bool = False,
) -> list[Path]:
    """Segment ``inputs`` with the bundle folder ``bundle`` into the folder ``out``; returns the files written.

    ``tta``: ``none``, ``flips`` or ``d4`` instead of the card's; ``device``: ``auto``, ``cpu`` or ``cuda``.
    Every input is checked to exist before any prediction runs.
    """
    files = input_files(inputs)
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device (use auto or cpu)")
    chosen = select_device(device)
    model, card = read_bundle(bundle, chosen)
    if tta is not None:
        card = dataclasses.replace(card, inference=dataclasses.replace(card.inference, tta=tta))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for result in segment_files(model, card, files, chosen, keep_probabilities=probabilities, progress=progress):
        written += write_segmented(result, out, probabilities)
    return written
