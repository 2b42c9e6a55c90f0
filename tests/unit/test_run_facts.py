"""Tests for segcore.train.run (a training run, its run facts, digests and patch sizing) and
segcore.train.loop.TrainSettings.from_config.

References: the defaults of config/schema.yaml, hand-computed valid-padding sizes (and a forward pass
on torch's meta device), hashlib over hand-built byte strings, git's own files on disk, json.loads, and
load_model/read_table on the files written.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segcore.config_schema import with_defaults
from segcore.data.canonical import Sample, write_canonical
from segcore.io import InputError, write_table, write_tiff
from segcore.model.model_file import load_model
from segcore.model.unet import build_model
from segcore.plan.normalise import DTYPE_SCALING, Normalisation
from segcore.train.data import LabelledImages
from segcore.train.loop import Hardware, TrainSettings
from segcore.train.run import (
    TrainingJob,
    data_digest,
    environment_facts,
    git_commit,
    outcome_facts,
    read_history,
    read_training_facts,
    run_fingerprint,
    train_experiment,
    training_patch_size,
    write_training_facts,
    write_training_outputs,
)

CPU = Hardware(torch.device("cpu"), channels_last=False)


def schema_training_defaults() -> dict:
    """The ``training`` section as the Snakefile fills it in from an empty one: the schema's defaults."""
    return with_defaults("training", {})


def model(spec: dict, in_channels: int, num_classes: int):
    return build_model(with_defaults("experiments.*.model", spec), in_channels, num_classes)


# --- TrainSettings from the config -----------------------------------------------------------------------


def test_train_settings_take_every_value_from_the_config_section():
    settings = TrainSettings.from_config(schema_training_defaults(), seed=7, batch_size=16, validation_every=4)
    # The schema's defaults as written there; patch_size, device and the sampling keys are not loop settings
    # and are ignored; "auto" keys are resolved (by the plan) and passed in.
    assert settings == TrainSettings(
        epochs=20, batch_size=16, learning_rate=0.002, lr_factor=0.5, lr_patience=3, early_stopping_patience=10,
        schedule="poly", warmup_epochs=1, gradient_clip=12, select_by="val_dice", keep="best", validation_every=4,
        seed=7,
    )  # fmt: skip
    custom = {**schema_training_defaults(), "epochs": 3, "learning_rate": 0.1}
    assert TrainSettings.from_config(custom, seed=1).epochs == 3
    assert TrainSettings.from_config(custom, seed=1).learning_rate == 0.1


def test_train_settings_have_no_defaults_of_their_own():
    with pytest.raises(TypeError):
        TrainSettings(seed=0)  # type: ignore[call-arg]
    section = schema_training_defaults()
    del section["epochs"], section["lr_factor"]
    with pytest.raises(InputError, match=r"training\.epochs, training\.lr_factor"):
        TrainSettings.from_config(section, seed=0)


# --- patch sizing ----------------------------------------------------------------------------------------


def test_same_padding_trains_on_the_requested_patch_or_whole_images():
    same = model({"name": "unet", "widths": [4, 8, 16]}, 1, 2)
    assert training_patch_size(same, None, 64) is None
    assert training_patch_size(same, 48, 64) == 48


@pytest.mark.parametrize(("requested", "image_side"), [(64, 500), (None, 64)])
def test_valid_padding_trains_on_the_smallest_input_whose_output_covers_the_patch(requested, image_side):
    # Depth 2, by hand: 104 -4 = 100, /2 = 50, -4 = 46, /2 = 23, -4 = 19 (bottleneck), x2 -4 = 34, x2 -4 = 64;
    # the next smaller input stepping by 2**2, 100, gives 60 < 64.
    with torch.device("meta"):
        valid = model({"name": "unet", "widths": [4, 8, 16], "padding": "valid"}, 1, 2)
        assert training_patch_size(valid, requested, image_side) == 104
        assert valid(torch.empty(1, 1, 104, 104)).shape[-1] == 64
        assert valid(torch.empty(1, 1, 100, 100)).shape[-1] == 60


# --- digests and fingerprints ----------------------------------------------------------------------------


def tiny_images(with_weights: bool) -> LabelledImages:
    image = np.arange(12, dtype=np.float32).reshape(3, 2, 2) / 12
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    weights = [np.full((2, 2), 2.0, np.float32)] if with_weights else None
    return LabelledImages(["a"], [image], [mask], weights)


def test_data_digest_is_sha256_over_names_dtypes_shapes_and_values():
    data = tiny_images(with_weights=True)
    expected = hashlib.sha256()
    for name, array in (("a/image", data.images[0]), ("a/mask", data.masks[0]), ("a/weights", data.weights[0])):
        expected.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode() + array.tobytes())
    assert data_digest(data) == expected.hexdigest()


def test_data_digest_changes_with_any_pixel_id_or_weight_map():
    reference = data_digest(tiny_images(with_weights=False))
    assert data_digest(tiny_images(with_weights=False)) == reference
    assert data_digest(tiny_images(with_weights=True)) != reference
    changed_pixel = tiny_images(with_weights=False)
    changed_pixel.masks[0][0, 0] = 1
    renamed = tiny_images(with_weights=False)
    renamed.ids[0] = "b"
    assert len({reference, data_digest(changed_pixel), data_digest(renamed)}) == 3


def test_run_fingerprint_has_one_hash_per_part(tmp_path: Path):
    job = tiny_job(tmp_path, epochs=1)
    data = tiny_images(with_weights=False)
    parts = run_fingerprint(job, 16, data, data)
    assert sorted(parts) == sorted(
        ["experiment", "training", "seed", "class_names", "validation_tile_size", "train_data", "val_data"]
    )
    assert parts["seed"] == hashlib.sha256(b"3").hexdigest()
    assert parts["validation_tile_size"] == hashlib.sha256(b"16").hexdigest()
    assert parts["class_names"] == hashlib.sha256(b'["background","thing"]').hexdigest()
    assert parts["train_data"] == hashlib.sha256(f'"{data_digest(data)}"'.encode()).hexdigest()  # a JSON string
    other_device = run_fingerprint(tiny_job(tmp_path, epochs=1, device="auto"), 16, data, data)
    assert [name for name in parts if parts[name] != other_device[name]] == ["training"]


# --- run facts -------------------------------------------------------------------------------------------


def test_git_commit_reads_the_checked_out_commit(tmp_path: Path):
    assert git_commit(tmp_path) == "unknown"  # not inside a repository
    repo = tmp_path / "repo"
    repo.mkdir()
    identity = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env = {**os.environ, **identity}
    for command in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *command], check=True, env=env)
    (repo / "sub").mkdir()
    expected = (repo / ".git" / "refs" / "heads" / "main").read_text().strip()
    assert len(expected) == 40 and git_commit(repo / "sub") == expected


def test_environment_facts_name_device_precision_versions_and_seed(tmp_path: Path):
    facts = environment_facts(CPU, seed=4, source_dir=tmp_path)
    assert list(facts) == [
        "device", "device_name", "precision", "channels_last", "threads", "seed", "python", "torch", "numpy",
        "git_commit",
    ]  # fmt: skip
    assert (facts["device"], facts["precision"], facts["channels_last"], facts["seed"]) == ("cpu", "float32", False, 4)
    assert facts["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert (facts["torch"], facts["numpy"], facts["threads"]) == (
        torch.__version__,
        np.__version__,
        torch.get_num_threads(),
    )
    assert facts["git_commit"] == "unknown" and facts["device_name"]
    half = Hardware(torch.device("cpu"), channels_last=True, autocast_dtype=torch.float16)
    assert environment_facts(half, seed=4, source_dir=tmp_path)["precision"] == "float16"


def test_outcome_facts_pick_the_first_epoch_of_lowest_validation_loss():
    history = pd.DataFrame({
        "epoch": [1, 2, 3, 4], "val_loss": [0.9, 0.4123456, 0.5, 0.4123456], "val_dice": [0.1, 0.7654321, 0.6, 0.8],
    })  # fmt: skip
    assert outcome_facts(history, "val_loss", "best") == {
        "epochs_run": 4,
        "select_by": "val_loss",
        "best_epoch": 2,
        "best_val_loss": 0.41235,
        "best_val_dice": 0.76543,
        "keep": "best",
        "kept_epoch": 2,
    }
    # keep last: the best epoch is still reported, the kept one is the last run
    last = outcome_facts(history, "val_loss", "last")
    assert (last["best_epoch"], last["keep"], last["kept_epoch"]) == (2, "last", 4)


def test_outcome_facts_pick_the_first_epoch_of_highest_validation_dice_skipping_nan():
    history = pd.DataFrame({
        "epoch": [1, 2, 3, 4, 5], "val_loss": [0.9, 0.5, 0.4, 0.3, 0.2], "val_dice": [np.nan, 0.5, 0.8, 0.8, np.nan],
    })  # fmt: skip
    facts = outcome_facts(history, "val_dice", "best")
    assert (facts["select_by"], facts["best_epoch"], facts["best_val_dice"]) == ("val_dice", 3, 0.8)
    all_nan = pd.DataFrame({"epoch": [1, 2], "val_loss": [0.5, 0.4], "val_dice": [np.nan, np.nan]})
    assert outcome_facts(all_nan, "val_dice", "best")["best_epoch"] == 1  # fit keeps the first epoch then


def test_training_facts_round_trip_in_order(tmp_path: Path):
    facts = {"experiment": "x", "parameters": 10, "best_val_loss": 0.12345, "channels_last": False, "seed": 3}
    path = tmp_path / "out" / "training.json"
    write_training_facts(path, facts)
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "parameters": 10,\n' in text
    assert json.loads(text) == facts
    assert list(read_training_facts(path)) == list(facts)


# --- a whole run -----------------------------------------------------------------------------------------


def tiny_dataset(folder: Path) -> tuple[Path, Path, Path]:
    """A canonical folder of 10 random 16x16 RGB images (masks: bright pixels), a split (6 train, 2 val,
    2 test) and a weight-map folder for the train ids; returns (data, split, weights)."""
    rng = np.random.default_rng(0)
    samples = []
    for index in range(10):
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        mask = (image[..., 0] > 127).astype(np.uint8)
        samples.append(Sample(f"s{index}", image, mask, mask.astype(np.uint16)))
    write_canonical(folder / "data", samples, num_classes=2)
    subsets = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    write_table(folder / "split.tsv", pd.DataFrame({"id": [s.id for s in samples], "subset": subsets}))
    for sample in samples[:6]:
        write_tiff(folder / "weights" / f"{sample.id}.tif", 1 + sample.mask.astype(np.float32))
    return folder / "data", folder / "split.tsv", folder / "weights"


# The normalisation a plan gives the tiny dataset's uniform 0..255 RGB pixels.
TINY_NORMALISATION = Normalisation("zscore", mean=(127.5,) * 3, sd=(73.9,) * 3)


def tiny_job(
    folder: Path, epochs: int, device: str = "cpu", padding: str = "same",
    normalisation: Normalisation = TINY_NORMALISATION,
) -> TrainingJob:  # fmt: skip
    # The training section as the rule passes it: the keys left "auto" resolved by the plan.
    training = {
        **schema_training_defaults(), "epochs": epochs, "batch_size": 4, "device": device, "patch_size": None,
        "normalisation": normalisation.mode, "validation_every": 1,
    }  # fmt: skip
    return TrainingJob(
        name="tiny",
        experiment=with_defaults(
            "experiments.*",
            {
                "model": {"name": "unet", "widths": [4, 8], "padding": padding},
                "loss": {"name": "weighted_ce"},
                "augmentation": False,
                "weight_maps": True,
            },
        ),
        training=training,
        seed=3,
        class_names=["background", "thing"],
        tile_size=16,
        data=folder / "data",
        split=folder / "split.tsv",
        samples=[folder / "data"],
        weights=[folder / "weights"],
        resume_state=folder / ".resume" / "state.pt",
        source_dir=str(folder),
        normalisation=normalisation,
    )


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_a_tiny_run_trains_writes_and_resumes(tmp_path: Path, padding: str):
    torch.set_num_threads(1)
    tiny_dataset(tmp_path)
    job = tiny_job(tmp_path, epochs=2, padding=padding)
    run = train_experiment(job)
    assert list(run.history.columns) == [
        "epoch", "train_loss", "val_loss", "val_dice", "image_val_loss", "image_val_dice", "learning_rate",
        "seconds", "validation_seconds",
    ]  # fmt: skip
    assert list(run.history["epoch"]) == [1, 2]
    assert run.facts["training_samples"] == 6 and run.facts["epochs_run"] == 2 and run.facts["device"] == "cpu"
    assert list(run.facts)[:15] == [
        "experiment", "parameters", "training_seconds", "epochs_run", "select_by", "best_epoch", "best_val_loss",
        "best_val_dice", "keep", "kept_epoch", "image_val_loss", "image_val_dice", "foreground_threshold",
        "threshold_val_dice", "training_samples",
    ]  # fmt: skip
    assert 0.01 <= run.facts["foreground_threshold"] <= 0.99  # two classes: an operating point is chosen
    assert run.metadata["foreground_threshold"] == run.facts["foreground_threshold"]
    assert run.metadata == {
        "model_spec": job.experiment["model"], "in_channels": 3, "num_classes": 2,
        "class_names": ["background", "thing"], "border_class": False,
        "foreground_threshold": run.facts["foreground_threshold"],
    }  # fmt: skip
    assert job.resume_state.exists()  # kept until the outputs are written; the rule removes it

    out = tmp_path / "out"
    write_training_outputs(
        run, model=out / "model.pt", history=out / "history.tsv", curves=out / "curves.png", facts=out / "t.json"
    )
    model, metadata = load_model(out / "model.pt")
    assert metadata == run.metadata
    assert all(torch.equal(model.state_dict()[k], v) for k, v in run.model.state_dict().items())
    pd.testing.assert_frame_equal(read_history(out / "history.tsv"), run.history)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert read_training_facts(out / "t.json") == run.facts

    resumed = train_experiment(job)  # the saved state is finished: no epoch runs again
    pd.testing.assert_frame_equal(resumed.history, run.history)


def test_a_run_refuses_the_state_of_another_run(tmp_path: Path):
    torch.set_num_threads(1)
    tiny_dataset(tmp_path)
    train_experiment(tiny_job(tmp_path, epochs=1))
    with pytest.raises(InputError, match="differs in training"):
        train_experiment(tiny_job(tmp_path, epochs=2))


def test_a_run_refuses_the_state_of_a_run_with_another_normalisation(tmp_path: Path):
    torch.set_num_threads(1)
    tiny_dataset(tmp_path)
    train_experiment(tiny_job(tmp_path, epochs=1))
    # The images are normalised before the data digest, so the digest (and the refusal) follows it.
    with pytest.raises(InputError, match="differs in .*train_data"):
        train_experiment(tiny_job(tmp_path, epochs=1, normalisation=DTYPE_SCALING))
