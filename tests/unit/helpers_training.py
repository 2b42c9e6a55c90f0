"""Test doubles for interrupted training runs (resume tests)."""

from __future__ import annotations

from segcore.train.data import BatchSampler


class Interrupt(Exception):
    """Stands for the kill of a training job."""


class StopAtEpoch(BatchSampler):
    """A BatchSampler whose epoch ``stop_at`` (1-based) raises :class:`Interrupt` at its first batch."""

    def __init__(self, *args, stop_at: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop_at, self.epochs_started = stop_at, 0

    def epoch(self, rng):
        self.epochs_started += 1
        if self.epochs_started == self.stop_at:
            raise Interrupt
        yield from super().epoch(rng)
