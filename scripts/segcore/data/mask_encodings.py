"""Turn the masks of a downloaded dataset into class indices and instance labels.

Datasets store labels in several ways; one :class:`MaskEncoding` describes how, and is parsed (and checked
against the number of classes) once from the config before any file is read:

- ``classes``: pixel values are the class ids themselves.
- ``binary``: any non-zero value is foreground class 1; with ``threshold: t`` only values ``> t`` are
  (for lossy JPEG masks whose 0/255 drift to values like 3 or 250).
- ``value_table``: a grey value -> class id map, e.g. ISBI 2012 ``{0: 0, 255: 1}`` (255 = cell interior,
  0 = membrane); any value not in the table is an error.
- ``colour_table``: an RGB colour -> class id map; keys are ``"#rrggbb"``, ``"r,g,b"`` or an (r, g, b)
  tuple; any colour not in the table is an error.

Config form (``dataset.import.encoding``, whose shape config/schema.yaml checks): ``{type: value_table,
values: {0: 0, 255: 1}}``, ``{type: colour_table, colours: {"#ff0000": 1}}``, ``{type: binary, threshold:
127}``, ``{type: classes}``, or a bare string ``classes`` or ``binary``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage import measure, segmentation

from segcore.io import InputError

MAX_INSTANCES = np.iinfo(np.uint16).max  # canonical instance masks are uint16


@dataclass(frozen=True)
class MaskEncoding:
    """A checked mask encoding. ``table`` maps a grey value or a packed RGB colour to a class id."""

    type: str
    num_classes: int
    threshold: float | None = None
    table: Mapping[int, int] = field(default_factory=dict)


def parse_colour(key: str | Sequence[int]) -> tuple[int, int, int]:
    """An ``"#rrggbb"`` or ``"r,g,b"`` colour (as the schema admits them) or an (r, g, b) sequence as ints."""
    if isinstance(key, str) and key.startswith("#"):
        red, green, blue = (int(key[start : start + 2], 16) for start in (1, 3, 5))
    else:
        red, green, blue = (int(part) for part in (key.split(",") if isinstance(key, str) else key))
    return red, green, blue


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) integer colours -> (...) int64 keys ``r << 16 | g << 8 | b`` (one key per 8-bit colour)."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def parse_encoding(config: Mapping[str, Any] | str, num_classes: int, where: str = "encoding") -> MaskEncoding:
    """The encoding a config describes (module docstring), checked against ``num_classes``.

    ``config`` has the shape config/schema.yaml checks; ``where`` is its config path in messages. The
    rules that need more than the one key are checked here: every class id lies in ``0..num_classes-1``
    (``num_classes`` = the length of ``dataset.classes``), and no table lists one grey value or colour
    twice (``"#ff0000"`` and ``"255,0,0"`` are one colour). Raises :class:`InputError` naming the entry.
    """
    spec = {"type": config} if isinstance(config, str) else dict(config)
    kind = spec["type"]
    if kind in ("classes", "binary"):
        # threshold absent (always for the bare string "binary"): any non-zero value is foreground.
        return MaskEncoding(kind, num_classes, threshold=spec.get("threshold"))
    key = "values" if kind == "value_table" else "colours"
    table: dict[int, int] = {}
    for raw_key, class_id in spec[key].items():
        entry = f"config key {where}.{key}[{raw_key!r}]"
        packed = int(raw_key) if kind == "value_table" else int(pack_rgb(np.array(parse_colour(raw_key))))
        if packed in table:
            raise InputError(f"{entry}: listed twice")
        if class_id >= num_classes:
            raise InputError(
                f"{entry}: class id {class_id} is outside 0..{num_classes - 1} (dataset.classes has {num_classes})"
            )
        table[packed] = int(class_id)
    return MaskEncoding(kind, num_classes, table=table)


def _grey(raw: np.ndarray, source: str) -> np.ndarray:
    """(H, W) view of a grey mask; RGB(A) masks whose colour channels are all equal count as grey."""
    if raw.ndim == 3 and raw.shape[2] in (1, 3, 4):
        colour = raw[..., :3] if raw.shape[2] >= 3 else raw
        if not (colour == colour[..., :1]).all():
            raise InputError(f"{source}: mask has colour pixels; use encoding type colour_table")
        raw = colour[..., 0]
    if raw.ndim != 2:
        raise InputError(f"{source}: expected a (H, W) mask, got shape {raw.shape}")
    return raw


def _lookup(keys: np.ndarray, table: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Class id per key via the table; also the distinct keys absent from it (sorted)."""
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    classes = np.array([table.get(k.item(), -1) for k in unique_keys], dtype=np.int64)
    return classes[inverse].reshape(keys.shape), unique_keys[classes < 0]


def encode_mask(raw: np.ndarray, encoding: MaskEncoding, source: str) -> np.ndarray:
    """Class-index mask (H, W) ``uint8`` from a raw mask as read from ``source`` (used in messages).

    ``raw`` is (H, W), or (H, W, 3|4) for ``colour_table`` (alpha ignored) and for grey masks saved as RGB.
    Raises :class:`InputError` naming ``source`` and the offending value (and, for colours, the first
    pixel (row, column) holding it).
    """
    if raw.dtype == bool:
        raw = raw.astype(np.uint8)
    if encoding.type == "colour_table":
        if raw.ndim != 3 or raw.shape[2] not in (3, 4):
            raise InputError(f"{source}: colour_table needs an RGB(A) mask, got shape {raw.shape}")
        if raw.dtype != np.uint8:
            raise InputError(f"{source}: colour_table needs an 8-bit RGB mask, got {raw.dtype}")
        packed = pack_rgb(raw[..., :3])
        classes, missing = _lookup(packed, encoding.table)
        if missing.size:
            row, column = np.argwhere(packed == missing[0])[0]
            colour = tuple(int(c) for c in raw[row, column, :3])
            raise InputError(
                f"{source}: colour {colour} at pixel (row {row}, column {column}) is not in the colour table"
            )
        return classes.astype(np.uint8)
    grey = _grey(raw, source)
    if encoding.type == "binary":
        foreground = grey > encoding.threshold if encoding.threshold is not None else grey != 0
        return foreground.astype(np.uint8)
    if encoding.type == "value_table":
        classes, missing = _lookup(grey, encoding.table)
        if missing.size:
            raise InputError(
                f"{source}: mask value {missing[0].item()} is not declared in the value table "
                f"(declared: {sorted(encoding.table)}; {missing.size} undeclared value(s))"
            )
        return classes.astype(np.uint8)
    # classes: the values are the ids.
    if np.issubdtype(grey.dtype, np.floating) and not np.array_equal(grey, np.round(grey)):
        raise InputError(f"{source}: mask holds non-integer values; class ids must be integers")
    low, high = grey.min().item(), grey.max().item()
    if low < 0 or high >= encoding.num_classes:
        bad = low if low < 0 else high
        raise InputError(f"{source}: mask value {bad} is not a class id (expected 0..{encoding.num_classes - 1})")
    return grey.astype(np.uint8)


def _check_instance_count(count: int, source: str) -> None:
    if count > MAX_INSTANCES:
        raise InputError(f"{source}: {count} instances exceed the uint16 limit of {MAX_INSTANCES}")


def instances_from_image(raw: np.ndarray, source: str) -> np.ndarray:
    """Instance labels (H, W) ``uint16`` from an instance image: ids renumbered 1..N in value order.

    ``raw`` is (H, W) integer ids (0 = no object) or (H, W, 3|4) with one colour per object (black = none).
    Raises :class:`InputError` naming ``source`` for another shape, negative or non-integer ids, or more
    than 65535 objects.
    """
    if raw.ndim == 3 and raw.shape[2] in (3, 4):
        raw = pack_rgb(raw[..., :3])
    if raw.ndim != 2:
        raise InputError(f"{source}: expected a (H, W) or (H, W, 3) instance image, got shape {raw.shape}")
    if raw.dtype == bool or not np.issubdtype(raw.dtype, np.integer):
        raise InputError(f"{source}: instance ids must be integers, got {raw.dtype}")
    if raw.size and raw.min() < 0:
        raise InputError(f"{source}: instance ids must be >= 0, found {raw.min().item()}")
    relabelled = segmentation.relabel_sequential(raw.astype(np.int64))[0]
    _check_instance_count(int(relabelled.max()) if relabelled.size else 0, source)
    return relabelled.astype(np.uint16)


def instances_from_classes(class_mask: np.ndarray, source: str, connectivity: int) -> np.ndarray:
    """Instance labels (H, W) ``uint16``: connected components of each foreground class, class by class.

    Components of class 1 get ids 1..n1, those of class 2 ids n1+1..n1+n2, and so on, so ids are unique
    across classes. ``connectivity`` 1 joins only edge neighbours (so two cells touching at a corner across
    a one-pixel membrane stay apart); 2 joins diagonal neighbours too. Background (0) stays 0.
    """
    instances = np.zeros(class_mask.shape, dtype=np.int64)
    next_id = 0
    for class_id in np.unique(class_mask):
        if class_id == 0:
            continue
        components, count = measure.label(class_mask == class_id, connectivity=connectivity, return_num=True)
        instances[components > 0] = components[components > 0] + next_id
        next_id += count
    _check_instance_count(next_id, source)
    return instances.astype(np.uint16)
