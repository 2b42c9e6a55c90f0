"""Segmentation quality of a preset on a fixed CPU budget, beside the literature's figures and the goals.

Runs the real Snakefile on one dataset in a temporary directory (config/config.yaml copied in, the preset
and a budget override merged over it, as a user's run would), then prints the test-set metrics of every
experiment next to published figures for the dataset and the goals of issue 11, each marked met or missed.

Presets:

- ``isbi2012``: config/isbi2012.yaml; the 30 labelled slices are served from ../shared/data/isbi2012 by a
  loopback HTTP server standing in for the preset's download site (``dataset.download.mirror_url``), so the
  run downloads, verifies and imports them as a user's would. Literature: U-Net paper (Ronneberger et al.
  2015, Table 1) on the challenge's hidden test volume: pixel error 0.0611, Rand error 0.0382. The test set
  here is 5 held-out training slices (neighbours of training slices: easier). Goals: pixel error <= 0.07,
  Rand error <= 0.12.
- ``dsb2018``: config/dsb2018.yaml on ../shared/data/dsb2018_dev (60 nuclei images of three imaging types;
  the import paths are made absolute). Scored here from the predictions and the truth instances: object F1
  at IoU > 0.5 (pooled over the test images, and the per-image mean of the pipeline's ``object_f1``), and
  the challenge's metric, mean over images of the average over IoU thresholds 0.50, 0.55, ..., 0.95 of
  TP / (TP + FP + FN). Literature: the winning stage-2 entries of the 2018 Data Science Bowl, U-Net
  ensembles with watershed post-processing, scored about 0.63 on that metric (Caicedo et al. 2019, Nature
  Methods 16:1247) on a different and harder test set. Goals: object F1 >= 0.80 pooled and per image,
  nucleus Dice > 0.8 for every imaging type (types from the data set's manifest.csv), and the weight-map
  experiment's pooled F1 at least 0.03 above the plain one's.
- ``shapes``: the default config (generated shapes). No literature; the project's goal: mean foreground
  Dice >= 0.98 (per-image mean).
- ``custom-colour``: the own-data route of config/custom.yaml on a generated user folder: RGB shapes images
  of mixed sizes (96, 128, 160 px) as PNG files with colour-coded PNG masks (circle red, triangle green,
  square blue; ``encoding: colour_table``). Goals: pooled mean foreground Dice >= 0.85, with the pooled
  mean foreground precision and recall within 0.1 of each other.

Budget: ``--epochs`` (default per preset, see BUDGET_EPOCHS) and any key through ``--set key.path=value``
(YAML values, repeatable; e.g. ``--set prediction.tta=none``), written to a last config file. On two CPU
cores the default budgets take roughly: isbi2012 10 min, dsb2018 30 min (two experiments), shapes 15 min,
custom-colour 10 min (1-epoch runs measured 11, 17 + 17, 55 and 16 s of training per epoch, plus 1 to 2 min
of import, weight maps, prediction and scoring). ``--strict`` exits 1 when a goal is missed.

Usage: ``python benchmarks/bench_quality.py --preset dsb2018 [--epochs N] [--set k=v ...] [--cores 2]
[--workdir DIR] [--keep] [--strict]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
sys.path.insert(0, str(REPO_ROOT))  # tests.unit.helpers_http: the loopback server the download tests use

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from skimage import io as skio  # noqa: E402

from segcore.data.canonical import read_sample  # noqa: E402
from segcore.data.shapes import generate_sample  # noqa: E402
from segcore.evaluate.object_metrics import label_objects  # noqa: E402
from segcore.io import InputError  # noqa: E402
from segcore.predict.outputs import SHARD_GLOB, read_shard_instances, read_shard_mask  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PRESETS = ("isbi2012", "dsb2018", "shapes", "custom-colour")
# The presets' own epochs (custom-colour: custom.yaml has 50 for real data; 30 suffice for generated shapes).
BUDGET_EPOCHS = {"isbi2012": 40, "dsb2018": 50, "shapes": 14, "custom-colour": 30}
DSB_IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)  # 0.50 .. 0.95, the challenge's ten thresholds
CUSTOM_COLOURS = {"#000000": 0, "#ff0000": 1, "#00ff00": 2, "#0000ff": 3}
CUSTOM_SIZES = (96, 128, 160)
CUSTOM_COUNT = 240
CUSTOM_CLASSES = ["background", "circle", "triangle", "square"]


@dataclass(frozen=True)
class Row:
    """One line of the result table; ``met`` is None for figures without a goal."""

    experiment: str
    metric: str
    value: float
    literature: str = ""
    goal: str = ""
    met: bool | None = None


# --- configuration -------------------------------------------------------------------------------------


def merge(base: dict, update: Mapping) -> dict:
    """``update`` merged into ``base`` key by key (nested dicts merged, everything else replaced)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def parse_settings(pairs: Sequence[str]) -> dict:
    """``["training.epochs=3", "prediction.tta=none"]`` -> nested dict; values parsed as YAML."""
    settings: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {pair!r}: expected key.path=value")
        *parents, last = key.split(".")
        node = settings
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return settings


def write_yaml(path: Path, content: Mapping) -> Path:
    path.write_text(yaml.safe_dump(dict(content), sort_keys=False))
    return path


# --- datasets ------------------------------------------------------------------------------------------


def require(path: Path, what: str) -> None:
    if not path.exists():
        raise SystemExit(f"{what} is not at {path}: the {what} benchmark needs ../shared beside the checkout")


@contextmanager
def isbi_mirror() -> Iterator[dict]:
    """The ISBI slices of ../shared served under the zhixuhao/unet layout; yields the mirror override."""
    from tests.unit.helpers_http import FileServer

    source = SHARED_DATA / "isbi2012" / "png" / "train"
    require(source, "the ISBI 2012 data")
    routes = {
        f"/data/membrane/train/{kind}/{n}.png": source / kind / f"{n}.png"
        for kind in ("image", "label")
        for n in range(30)
    }
    with FileServer(routes, lifetime_s=6 * 3600) as server:
        yield {"dataset": {"download": {"mirror_url": server.base_url + "/"}}}


def dsb_paths() -> dict:
    """Absolute import folders for config/dsb2018.yaml (its relative ones start at the repository root)."""
    source = SHARED_DATA / "dsb2018_dev"
    require(source / "manifest.csv", "the DSB 2018 data")
    return {
        "dataset": {
            "import": {"format": "folder", **{key: str(source / key) for key in ("images", "masks", "instances")}}
        }
    }


def write_custom_colour_folder(root: Path, seed: int) -> dict:
    """Shapes images of mixed sizes as RGB PNGs with colour-coded PNG masks; returns the config override."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    palette = np.zeros((len(CUSTOM_COLOURS), 3), np.uint8)
    for colour, class_id in CUSTOM_COLOURS.items():
        palette[class_id] = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    for index in range(CUSTOM_COUNT):
        sample = generate_sample(seed, index, CUSTOM_SIZES[index % len(CUSTOM_SIZES)], 5)
        skio.imsave(root / "images" / f"{sample.id}.png", sample.image, check_contrast=False)
        skio.imsave(root / "masks" / f"{sample.id}_mask.png", palette[sample.mask], check_contrast=False)
    config = yaml.safe_load((REPO_ROOT / "config" / "custom.yaml").read_text())
    # Replaced whole: merged into the template's value_table it would keep that table's "values".
    config["dataset"]["import"]["encoding"] = {"type": "colour_table", "colours": dict(CUSTOM_COLOURS)}
    return merge(
        config,
        {
            "dataset": {
                "name": "custom-colour",
                "classes": CUSTOM_CLASSES,
                "import": {
                    "images": str(root / "images"),
                    "masks": str(root / "masks"),
                    "mask_pattern": "{id}_mask.png",
                },
            },
            # Patches as large as the largest image (a multiple of 16 for the 4-pooling net).
            "training": {"patch_size": 160},
            "prediction": {"tile_size": 160},
        },
    )


@dataclass(frozen=True)
class Setup:
    """What a preset run needs: its dataset name, config files (in merge order) and a serving context."""

    dataset: str
    configfiles: list[Path]
    serving: Any


def prepare(preset: str, directory: Path, budget: dict, seed: int) -> Setup:
    """Write the preset's config files into ``directory`` and say how to serve its data."""
    serving: Any = nullcontext({})
    configfiles: list[Path] = []
    if preset == "isbi2012":
        dataset, serving = "isbi2012", isbi_mirror()
        configfiles.append(REPO_ROOT / "config" / "isbi2012.yaml")
    elif preset == "dsb2018":
        dataset = "dsb2018"
        configfiles += [REPO_ROOT / "config" / "dsb2018.yaml", write_yaml(directory / "paths.yaml", dsb_paths())]
    elif preset == "shapes":
        dataset = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())["dataset"]["name"]
    else:
        dataset = "custom-colour"
        config = write_custom_colour_folder(directory / "user-data", seed)
        configfiles.append(write_yaml(directory / "custom-colour.yaml", config))
    configfiles.append(write_yaml(directory / "budget.yaml", budget))
    return Setup(dataset, configfiles, serving)


def run_workflow(directory: Path, setup: Setup, cores: int, timeout: int) -> float:
    """Run the Snakefile to the end in ``directory``; returns the wall seconds. Exits on failure."""
    (directory / "config").mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "config" / "config.yaml", directory / "config" / "config.yaml")
    started = time.perf_counter()
    with setup.serving as serving_override:
        configfiles = list(setup.configfiles)
        if serving_override:
            configfiles.insert(-1, write_yaml(directory / "serving.yaml", serving_override))
        command = [
            "snakemake", "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(directory), "--configfile",
            *map(str, configfiles), "--cores", str(cores), "--resources", "gpu=1",
        ]  # fmt: skip
        print("running:", " ".join(command), flush=True)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    (directory / "snakemake.stderr.txt").write_text(result.stderr)
    if result.returncode != 0:
        print(result.stderr[-6000:], file=sys.stderr)
        raise SystemExit(f"the workflow failed (exit {result.returncode}); its output is in {directory}")
    return seconds


# --- scoring -------------------------------------------------------------------------------------------


def experiments_of(results: Path) -> list[str]:
    """Experiments with a summary table under ``results`` (results/<dataset>), sorted."""
    return sorted(path.parents[1].name for path in results.glob("*/metrics/summary.tsv"))


def read_summary(results: Path, experiment: str) -> pd.DataFrame:
    return pd.read_csv(results / experiment / "metrics" / "summary.tsv", sep="\t").set_index("metric")


def read_per_image(results: Path, experiment: str) -> pd.DataFrame:
    return pd.read_csv(results / experiment / "metrics" / "per_image.tsv", sep="\t", dtype={"id": str})


def test_ids(results: Path) -> list[str]:
    split = pd.read_csv(results / "split.tsv", sep="\t", dtype={"id": str})
    return sorted(split.loc[split["subset"] == "test", "id"])


def predicted_objects(predictions: Path, sample_id: str) -> np.ndarray:
    """The predicted objects of ``sample_id``: the predictions folder's instances, or the mask's 4-connected
    components per class where the shard holds none."""
    for shard in sorted(predictions.glob(SHARD_GLOB)):
        try:
            mask = read_shard_mask(shard, sample_id)
        except InputError:  # not in this shard
            continue
        instances = read_shard_instances(shard, sample_id)
        return label_objects(mask) if instances is None else instances
    raise SystemExit(f"{predictions}: no prediction for test image {sample_id!r}")


def match_counts(truth: np.ndarray, pred: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(T, 3)`` int64 true positives, false positives and false negatives at IoU > each threshold.

    ``truth`` and ``pred`` are integer (H, W) object labels (0 = none). At thresholds >= 0.5 a pair passing
    the IoU test is the only one of either object (IoU > 0.5 needs more than half of each), so counting
    passing pairs is a one-to-one matching.
    """
    truth_ids, truth_index = np.unique(truth, return_inverse=True)
    pred_ids, pred_index = np.unique(pred, return_inverse=True)
    pairs = np.bincount(
        truth_index.ravel() * len(pred_ids) + pred_index.ravel(), minlength=len(truth_ids) * len(pred_ids)
    ).reshape(len(truth_ids), len(pred_ids))
    truth_area, pred_area = pairs.sum(axis=1), pairs.sum(axis=0)
    keep_truth, keep_pred = truth_ids != 0, pred_ids != 0
    overlap = pairs[np.ix_(keep_truth, keep_pred)]
    union = truth_area[keep_truth][:, None] + pred_area[keep_pred][None, :] - overlap
    iou = overlap / np.maximum(union, 1)
    n_truth, n_pred = int(keep_truth.sum()), int(keep_pred.sum())
    counts = np.empty((len(thresholds), 3), np.int64)
    for row, threshold in enumerate(thresholds):
        matched = int(np.count_nonzero(iou > threshold))
        counts[row] = matched, n_pred - matched, n_truth - matched
    return counts


def object_counts(results: Path, experiment: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Per test id, :func:`match_counts` of the predicted objects against the canonical truth instances."""
    data, predictions = results / "data", results / experiment / "predictions"
    return {
        sample_id: match_counts(
            read_sample(data, sample_id).instances, predicted_objects(predictions, sample_id), DSB_IOU_THRESHOLDS
        )
        for sample_id in ids
    }


def pooled_f1(counts: Mapping[str, np.ndarray]) -> float:
    """F1 at IoU > 0.5 from the true/false positive and false negative counts summed over images."""
    tp, fp, fn = np.sum([value[0] for value in counts.values()], axis=0)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


def dsb_map(counts: Mapping[str, np.ndarray]) -> float:
    """The 2018 Data Science Bowl metric: mean over images of mean over thresholds of TP / (TP + FP + FN)."""
    scores = []
    for value in counts.values():
        tp, fp, fn = value[:, 0], value[:, 1], value[:, 2]
        total = tp + fp + fn
        scores.append(np.mean(np.where(total > 0, tp / np.maximum(total, 1), 1.0)))
    return float(np.mean(scores))


COMPARISONS = {"<=": np.less_equal, ">=": np.greater_equal, ">": np.greater}


def judged(experiment: str, metric: str, value: float, goal: str, literature: str = "") -> Row:
    """A row with a goal such as ``">= 0.80"`` (operator, space, limit); NaN never meets a goal."""
    operator, limit = goal.split()
    return Row(experiment, metric, value, literature, goal, bool(COMPARISONS[operator](value, float(limit))))


def score_isbi(results: Path) -> list[Row]:
    rows = []
    for experiment in experiments_of(results):
        summary = read_summary(results, experiment)
        mean = summary["per_image_mean"]
        rows += [
            judged(experiment, "pixel error, test slices", mean["pixel_error"], "<= 0.07", "0.0611 U-Net paper"),
            judged(experiment, "Rand error, test slices", mean["rand_error"], "<= 0.12", "0.0382 U-Net paper"),
            Row(experiment, "cell Dice, pooled", summary.loc["mean_fg_dice", "pooled"]),
        ]
    return rows


def score_dsb(results: Path) -> list[Row]:
    manifest = pd.read_csv(SHARED_DATA / "dsb2018_dev" / "manifest.csv", dtype={"id": str})
    category_of = manifest.set_index("id")["category"]
    ids = test_ids(results)
    rows, pooled = [], {}
    for experiment in experiments_of(results):
        counts = object_counts(results, experiment, ids)
        pooled[experiment] = pooled_f1(counts)
        per_image = read_per_image(results, experiment).set_index("id")
        # The pipeline's per-image object_f1 scores the same objects at the same IoU rule: they must agree.
        own_f1 = pd.Series({sample_id: pooled_f1({sample_id: value}) for sample_id, value in counts.items()})
        disagreement = float((own_f1 - per_image["object_f1"].reindex(own_f1.index)).abs().max())
        rows += [
            Row(experiment, "check: per-image F1 own vs pipeline, max diff", disagreement),
            judged(experiment, "object F1 @ IoU 0.5, pooled", pooled[experiment], ">= 0.80"),
            judged(experiment, "object F1 @ IoU 0.5, per-image mean", per_image["object_f1"].mean(), ">= 0.80"),
            Row(experiment, "DSB mAP @ IoU 0.5:0.95", dsb_map(counts), "~0.63 stage-2 winners"),
        ]
        dice = per_image["dice_nucleus"].groupby(per_image.index.map(category_of)).agg(["mean", "count"])
        for category, (mean, count) in dice.iterrows():
            rows.append(judged(experiment, f"nucleus Dice, {category} ({int(count)} images)", mean, "> 0.8"))
    if {"weighted", "plain"} <= set(pooled):
        gain = pooled["weighted"] - pooled["plain"]
        rows.append(judged("weighted - plain", "pooled object F1 gain", gain, ">= 0.03"))
    return rows


def score_shapes(results: Path) -> list[Row]:
    rows = []
    for experiment in experiments_of(results):
        summary = read_summary(results, experiment)
        rows += [
            judged(
                experiment,
                "mean foreground Dice, per-image mean",
                summary.loc["mean_fg_dice", "per_image_mean"],
                ">= 0.98",
            ),
            Row(experiment, "mean foreground Dice, pooled", summary.loc["mean_fg_dice", "pooled"]),
        ]
    return rows


def score_custom_colour(results: Path) -> list[Row]:
    rows = []
    foreground = CUSTOM_CLASSES[1:]
    for experiment in experiments_of(results):
        pooled = read_summary(results, experiment)["pooled"]
        precision = float(np.mean([pooled[f"precision_{name}"] for name in foreground]))
        recall = float(np.mean([pooled[f"recall_{name}"] for name in foreground]))
        rows += [
            judged(experiment, "mean foreground Dice, pooled", pooled["mean_fg_dice"], ">= 0.85"),
            Row(experiment, "mean foreground precision, pooled", precision),
            Row(experiment, "mean foreground recall, pooled", recall),
            judged(experiment, "precision - recall, absolute", abs(precision - recall), "<= 0.1"),
        ]
    return rows


SCORERS: dict[str, Callable[[Path], list[Row]]] = {
    "isbi2012": score_isbi,
    "dsb2018": score_dsb,
    "shapes": score_shapes,
    "custom-colour": score_custom_colour,
}


def training_facts(results: Path) -> list[str]:
    """One line per experiment from its training.json (epochs run, best epoch, seconds), where readable."""
    lines = []
    for experiment in experiments_of(results):
        path = results / experiment / "training.json"
        facts = json.loads(path.read_text()) if path.exists() else {}
        lines.append(
            f"  {experiment}: {facts.get('epochs_run', '?')} epochs, best {facts.get('best_epoch', '?')}, "
            f"{facts.get('training_seconds', '?')} s training"
        )
    return lines


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table: experiment, metric, this run, literature, goal, met."""
    header = ["experiment", "metric", "this run", "literature", "goal", "met"]
    lines = [header]
    for row in rows:
        value = "nan" if row.value is None or math.isnan(row.value) else f"{row.value:.4f}"
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append([row.experiment, row.metric, value, row.literature, row.goal, met])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", required=True, choices=PRESETS)
    parser.add_argument("--epochs", type=int, default=None, help="training.epochs (default: per preset)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds for the whole workflow run")
    parser.add_argument("--workdir", type=Path, default=None, help="run here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")

    budget = merge({"training": {"epochs": args.epochs or BUDGET_EPOCHS[args.preset]}}, parse_settings(args.set))
    directory = args.workdir or Path(tempfile.mkdtemp(prefix=f"bench-quality-{args.preset}-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        setup = prepare(args.preset, directory, budget, seed=42)
        seconds = run_workflow(directory, setup, args.cores, args.timeout)
        results = directory / "results" / setup.dataset
        rows = SCORERS[args.preset](results)
        print(f"\n{args.preset}: workflow {seconds / 60:.1f} min on {args.cores} cores; budget {json.dumps(budget)}")
        print("\n".join(training_facts(results)))
        print(f"test images: {len(test_ids(results))}\n")
        print(format_table(rows))
        missed = [row for row in rows if row.met is False]
        print(f"\ngoals met: {sum(row.met is True for row in rows)} of {sum(row.met is not None for row in rows)}")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"run folder kept: {directory}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
