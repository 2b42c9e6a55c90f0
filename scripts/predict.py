"""Rule predict: one shard of the test images -> class masks (uint8 TIFF), colour-palette PNGs, colour overlays
(PNG) and, when ``prediction.save_probabilities`` is set, per-class probability maps (float32 (K, H, W) TIFF)."""

import torch

from segcore.compute import select_device, usable_threads
from segcore.data.canonical import read_sample
from segcore.data.normalise import image_to_float
from segcore.data.shards import shard_ids
from segcore.data.split import ids_of
from segcore.io import atomic_dir, read_table, write_png, write_tiff
from segcore.model.model_file import inference_tile_size, load_model
from segcore.model.overlap_tile import class_mask, predict_probabilities
from segcore.model.unet import prepare_for_inference
from segcore.predict.visual import colourise, overlay
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    torch.set_num_threads(usable_threads(smk.threads))
    device = select_device(smk.params.device)
    model, metadata = load_model(smk.input.model, device)
    model = prepare_for_inference(model)
    settings = smk.params.prediction
    num_classes = metadata["num_classes"]
    ids = shard_ids(ids_of(read_table(smk.input.split), "test"), int(smk.wildcards.shard), smk.params.n_shards)
    kinds = ["masks", "colour", "overlays"] + (["probabilities"] if settings["save_probabilities"] else [])
    with atomic_dir(smk.output.predictions) as folder:
        for kind in kinds:
            (folder / kind).mkdir()
        for sample_id in ids:
            image = read_sample(smk.input.data, sample_id).image
            tile_size = inference_tile_size(model, settings["tile_size"], image.shape[:2])
            probabilities = predict_probabilities(
                model, image_to_float(image), num_classes=num_classes, tile_size=tile_size, margin=model.margin,
                overlap=settings["overlap"] if model.margin == 0 else 0, batch_size=settings["batch_size"],
                blend=settings["blend"], tta=settings["tta"], device=device,
            )  # fmt: skip
            mask = class_mask(probabilities)
            write_tiff(folder / "masks" / f"{sample_id}.tif", mask)
            write_png(folder / "colour" / f"{sample_id}.png", colourise(mask, num_classes))
            write_png(folder / "overlays" / f"{sample_id}.png", overlay(image, mask, num_classes))
            if settings["save_probabilities"]:
                write_tiff(folder / "probabilities" / f"{sample_id}.tif", probabilities)
    log.info("predicted %d test images on %s", len(ids), device)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
