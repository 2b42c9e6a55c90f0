"""Running the model on batches of tiles: test-time augmentation and the host-device round trip.

Test-time augmentation averages a model's softmax over flips and rotations of its input.
Every transform here is an element of the dihedral group D4 of the square (the tiles fed to the model are
square, so a quarter turn keeps their shape). A transform is applied to a batch of tiles, the model runs on
it, and the inverse transform maps the model's output back onto the original pixel grid before averaging,
as the U-Net paper did with rotations on the ISBI data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

TTA_MODES = ("none", "flips", "d4")
_SPATIAL_DIMS = (-2, -1)
Tag = TypeVar("Tag")  # what the caller labels each batch with (e.g. its tile positions), passed through


@dataclass(frozen=True)
class Transform:
    """A flip followed by ``quarter_turns`` counter-clockwise quarter turns of the last two tensor dims.

    ``flip_dims`` lists the dims flipped first: ``()`` none, ``(-1,)`` horizontal (mirror left-right),
    ``(-2,)`` vertical (mirror top-bottom), ``(-2, -1)`` both.
    """

    flip_dims: tuple[int, ...] = ()
    quarter_turns: int = 0

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """Transform ``(N, C, T, T)`` input tiles; returns a new tensor of the same shape."""
        if self.flip_dims:
            batch = torch.flip(batch, self.flip_dims)
        if self.quarter_turns % 4:
            batch = torch.rot90(batch, self.quarter_turns, _SPATIAL_DIMS)
        return batch

    def invert(self, batch: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`apply` on the model's ``(N, K, S, S)`` output, restoring the input's orientation."""
        if self.quarter_turns % 4:
            batch = torch.rot90(batch, -self.quarter_turns, _SPATIAL_DIMS)
        if self.flip_dims:
            batch = torch.flip(batch, self.flip_dims)
        return batch


def tta_transforms(mode: str) -> list[Transform]:
    """The transforms whose predictions are averaged for a TTA ``mode``; the identity always comes first.

    - ``"none"``: the identity only (1 forward pass per tile).
    - ``"flips"``: identity, horizontal, vertical and both flips (4 passes).
    - ``"d4"``: all 8 symmetries of the square: 4 rotations, each with and without a horizontal flip.

    Raises ValueError for any other ``mode``.
    """
    if mode == "none":
        return [Transform()]
    if mode == "flips":
        return [Transform(flip_dims) for flip_dims in ((), (-1,), (-2,), (-2, -1))]
    if mode == "d4":
        return [Transform(flip_dims, turns) for flip_dims in ((), (-1,)) for turns in range(4)]
    raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}; got {mode!r}")


def averaged_softmax(model: torch.nn.Module, batch: torch.Tensor, transforms: list[Transform]) -> torch.Tensor:
    """Mean over ``transforms`` of ``softmax(model(t(batch)))`` mapped back by ``t``'s inverse.

    ``batch``: float32 ``(N, C, T, T)`` on the model's device; returns float32 ``(N, K, S, S)`` class
    probabilities (summing to 1 over K) on the same device. The caller provides the no-grad context.
    """
    probability_sum: torch.Tensor | None = None
    for transform in transforms:
        logits = model(transform.apply(batch))
        probabilities = transform.invert(torch.softmax(logits, dim=1))
        if probability_sum is None:
            probability_sum = probabilities
        else:
            probability_sum += probabilities
    if probability_sum is None:
        raise ValueError("transforms must not be empty")
    if len(transforms) > 1:
        probability_sum /= len(transforms)
    return probability_sum


def probability_batches(
    model: torch.nn.Module,
    batches: Iterator[tuple[Tag, np.ndarray]],
    transforms: list[Transform],
    device: torch.device,
    expected_shape: tuple[int, int, int],
) -> Iterator[tuple[Tag, np.ndarray]]:
    """Run ``(tag, tiles)`` batches through the model; yield ``(tag, probabilities)`` in the same order.

    ``tiles``: float32 ``(n, C, T, T)`` numpy; ``probabilities``: float32 ``(n, K, S, S)`` numpy on the host,
    averaged over ``transforms`` (see :func:`averaged_softmax`).
    The model must already be on ``device``; the caller provides the no-grad context. ``tiles`` are read
    (on the CPU) or copied (to pinned memory, for CUDA) before the next batch is drawn, so the producer
    may refill one buffer.

    On CUDA each batch is launched before the previous one is handed back, so tile extraction and blending
    on the CPU overlap the GPU's work; copies are asynchronous through pinned memory and an event marks when
    a batch's probabilities have arrived on the host. Raises ValueError if the model's output per tile is
    not ``expected_shape``.
    """
    on_cuda = device.type == "cuda"

    def launch(tiles: np.ndarray) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        batch = torch.from_numpy(tiles)
        batch = batch.pin_memory().to(device, non_blocking=True) if on_cuda else batch.to(device)
        probabilities = averaged_softmax(model, batch, transforms)
        if tuple(probabilities.shape[1:]) != expected_shape:
            raise ValueError(
                f"model output per tile has shape {tuple(probabilities.shape[1:])}; expected (K, S, S) = "
                f"{expected_shape} from num_classes, tile_size and margin"
            )
        if not on_cuda:
            return probabilities, None
        host_probabilities = probabilities.to("cpu", non_blocking=True)
        arrived = torch.cuda.Event()
        arrived.record()
        return host_probabilities, arrived

    # One batch in flight while the previous one is blended lets CPU and GPU work overlap; on the CPU the
    # model and the blending share the cores, so holding a second batch would only cost memory.
    batches_in_flight = 1 if on_cuda else 0
    in_flight: deque = deque()
    for tag, tiles in batches:
        in_flight.append((tag, *launch(tiles)))
        if len(in_flight) > batches_in_flight:
            yield _collect(*in_flight.popleft())
    while in_flight:
        yield _collect(*in_flight.popleft())


def _collect(tag: Tag, probabilities: torch.Tensor, arrived: torch.cuda.Event | None) -> tuple[Tag, np.ndarray]:
    """Wait for a launched batch to reach the host; its probabilities as a numpy view."""
    if arrived is not None:
        arrived.synchronize()
    return tag, probabilities.numpy()
