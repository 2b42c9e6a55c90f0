"""One run of rule train: its data, patch size and resume fingerprint, the fit, and the facts it records.

:func:`train_experiment` does the whole run from a :class:`TrainingJob` (what the rule is given) and returns
a :class:`TrainedRun`; :func:`write_training_outputs` writes it. ``training.json`` (the run facts) is written
by :func:`write_training_facts` and read by :func:`read_training_facts` only; it holds::

    experiment, parameters, training_seconds, epochs_run, select_by, best_epoch, best_val_loss,
    best_val_dice, keep, kept_epoch, image_val_loss, image_val_dice, foreground_threshold,
    threshold_val_dice, training_samples               what the run did
    device, device_name, precision, channels_last, threads, seed, python, torch, numpy, git_commit
                                                       what it depended on (:func:`environment_facts`)

The training state is saved after every epoch to ``TrainingJob.resume_state`` (not a declared output, so
Snakemake keeps it when the job fails or is killed); a rerun continues from it. A state saved under another
experiment spec, training settings, seed, classes, validation tile or data is refused
(:func:`run_fingerprint`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from segcore.augment.border_target import BORDER_CLASS_NAME, border_width_of
from segcore.compute import select_device
from segcore.data.folds import fold_split, read_folds
from segcore.data.split import ids_of
from segcore.io import atomic_path, read_table, write_table
from segcore.model.model_file import inference_tile_size, save_model
from segcore.model.unet import UNet, build_model, count_parameters, valid_input_size
from segcore.plan.normalise import Normalisation
from segcore.train.checkpoint import ResumeFile, array_digest, fingerprint
from segcore.train.curves import plot_history
from segcore.train.data import BatchSampler, LabelledImages, load_labelled_images
from segcore.train.folds import fold_samples
from segcore.train.loop import Hardware, TrainSettings, best_epoch_index, choose_hardware, fit
from segcore.train.losses import build_loss
from segcore.train.operating_point import ThresholdSearch
from segcore.train.sampling import OnlineAugmentation
from segcore.train.validation import PatchSet, Validation, validation_patches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingJob:
    """What one run of rule train is given.

    ``experiment``: the ``experiments.<name>`` config section (``model``, ``loss``, ``augmentation``,
    ``weight_maps``); ``training``: the ``training`` section with schema defaults filled in and the plan's
    values in place of ``"auto"`` (:func:`segcore.plan.plan.resolve_training`); ``tile_size``: the plan's
    prediction tile, the tile validation asks for; ``normalisation``: the plan's, applied to every image
    loaded (so it is part of the data digest: a changed normalisation retrains). ``samples``: folders of the
    canonical layout holding the training images (augmentation shards: every image in them is used; else
    the canonical data folder, of which the split's train ids are used); ``weights``: weight-map folders,
    read when the experiment uses weight maps. ``source_dir``: a folder inside the pipeline's checkout,
    whose git commit is recorded. ``fold``: with cross-validation, the fold this run validates on, as the
    fold table ``folds`` assigns it (:func:`segcore.data.folds.fold_split`); None: the split as it is.
    """

    name: str
    experiment: Mapping[str, Any]
    training: Mapping[str, Any]
    seed: int
    class_names: list[str]
    tile_size: int
    data: Path
    split: Path
    samples: list[Path]
    weights: list[Path]
    resume_state: Path
    source_dir: str
    normalisation: Normalisation
    fold: int | None = None
    folds: Path | None = None


@dataclass
class TrainedRun:
    """A finished run: the model at its best epoch, the model file's metadata, the history table (one row
    per epoch, see :func:`segcore.train.loop.fit`) and the run facts of ``training.json``."""

    model: UNet
    metadata: dict[str, Any]
    history: pd.DataFrame
    facts: dict[str, Any]


def load_run_data(job: TrainingJob) -> tuple[LabelledImages, LabelledImages]:
    """(training data, validation data) of ``job``.

    With augmentation every image of the sample folders trains (originals and their copies); without,
    only the split's train ids. Validation is always the split's val ids of the canonical folder.
    A fold's run takes the fold's split instead, and of the sample folders (the whole pool's) only its
    train ids and their copies (:func:`segcore.train.folds.fold_samples`). Weight maps are loaded only
    when the experiment uses them.
    """
    split = read_table(job.split)
    if job.fold is not None:
        split = fold_split(split, read_folds(job.folds), job.fold)
    train_ids = None if job.experiment["augmentation"] else ids_of(split, "train")
    if job.experiment["augmentation"] and job.fold is not None:
        train_ids = fold_samples(job.samples, split)
    weight_dirs = job.weights if job.experiment["weight_maps"] else None
    # With the border class both sets get it (validation scores the classes the model predicts).
    border = {"border_width": border_width_of(job.experiment, f"experiments.{job.name}"),
              "num_classes": len(job.class_names)}  # fmt: skip
    train_data = load_labelled_images(
        job.samples, ids=train_ids, weight_dirs=weight_dirs, normalisation=job.normalisation, **border
    )
    val_data = load_labelled_images([job.data], ids=ids_of(split, "val"), normalisation=job.normalisation, **border)
    return train_data, val_data


def model_class_names(job: TrainingJob) -> list[str]:
    """The classes the model predicts: the dataset's, then ``border`` when the experiment trains the border
    class (:mod:`segcore.augment.border_target`)."""
    border = [BORDER_CLASS_NAME] if job.experiment["border_class"] else []
    return [*job.class_names, *border]


def training_patch_size(model: UNet, requested: int | None, image_side: int) -> int | None:
    """The side of the square training samples :class:`segcore.train.data.BatchSampler` cuts.

    Same padding (``model.margin == 0``): ``requested`` as is (None: whole images). Valid padding: the output
    is smaller than the input, so the smallest valid input whose output covers ``requested`` (or, for None,
    ``image_side``, the longer side of the training images); images smaller than it are mirror-padded by the
    sampler. Example: depth 2, 64 wanted -> 104 (output 64).
    """
    if model.margin == 0:
        return requested
    return valid_input_size(requested or image_side, model.depth)


def data_digest(data: LabelledImages) -> str:
    """SHA-256 hex of every id with its image, mask and weight map (if any), in the data's id order.

    Equal exactly when ids, dtypes, shapes and values agree (:func:`segcore.train.checkpoint.array_digest`).
    """
    weights = data.weights if data.weights is not None else [None] * len(data)

    def arrays() -> Iterator[tuple[str, np.ndarray]]:
        for sample_id, image, mask, weight in zip(data.ids, data.images, data.masks, weights):
            yield f"{sample_id}/image", image
            yield f"{sample_id}/mask", mask
            if weight is not None:
                yield f"{sample_id}/weights", weight

    return array_digest(arrays())


def run_fingerprint(
    job: TrainingJob, validation_tile_size: int, train_data: LabelledImages, val_data: LabelledImages
) -> dict[str, str]:
    """``{part: SHA-256 hex}`` a resume state must match, one hash per part of the run's definition.

    Parts: ``experiment``, ``training`` (the whole section, device and patch size included), ``seed``,
    ``class_names``, ``validation_tile_size``, ``train_data`` and ``val_data`` (:func:`data_digest`).
    """
    return fingerprint(
        {
            "experiment": dict(job.experiment),
            "training": dict(job.training),
            "seed": job.seed,
            "class_names": list(job.class_names),
            "validation_tile_size": validation_tile_size,
            "train_data": data_digest(train_data),
            "val_data": data_digest(val_data),
        }
    )


def git_commit(directory: str | os.PathLike) -> str:
    """The commit checked out in the git repository holding ``directory``; "unknown" outside one (or
    without git)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def device_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU's (``platform.processor()``, "CPU" when that is empty)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"


def environment_facts(hardware: Hardware, seed: int, source_dir: str | os.PathLike) -> dict[str, Any]:
    """What a run depended on besides its config: device, precision, threads, versions, git commit.

    ``precision`` is the autocast dtype's name (``"float32"`` without autocast); ``threads`` torch's
    current intra-op thread count.
    """
    return {
        "device": str(hardware.device),
        "device_name": device_name(hardware.device),
        "precision": str(hardware.autocast_dtype or torch.float32).removeprefix("torch."),
        "channels_last": hardware.channels_last,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git_commit": git_commit(source_dir),
    }


def outcome_facts(history: pd.DataFrame, select_by: str, keep: str) -> dict[str, Any]:
    """``epochs_run``, ``select_by``, the best epoch by it (lowest val_loss or highest val_dice, the first on
    ties) with its validation loss and Dice rounded to 5 decimals, ``keep`` and ``kept_epoch``: the epoch
    whose model :func:`segcore.train.loop.fit` returned (the best, or the last with ``keep`` "last").
    ``history``: the non-empty table of :func:`segcore.train.loop.fit` rows."""
    best = history.iloc[best_epoch_index(history[select_by].tolist(), select_by)]
    return {
        "epochs_run": len(history),
        "select_by": select_by,
        "best_epoch": int(best["epoch"]),
        "best_val_loss": round(float(best["val_loss"]), 5),
        "best_val_dice": round(float(best["val_dice"]), 5),
        "keep": keep,
        "kept_epoch": int(best["epoch"]) if keep == "best" else int(history["epoch"].iloc[-1]),
    }


@dataclass
class RunSetup:
    """Everything :func:`segcore.train.loop.fit` is called with, built from a :class:`TrainingJob`."""

    model: UNet
    loss_function: Callable[..., torch.Tensor]
    train_data: LabelledImages
    val_data: LabelledImages
    sampler: BatchSampler
    settings: TrainSettings
    hardware: Hardware
    validation_tile_size: int
    resume: ResumeFile
    val_patches: PatchSet | None


def training_sampler(data: LabelledImages, training: Mapping[str, Any], patch_size: int | None) -> BatchSampler:
    """The batch sampler of the ``training`` section: batch size, foreground share, online flips/turns."""
    return BatchSampler(
        data, training["batch_size"], patch_size, foreground_fraction=training["foreground_fraction"],
        augmentation=OnlineAugmentation(flips=training["online_flips"], rot90=training["online_rot90"]),
    )  # fmt: skip


def set_up_run(job: TrainingJob) -> RunSetup:
    """Load the job's data and build its model, loss, batch sampler, hardware choice and resume file.

    The model is built right after ``torch.manual_seed(job.seed)``, so equal jobs start from equal weights.
    Raises :class:`segcore.io.InputError` for a bad model or loss spec.
    """
    device = select_device(job.training["device"])
    # Training batches share one shape (all but the last), so cuDNN's per-shape kernel search pays off;
    # CUDA results are not bit-reproducible anyway, CPU ones are, and this setting does not touch them.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    log.info("device: %s (%s), torch %s, %d threads", device, device_name(device), torch.__version__,
             torch.get_num_threads())  # fmt: skip
    train_data, val_data = load_run_data(job)
    log.info("training on %d samples (%s), validating on %d images", len(train_data),
             "augmented" if job.experiment["augmentation"] else "originals only", len(val_data))  # fmt: skip
    torch.manual_seed(job.seed)
    where = f"experiments.{job.name}"
    num_classes = len(model_class_names(job))
    model = build_model(job.experiment["model"], train_data.channels, num_classes, where=f"{where}.model")
    loss_function = build_loss(job.experiment["loss"], where=f"{where}.loss")
    patch_size = training_patch_size(model, job.training["patch_size"], max(train_data.masks[0].shape))
    if model.margin:
        log.info("valid padding: training patches of %d px give %d px outputs", patch_size,
                 model.output_size(patch_size))  # fmt: skip
    elif any(side % 2**model.depth for side in ((patch_size,) * 2 if patch_size else train_data.masks[0].shape)):
        log.info("training samples are mirror-padded to multiples of %d (2**depth) for the net and its outputs "
                 "cropped back before the loss", 2**model.depth)  # fmt: skip
    sample_side = patch_size or train_data.masks[0].shape[0]
    hardware = choose_hardware(device, sample_side * sample_side)
    tile_size = inference_tile_size(model, job.tile_size, val_data.masks[0].shape)
    log.info("model %s: %d parameters, channels_last=%s, autocast=%s", job.experiment["model"]["name"],
             count_parameters(model), hardware.channels_last, hardware.autocast_dtype)  # fmt: skip
    settings = TrainSettings.from_config(job.training, job.seed)  # the plan resolved its "auto" keys
    return RunSetup(
        model=model,
        loss_function=loss_function,
        train_data=train_data,
        val_data=val_data,
        sampler=training_sampler(train_data, job.training, patch_size),
        settings=settings,
        hardware=hardware,
        validation_tile_size=tile_size,
        resume=ResumeFile(Path(job.resume_state), run_fingerprint(job, tile_size, train_data, val_data)),
        val_patches=validation_patches(
            val_data, job.training["val_patches"], patch_size, train_data.masks[0].shape,
            job.training["foreground_fraction"], job.seed, settings.validation_every,
        ),
    )  # fmt: skip


def selected_model_facts(model: UNet, setup: RunSetup, num_classes: int) -> dict[str, Any]:
    """The selected model scored on the whole validation images, and for two classes the foreground
    threshold that maximises their Dice (:mod:`segcore.train.operating_point`; None otherwise), rounded to
    5 decimals: ``image_val_loss``, ``image_val_dice``, ``foreground_threshold``, ``threshold_val_dice``."""
    validation = Validation(
        setup.val_data, None, setup.loss_function, num_classes, setup.validation_tile_size, model.margin,
        setup.hardware, setup.settings.batch_size,
    )  # fmt: skip
    search = ThresholdSearch() if num_classes == 2 else None
    scores = validation.on_images(model, search)
    threshold, threshold_dice = search.best() if search is not None else (None, None)
    return {
        "image_val_loss": round(scores.loss, 5),
        "image_val_dice": round(scores.dice, 5),
        "foreground_threshold": threshold,
        "threshold_val_dice": round(threshold_dice, 5) if threshold_dice is not None else None,
    }


def train_experiment(job: TrainingJob) -> TrainedRun:
    """Train the job's experiment, resuming from ``job.resume_state`` when a state of this run is there.

    Returns the model of its kept epoch (the best by ``training.select_by``, or the last with
    ``training.keep: last``) with the run's history and facts. The
    state file is left in place: remove it (:func:`segcore.train.checkpoint.remove_state`) once the outputs
    are written. Raises :class:`segcore.io.InputError` for a bad spec or a state of another run.
    """
    setup = set_up_run(job)
    model = setup.model
    started = time.perf_counter()
    history, kept_state = fit(
        model, setup.sampler, setup.val_data, setup.loss_function, setup.settings, setup.hardware,
        num_classes=len(model_class_names(job)), tile_size=setup.validation_tile_size, margin=model.margin,
        resume=setup.resume, val_patches=setup.val_patches,
    )  # fmt: skip
    model.load_state_dict(kept_state)
    selected = selected_model_facts(model, setup, len(model_class_names(job)))
    seconds = time.perf_counter() - started
    # Epochs without whole-image validation hold None there: NaN in a float column, as the TSV reads back.
    history_table = pd.DataFrame(history).astype({"image_val_loss": float, "image_val_dice": float})
    facts = {
        "experiment": job.name,
        "parameters": count_parameters(model),
        "training_seconds": round(seconds, 1),
        **outcome_facts(history_table, setup.settings.select_by, setup.settings.keep),
        **selected,
        "training_samples": len(setup.train_data),
        **environment_facts(setup.hardware, job.seed, job.source_dir),
    }
    log.info("done in %.1f s; best epoch %d (val_loss %.4f, val_dice %.4f); kept epoch %d (%s)", seconds,
             facts["best_epoch"], facts["best_val_loss"], facts["best_val_dice"], facts["kept_epoch"],
             facts["keep"])  # fmt: skip
    metadata = {
        "model_spec": dict(job.experiment["model"]),
        "in_channels": setup.train_data.channels,
        "num_classes": len(model_class_names(job)),
        "class_names": model_class_names(job),
        "border_class": bool(job.experiment["border_class"]),
        # Used by prediction.threshold "auto" (two classes only).
        "foreground_threshold": selected["foreground_threshold"],
    }
    return TrainedRun(model, metadata, history_table, facts)


def write_training_facts(path: str | os.PathLike, facts: Mapping[str, Any]) -> None:
    """Write the run facts as indented JSON (keys in the given order), atomically."""
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(dict(facts), indent=2) + "\n")


def read_training_facts(path: str | os.PathLike) -> dict[str, Any]:
    """The run facts written by :func:`write_training_facts`, keys in their written order."""
    return json.loads(Path(path).read_text())


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """The history table written by :func:`write_training_outputs`: one row per epoch with the columns of
    :func:`segcore.train.loop.fit` (``epoch``, ``train_loss``, ``val_loss``, ``val_dice``,
    ``image_val_loss``, ``image_val_dice`` (empty on epochs without whole-image validation),
    ``learning_rate``, ``seconds``, ``validation_seconds``)."""
    return read_table(path)


def write_history(path: str | os.PathLike, history: pd.DataFrame) -> None:
    """Write a history table (see :func:`read_history`), atomically."""
    write_table(path, history)


def write_training_outputs(
    run: TrainedRun,
    *,
    model: str | os.PathLike,
    history: str | os.PathLike,
    curves: str | os.PathLike,
    facts: str | os.PathLike,
) -> None:
    """Write a finished run: the model file, the history table, its curves (PNG) and the run facts."""
    save_model(model, run.model, run.metadata)
    write_history(history, run.history)
    plot_history({run.facts["experiment"]: run.history}, curves)
    write_training_facts(facts, run.facts)
