"""Parse and validate the ``model`` section of the config into a :class:`UNetConfig`.

Spec keys (all optional except ``name``)::

    name: unet | unet_small | unet_original | unet_residual
    widths: [32, 64, 128, 256, 512]      channels per level, top first; depth = len(widths) - 1
    base_width: 64, depth: 4             alternative to widths: widths[i] = base_width * 2**i
    padding: same | valid
    batchnorm: false
    dropout: 0.0                         element-wise, on the bottleneck block's input and output
    upsampling: transpose | interp
    fusion: concat | add
    residual: false
    deep_supervision: false
    deep_supervision_levels: depth - 1   extra 1x1 heads on decoder levels 1..levels (ignored when off)

Presets fix the keys that define them (``unet_small``, the small U-Net of the shapes tutorial: widths
32-32-64-128-256, same padding; ``unet_original``: widths 64..1024, valid padding, transposed convolutions,
concatenation, no residual; ``unet_residual``: residual blocks, by default with BatchNorm and the
``unet_small`` widths); setting a fixed key to another value is an error that points to ``name: unet``. The
generic ``unet`` defaults to widths 64..1024 and same padding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segcore.io import InputError
from segcore.model.blocks import FUSIONS, PADDINGS, UPSAMPLINGS

SMALL_WIDTHS = (32, 32, 64, 128, 256)
ORIGINAL_WIDTHS = (64, 128, 256, 512, 1024)

# name -> (keys the preset fixes, defaults the user may override)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "unet": ({}, {"widths": ORIGINAL_WIDTHS}),
    "unet_small": ({"widths": SMALL_WIDTHS, "padding": "same"}, {}),
    "unet_original": (
        {
            "widths": ORIGINAL_WIDTHS,
            "padding": "valid",
            "upsampling": "transpose",
            "fusion": "concat",
            "residual": False,
        },
        {},
    ),
    "unet_residual": ({"residual": True}, {"widths": SMALL_WIDTHS, "batchnorm": True}),
}
SIZE_KEYS = ("widths", "base_width", "depth")
KNOWN_KEYS = (
    "name", "widths", "base_width", "depth", "padding", "batchnorm", "dropout", "upsampling", "fusion",
    "residual", "deep_supervision", "deep_supervision_levels",
)  # fmt: skip


@dataclass(frozen=True)
class UNetConfig:
    """The architecture of one U-Net; ``deep_supervision_levels == 0`` means no auxiliary heads."""

    widths: tuple[int, ...]
    padding: str = "same"
    batchnorm: bool = False
    dropout: float = 0.0
    upsampling: str = "transpose"
    fusion: str = "concat"
    residual: bool = False
    deep_supervision_levels: int = 0

    def __post_init__(self) -> None:
        for field, value, options in (
            ("padding", self.padding, PADDINGS),
            ("upsampling", self.upsampling, UPSAMPLINGS),
            ("fusion", self.fusion, FUSIONS),
        ):
            if value not in options:
                raise ValueError(f"{field} {value!r} is not one of {', '.join(options)}")
        if len(self.widths) < 2 or any(int(width) < 1 for width in self.widths):
            raise ValueError(f"widths must hold at least 2 positive channel counts, got {self.widths}")
        if not 0 <= self.deep_supervision_levels <= self.depth - 1:
            raise ValueError(
                f"deep_supervision_levels must be in 0..{self.depth - 1} for depth {self.depth}, "
                f"got {self.deep_supervision_levels}"
            )

    @property
    def depth(self) -> int:
        """Number of 2x2 poolings (levels below the top)."""
        return len(self.widths) - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(spec: Mapping[str, Any], key: str, options: tuple[str, ...], default: str, where: str) -> str:
    value = spec.get(key, default)
    if value not in options:
        raise InputError(f"{where}.{key}: {value!r} is not one of {', '.join(options)}")
    return value


def _flag(spec: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"{where}.{key}: {value!r} is not true or false")
    return value


def _positive_int(spec: Mapping[str, Any], key: str, where: str) -> int:
    value = spec[key]
    if not _is_int(value) or value < 1:
        raise InputError(f"{where}.{key}: {value!r} is not a positive integer")
    return value


def _widths(spec: Mapping[str, Any], where: str) -> tuple[int, ...]:
    if "widths" in spec:
        if "base_width" in spec or "depth" in spec:
            raise InputError(f"{where}.widths: give either widths or base_width and depth, not both")
        value = spec["widths"]
        if (
            not isinstance(value, (list, tuple))
            or len(value) < 2
            or not all(_is_int(width) and width >= 1 for width in value)
        ):
            raise InputError(f"{where}.widths: {value!r} is not a list of at least 2 positive integers")
        return tuple(value)
    if ("base_width" in spec) != ("depth" in spec):
        missing = "depth" if "base_width" in spec else "base_width"
        raise InputError(f"{where}.{missing}: needed together with the other of base_width and depth")
    base_width = _positive_int(spec, "base_width", where)
    depth = _positive_int(spec, "depth", where)
    return tuple(base_width * 2**level for level in range(depth + 1))


def parse_model_spec(spec: Mapping[str, Any], where: str = "model") -> UNetConfig:
    """Validate a ``model`` config mapping and return the architecture it describes.

    ``where`` is the config path used in error messages (e.g. ``experiments.baseline.model``). Raises
    :class:`InputError` naming the key for an unknown key, a missing or unknown name, a value of the wrong
    type or outside its options, or a preset key set to a value other than the preset's.
    """
    if not isinstance(spec, Mapping):
        raise InputError(f"{where}: expected a mapping with at least a name, got {spec!r}")
    unknown = sorted(set(spec) - set(KNOWN_KEYS))
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(KNOWN_KEYS)})")
    name = spec.get("name")
    if name not in PRESETS:
        raise InputError(f"{where}.name: {name!r} is not one of {', '.join(PRESETS)}")
    fixed, defaults = PRESETS[name]
    given_size_keys = [key for key in SIZE_KEYS if key in spec]
    # Widths the user gives replace the preset's default widths (and must equal fixed ones).
    widths = _widths(spec if given_size_keys else {**defaults, **fixed}, where)
    if given_size_keys and "widths" in fixed and widths != fixed["widths"]:
        raise InputError(
            f"{where}.{given_size_keys[0]}: preset {name} fixes widths = {list(fixed['widths'])}; "
            f"use name: unet to choose others"
        )
    for key, value in fixed.items():
        if key != "widths" and key in spec and spec[key] != value:
            raise InputError(f"{where}.{key}: preset {name} fixes {key} = {value!r}; use name: unet to choose another")
    merged: dict[str, Any] = {**defaults, **spec, **fixed}
    depth = len(widths) - 1

    dropout = merged.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise InputError(f"{where}.dropout: {dropout!r} is not a number in [0, 1)")
    levels = 0
    if _flag(merged, "deep_supervision", False, where):
        levels = merged.get("deep_supervision_levels", depth - 1)
        if not _is_int(levels) or not 1 <= levels <= depth - 1:
            raise InputError(
                f"{where}.deep_supervision_levels: {levels!r} is not an integer in 1..{depth - 1} "
                f"(heads go on decoder levels below the top of a depth-{depth} network)"
            )
    return UNetConfig(
        widths=widths,
        padding=_choice(merged, "padding", PADDINGS, "same", where),
        batchnorm=_flag(merged, "batchnorm", False, where),
        dropout=float(dropout),
        upsampling=_choice(merged, "upsampling", UPSAMPLINGS, "transpose", where),
        fusion=_choice(merged, "fusion", FUSIONS, "concat", where),
        residual=_flag(merged, "residual", False, where),
        deep_supervision_levels=levels,
    )
