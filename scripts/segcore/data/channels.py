"""One channel count for a whole dataset: the network has one input width.

Without ``dataset.import.channels`` every image must already have the same count (grey images mixed with
RGB ones stop the import, with examples of each); with it, each image is converted: grey -> 3 channels by
repeating the grey value, RGB -> grey by luminance (ITU-R BT.709 weights, as ``skimage.color.rgb2gray``),
rounded back to the image's integer dtype.
"""

from __future__ import annotations

import numpy as np

from segcore.io import InputError

LUMINANCE = np.array([0.2125, 0.7154, 0.0721])  # BT.709 weights; they sum to 1, so white stays white
LISTED_AT_MOST = 3  # example files quoted per channel count


def channel_count(image: np.ndarray) -> int:
    """1 for (H, W), C for (H, W, C)."""
    return 1 if image.ndim == 2 else image.shape[2]


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``image`` (H, W) or (H, W, 3) with ``channels`` (1 or 3) channels, dtype kept.

    Grey -> (H, W, 3) repeats the value; RGB -> (H, W) is the BT.709 luminance, rounded and clipped for
    integer dtypes. An image that already has ``channels`` channels is returned unchanged.
    """
    have = channel_count(image)
    if have == channels:
        return image
    if channels == 3:
        return np.repeat(image[..., None], 3, axis=2)
    grey = image.astype(np.float64) @ LUMINANCE
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(image.dtype)
    return grey.astype(image.dtype)


def require_channels(image: np.ndarray, expected: int, name: str) -> None:
    """InputError naming ``name`` (the file, or file and page) unless ``image`` has ``expected`` channels, the
    count a trained network takes."""
    have = channel_count(image)
    if have != expected:
        raise InputError(f"{name}: image has {have} channel(s) but the model takes {expected}")


def _channel_words(count: int) -> str:
    return {1: "1 channel (grey)", 3: "3 channels (RGB)"}.get(count, f"{count} channels")


class ChannelRule:
    """Applies ``dataset.import.channels`` (None, 1 or 3) to the images of one import, in order.

    With None it remembers the channel count of each image seen (and up to three file names per count)
    and raises :class:`InputError` listing examples of each count as soon as two counts occur.
    """

    def __init__(self, channels: int | None, key: str = "dataset.import.channels") -> None:
        self.channels = channels
        self.key = key
        self.examples: dict[int, list[str]] = {}

    def apply(self, image: np.ndarray, name: str) -> np.ndarray:
        """``image`` with the dataset's channel count; ``name`` (its file) is quoted in messages."""
        if self.channels is not None:
            return convert_channels(image, self.channels)
        count = channel_count(image)
        names = self.examples.setdefault(count, [])
        if len(names) < LISTED_AT_MOST:
            names.append(name)
        if len(self.examples) > 1:
            listing = "; ".join(f"{_channel_words(n)}: {', '.join(files)}" for n, files in self.examples.items())
            raise InputError(
                f"the images differ in channel count ({listing}); the network takes one. Set config key "
                f"{self.key} to 1 (RGB images become grey by luminance) or 3 (grey images are repeated)"
            )
        return image
