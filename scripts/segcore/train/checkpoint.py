"""Resumable training state: written atomically after every epoch, refused when another run wrote it.

A state file is a ``torch.save`` dictionary of tensors and plain Python types only, so it loads with
``torch.load(..., weights_only=True)`` (no code runs on load)::

    format        int, STATE_FORMAT
    fingerprint   {part name: SHA-256 hex} of the run that wrote it (:func:`fingerprint`)
    ...           whatever the trainer stores (model, optimizer and scheduler state dicts, progress)

The fingerprint is one hash per part of the run's definition (experiment spec, training settings, seed, data),
so a mismatch is reported by the name of the part that differs. The file is not a declared output of the
Snakemake rule: Snakemake deletes the outputs of a failed job, and this file must survive exactly that.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segcore.io import InputError
from segcore.model.model_file import save_torch

STATE_FORMAT = 1


@dataclass(frozen=True)
class ResumeFile:
    """Where a run keeps its state between epochs, and the fingerprint that state must carry."""

    path: Path
    fingerprint: Mapping[str, str]


def fingerprint(parts: Mapping[str, Any]) -> dict[str, str]:
    """``{name: SHA-256 hex}`` of each part's canonical JSON (keys sorted, no whitespace).

    Parts must be JSON-serialisable (dicts, lists, strings, numbers, booleans, None); tuples hash like lists.
    Raises TypeError for anything else, so a part cannot silently hash by ``repr``.
    """
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        for name, value in parts.items()
    }


def array_digest(named_arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """SHA-256 hex over each array's name, dtype, shape and values, in the order given.

    Two sequences give the same digest exactly when names, dtypes, shapes and values agree (up to hash
    collisions); memory layout does not matter.
    """
    digest = hashlib.sha256()
    for name, array in named_arrays:
        array = np.asarray(array)
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def save_state(path: str | os.PathLike, state: Mapping[str, Any], run_fingerprint: Mapping[str, str]) -> None:
    """Write ``state`` and the run's fingerprint to ``path`` atomically (a kill mid-write keeps the old file).

    ``state`` must not use the keys ``format`` or ``fingerprint`` and must hold only tensors and plain types.
    """
    reserved = {"format", "fingerprint"} & set(state)
    if reserved:
        raise ValueError(f"state uses reserved keys {sorted(reserved)}")
    save_torch({"format": STATE_FORMAT, "fingerprint": dict(run_fingerprint), **state}, path)


def differing_parts(saved: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """Sorted names of the parts whose hashes differ, including parts present in only one fingerprint."""
    return sorted(name for name in set(saved) | set(expected) if saved.get(name) != expected.get(name))


def load_state(path: str | os.PathLike, run_fingerprint: Mapping[str, str]) -> dict[str, Any] | None:
    """The state saved at ``path`` by :func:`save_state` (tensors on the CPU), or None if there is none.

    Raises :class:`InputError` naming the file when it cannot be read, has another format version, or was
    written by a run whose fingerprint differs (naming the differing parts): such a state is never used.
    """
    path = Path(path)
    if not path.exists():
        return None
    advice = f"delete {path} to train from the start"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated, foreign or unsafe files
        raise InputError(f"{path}: cannot read the saved training state ({error}); {advice}") from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise InputError(f"{path}: training state of format {found!r}, expected {STATE_FORMAT}; {advice}")
    differing = differing_parts(state.get("fingerprint", {}), run_fingerprint)
    if differing:
        raise InputError(
            f"{path}: the saved training state belongs to another run (differs in {', '.join(differing)}); "
            f"restore that configuration to resume it, or {advice}"
        )
    return state


def remove_state(path: str | os.PathLike) -> None:
    """Delete the state file (if any) and its folder when that is left empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # not empty (other files) or already gone
        pass
