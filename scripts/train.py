"""Rule train: fit one experiment's U-Net on the training shards; write model, history, curves, facts."""

import json
import platform
import time

import numpy as np
import pandas as pd
import torch

from segcore.io import atomic_path, read_table, write_table
from segcore.losses import build_loss
from segcore.model_io import inference_tile_size, save_model
from segcore.models import build_model, count_parameters
from segcore.rule_runner import log, run_rule
from segcore.split import ids_of
from segcore.training import TrainSettings, fit, prefers_channels_last, select_device
from segcore.trainset import BatchSampler, load_labelled_images
from segcore.visual import plot_history


def main(smk) -> None:
    torch.set_num_threads(smk.threads)
    experiment = smk.params.experiment
    training = dict(smk.params.training)
    seed = smk.params.seed
    device = select_device(training.pop("device"))
    log.info("device: %s (%s), torch %s, %d threads", device, torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU", torch.__version__, torch.get_num_threads())

    ids = None if experiment["augmentation"] else ids_of(read_table(smk.input.split), "train")
    weight_dirs = smk.input.weights if experiment["weight_maps"] else None
    train_data = load_labelled_images(smk.input.samples, ids=ids, weight_dirs=weight_dirs)
    val_data = load_labelled_images([smk.input.data], ids=ids_of(read_table(smk.input.split), "val"))
    class_names = list(smk.params.class_names)
    log.info("training on %d samples (%s), validating on %d images", len(train_data), "augmented" if experiment["augmentation"] else "originals only", len(val_data))

    torch.manual_seed(seed)
    model = build_model(experiment["model"], train_data.channels, len(class_names), where=f"experiments.{smk.wildcards.experiment}.model")
    loss_function = build_loss(experiment["loss"], where=f"experiments.{smk.wildcards.experiment}.loss")
    patch_size = training.pop("patch_size")
    sampler = BatchSampler(train_data, training["batch_size"], patch_size)
    sample_side = patch_size or train_data.masks[0].shape[0]
    channels_last = prefers_channels_last(device, sample_side * sample_side)
    tile_size = inference_tile_size(model, smk.params.tile_size, val_data.masks[0].shape)
    log.info("model %s: %d parameters, channels_last=%s", experiment["model"]["name"], count_parameters(model), channels_last)

    started = time.perf_counter()
    history, best_state = fit(
        model, sampler, val_data, loss_function, TrainSettings(seed=seed, **training), device,
        num_classes=len(class_names), tile_size=tile_size, margin=model.margin, channels_last=channels_last,
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
        "best_val_loss": float(best["val_loss"]),
        "best_val_dice": float(best["val_dice"]),
        "training_samples": len(train_data),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    with atomic_path(smk.output.facts, ".json") as tmp:
        tmp.write_text(json.dumps(facts, indent=2) + "\n")
    log.info("done in %.1f s; best epoch %d (val_loss %.4f, val_dice %.4f)", seconds, facts["best_epoch"], facts["best_val_loss"], facts["best_val_dice"])


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
