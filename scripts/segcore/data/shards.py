"""Shard assignment: heavy per-image stages run as a few jobs, each over a fixed share of the ids."""

from __future__ import annotations

from collections.abc import Sequence


def shard_ids(ids: Sequence[str], shard: int, n_shards: int) -> list[str]:
    """The ids of shard ``shard`` (0-based) of ``n_shards``: every ``n_shards``-th id of the sorted ids.

    Shards are disjoint and together hold every id; striding (rather than contiguous blocks) keeps their sizes
    within one of each other. Raises ValueError for a shard outside 0..n_shards-1.
    """
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is outside 0..{n_shards - 1}")
    return sorted(ids)[shard::n_shards]
