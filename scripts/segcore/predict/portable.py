"""The trained network in the forms the model bundle ships (:mod:`segcore.predict.bundle` writes them):
TorchScript with every BatchNorm folded into its convolution, and ONNX; each verified against the network.

The network is a :class:`segcore.model.unet.UNet` or a :class:`segcore.model.ensemble.SoftmaxEnsemble` of
them (the folds of a cross-validation): both map float32 ``(N, C, H, W)`` to float32 ``(N, K, H - 2m,
W - 2m)`` (logits; the ensemble's are the log of its members' mean softmax) and carry ``depth`` and
``margin`` m. Folding is :func:`segcore.model.unet.prepare_for_inference`, which folds every member of an
ensemble alike.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import nn

from segcore.model.ensemble import SoftmaxEnsemble
from segcore.model.unet import prepare_for_inference, valid_input_size

ONNX_OPSET = 17
# Folding BatchNorm changes float rounding only: logits agree with the unfused network far inside this.
FOLD_TOLERANCE = 1e-4


def probe_side(depth: int, margin: int) -> int:
    """An input side the network accepts: three times ``2**depth`` (same padding, an odd multiple so that
    no level is square by accident of powers of two), or the smallest valid size (valid padding)."""
    return 3 * 2**depth if margin == 0 else valid_input_size(1, depth)


def probe_batch(in_channels: int, side: int, seed: int = 0) -> torch.Tensor:
    """float32 (2, C, side, side) normal noise from a fixed seed (independent of the global generator)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, in_channels, side, side, generator=generator)


def check_folded(model: nn.Module, scripted: torch.jit.ScriptModule, in_channels: int) -> float:
    """Verify that ``scripted`` is ``model`` with BatchNorm folded; returns the largest logit difference.

    ``model``: the unfused network, a U-Net or an ensemble of them (put in eval mode here, so BatchNorm uses
    its running statistics). Raises RuntimeError when the TorchScript graph (every member's, inlined) still
    holds a batch-norm operation or the outputs on a probe batch differ by more than :data:`FOLD_TOLERANCE`
    (absolute, plus as much relative).
    """
    graph = str(scripted.inlined_graph)
    if "batch_norm" in graph:
        raise RuntimeError("the TorchScript model still runs BatchNorm: folding into the convolutions failed")
    model.eval()
    probe = probe_batch(in_channels, probe_side(model.depth, model.margin))
    with torch.inference_mode():
        expected, folded = model(probe), scripted(probe)
    difference = float((expected - folded).abs().max())
    if not torch.allclose(folded, expected, atol=FOLD_TOLERANCE, rtol=FOLD_TOLERANCE):
        raise RuntimeError(f"the folded TorchScript model's logits differ from the network's by {difference}")
    return difference


def script_for_inference(model: nn.Module, in_channels: int) -> torch.jit.ScriptModule:
    """TorchScript of ``model`` (a U-Net or an ensemble) on the CPU in eval mode with BatchNorm folded,
    verified (:func:`check_folded`).

    ``model`` itself is left as it was, but moved to the CPU (a folded copy is scripted).
    """
    model = model.cpu()
    with warnings.catch_warnings():
        # torch 2.10+ calls TorchScript deprecated; it stays the one format loadable without Python classes.
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(prepare_for_inference(model))
    check_folded(model, scripted, in_channels)
    return scripted


def onnx_available() -> bool:
    """Whether the optional ``onnx`` package is installed (the ONNX file is written only then)."""
    return importlib.util.find_spec("onnx") is not None


def onnx_obstacle(model: nn.Module) -> str | None:
    """Why ``model`` cannot be exported to ONNX with dynamic sizes, or None when it can."""
    # The export traces the network, so sizes it computes in Python (valid padding's crops, unpooling's
    # output size) would be frozen to the probe's. An ensemble has no keep_indices of its own: ask every
    # module, so that unpooling members are found too.
    if model.margin != 0 or any(getattr(module, "keep_indices", False) for module in model.modules()):
        return "not written: valid padding and unpooling need sizes TorchScript computes; use model.ts"
    # Known before trying (tests/unit/test_bundle.py checks it still holds): trying fails, and the exporter
    # dumps the whole graph to stderr as it does.
    if isinstance(model, SoftmaxEnsemble):
        return (
            f"not written: torch's ONNX exporter (opset {ONNX_OPSET}) has no operator for the fold ensemble's "
            "logaddexp; use model.ts"
        )
    return None


def export_onnx(model: nn.Module, in_channels: int, path: Path) -> tuple[str | None, str]:
    """Write ``model`` (folded, eval mode) as ONNX to ``path`` when possible; (file name or None, note).

    Networks with sizes computed in Python and ensembles get no file (:func:`onnx_obstacle`), nor does any
    network without the ``onnx`` package; the note says why. The file is checked with ``onnx.checker``, and
    with ``onnxruntime`` (when installed) against the network at a second size.
    """
    # The obstacle first: installing onnx would not help such a network.
    obstacle = onnx_obstacle(model)
    if obstacle is not None:
        return None, obstacle
    if not onnx_available():
        return None, "not written: the optional onnx package is not installed (pip install onnx)"
    import onnx

    folded = prepare_for_inference(model.cpu())
    side = probe_side(model.depth, model.margin)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the Python size checks; deprecation notices
        torch.onnx.export(
            folded, (probe_batch(in_channels, side),), str(path), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["image"], output_names=["logits"], dynamic_axes={"image": axes, "logits": axes},
        )  # fmt: skip
    onnx.checker.check_model(str(path))
    note = f"ONNX opset {ONNX_OPSET}: input 'image' float32 (N, C, H, W), output 'logits'; dynamic N, H, W"
    if importlib.util.find_spec("onnxruntime") is None:
        return path.name, note + " (not run at export: onnxruntime is not installed)"
    import onnxruntime

    probe = probe_batch(in_channels, side + 2**model.depth, seed=1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": probe.numpy()})
    with torch.inference_mode():
        expected = folded(probe)
    if not torch.allclose(torch.from_numpy(logits), expected, atol=FOLD_TOLERANCE, rtol=FOLD_TOLERANCE):
        raise RuntimeError(f"{path}: onnxruntime's logits differ from the network's at another size")
    return path.name, note + " (checked with onnxruntime at export)"
