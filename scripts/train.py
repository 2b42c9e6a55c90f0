"""Rule train: fit one experiment's U-Net on the training shards; write model, history, curves, facts.

The training state is saved after every epoch to ``params.resume_state`` (not a declared output, so Snakemake
keeps it when the job fails or is killed); a rerun continues from it, and it is removed once the outputs are
written. A state saved under another experiment spec, training settings, seed or data is refused.
"""

import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from segcore.compute import select_device, usable_threads
from segcore.data.split import ids_of
from segcore.io import atomic_path, read_table, write_table
from segcore.model.model_file import inference_tile_size, save_model
from segcore.model.unet import build_model, count_parameters, valid_input_size
from segcore.rule_runner import log, run_rule
from segcore.train.checkpoint import ResumeFile, array_digest, fingerprint, remove_state
from segcore.train.curves import plot_history
from segcore.train.data import BatchSampler, LabelledImages, load_labelled_images
from segcore.train.loop import Hardware, TrainSettings, choose_hardware, fit
from segcore.train.losses import build_loss


def data_digest(data: LabelledImages) -> str:
    """SHA-256 of every id with its image, mask and weight map: what the run trains or validates on."""
    weights = data.weights if data.weights is not None else [None] * len(data)

    def arrays():
        for sample_id, image, mask, weight in zip(data.ids, data.images, data.masks, weights):
            yield f"{sample_id}/image", image
            yield f"{sample_id}/mask", mask
            if weight is not None:
                yield f"{sample_id}/weights", weight

    return array_digest(arrays())


def git_commit(directory: str) -> str:
    """The commit checked out in the git repository holding ``directory``; "unknown" outside one."""
    try:
        result = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"


def run_facts(smk, hardware: Hardware, seed: int) -> dict:
    """What the run depended on: versions, device, seed and the pipeline's git commit."""
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
        "git_commit": git_commit(smk.scriptdir),
    }


def main(smk) -> None:
    torch.set_num_threads(usable_threads(smk.threads))
    experiment = smk.params.experiment
    training = dict(smk.params.training)
    seed = smk.params.seed
    run_parts = {"experiment": dict(experiment), "training": dict(training), "seed": seed}
    device = select_device(training.pop("device"))
    # Training batches share one shape (all but the last), so cuDNN's per-shape kernel search pays off;
    # CUDA results are not bit-reproducible anyway, CPU ones are, and this setting does not touch them.
    torch.backends.cudnn.benchmark = device.type == "cuda"
    log.info(
        "device: %s (%s), torch %s, %d threads", device, device_name(device), torch.__version__, torch.get_num_threads()
    )

    ids = None if experiment["augmentation"] else ids_of(read_table(smk.input.split), "train")
    weight_dirs = smk.input.weights if experiment["weight_maps"] else None
    train_data = load_labelled_images(smk.input.samples, ids=ids, weight_dirs=weight_dirs)
    val_data = load_labelled_images([smk.input.data], ids=ids_of(read_table(smk.input.split), "val"))
    class_names = list(smk.params.class_names)
    log.info(
        "training on %d samples (%s), validating on %d images",
        len(train_data),
        "augmented" if experiment["augmentation"] else "originals only",
        len(val_data),
    )

    torch.manual_seed(seed)
    model = build_model(
        experiment["model"],
        train_data.channels,
        len(class_names),
        where=f"experiments.{smk.wildcards.experiment}.model",
    )
    loss_function = build_loss(experiment["loss"], where=f"experiments.{smk.wildcards.experiment}.loss")
    patch_size = training.pop("patch_size")
    if model.margin:
        # A valid-padding net's output is smaller than its input: train on the smallest valid input whose
        # output covers the requested patch (or the whole image); images are mirror-padded up to it.
        wanted = patch_size or max(train_data.masks[0].shape)
        patch_size = valid_input_size(wanted, model.depth)
        log.info(
            "valid padding: training patches of %d px give %d px outputs", patch_size, model.output_size(patch_size)
        )
    sampler = BatchSampler(train_data, training["batch_size"], patch_size)
    sample_side = patch_size or train_data.masks[0].shape[0]
    hardware = choose_hardware(device, sample_side * sample_side)
    tile_size = inference_tile_size(model, smk.params.tile_size, val_data.masks[0].shape)
    log.info(
        "model %s: %d parameters, channels_last=%s, autocast=%s",
        experiment["model"]["name"],
        count_parameters(model),
        hardware.channels_last,
        hardware.autocast_dtype,
    )
    run_parts |= {
        "class_names": class_names,
        "validation_tile_size": tile_size,
        "train_data": data_digest(train_data),
        "val_data": data_digest(val_data),
    }
    resume = ResumeFile(Path(smk.params.resume_state), fingerprint(run_parts))

    started = time.perf_counter()
    history, best_state = fit(
        model, sampler, val_data, loss_function, TrainSettings(seed=seed, **training), hardware,
        num_classes=len(class_names), tile_size=tile_size, margin=model.margin, resume=resume,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    model.load_state_dict(best_state)
    metadata = {
        "model_spec": dict(experiment["model"]),
        "in_channels": train_data.channels,
        "num_classes": len(class_names),
        "class_names": class_names,
    }
    save_model(smk.output.model, model, metadata)
    history_table = pd.DataFrame(history)
    write_table(smk.output.history, history_table)
    plot_history({smk.wildcards.experiment: history_table}, smk.output.curves)
    best = history_table.loc[history_table["val_loss"].idxmin()]
    facts = {
        "experiment": smk.wildcards.experiment,
        "parameters": count_parameters(model),
        "training_seconds": round(seconds, 1),
        "epochs_run": len(history),
        "best_epoch": int(best["epoch"]),
        "best_val_loss": round(float(best["val_loss"]), 5),
        "best_val_dice": round(float(best["val_dice"]), 5),
        "training_samples": len(train_data),
        **run_facts(smk, hardware, seed),
    }
    with atomic_path(smk.output.facts, ".json") as tmp:
        tmp.write_text(json.dumps(facts, indent=2) + "\n")
    remove_state(resume.path)
    log.info(
        "done in %.1f s; best epoch %d (val_loss %.4f, val_dice %.4f)",
        seconds,
        facts["best_epoch"],
        facts["best_val_loss"],
        facts["best_val_dice"],
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
