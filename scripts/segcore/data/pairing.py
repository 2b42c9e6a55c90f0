"""Pairing the image, mask (and instance) files of a folder dataset by the ``{id}`` in their names.

Nothing is read but names. Ids are compared in Unicode NFC form (:func:`segcore.data.image_files.nfc`), so
a name macOS wrote decomposed pairs with the composed one. When pairing fails, the message lists both
sides (images without mask, masks without image) and points out names that differ only in Unicode
compatibility forms (a ligature, full-width digits) or in letter case, which look alike to a person.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from segcore.data.image_files import find_files, natural_key
from segcore.io import InputError

LISTED_AT_MOST = 5  # file names quoted per side in a "missing partner" message; the rest are counted


@dataclass(frozen=True)
class SampleFiles:
    """The files of one sample of a folder dataset; ``instances`` is None when derived from the mask."""

    id: str
    image: Path
    mask: Path
    instances: Path | None = None


def _list_unpaired(ids: set[str], files: dict[str, Path]) -> str:
    names = [str(files[sample_id]) for sample_id in sorted(ids, key=natural_key)]
    shown = ", ".join(names[:LISTED_AT_MOST])
    return shown + (f" and {len(names) - LISTED_AT_MOST} more" if len(names) > LISTED_AT_MOST else "")


def _look_alike(first: str, second: str) -> str | None:
    """Why two different ids look the same to a person, or None."""
    if unicodedata.normalize("NFKC", first) == unicodedata.normalize("NFKC", second):
        return "differ only in Unicode normalisation (compatibility forms such as ligatures or full-width characters)"
    if unicodedata.normalize("NFKC", first).casefold() == unicodedata.normalize("NFKC", second).casefold():
        return "differ only in letter case"
    return None


def _check_partners(images: dict[str, Path], partners: dict[str, Path], kind: str, partner_dir: Path) -> None:
    """Raise InputError listing the images without a ``kind`` file and the ``kind`` files without image."""
    without_partner = set(images) - set(partners)
    without_image = set(partners) - set(images)
    problems = []
    if without_partner:
        problems.append(
            f"{len(without_partner)} image(s) have no {kind} in {partner_dir}: "
            f"{_list_unpaired(without_partner, images)}"
        )
    if without_image:
        problems.append(f"{len(without_image)} {kind} file(s) have no image: {_list_unpaired(without_image, partners)}")
    notes = [
        f"image id {image_id!r} and {kind} id {partner_id!r} {reason}"
        for image_id in sorted(without_partner, key=natural_key)
        for partner_id in sorted(without_image, key=natural_key)
        if (reason := _look_alike(image_id, partner_id))
    ]
    if problems:
        raise InputError("; ".join(problems) + "".join(f"; note: {note}" for note in notes[:LISTED_AT_MOST]))


def _literal_length(pattern: str) -> int:
    return len(pattern.replace("{id}", "").replace("*", ""))


def pair_folder_files(
    images_dir: Path,
    masks_dir: Path,
    image_pattern: str,
    mask_pattern: str,
    instances_dir: Path | None = None,
    instance_pattern: str | None = None,
) -> list[SampleFiles]:
    """Pair image, mask (and instance) files by id, in natural id order, without reading pixels.

    Patterns are described in :func:`segcore.data.image_files.pattern_regex`. Folders may be shared: a file
    matching the patterns of two roles goes to the more specific pattern (more literal characters), so
    ``{id}.png`` images and ``{id}_mask.png`` masks can live together. ``instances_dir`` None: no
    instance files; ``instance_pattern`` None: ``mask_pattern``. Raises :class:`InputError` for an empty
    image folder, duplicate ids, or any file without its partner (naming the files).
    """
    instance_pattern = instance_pattern or mask_pattern
    roles = {"images": (images_dir, image_pattern), "masks": (masks_dir, mask_pattern)}
    if instances_dir is not None:
        roles["instances"] = (instances_dir, instance_pattern)
    found: dict[str, dict[str, Path]] = {}
    resolved = {role: Path(folder).resolve() for role, (folder, _) in roles.items()}
    for role, (folder, pattern) in roles.items():
        neighbours = [
            other_pattern
            for other, (_, other_pattern) in roles.items()
            if other != role and resolved[other] == resolved[role]
        ]
        if pattern in neighbours:
            raise InputError(f"{folder}: {role} share this folder and pattern {pattern!r} with other files")
        # A file matching two patterns in one folder belongs to the more specific one (more literal
        # characters): "a_mask.png" is a mask under "{id}_mask.png", not an image under "{id}.png".
        more_specific = [other for other in neighbours if _literal_length(other) > _literal_length(pattern)]
        found[role] = find_files(Path(folder), pattern, f"{role} {folder}", more_specific)
    images, masks = found["images"], found["masks"]
    if not images:
        raise InputError(f"{images_dir}: no image files match pattern {image_pattern!r}")
    _check_partners(images, masks, "mask", Path(masks_dir))
    instances = found.get("instances", {})
    if instances_dir is not None:
        _check_partners(images, instances, "instance image", Path(instances_dir))
    return [
        SampleFiles(sample_id, images[sample_id], masks[sample_id], instances.get(sample_id))
        for sample_id in sorted(images, key=natural_key)
    ]
