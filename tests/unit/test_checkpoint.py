"""Tests for segcore.train.checkpoint (resumable state files) and the resume path of segcore.train.loop.fit.

References: hashlib on hand-written canonical JSON, torch.load on the files written, and an uninterrupted
training run compared bit for bit with one interrupted and resumed from its state file.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from segcore.config_schema import with_defaults
from segcore.io import InputError
from segcore.model.model_file import save_torch
from segcore.model.unet import build_model
from segcore.train.checkpoint import (
    ResumeFile,
    array_digest,
    differing_parts,
    fingerprint,
    load_state,
    remove_state,
    save_state,
)
from segcore.train.data import BatchSampler, LabelledImages
from segcore.train.loop import Hardware, TrainSettings, choose_hardware, fit, prefers_channels_last
from segcore.train.losses import build_loss
from tests.unit.helpers_training import Interrupt, StopAtEpoch

CPU_HARDWARE = Hardware(torch.device("cpu"), channels_last=True)
RUN = {"experiment": {"model": {"name": "unet"}}, "seed": 3}


def loop_settings(**changes) -> TrainSettings:
    """Settings of the tiny runs below: Adam at 1e-3, halved after 3 epochs without validation-loss
    improvement (no warm-up, no clipping), early stopping after 10, whole images validated every epoch,
    seed 5; ``changes`` replace any of them."""
    values = {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_factor": 0.5, "lr_patience": 3}
    recipe = {"schedule": "plateau", "warmup_epochs": 0, "gradient_clip": None, "select_by": "val_loss", "keep": "best"}
    return TrainSettings(**{**values, **recipe, "validation_every": 1, "early_stopping_patience": 10, "seed": 5,
                            **changes})  # fmt: skip


# --- fingerprints and digests ----------------------------------------------------------------------------


def test_fingerprint_hashes_each_part_as_canonical_json():
    parts = fingerprint({"training": {"epochs": 2, "batch_size": 8}, "seed": 3, "ids": ("a", "b")})
    assert parts == {
        "training": hashlib.sha256(b'{"batch_size":8,"epochs":2}').hexdigest(),
        "seed": hashlib.sha256(b"3").hexdigest(),
        "ids": hashlib.sha256(b'["a","b"]').hexdigest(),
    }


def test_fingerprint_rejects_values_without_a_json_form():
    with pytest.raises(TypeError):
        fingerprint({"device": torch.device("cpu")})


def test_differing_parts_names_changed_added_and_dropped_parts():
    saved = {"seed": "1", "training": "2", "old": "3"}
    assert differing_parts(saved, {"seed": "1", "training": "9", "new": "4"}) == ["new", "old", "training"]
    assert differing_parts(saved, dict(saved)) == []


def test_array_digest_depends_on_values_names_and_dtypes_not_layout():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    reference = array_digest([("a/image", image)])
    assert array_digest([("a/image", np.asfortranarray(image))]) == reference
    changed = image.copy()
    changed[2, 3] = np.nextafter(changed[2, 3], np.float32(100))
    assert array_digest([("a/image", changed)]) != reference
    assert array_digest([("b/image", image)]) != reference
    assert array_digest([("a/image", image.astype(np.float64))]) != reference
    assert array_digest([("a/image", image.reshape(4, 3))]) != reference


# --- state files -------------------------------------------------------------------------------------------


def test_save_torch_bytes_do_not_depend_on_the_file_name(tmp_path: Path):
    obj = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "meta": {"classes": ["a", "b"]}}
    save_torch(obj, tmp_path / "model.pt")
    save_torch(obj, tmp_path / "elsewhere" / "other-name.pt")
    first, second = (tmp_path / "model.pt").read_bytes(), (tmp_path / "elsewhere" / "other-name.pt").read_bytes()
    assert first == second
    # plain torch.save names its zip folder after the file: the reason save_torch exists
    torch.save(obj, tmp_path / "plain.pt")
    assert zipfile.ZipFile(tmp_path / "plain.pt").namelist()[0].startswith("plain/")
    assert zipfile.ZipFile(io.BytesIO(first)).namelist()[0].startswith("archive/")
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(loaded["weight"], obj["weight"]) and loaded["meta"] == obj["meta"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_state_round_trips_and_loads_weights_only(tmp_path: Path):
    path = tmp_path / ".resume" / "state.pt"
    state = {"model": {"w": torch.tensor([1.5, -2.0])}, "progress": {"epoch": 2, "best_loss": math.inf}}
    save_state(path, state, fingerprint(RUN))
    loaded = load_state(path, fingerprint(RUN))
    assert loaded["format"] == 1 and loaded["fingerprint"] == fingerprint(RUN)
    assert torch.equal(loaded["model"]["w"], torch.tensor([1.5, -2.0]))
    assert loaded["progress"] == {"epoch": 2, "best_loss": math.inf}


def test_missing_state_is_none(tmp_path: Path):
    assert load_state(tmp_path / "state.pt", fingerprint(RUN)) is None


def test_state_of_another_run_is_refused_naming_file_and_part(tmp_path: Path):
    path = tmp_path / "state.pt"
    save_state(path, {"progress": {"epoch": 1}}, fingerprint(RUN))
    other = fingerprint({**RUN, "seed": 4})
    with pytest.raises(InputError) as refused:
        load_state(path, other)
    assert f"{path}: the saved training state belongs to another run (differs in seed)" in str(refused.value)
    assert path.exists()  # refused, never deleted


def test_unreadable_or_foreign_states_are_refused(tmp_path: Path):
    truncated = tmp_path / "truncated.pt"
    save_state(truncated, {"x": torch.zeros(100)}, fingerprint(RUN))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(InputError, match="truncated.pt: cannot read the saved training state"):
        load_state(truncated, fingerprint(RUN))
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": 1, "fingerprint": fingerprint(RUN), "object": Path("x")}, unsafe)  # not weights-only
    with pytest.raises(InputError, match="unsafe.pt: cannot read"):
        load_state(unsafe, fingerprint(RUN))
    old = tmp_path / "old.pt"
    torch.save({"format": 0}, old)
    with pytest.raises(InputError, match="old.pt: training state of format 0, expected 1"):
        load_state(old, fingerprint(RUN))


def test_reserved_keys_are_a_programming_error(tmp_path: Path):
    with pytest.raises(ValueError, match="reserved keys"):
        save_state(tmp_path / "state.pt", {"fingerprint": {}}, fingerprint(RUN))


def test_remove_state_removes_file_and_empty_folder_only(tmp_path: Path):
    path = tmp_path / ".resume" / "state.pt"
    save_state(path, {}, fingerprint(RUN))
    remove_state(path)
    assert not path.parent.exists()
    remove_state(path)  # nothing there: no error
    kept = tmp_path / "kept" / "state.pt"
    save_state(kept, {}, fingerprint(RUN))
    (kept.parent / "note.txt").write_text("user file")
    remove_state(kept)
    assert not kept.exists() and (kept.parent / "note.txt").exists()


# --- fit: interrupted and resumed equals uninterrupted ------------------------------------------------------


def tiny_data(count: int, seed: int) -> LabelledImages:
    """``count`` random 3-channel 16x16 images with 2-class masks and weight maps."""
    rng = np.random.default_rng(seed)
    images = [rng.random((3, 16, 16), dtype=np.float32) for _ in range(count)]
    masks = [(image[0] > 0.5).astype(np.uint8) for image in images]
    weights = [1 + mask.astype(np.float32) for mask in masks]
    return LabelledImages([f"s{i:02d}" for i in range(count)], images, masks, weights)


def train_tiny(
    sampler: BatchSampler,
    val: LabelledImages,
    settings: TrainSettings,
    resume: ResumeFile | None,
    hardware: Hardware = CPU_HARDWARE,
):
    torch.manual_seed(settings.seed)
    spec = {"name": "unet", "widths": [4, 8], "batchnorm": True, "dropout": 0.2}
    model = build_model(with_defaults("experiments.*.model", spec), 3, 2)
    loss = build_loss(with_defaults("experiments.*.loss", {"name": "weighted_ce"}))
    return fit(
        model, sampler, val, loss, settings, hardware,
        num_classes=2, tile_size=16, margin=0, resume=resume,
    )  # fmt: skip


def without_seconds(history: list[dict]) -> list[dict]:
    """The rows without their timings (``seconds``, ``validation_seconds``)."""
    return [{key: value for key, value in row.items() if not key.endswith("seconds")} for row in history]


def test_fit_resumed_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path):
    torch.set_num_threads(1)
    train, val = tiny_data(12, seed=1), tiny_data(3, seed=2)
    # Inverted validation truth: fitting the training set worsens validation from epoch 2 on, so the best
    # model is epoch 1's, the plateau scheduler halves the rate every epoch and early stopping ends the run
    # after epoch 5; a resumed run must carry all of that over from the state file.
    val.masks = [1 - mask for mask in val.masks]
    settings = loop_settings(epochs=8, learning_rate=0.01, lr_patience=0, early_stopping_patience=4)
    reference_history, reference_best = train_tiny(BatchSampler(train, 4), val, settings, None)
    assert [row["learning_rate"] for row in reference_history] == [0.01, 0.01, 0.005, 0.0025, 0.00125]

    resume = ResumeFile(tmp_path / "state.pt", fingerprint(RUN))
    with pytest.raises(Interrupt):
        train_tiny(StopAtEpoch(train, 4, stop_at=4), val, settings, resume)
    saved = torch.load(resume.path, weights_only=True)
    assert saved["progress"]["epoch"] == 3 and saved["progress"]["epochs_without_improvement"] == 2

    sampler = StopAtEpoch(train, 4, stop_at=99)
    history, best = train_tiny(sampler, val, settings, resume)
    assert sampler.epochs_started == 2  # epochs 4 and 5 only
    assert without_seconds(history) == without_seconds(reference_history)
    assert best.keys() == reference_best.keys()
    for name, tensor in reference_best.items():
        assert torch.equal(best[name], tensor), name
    final = torch.load(resume.path, weights_only=True)
    assert final["progress"]["epoch"] == 5  # removing it is the rule script's job


def test_fit_with_a_finished_state_trains_no_further_epoch(tmp_path: Path):
    torch.set_num_threads(1)
    train, val = tiny_data(8, seed=1), tiny_data(2, seed=2)
    settings = loop_settings(epochs=2)
    resume = ResumeFile(tmp_path / "state.pt", fingerprint(RUN))
    first_history, first_best = train_tiny(BatchSampler(train, 4), val, settings, resume)
    sampler = StopAtEpoch(train, 4, stop_at=1)  # would raise if an epoch started
    history, best = train_tiny(sampler, val, settings, resume)
    assert sampler.epochs_started == 0 and history == first_history
    assert all(torch.equal(best[name], tensor) for name, tensor in first_best.items())


def test_fit_refuses_the_state_of_another_run(tmp_path: Path):
    train, val = tiny_data(8, seed=1), tiny_data(2, seed=2)
    settings = loop_settings(epochs=1)
    path = tmp_path / "state.pt"
    train_tiny(BatchSampler(train, 4), val, settings, ResumeFile(path, fingerprint(RUN)))
    other = ResumeFile(path, fingerprint({**RUN, "experiment": {"model": {"name": "unet_small"}}}))
    with pytest.raises(InputError, match="differs in experiment"):
        train_tiny(BatchSampler(train, 4), val, settings, other)


def test_float16_training_resumes_with_its_gradient_scaler(tmp_path: Path):
    """The CUDA code path (autocast, gradient scaler) run on the CPU, where torch supports it too."""
    torch.set_num_threads(1)
    train, val = tiny_data(12, seed=1), tiny_data(3, seed=2)
    settings = loop_settings(epochs=3)
    half = Hardware(torch.device("cpu"), channels_last=False, autocast_dtype=torch.float16)
    reference_history, reference_best = train_tiny(BatchSampler(train, 4), val, settings, None, half)
    resume = ResumeFile(tmp_path / "state.pt", fingerprint(RUN))
    with pytest.raises(Interrupt):
        train_tiny(StopAtEpoch(train, 4, stop_at=3), val, settings, resume, half)
    assert torch.load(resume.path, weights_only=True)["scaler"]["_growth_tracker"] == 6  # 2 epochs x 3 steps
    history, best = train_tiny(BatchSampler(train, 4), val, settings, resume, half)
    assert without_seconds(history) == without_seconds(reference_history)
    assert all(math.isfinite(row["train_loss"]) for row in history)
    assert all(torch.equal(best[name], tensor) for name, tensor in reference_best.items())
    assert torch.load(resume.path, weights_only=True)["scaler"]["_growth_tracker"] == 9  # restored, then 3 more


def test_cpu_training_is_float32_with_channels_last_by_size_and_kernel_set():
    cpu = torch.device("cpu")
    assert choose_hardware(cpu, 128 * 128) == Hardware(cpu, channels_last=True, autocast_dtype=None)
    large = choose_hardware(cpu, 512 * 512)
    assert large.autocast_dtype is None
    assert large.channels_last == (torch.backends.cpu.get_cpu_capability() == "AVX512")
    # AVX-512 kernels: channels-last at every size; other CPUs (AVX2, none) up to 256 x 256 pixels only
    assert prefers_channels_last(cpu, 512 * 512, cpu_capability="AVX512")
    assert not prefers_channels_last(cpu, 512 * 512, cpu_capability="AVX2")
    assert not prefers_channels_last(cpu, 256 * 256 + 1, cpu_capability="DEFAULT")
    assert prefers_channels_last(cpu, 256 * 256, cpu_capability="AVX2")
