"""Tests for the model bundle (segcore.predict.bundle, segcore.predict.portable, segcore.predict.export) and
the segment command (segcore.predict.segment, python -m segcore.segment).

References: the eager, unfused network in eval mode (BatchNorm with non-trivial running statistics) for the
TorchScript and ONNX models; rule predict's in-process function (predict_shard) for the command's masks and
probabilities, compared bit for bit on the CPU with one thread on both sides. For a fold ensemble's bundle:
the single model it copies, and rule predict's loading (load_predictor: load_models and inference_settings)
through segment_image.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage import io as skio

from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.io import InputError
from segcore.model.ensemble import SoftmaxEnsemble
from segcore.model.model_file import save_model
from segcore.model.unet import UNet, build_model, prepare_for_inference
from segcore.plan.normalise import Normalisation
from segcore.plan.plan import Plan, read_plan, resolve_prediction, write_plan
from segcore.predict.bundle import CARD, ONNX, TORCHSCRIPT, ModelCard, read_bundle, read_card
from segcore.predict.export import export_model
from segcore.predict.inference import InferenceSettings, predict_image, segment_image
from segcore.predict.outputs import read_shard_mask, read_shard_probabilities
from segcore.predict.portable import check_folded, export_onnx, script_for_inference
from segcore.predict.segment import input_files, segment
from segcore.predict.shard import PredictionSettings, load_predictor, predict_shard
from segcore.train.run import write_training_facts

pytestmark = pytest.mark.usefixtures("single_torch_thread")
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SPECS = {
    "same": {"batchnorm": True},
    "valid": {"batchnorm": True, "padding": "valid"},
    "residual": {"batchnorm": True, "residual": True},
    "unpool": {"batchnorm": True, "upsampling": "unpool"},
    "interp_add": {"batchnorm": True, "upsampling": "interp", "fusion": "add"},
    "plain": {"batchnorm": False},
}


def tiny_model(in_channels: int, num_classes: int, seed: int = 0, **keys) -> tuple[UNet, dict]:
    """A 2-level [4, 8] U-Net in eval mode whose BatchNorm layers hold random affine parameters and running
    statistics (so folding them is not the identity)."""
    torch.manual_seed(seed)
    spec = with_defaults("experiments.*.model", {"name": "unet", "widths": [4, 8], **keys})
    model = build_model(spec, in_channels, num_classes)
    generator = torch.Generator().manual_seed(seed + 1)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            size = layer.num_features
            layer.running_mean.copy_(torch.randn(size, generator=generator))
            layer.running_var.copy_(torch.rand(size, generator=generator) * 2 + 0.2)
            layer.weight.data.copy_(torch.randn(size, generator=generator))
            layer.bias.data.copy_(torch.randn(size, generator=generator))
    return model.eval(), spec


def settings_for(model: UNet, num_classes: int, **changes) -> InferenceSettings:
    values = {
        "num_classes": num_classes, "depth": model.depth, "margin": model.margin,
        "normalisation": Normalisation("dtype"), "tile_size": 16, "overlap": 4, "blend": "gaussian",
        "batch_size": 3, "tta": "flips", "threshold": None, "border_class": False, "instances": "components",
        "watershed_h": 1.0,
    }  # fmt: skip
    return InferenceSettings(**{**values, **changes})


# --- TorchScript with BatchNorm folded ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_torchscript_equals_the_eager_network_on_odd_sized_images(name: str):
    model, _ = tiny_model(3, 3, **SPECS[name])
    scripted = script_for_inference(model, 3)
    assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in scripted.modules())
    assert "batch_norm" not in str(scripted.inlined_graph)
    image = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)  # several tiles, odd sides
    settings = settings_for(model, 3)
    device = torch.device("cpu")
    probabilities = predict_image(scripted, image, settings, device)
    # TorchScript itself changes nothing: bit for bit the eager network with the same folding.
    np.testing.assert_array_equal(probabilities, predict_image(prepare_for_inference(model), image, settings, device))
    # Folding rounds differently from BatchNorm; unpooling can move a value where that rounding flips the
    # argmax of a 2x2 window between near-equal entries, so it gets a looser bound.
    tolerance = 1e-4 if name == "unpool" else 1e-5
    eager = predict_image(model, image, settings, device)
    np.testing.assert_allclose(probabilities, eager, atol=tolerance, rtol=0)
    # The raw network at a size it takes (same: multiples of 2; valid: sizes that pool evenly).
    side = 12 if model.margin == 0 else 22
    batch = torch.randn(2, 3, side, side + (2 if model.margin == 0 else 4), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(scripted(batch), model(batch), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_the_fold_check_catches_a_model_that_still_runs_batchnorm():
    model, _ = tiny_model(1, 2, batchnorm=True)
    with pytest.raises(RuntimeError, match="still runs BatchNorm"):
        check_folded(model, torch.jit.script(model), 1)
    other, _ = tiny_model(1, 2, seed=5, batchnorm=False)
    with pytest.raises(RuntimeError, match="differ"):
        check_folded(model, torch.jit.script(other), 1)


def test_onnx_is_skipped_with_a_note_without_the_onnx_package(tmp_path: Path, monkeypatch):
    import segcore.predict.portable as portable

    monkeypatch.setattr(portable, "onnx_available", lambda: False)
    model, _ = tiny_model(3, 3, batchnorm=True)
    file, note = export_onnx(model, 3, tmp_path / ONNX)
    assert file is None and "onnx package is not installed" in note
    assert not (tmp_path / ONNX).exists()


@pytest.mark.parametrize("name", ["same", "residual", "interp_add"])
def test_onnx_equals_the_eager_network(tmp_path: Path, name: str):
    pytest.importorskip("onnx", reason="the optional onnx package is not installed")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model, _ = tiny_model(3, 3, **SPECS[name])
    file, note = export_onnx(model, 3, tmp_path / ONNX)
    assert file == ONNX, note
    session = onnxruntime.InferenceSession(str(tmp_path / ONNX), providers=["CPUExecutionProvider"])
    for height, width in [(12, 20), (36, 52)]:
        batch = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(height))
        (logits,) = session.run(None, {"image": batch.numpy()})
        with torch.inference_mode():
            np.testing.assert_allclose(logits, model(batch).numpy(), atol=1e-5, rtol=1e-5)


def test_onnx_is_not_written_for_networks_with_sizes_computed_in_python(tmp_path: Path):
    pytest.importorskip("onnx", reason="the optional onnx package is not installed")
    for name in ("valid", "unpool"):
        model, _ = tiny_model(3, 3, **SPECS[name])
        file, note = export_onnx(model, 3, tmp_path / ONNX)
        assert file is None and "model.ts" in note


# --- the bundle's files ------------------------------------------------------------------------------------


def write_experiment(
    folder: Path, model: UNet, spec: dict, class_names: list[str], normalisation: Normalisation, **metadata
) -> dict:
    """model.pt, plan.json and training.json of a trained experiment; returns the prediction config section."""
    in_channels = model.encoder[0].body[0].in_channels
    save_model(folder / "model.pt", model, {
        "model_spec": spec, "in_channels": in_channels, "num_classes": len(class_names),
        "class_names": class_names, **metadata,
    })  # fmt: skip
    plan = Plan(
        experiment="tiny", depth=model.depth, normalisation=normalisation, patch_size=None, batch_size=2,
        tile_size=16, overlap=4, validation_every=1,
    )  # fmt: skip
    write_plan(folder / "plan.json", plan)
    write_training_facts(folder / "training.json", {"experiment": "tiny", "epochs_run": 2, "git_commit": "unknown"})
    return with_defaults("prediction", {"tta": "flips", "save_probabilities": True, "threshold": "auto"})


def export(folder: Path, prediction: dict) -> ModelCard:
    return export_model(
        folder / "model.pt", folder / "plan.json", folder / "training.json", prediction, folder / "bundle",
        experiment="tiny", pipeline_commit=None,
    )  # fmt: skip


def test_the_model_card_round_trips_and_describes_the_model(tmp_path: Path):
    model, spec = tiny_model(3, 4, batchnorm=True)
    normalisation = Normalisation("zscore", (100.0, 90.0, 80.0), (50.0, 40.0, 30.0))
    prediction = write_experiment(
        tmp_path, model, spec, ["background", "a", "b", "border"], normalisation, border_class=True
    )
    card = export(tmp_path, prediction)
    assert read_card(tmp_path / "bundle") == card
    document = json.loads((tmp_path / "bundle" / CARD).read_text())
    assert document["classes"] == ["background", "a", "b"] and document["border_class"] is True
    assert document["output_classes"] == ["background", "a", "b", "border"]
    assert document["input"]["channels"] == 3
    assert document["normalisation"] == normalisation.as_dict()
    assert document["network"] | {"spec": None} == {
        "spec": None, "depth": 1, "margin": 0, "padding": "same", "padding_multiple": 2, "members": 1,
    }  # fmt: skip
    assert document["prediction"] == {
        "tile_size": 16, "overlap": 4, "blend": "gaussian", "batch_size": 8, "tta": "flips",
        "operating_point": "argmax", "threshold": None, "instances": "watershed", "watershed_h": 1.0,
    }  # fmt: skip
    assert document["training"]["epochs_run"] == 2 and document["pipeline_commit"] is None
    assert document["files"]["torchscript"] == TORCHSCRIPT
    if importlib.util.find_spec("onnx") is None:
        assert document["files"]["onnx"] is None and "not installed" in document["files"]["onnx_note"]
    else:
        assert document["files"]["onnx"] == ONNX and (tmp_path / "bundle" / ONNX).is_file()
    # The card travels inside the TorchScript file too.
    with zipfile.ZipFile(tmp_path / "bundle" / TORCHSCRIPT) as archive:
        inside = [name for name in archive.namelist() if name.endswith(f"extra/{CARD}")]
        assert json.loads(archive.read(inside[0])) == document
    scripted, loaded = read_bundle(tmp_path / "bundle")
    assert loaded == card and not scripted.training
    assert ModelCard.from_dict(card.as_dict()) == card
    # A card written before ensembles has no network.members: one model.
    del document["network"]["members"]
    assert ModelCard.from_dict(document).members == 1


def test_a_binary_card_records_the_operating_point(tmp_path: Path):
    model, spec = tiny_model(1, 2, batchnorm=True, padding="valid")
    prediction = write_experiment(
        tmp_path, model, spec, ["background", "cell"], Normalisation("dtype"), foreground_threshold=0.3
    )
    card = export(tmp_path, prediction)
    assert card.inference.threshold == 0.3 and card.inference.margin == model.margin > 0
    document = json.loads((tmp_path / "bundle" / CARD).read_text())
    assert document["prediction"]["operating_point"] == "foreground probability >= 0.3"
    assert document["network"]["padding"] == "valid"
    assert read_card(tmp_path / "bundle") == card


# --- a fold ensemble's bundle ------------------------------------------------------------------------------


def write_folds(folder: Path, models: list[UNet], spec: dict, class_names: list[str], thresholds: list) -> dict:
    """fold-<f>/model.pt (one per model, with its threshold), plan.json and training.json as cross-validation
    leaves them; returns the prediction config section."""
    for fold, (model, threshold) in enumerate(zip(models, thresholds)):
        extra = {} if threshold is None else {"foreground_threshold": threshold}
        prediction = write_experiment(
            folder / f"fold-{fold}", model, spec, class_names, Normalisation("dtype"), **extra
        )
    for name in ("plan.json", "training.json"):  # the experiment's own (rules plan and summarise_folds)
        (folder / name).write_text((folder / "fold-0" / name).read_text())
    return prediction


def export_folds(folder: Path, prediction: dict, k: int) -> ModelCard:
    models = [folder / f"fold-{fold}" / "model.pt" for fold in range(k)]
    return export_model(
        models, folder / "plan.json", folder / "training.json", prediction, folder / "bundle", experiment="tiny",
        pipeline_commit=None,
    )  # fmt: skip


IMAGES = [np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8) for seed, size in [(4, (37, 53, 3)),
          (5, (16, 21, 3))]]  # fmt: skip


def test_an_ensemble_bundle_of_copies_of_one_model_predicts_like_that_model(tmp_path: Path):
    model, spec = tiny_model(3, 3, batchnorm=True, residual=True)
    prediction = write_folds(tmp_path, [model] * 3, spec, ["background", "a", "b"], [None] * 3)
    card = export_folds(tmp_path, prediction, 3)
    scripted, loaded = read_bundle(tmp_path / "bundle")
    assert loaded == card and card.members == 3
    # BatchNorm folded in every member: the inlined graph holds the three members and no batch norm.
    graph = str(scripted.inlined_graph)
    assert "batch_norm" not in graph and graph.count("aten::log_softmax") == 3
    device = torch.device("cpu")
    for image in IMAGES:
        # The reference: the one model itself, eager and unfused, with the card's settings.
        expected, expected_mask, _ = segment_image(model, image, card.inference, device)
        probabilities, mask, _ = segment_image(scripted, image, card.inference, device)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(mask, expected_mask)


def test_an_ensemble_bundle_predicts_as_rule_predict_with_the_mean_threshold(tmp_path: Path):
    (first, spec), (second, _) = (tiny_model(3, 2, seed=seed, batchnorm=True) for seed in (0, 5))
    models = [first, second]
    prediction = write_folds(tmp_path, models, spec, ["background", "cell"], [0.2, 0.5])
    card = export_folds(tmp_path, prediction, 2)
    document = json.loads((tmp_path / "bundle" / CARD).read_text())
    assert document["network"]["members"] == 2 and card.members == 2
    assert document["prediction"]["threshold"] == pytest.approx(0.35) == card.inference.threshold
    assert document["prediction"]["operating_point"] == f"foreground probability >= {card.inference.threshold}"
    # Rule predict's path: its settings and its ensemble of the same files.
    settings = PredictionSettings.from_config(resolve_prediction(prediction, read_plan(tmp_path / "plan.json")))
    paths = [tmp_path / f"fold-{fold}" / "model.pt" for fold in (0, 1)]
    predictor = load_predictor(paths, settings, "cpu", Normalisation("dtype"))
    assert card.inference == predictor.inference
    scripted, _ = read_bundle(tmp_path / "bundle")
    for image in IMAGES:
        expected, expected_mask, expected_instances = segment_image(
            predictor.model, image, predictor.inference, predictor.device
        )
        probabilities, mask, instances = segment_image(scripted, image, card.inference, predictor.device)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(mask, expected_mask)
        np.testing.assert_array_equal(instances, expected_instances)
    # Not the members' own: each alone predicts otherwise.
    single, _, _ = segment_image(prepare_for_inference(models[0]), IMAGES[0], card.inference, predictor.device)
    assert np.abs(single - segment_image(scripted, IMAGES[0], card.inference, predictor.device)[0]).max() > 1e-3


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_the_fold_check_covers_every_member_of_an_ensemble():
    members = [tiny_model(1, 2, seed=seed, batchnorm=True)[0] for seed in (0, 1)]
    ensemble = SoftmaxEnsemble(members).eval()
    assert check_folded(ensemble, script_for_inference(ensemble, 1), 1) < 1e-4
    # The second member unfolded: its BatchNorm is still in the graph.
    half = SoftmaxEnsemble([prepare_for_inference(members[0]), members[1]]).eval()
    with pytest.raises(RuntimeError, match="still runs BatchNorm"):
        check_folded(ensemble, torch.jit.script(half), 1)
    stranger = prepare_for_inference(tiny_model(1, 2, seed=7, batchnorm=True)[0])
    other = SoftmaxEnsemble([prepare_for_inference(members[0]), stranger])
    with pytest.raises(RuntimeError, match="differ"):
        check_folded(ensemble, torch.jit.script(other.eval()), 1)


def test_an_ensemble_gets_no_onnx_file_and_a_note_saying_why(tmp_path: Path):
    ensemble = SoftmaxEnsemble([tiny_model(1, 2, seed=seed, batchnorm=True)[0] for seed in (0, 1)]).eval()
    file, note = export_onnx(ensemble, 1, tmp_path / ONNX)
    assert file is None and "ensemble" in note and "model.ts" in note
    assert not (tmp_path / ONNX).exists()
    # The note's reason still holds: the exporter cannot write the ensemble (when it can, write the file).
    probe = torch.zeros(1, 1, 6, 6)
    with pytest.raises(torch.onnx.errors.UnsupportedOperatorError, match="logaddexp"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the Python size checks; deprecation notices
        torch.onnx.export(ensemble, (probe,), str(tmp_path / ONNX), dynamo=False, opset_version=17)
    # An ensemble of unpooling members is refused for its sizes, though the ensemble has no keep_indices.
    unpool = SoftmaxEnsemble([tiny_model(1, 2, seed=seed, **SPECS["unpool"])[0] for seed in (0, 1)]).eval()
    assert "valid padding and unpooling" in export_onnx(unpool, 1, tmp_path / ONNX)[1]


# --- the segment command equals rule predict ---------------------------------------------------------------


def run_segment(*arguments: str | Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(SCRIPTS), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "segcore.segment", *map(str, arguments)],
        capture_output=True, text=True, env=environment, timeout=300,
    )  # fmt: skip


def predict_with_the_pipeline(folder: Path, samples: list[Sample], prediction: dict, normalisation) -> Path:
    """Rule predict's in-process function on ``samples``; returns the shard folder."""
    write_canonical(folder / "data", samples, num_classes=4)
    plan = read_plan(folder / "plan.json")
    settings = PredictionSettings.from_config(resolve_prediction(prediction, plan))
    shard = folder / "predictions" / "shard-0"
    ids = [sample.id for sample in samples]
    predict_shard(folder / "model.pt", folder / "data", ids, settings, "cpu", shard, normalisation)
    return shard


def test_segment_command_equals_rule_predict_on_rgb_pngs_with_a_border_class(tmp_path: Path):
    model, spec = tiny_model(3, 4, batchnorm=True, residual=True)
    normalisation = Normalisation("zscore", (120.0, 110.0, 100.0), (60.0, 50.0, 70.0))
    prediction = write_experiment(
        tmp_path, model, spec, ["background", "a", "b", "border"], normalisation, border_class=True
    )
    export(tmp_path, prediction)
    rng = np.random.default_rng(7)
    sizes = [(37, 53), (16, 16), (9, 30)]
    samples = [
        Sample(f"img{i}", rng.integers(0, 256, (*size, 3), dtype=np.uint8), np.zeros(size, np.uint8),
               np.zeros(size, np.uint16))
        for i, size in enumerate(sizes)
    ]  # fmt: skip
    shard = predict_with_the_pipeline(tmp_path, samples, prediction, normalisation)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for sample in samples:
        skio.imsave(inputs / f"{sample.id}.png", sample.image, check_contrast=False)
    out = tmp_path / "out"
    result = run_segment(tmp_path / "bundle", inputs, "-o", out, "--probabilities", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    for sample in samples:
        mask = skio.imread(out / f"{sample.id}.png")
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, read_shard_mask(shard, sample.id))
        probabilities = tifffile.imread(out / f"{sample.id}.probabilities.tif")
        assert probabilities.dtype == np.float32 and probabilities.shape == (4, *sample.image.shape[:2])
        np.testing.assert_array_equal(probabilities, read_shard_probabilities(shard, sample.id))


def test_segment_command_equals_rule_predict_on_a_uint16_stack_at_the_operating_point(tmp_path: Path):
    model, spec = tiny_model(1, 2, batchnorm=True, padding="valid")
    normalisation = Normalisation("percentile", (900.0,), (400.0,), (100.0,), (3000.0,))
    prediction = write_experiment(
        tmp_path, model, spec, ["background", "cell"], normalisation, foreground_threshold=0.3
    )
    export(tmp_path, prediction)
    rng = np.random.default_rng(8)
    samples = [
        Sample(f"page{i}", rng.integers(0, 4000, (21, 27), dtype=np.uint16), np.zeros((21, 27), np.uint8),
               np.zeros((21, 27), np.uint16))
        for i in range(3)
    ]  # fmt: skip
    shard = predict_with_the_pipeline(tmp_path, samples, prediction, normalisation)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([sample.image for sample in samples]), photometric="minisblack")
    out = tmp_path / "out"
    result = run_segment(tmp_path / "bundle", stack, "-o", out, "--probabilities")
    assert result.returncode == 0, result.stderr
    masks = tifffile.imread(out / "stack.tif")
    assert masks.dtype == np.uint8 and masks.shape == (3, 21, 27)
    expected = np.stack([read_shard_mask(shard, sample.id) for sample in samples])
    np.testing.assert_array_equal(masks, expected)
    probabilities = tifffile.imread(out / "stack.probabilities.tif")
    assert probabilities.shape == (3, 2, 21, 27)
    for index, sample in enumerate(samples):
        np.testing.assert_array_equal(probabilities[index], read_shard_probabilities(shard, sample.id))
    # Another TTA than the card's changes the prediction (the command's --tta reaches it).
    in_process = segment(tmp_path / "bundle", [stack], tmp_path / "d4", tta="d4", probabilities=True, device="cpu")
    assert [path.name for path in in_process] == ["stack.tif", "stack.probabilities.tif"]
    assert not np.array_equal(tifffile.imread(in_process[1]), probabilities)


def test_an_image_zscore_bundle_round_trips_and_predicts_as_rule_predict_whatever_an_images_gain(tmp_path: Path):
    model, spec = tiny_model(1, 2, batchnorm=True)
    normalisation = Normalisation("image_zscore")
    prediction = write_experiment(tmp_path, model, spec, ["background", "cell"], normalisation)
    card = export(tmp_path, prediction)
    document = json.loads((tmp_path / "bundle" / CARD).read_text())
    assert document["normalisation"] == {"mode": "image_zscore", "mean": [], "sd": [], "low": [], "high": []}
    assert card.inference.normalisation == normalisation
    assert read_card(tmp_path / "bundle") == card and ModelCard.from_dict(document) == card
    rng = np.random.default_rng(9)
    dim = rng.integers(0, 300, (19, 23), dtype=np.uint16)
    # The same scene at another gain and offset (a bright-field camera): the same input to the net.
    pages = [dim, dim * 9 + 30_000, rng.integers(0, 65_535, (19, 23), dtype=np.uint16)]
    samples = [Sample(f"page{i}", page, np.zeros(page.shape, np.uint8), np.zeros(page.shape, np.uint16))
               for i, page in enumerate(pages)]  # fmt: skip
    shard = predict_with_the_pipeline(tmp_path, samples, prediction, normalisation)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack(pages), photometric="minisblack")
    written = segment(tmp_path / "bundle", [stack], tmp_path / "out", probabilities=True, device="cpu")
    probabilities = tifffile.imread(written[1])
    for index, sample in enumerate(samples):
        np.testing.assert_array_equal(probabilities[index], read_shard_probabilities(shard, sample.id))
    np.testing.assert_allclose(probabilities[1], probabilities[0], atol=1e-5)
    assert probabilities[0].std() > 1e-3  # not a constant answer that would match anything


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rgb_bundle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    model, spec = tiny_model(3, 2, batchnorm=True)
    export(folder, write_experiment(folder, model, spec, ["background", "cell"], Normalisation("dtype")))
    return folder / "bundle"


def test_a_missing_input_stops_the_command_naming_it(rgb_bundle: Path, tmp_path: Path):
    result = run_segment(rgb_bundle, tmp_path / "nothere.png", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert f"{tmp_path / 'nothere.png'}: no such file or folder" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_and_wrong_channel_inputs_are_named(rgb_bundle: Path, tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match=f"{broken}: not an image of a supported format"):
        segment(rgb_bundle, [broken], tmp_path / "out", device="cpu")
    grey = tmp_path / "grey.png"
    skio.imsave(grey, np.zeros((8, 8), np.uint8), check_contrast=False)
    with pytest.raises(InputError, match=rf"{grey}: image has 1 channel\(s\) but the model takes 3"):
        segment(rgb_bundle, [grey], tmp_path / "out", device="cpu")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match=rf"{stack} page 0: image has 1 channel"):
        segment(rgb_bundle, [stack], tmp_path / "out", device="cpu")


def test_inputs_are_checked_before_prediction(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=f"{tmp_path / 'empty'}: folder holds no image"):
        input_files([tmp_path / "empty"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="notes.txt: not an image file"):
        input_files([tmp_path / "notes.txt"])
    for name in ("a.png", "a.tif", "b10.png", "b9.png"):
        (tmp_path / "folder").mkdir(exist_ok=True)
        (tmp_path / "folder" / name).write_bytes(b"")
    with pytest.raises(InputError, match="both would write the outputs named 'a'"):
        input_files([tmp_path / "folder"])
    (tmp_path / "folder" / "a.tif").unlink()
    assert [path.name for path in input_files([tmp_path / "folder"])] == ["a.png", "b9.png", "b10.png"]


def test_a_folder_that_is_not_a_bundle_is_named(tmp_path: Path):
    with pytest.raises(InputError, match=f"{tmp_path / CARD}: missing"):
        read_bundle(tmp_path)
    (tmp_path / CARD).write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match=f"{tmp_path / CARD}: not a readable model card"):
        read_card(tmp_path)


def test_a_damaged_torchscript_file_is_named(rgb_bundle: Path, tmp_path: Path):
    copy = tmp_path / "bundle"
    copy.mkdir()
    (copy / CARD).write_text((rgb_bundle / CARD).read_text())
    (copy / TORCHSCRIPT).write_bytes(b"garbage")
    with pytest.raises(InputError, match=f"{copy / TORCHSCRIPT}: cannot load"):
        read_bundle(copy)
