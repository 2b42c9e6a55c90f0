"""Ids of augmented copies, apart from the augmentation itself (no imgaug or elasticdeform to import), so
training can tell copies from originals in the torch environment."""

from __future__ import annotations


def augmented_id(sample_id: str, copy_index: int) -> str:
    """Id of augmented copy ``copy_index`` (1-based) of ``sample_id``."""
    return f"{sample_id}_aug{copy_index}"


def original_of(sample_id: str) -> str:
    """The id :func:`augmented_id` made ``sample_id`` from (``"a_aug2"`` -> ``"a"``), or ``sample_id`` itself
    when it is not shaped like a copy's id. An original may be shaped like one: callers that know the
    originals check those first."""
    stem, marker, index = sample_id.rpartition("_aug")
    return stem if marker and index.isdigit() else sample_id
