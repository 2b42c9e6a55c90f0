"""The fold ensemble (segcore.model.ensemble) through the one prediction path (segment_image, predict_shard).

References: the single model's own prediction (an ensemble of k copies of one model must give it), and
the mean of the members' torch.softmax computed directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.model.ensemble import SoftmaxEnsemble, ensemble_metadata, load_models, mean_threshold
from segcore.model.model_file import save_model
from segcore.model.unet import build_model, prepare_for_inference
from segcore.plan.normalise import DTYPE_SCALING
from segcore.predict.inference import InferenceSettings, segment_image
from segcore.predict.outputs import read_shard_mask, read_shard_probabilities
from segcore.predict.shard import PredictionSettings, predict_shard

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny_model(seed: int, classes: int = 3, padding: str = "same") -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = with_defaults(
        "experiments.*.model", {"name": "unet", "widths": [4, 8], "batchnorm": True, "padding": padding}
    )
    model = build_model(spec, 3, classes).eval()
    with torch.no_grad():  # BatchNorm statistics away from 0/1, so fusing them is not a no-op
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    model.spec = spec
    return model


def settings_for(model: torch.nn.Module, tta: str, classes: int = 3) -> InferenceSettings:
    return InferenceSettings(
        num_classes=classes, depth=model.depth, margin=model.margin, normalisation=DTYPE_SCALING, tile_size=16,
        overlap=4 if model.margin == 0 else 0, blend="gaussian", batch_size=3, tta=tta, threshold=None,
        border_class=False, instances="components", watershed_h=1.0,
    )  # fmt: skip


IMAGE = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)


@pytest.mark.parametrize(("k", "tta", "padding"), [(2, "none", "same"), (3, "flips", "same"), (4, "none", "valid")])
def test_an_ensemble_of_copies_of_one_model_predicts_like_that_model(k, tta, padding):
    model = prepare_for_inference(tiny_model(0, padding=padding))
    ensemble = SoftmaxEnsemble([prepare_for_inference(tiny_model(0, padding=padding)) for _ in range(k)]).eval()
    settings = settings_for(model, tta)
    probabilities, mask, instances = segment_image(model, IMAGE, settings, CPU)
    ensemble_probabilities, ensemble_mask, ensemble_instances = segment_image(ensemble, IMAGE, settings, CPU)
    np.testing.assert_allclose(ensemble_probabilities, probabilities, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(ensemble_mask, mask)
    np.testing.assert_array_equal(ensemble_instances, instances)


def test_the_ensemble_output_is_the_log_of_the_members_mean_softmax():
    members = [tiny_model(seed) for seed in (1, 2, 3)]
    batch = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(member(batch), dim=1) for member in members]).mean(dim=0)
        output = SoftmaxEnsemble(members)(batch)
    torch.testing.assert_close(torch.softmax(output, dim=1), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(output.exp(), expected, rtol=0, atol=1e-6)


def test_members_must_share_their_tiling_and_metadata():
    with pytest.raises(ValueError, match="depth, margin"):
        SoftmaxEnsemble([tiny_model(0), tiny_model(0, padding="valid")])
    with pytest.raises(ValueError, match="at least one"):
        SoftmaxEnsemble([])
    with pytest.raises(ValueError, match="disagree on num_classes"):
        ensemble_metadata([{"num_classes": 2}, {"num_classes": 3}])


def test_the_ensemble_threshold_is_the_members_mean_or_argmax():
    assert mean_threshold([0.4, 0.5, 0.9]) == pytest.approx(0.6)
    assert mean_threshold([0.4, None]) is None
    metadata = ensemble_metadata([{"num_classes": 2, "foreground_threshold": t} for t in (0.2, 0.4)])
    assert metadata["foreground_threshold"] == pytest.approx(0.3) and metadata["members"] == 2


def save(path: Path, model: torch.nn.Module, classes: int, threshold: float | None = None) -> Path:
    metadata = {"model_spec": model.spec, "in_channels": 3, "num_classes": classes,
                "class_names": [f"c{i}" for i in range(classes)], "foreground_threshold": threshold}  # fmt: skip
    save_model(path, model, metadata)
    return path


def test_one_model_file_loads_as_the_model_itself(tmp_path: Path):
    model, metadata = load_models([save(tmp_path / "m.pt", tiny_model(0), 3)])
    assert not isinstance(model, SoftmaxEnsemble) and not model.training
    assert metadata["num_classes"] == 3 and "members" not in metadata


def test_predict_shard_with_k_copies_writes_the_single_models_predictions(tmp_path: Path):
    # Two classes and threshold "auto": the copies' thresholds (0.3 and 0.5) average to the single's 0.4.
    rng = np.random.default_rng(1)
    samples = [Sample(f"s{i}", rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), np.zeros((24, 40), np.uint8),
                      np.zeros((24, 40), np.uint16)) for i in range(2)]  # fmt: skip
    write_canonical(tmp_path / "data", samples, num_classes=2)
    model = tiny_model(5, classes=2)
    single = save(tmp_path / "single.pt", model, 2, threshold=0.4)
    copies = [save(tmp_path / f"fold-{f}.pt", model, 2, threshold=t) for f, t in enumerate((0.3, 0.5))]
    settings = PredictionSettings.from_config({
        **with_defaults("prediction", {}), "tile_size": 16, "overlap": 4, "save_probabilities": True,
        "threshold": "auto",
    })  # fmt: skip
    ids = ["s0", "s1"]
    predict_shard(single, tmp_path / "data", ids, settings, "cpu", tmp_path / "single")
    predict_shard(copies, tmp_path / "data", ids, settings, "cpu", tmp_path / "ensemble")
    for sample_id in ids:
        np.testing.assert_allclose(
            read_shard_probabilities(tmp_path / "ensemble", sample_id),
            read_shard_probabilities(tmp_path / "single", sample_id), rtol=0, atol=2e-6,
        )  # fmt: skip
        np.testing.assert_array_equal(
            read_shard_mask(tmp_path / "ensemble", sample_id), read_shard_mask(tmp_path / "single", sample_id)
        )
