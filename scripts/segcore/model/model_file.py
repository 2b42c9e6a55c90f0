"""Saving and loading trained models, and choosing the inference tile for a model and an image."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from segcore.io import atomic_path
from segcore.model.unet import UNet, build_model, valid_input_size


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically, with bytes that depend on ``obj`` alone.

    ``torch.save`` to a file name stores every record under a folder named after the file, so saving
    through a random temporary name would make identical objects give different bytes; saving into a
    buffer names that folder ``archive`` always.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path, Path(path).suffix or ".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


def save_model(path: str | os.PathLike, model: torch.nn.Module, metadata: Mapping[str, Any]) -> None:
    """Write ``{"state_dict", "metadata"}`` atomically; metadata must hold ``model_spec``, ``in_channels``,
    ``num_classes`` and ``class_names`` and only plain types (so the file loads with ``weights_only=True``)."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    # save_torch, not torch.save on a temporary name: the zip inside a .pt file records the file's name.
    save_torch({"state_dict": state, "metadata": dict(metadata)}, path)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[UNet, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_model`, in eval mode on ``device``; returns (model, metadata)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    metadata = saved["metadata"]
    model = build_model(metadata["model_spec"], metadata["in_channels"], metadata["num_classes"])
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), metadata


def inference_tile_size(model: UNet, requested: int, image_shape: tuple[int, int]) -> int:
    """The tile side for overlap-tile prediction of an image of ``image_shape`` (H, W) by ``model``
    (:func:`tile_size_for` with the model's depth and margin)."""
    return tile_size_for(model.depth, model.margin, requested, image_shape)


def tile_size_for(depth: int, margin: int, requested: int, image_shape: tuple[int, int]) -> int:
    """The tile side for overlap-tile prediction of an image of ``image_shape`` (H, W) by a U-Net of
    ``depth`` poolings whose output lies ``margin`` pixels inside its input (0: same padding).

    Same padding: the requested size rounded up to a multiple of ``2**depth``, but no larger than needed to
    hold the whole image in one tile. Valid padding: the smallest valid input whose output is at least the
    requested size (or the image, if smaller), since the output is what a tile contributes. Takes numbers
    rather than a model so that a TorchScript model (which keeps neither) is tiled alike.
    """
    multiple = 2**depth
    if margin == 0:
        needed = max(image_shape)
        size = min(requested, needed)
        return max(multiple, math.ceil(size / multiple) * multiple)
    wanted_output = max(1, min(requested, max(image_shape)))
    return valid_input_size(wanted_output, depth)
