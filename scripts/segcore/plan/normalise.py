"""Image intensities as the network receives them: one normalisation, chosen by the plan, for training,
validation and prediction alike.

Modes (``training.normalisation``; :mod:`segcore.plan.plan` resolves ``auto``):

- ``zscore``: ``(x - mean_c) / sd_c`` per channel ``c``, with the dataset's mean and standard deviation over
  the train and val images (the fingerprint's intensity statistics; never the test images).
- ``percentile``: clip each channel to ``[low_c, high_c]`` (the 0.5 and 99.5 percentiles), then
  ``(x - mean_c) / sd_c`` with the mean and sd of the *clipped* intensities, so the clipped values have mean
  0 and sd 1: a few saturated or hot pixels neither stretch the scale nor dominate the sd.
- ``dtype``: integer images divided by their dtype's maximum (uint8 by 255, uint16 by 65535) into [0, 1];
  float images passed through unscaled (already normalised by whoever wrote them).

A channel whose sd is 0 (constant) is only shifted: dividing by 0 would give NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("zscore", "percentile", "dtype")


@dataclass(frozen=True)
class Normalisation:
    """A normalisation mode with its per-channel parameters (empty tuples for ``dtype``).

    ``mean``/``sd``: the values subtracted and divided by (for ``percentile``: those of the clipped
    intensities); ``low``/``high``: the clip bounds (``percentile`` only). Tuples of one float per channel.
    """

    mode: str
    mean: tuple[float, ...] = ()
    sd: tuple[float, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"normalisation mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        needed = {"zscore": ("mean", "sd"), "percentile": ("mean", "sd", "low", "high"), "dtype": ()}[self.mode]
        lengths = {name: len(getattr(self, name)) for name in needed}
        if needed and (min(lengths.values()) == 0 or len(set(lengths.values())) != 1):
            raise ValueError(f"normalisation {self.mode} needs equally long, non-empty {', '.join(needed)}: {lengths}")

    @property
    def channels(self) -> int | None:
        """Channels the parameters are for; None for ``dtype`` (any channel count)."""
        return len(self.mean) if self.mode != "dtype" else None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (lists of floats); :meth:`from_dict` reads it back."""
        return {"mode": self.mode, "mean": list(self.mean), "sd": list(self.sd), "low": list(self.low),
                "high": list(self.high)}  # fmt: skip

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Normalisation:
        """The normalisation :meth:`as_dict` wrote (missing parameter lists count as empty)."""

        def floats(name: str) -> tuple[float, ...]:
            return tuple(float(value) for value in values.get(name, ()))

        return cls(values["mode"], floats("mean"), floats("sd"), floats("low"), floats("high"))


# Division by the dtype's maximum: the normalisation before plans existed, and the default where none is given.
DTYPE_SCALING = Normalisation("dtype")


def _as_channels_first(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> a (C, H, W) view."""
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    array = image[..., None] if image.ndim == 2 else image
    return np.moveaxis(array, -1, 0)


def _per_channel(values: Sequence[float]) -> np.ndarray:
    """float64 (C, 1, 1) for broadcasting over a (C, H, W) image."""
    return np.asarray(values, dtype=np.float64)[:, None, None]


def normalise_image(image: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """Any-dtype image (H, W) or (H, W, C) -> float32 (C, H, W) normalised as ``normalisation`` says.

    Arithmetic runs in float64 (uint16 and float images keep their precision) and is cast once at the end.
    Raises ValueError when the image's channel count differs from the normalisation's parameters.
    """
    array = _as_channels_first(image)
    if normalisation.mode == "dtype":
        if np.issubdtype(array.dtype, np.integer):
            return (array.astype(np.float64) / float(np.iinfo(array.dtype).max)).astype(np.float32)
        return array.astype(np.float32)
    if array.shape[0] != normalisation.channels:
        raise ValueError(
            f"image has {array.shape[0]} channels but the normalisation has parameters for {normalisation.channels}"
        )
    values = array.astype(np.float64)
    if normalisation.mode == "percentile":
        values = np.clip(values, _per_channel(normalisation.low), _per_channel(normalisation.high))
    sd = _per_channel(normalisation.sd)
    sd = np.where(sd > 0, sd, 1.0)  # a constant channel is only shifted (to 0)
    return ((values - _per_channel(normalisation.mean)) / sd).astype(np.float32)
