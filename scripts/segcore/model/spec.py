"""The ``model`` config section as a :class:`UNetConfig`.

config/schema.yaml (``experiments.*.model``) declares every key: its type and range, the presets
(``unet``, ``unet_small``, ``unet_original``, ``unet_residual``: the keys each fixes) and every default,
including the preset-dependent ones. The Snakefile fills those defaults before any rule runs; code that
writes a section by hand gets them from :func:`segcore.config_schema.with_defaults`. What remains here are
the rules that span several keys:

- the widths come from ``widths`` or from ``base_width`` and ``depth`` (``widths[i] = base_width * 2**i``),
  never from both;
- ``deep_supervision_levels`` (null: ``depth - 1``) lies in ``1..depth - 1`` when ``deep_supervision`` is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segcore.io import InputError


@dataclass(frozen=True)
class UNetConfig:
    """The architecture of one U-Net; ``deep_supervision_levels == 0`` means no auxiliary heads.

    ``widths``: channels per level, top first (at least 2); ``padding``: "same" or "valid"; ``upsampling``:
    "transpose", "interp" or "unpool"; ``fusion``: "concat" or "add" (see :mod:`segcore.model.blocks`).
    """

    widths: tuple[int, ...]
    padding: str
    batchnorm: bool
    dropout: float
    upsampling: str
    fusion: str
    residual: bool
    deep_supervision_levels: int

    @property
    def depth(self) -> int:
        """Number of 2x2 poolings (levels below the top)."""
        return len(self.widths) - 1


def model_widths(spec: Mapping[str, Any], where: str = "model") -> tuple[int, ...]:
    """Channels per level from ``widths``, or from ``base_width`` and ``depth`` (``base_width * 2**level``).

    Raises :class:`InputError` naming the key when ``widths`` comes with ``base_width`` or ``depth``, when
    one of ``base_width`` and ``depth`` comes without the other, or when none of the three is given (the
    schema gives every preset default widths unless base_width and depth replace them).
    """
    sizes = [key for key in ("base_width", "depth") if key in spec]
    if "widths" in spec:
        if sizes:
            raise InputError(f"config key {where}.widths: give either widths or base_width and depth, not both")
        return tuple(int(width) for width in spec["widths"])
    if len(sizes) == 1:
        missing = "depth" if sizes == ["base_width"] else "base_width"
        raise InputError(f"config key {where}.{missing}: needed together with {sizes[0]}")
    if not sizes:
        raise InputError(f"config key {where}.widths: not given (nor base_width and depth)")
    return tuple(int(spec["base_width"]) * 2**level for level in range(int(spec["depth"]) + 1))


def supervision_levels(spec: Mapping[str, Any], depth: int, where: str = "model") -> int:
    """Decoder levels with an auxiliary head: 0 without deep supervision, else the configured levels.

    Raises :class:`InputError` naming ``deep_supervision_levels`` when the levels (null: ``depth - 1``)
    fall outside ``1..depth - 1``: heads sit on decoder levels below the top, so depth 1 allows none.
    """
    if not spec["deep_supervision"]:
        return 0
    levels = spec["deep_supervision_levels"]
    levels = depth - 1 if levels is None else int(levels)
    if not 1 <= levels <= depth - 1:
        raise InputError(
            f"config key {where}.deep_supervision_levels: {levels} is not in 1..{depth - 1} "
            f"(heads go on decoder levels below the top of a depth-{depth} network)"
        )
    return levels


def parse_model_spec(spec: Mapping[str, Any], where: str = "model") -> UNetConfig:
    """The architecture a ``model`` section describes, after the cross-key checks above.

    ``spec`` must hold every key with the schema's defaults filled in (as the Snakefile leaves it);
    ``where`` is its config path in messages (e.g. ``experiments.baseline.model``). Raises
    :class:`InputError` naming the key for a cross-key violation, and KeyError naming a key the section
    lacks (a section whose defaults were not filled).
    """
    widths = model_widths(spec, where)
    try:
        return UNetConfig(
            widths=widths,
            padding=spec["padding"],
            batchnorm=bool(spec["batchnorm"]),
            dropout=float(spec["dropout"]),
            upsampling=spec["upsampling"],
            fusion=spec["fusion"],
            residual=bool(spec["residual"]),
            deep_supervision_levels=supervision_levels(spec, len(widths) - 1, where),
        )
    except KeyError as missing:
        raise KeyError(
            f"{where} lacks {missing}: fill the section's defaults first (segcore.config_schema.with_defaults)"
        ) from None
