"""Image intensities as the network receives them: one normalisation, chosen by the plan, for training,
validation and prediction alike; and how ``auto`` chooses it (:func:`choose_normalisation`).

Modes (``training.normalisation``):

- ``zscore``: ``(x - mean_c) / sd_c`` per channel ``c``, with the dataset's mean and standard deviation over
  the train and val images (the fingerprint's intensity statistics; never the test images).
- ``image_zscore``: ``(x - mean_c) / sd_c`` per channel with *each image's own* mean and sd (population,
  ddof 0, over all its pixels), nnU-Net's ZScoreNormalization for every non-CT modality. No stored
  parameters, so any channel count works; an image's absolute brightness is lost, its contrast kept.
- ``percentile``: clip each channel to ``[low_c, high_c]`` (the 0.5 and 99.5 percentiles), then
  ``(x - mean_c) / sd_c`` with the mean and sd of the *clipped* intensities, so the clipped values have mean
  0 and sd 1: a few saturated or hot pixels neither stretch the scale nor dominate the sd.
- ``dtype``: integer images divided by their dtype's maximum (uint8 by 255, uint16 by 65535) into [0, 1];
  float images passed through unscaled (already normalised by whoever wrote them).

A channel whose sd is 0 (constant) is only shifted: dividing by 0 would give NaN.

``auto``: ``image_zscore`` when the images differ from each other by more than their own contrast: in some
channel the sd of the per-image means exceeds :data:`HETEROGENEITY_THRESHOLD` times the median per-image sd
(the fingerprint's ``intensity.per_image``). One dataset-wide z-score then leaves every kind of image at its
own offset: on the DSB 2018 nuclei, dark-field fluorescence (means 8..35 of 255) and bright-field (205..216)
land several units apart, and the net fits the majority kind. Otherwise ``zscore`` with the dataset's
statistics (dataset-wide rather than per image keeps an image's absolute brightness, which may tell classes
apart), or ``percentile`` when the data are heavy-tailed: in some channel the darkest or brightest 0.5 % of
the pixels span a wider range than the central 99 % (hot pixels, saturated spots, a 12-bit camera's rare
highlights), which would inflate the sd and squeeze the bulk of the intensities into a sliver (nnU-Net's
dataset-wide, clipped scheme is its CT rule). ``dtype`` is never chosen automatically: it leaves 12-bit data
in a 16-bit container at 1/16 of the range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segcore.io import InputError

MODES = ("zscore", "image_zscore", "percentile", "dtype")
# Modes without stored parameters: what they need comes from the image itself.
UNFITTED = ("image_zscore", "dtype")
AUTO = "auto"
# sd of the per-image means / median per-image sd (a channel's largest) above which auto normalises each
# image by itself. Measured (fingerprint of the train+val images, seed 42, every channel): DSB 2018 nuclei
# 3.26 / 2.54 / 5.06 (R / G / B; all 60 images: 3.34 / 2.56 / 4.93), ISBI 2012 EM slices 0.24, the
# default generated shapes 0.77 / 0.78 / 0.80 (random tint per image, but objects of random colour make the
# contrast inside an image larger still), the 8- and 12-bit grey shapes 0.62, the custom colour example
# 0.40 / 0.34 / 0.38. 1.5 lies between the homogeneous sets' 0.8 and DSB's weakest channel 2.5 with
# margins of about 1.9x and 1.7x.
HETEROGENEITY_THRESHOLD = 1.5


@dataclass(frozen=True)
class Normalisation:
    """A normalisation mode with its per-channel parameters (empty tuples for ``image_zscore`` and ``dtype``).

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
        needed = {"zscore": ("mean", "sd"), "percentile": ("mean", "sd", "low", "high")}.get(self.mode, ())
        lengths = {name: len(getattr(self, name)) for name in needed}
        if needed and (min(lengths.values()) == 0 or len(set(lengths.values())) != 1):
            raise ValueError(f"normalisation {self.mode} needs equally long, non-empty {', '.join(needed)}: {lengths}")

    @property
    def channels(self) -> int | None:
        """Channels the parameters are for; None for ``image_zscore`` and ``dtype`` (any channel count)."""
        return None if self.mode in UNFITTED else len(self.mean)

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
    if normalisation.channels is not None and array.shape[0] != normalisation.channels:
        raise ValueError(
            f"image has {array.shape[0]} channels but the normalisation has parameters for {normalisation.channels}"
        )
    values = array.astype(np.float64)
    if normalisation.mode == "image_zscore":  # this image's own (C, 1, 1) mean and sd
        mean, sd = values.mean(axis=(1, 2), keepdims=True), values.std(axis=(1, 2), keepdims=True)
    else:
        if normalisation.mode == "percentile":
            values = np.clip(values, _per_channel(normalisation.low), _per_channel(normalisation.high))
        mean, sd = _per_channel(normalisation.mean), _per_channel(normalisation.sd)
    sd = np.where(sd > 0, sd, 1.0)  # a constant channel is only shifted (to 0)
    return ((values - mean) / sd).astype(np.float32)


# --- the automatic choice --------------------------------------------------------------------------------


def image_heterogeneity(per_image: Mapping[str, Sequence[float]]) -> np.ndarray:
    """float64 (C,): per channel, the sd of the per-image means over the median per-image sd (the
    fingerprint's ``intensity.per_image``). 0 where the median sd is 0: images that are mostly constant
    give no contrast to compare with, and the dataset-wide choice stays."""
    spread = np.asarray(per_image["mean_sd"], dtype=np.float64)
    within = np.asarray(per_image["sd_median"], dtype=np.float64)
    return np.divide(spread, within, out=np.zeros_like(spread), where=within > 0)


def heavy_tailed_channels(stats: Mapping[str, Sequence[float]]) -> list[int]:
    """Channels (of the fingerprint's ``intensity.all``) whose extreme 0.5 % of pixels, at either end, span
    more than the central 99 % (between the 0.5 and 99.5 percentiles)."""
    central = np.subtract(stats["p99_5"], stats["p0_5"])
    tails = np.maximum(np.subtract(stats["max"], stats["p99_5"]), np.subtract(stats["p0_5"], stats["min"]))
    return [int(c) for c in np.flatnonzero((central > 0) & (tails > central))]


def _auto_mode(intensity: Mapping[str, Any]) -> tuple[str, str]:
    """The mode ``auto`` picks from the fingerprint's ``intensity`` section (module docstring), and why."""
    if "per_image" in intensity:
        ratios = image_heterogeneity(intensity["per_image"])
        varied = [int(c) for c in np.flatnonzero(ratios > HETEROGENEITY_THRESHOLD)]
        if varied:
            return "image_zscore", (
                f"the images differ: the sd of the per-image means is {', '.join(f'{r:.2f}' for r in ratios)} x "
                f"the median per-image sd (per channel; above {HETEROGENEITY_THRESHOLD} in channel(s) {varied}), "
                "so each image is z-scored by its own mean and sd (nnU-Net's rule for non-CT images)"
            )
        alike = f"the images are alike (per-image means within {HETEROGENEITY_THRESHOLD} x the median per-image sd)"
    else:
        # A fingerprint written before the per-image statistics: its images count as alike, which keeps the
        # choice that fingerprint got then; rerunning rule fingerprint measures them.
        alike = "the fingerprint predates per-image statistics (rerun rule fingerprint to compare the images)"
    heavy = heavy_tailed_channels(intensity["all"])
    if heavy:
        return "percentile", (
            f"{alike}; heavy tails in channel(s) {heavy}: the extreme 0.5 % of pixels span more than the central "
            "99 %, so clip to the 0.5/99.5 percentiles before the dataset-wide z-score"
        )
    return "zscore", f"{alike} and their tails light: z-score with the train+val mean and sd per channel"


def choose_normalisation(fingerprint: Mapping[str, Any], requested: str) -> tuple[Normalisation, str]:
    """The normalisation for ``training.normalisation`` = ``requested`` (a mode or "auto"), with its reason.

    Raises :class:`InputError` naming the key when ``zscore``, ``percentile`` or ``auto`` is asked for but
    the fingerprint has no intensity statistics (no train or val image).
    """
    intensity = fingerprint["intensity"]
    stats = intensity["all"]
    if requested == "dtype":
        return DTYPE_SCALING, "divide by the dtype's maximum (float images as they are)"
    if requested == "image_zscore":
        return Normalisation("image_zscore"), "set in the config"
    if stats is None:
        raise InputError(
            "config key training.normalisation: the split has no train or val image to take intensity "
            "statistics from; use image_zscore or dtype"
        )
    mode, reason = _auto_mode(intensity) if requested == AUTO else (requested, "set in the config")
    if mode == "image_zscore":
        return Normalisation("image_zscore"), reason
    if mode == "percentile":
        return Normalisation(
            "percentile", tuple(stats["clipped_mean"]), tuple(stats["clipped_sd"]), tuple(stats["p0_5"]),
            tuple(stats["p99_5"]),
        ), reason  # fmt: skip
    return Normalisation("zscore", tuple(stats["mean"]), tuple(stats["sd"])), reason
