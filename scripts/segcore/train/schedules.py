"""Learning-rate schedules: a per-epoch base rate (plateau, poly or cosine) times a linear warm-up per step.

Base rate of epoch ``e`` (1-based) of ``E`` planned epochs, initial rate ``lr``::

    plateau   the rate ReduceLROnPlateau leaves after epoch e - 1 (lr times lr_factor per plateau of
              lr_patience + 1 epochs without improvement of the selection measure)
    poly      lr * (1 - (e - 1) / E) ** 0.9          nnU-Net's schedule: lr at epoch 1, lr * (1 / E) ** 0.9 at E
    cosine    lr * (1 + cos(pi * (e - 1) / E)) / 2   lr at epoch 1, close to 0 at E

Warm-up: the first ``warmup_epochs * batches`` optimiser steps of the run (a step counter over epochs) use
the base rate times ``(step + 1) / warmup_steps``, so the rate rises linearly from ``lr / warmup_steps``
and reaches the base rate at the last warm-up step; 0 warm-up epochs leave every step at the base rate.
Warm-up keeps the first steps of a freshly initialised network (large gradients, BatchNorm statistics not
yet settled) from knocking Adam's moment estimates off course.

Poly and cosine rates are pure functions of the epoch, so a resumed run needs no schedule state; the
plateau state (best measure, bad epochs) lives in the torch scheduler, saved with the training state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

SCHEDULES = ("plateau", "poly", "cosine")
POLY_EXPONENT = 0.9


def decay_factor(schedule: str, epoch: int, epochs: int) -> float:
    """The poly or cosine factor of 1-based ``epoch`` of ``epochs`` (module docstring); 1 at epoch 1.

    Raises ValueError for an epoch outside ``1..epochs`` or a schedule other than poly and cosine.
    """
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch {epoch} outside 1..{epochs}")
    done = (epoch - 1) / epochs
    if schedule == "poly":
        return (1.0 - done) ** POLY_EXPONENT
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    raise ValueError(f"no decay factor for schedule {schedule!r}; expected poly or cosine")


def warmup_factors(epoch: int, batches: int, warmup_epochs: int) -> np.ndarray:
    """float64 ``(batches,)``: the warm-up factor of each step of 1-based ``epoch`` (all 1 after warm-up).

    Step ``s`` of the run (0-based, ``(epoch - 1) * batches + i`` for batch ``i``) gets
    ``min(1, (s + 1) / (warmup_epochs * batches))``.
    """
    warmup_steps = warmup_epochs * batches
    if warmup_steps == 0:
        return np.ones(batches)
    steps = (epoch - 1) * batches + np.arange(batches)
    return np.minimum(1.0, (steps + 1) / warmup_steps)


class LearningRateSchedule:
    """Sets the optimiser's learning rate for every step of an epoch and advances between epochs.

    ``mode``: ``"min"`` when a lower selection measure is better (validation loss), ``"max"`` when higher is
    (validation Dice); used by the plateau schedule only. The optimiser's param groups hold the base rate
    between epochs (what the saved optimiser state carries).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        schedule: str,
        learning_rate: float,
        epochs: int,
        warmup_epochs: int,
        lr_factor: float,
        lr_patience: int,
        mode: str,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
        self.optimizer = optimizer
        self.schedule, self.learning_rate, self.epochs = schedule, learning_rate, epochs
        self.warmup_epochs = warmup_epochs
        self._base = learning_rate
        self.plateau = None
        if schedule == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=mode, factor=lr_factor, patience=lr_patience
            )

    def base_rate(self, epoch: int) -> float:
        """The base rate of 1-based ``epoch`` (before warm-up); for plateau, the optimiser's current rate."""
        if self.plateau is not None:
            return float(self.optimizer.param_groups[0]["lr"])
        return self.learning_rate * decay_factor(self.schedule, min(epoch, self.epochs), self.epochs)

    def begin_epoch(self, epoch: int, batches: int) -> tuple[float, np.ndarray]:
        """Before ``epoch`` of ``batches`` steps: (its base rate, float64 ``(batches,)`` rate of each step)."""
        self._base = self.base_rate(epoch)
        return self._base, self._base * warmup_factors(epoch, batches, self.warmup_epochs)

    def set_rate(self, rate: float) -> None:
        """Give every param group the learning rate ``rate`` (called before each optimiser step)."""
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def end_epoch(self, measure: float) -> None:
        """After the epoch begun last: restore its base rate (warm-up steps changed it), then let the plateau
        schedule see the epoch's selection ``measure``."""
        self.set_rate(self._base)
        if self.plateau is not None:
            self.plateau.step(measure)

    def state_dict(self) -> dict[str, Any]:
        """The plateau scheduler's state (empty for poly and cosine, which depend on the epoch alone)."""
        return self.plateau.state_dict() if self.plateau is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        if self.plateau is not None:
            self.plateau.load_state_dict(state)
