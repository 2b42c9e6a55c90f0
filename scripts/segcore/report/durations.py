"""Durations as people read them: h:mm:ss rather than a count of seconds."""

from __future__ import annotations

import math


def format_duration(seconds: float | None, decimals: int = 0) -> str:
    """``seconds`` as ``h:mm:ss`` (hours not capped: 100 h is ``100:00:00``), rounded half up to ``decimals``
    decimals of a second (``0:00:12.3``); a dash for None or NaN. Raises ValueError for a negative duration.

    >>> format_duration(3725.4)
    '1:02:05'
    """
    if seconds is None or math.isnan(seconds):
        return "-"
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    scale = 10**decimals
    # Round once, in whole units of the last shown digit, so 59.96 s becomes 0:01:00.0, never 0:00:60.0.
    units = math.floor(seconds * scale + 0.5)
    whole, fraction = divmod(units, scale)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{text}.{fraction:0{decimals}d}" if decimals else text
