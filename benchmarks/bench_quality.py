"""Segmentation quality of a preset on a fixed CPU budget, beside the literature's figures and the goals.

Runs the real Snakefile on one dataset in a temporary directory (config/config.yaml copied in, the preset
and a budget override merged over it, as a user's run would), then prints the test-set metrics of every
experiment next to published figures for the dataset and the goals of issue 11, each marked met or missed.

Presets:

- ``isbi2012``: config/isbi2012.yaml; the 30 labelled slices (and the 30 unlabelled test slices the preset
  segments as an inference set) are served from ../shared/data/isbi2012 by a loopback HTTP server standing in
  for the preset's download site (``dataset.download.mirror_url``), so the run downloads, verifies and
  imports them as a user's would. Literature: U-Net paper (Ronneberger et al.
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
- ``shapes101``: the default config with ``dataset.shapes.size: 101`` (sides that are not a multiple of
  2**depth: padded for the net, cropped back). Goal: mean foreground Dice >= 0.95.
- ``custom-colour``: config/custom.yaml as a user copies it, with only its marked lines edited, pointed at
  the 22 stained-tissue (colour) images of ../shared/data/dsb2018_dev and their binary nucleus masks (no
  instances), laid out as ``{id}.png`` and ``{id}_mask.png``. Literature: U-Nets on colour microscopy and
  endoscopy reach foreground Dice of about 0.8. Goals: pooled foreground Dice >= 0.85, with pooled
  foreground precision and recall within 0.1 of each other.
- ``bitdepth``: 400 generated shapes images (128 px, grey) imported through config/custom.yaml twice, as
  8-bit TIFFs and as the same pictures scaled to 0..4095 in uint16 (12-bit microscopy); one run each.
  Goal: mean foreground Dice within 0.01 of each other.

Budget: ``--epochs`` (default per preset, see BUDGET_EPOCHS) and any key through ``--set key.path=value``
(YAML values, repeatable; e.g. ``--set prediction.tta=none``), written to a last config file. Measured on two
CPU cores (AVX-512 Xeon, 2026-12-02) with the default budgets: isbi2012 24.5 min (80 epochs of about 17 s;
before the preset also segmented its 30 test slices), dsb2018 23.3 min (two experiments of 16 epochs of about
37 s), custom-colour 2.7 min; shapes takes about 85 s an epoch there. ``--strict`` exits 1 when a goal is
missed.

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
import tifffile  # noqa: E402
import yaml  # noqa: E402

from segcore.data.canonical import read_sample  # noqa: E402
from segcore.data.shapes import generate_sample  # noqa: E402
from segcore.evaluate.object_metrics import label_objects  # noqa: E402
from segcore.io import InputError  # noqa: E402
from segcore.predict.outputs import SHARD_GLOB, read_shard_instances, read_shard_mask  # noqa: E402

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PRESETS = ("isbi2012", "dsb2018", "shapes", "shapes101", "custom-colour", "bitdepth")
# The presets' own epochs (bitdepth: a third of the default run's images, so fewer epochs than custom.yaml's).
BUDGET_EPOCHS = {"isbi2012": 80, "dsb2018": 16, "shapes": 14, "shapes101": 14, "custom-colour": 50, "bitdepth": 20}
DSB_IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)  # 0.50 .. 0.95, the challenge's ten thresholds
SHAPES_CLASSES = ["background", "circle", "triangle", "square"]
BITDEPTH_COUNT, BITDEPTH_SIZE = 400, 128  # generated images per bit depth, and their side


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

    source = SHARED_DATA / "isbi2012" / "png"
    require(source / "train", "the ISBI 2012 data")
    routes = {
        f"/data/membrane/train/{kind}/{n}.png": source / "train" / kind / f"{n}.png"
        for kind in ("image", "label")
        for n in range(30)
    }
    # The unlabelled test slices, which the preset segments as its inference set "test".
    routes |= {f"/data/membrane/test/{n}.png": source / "test" / f"{n}.png" for n in range(30)}
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


def write_custom_colour_folder(root: Path) -> dict:
    """The stained-tissue (colour) images of dsb2018_dev with their binary masks, laid out as the custom
    template expects (``{id}.png`` and ``{id}_mask.png``, as links); returns the template with only the
    marked lines edited."""
    source = SHARED_DATA / "dsb2018_dev"
    require(source / "manifest.csv", "the DSB 2018 data")
    manifest = pd.read_csv(source / "manifest.csv", dtype={"id": str})
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for sample_id in manifest.loc[manifest["category"] == "colour", "id"]:
        (root / "images" / f"{sample_id}.png").symlink_to(source / "images" / f"{sample_id}.png")
        (root / "masks" / f"{sample_id}_mask.png").symlink_to(source / "masks" / f"{sample_id}.png")
    config = yaml.safe_load((REPO_ROOT / "config" / "custom.yaml").read_text())
    edits = {"name": "custom-colour", "import": {"images": str(root / "images"), "masks": str(root / "masks")}}
    return merge(config, {"dataset": edits})


def write_shapes_folder(root: Path, seed: int, bits: int) -> dict:
    """Generated shapes as grey TIFFs of ``bits`` bits (8: uint8 0..255; 12: uint16 0..4095, the same
    picture scaled) with class-id TIFF masks; returns the custom template pointed at them."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    scale = (2**bits - 1) / 255
    dtype = np.uint8 if bits <= 8 else np.uint16
    for index in range(BITDEPTH_COUNT):
        sample = generate_sample(seed, index, BITDEPTH_SIZE, 5)
        grey = sample.image.astype(np.float64).mean(axis=2)
        tifffile.imwrite(root / "images" / f"{sample.id}.tif", np.round(grey * scale).astype(dtype))
        tifffile.imwrite(root / "masks" / f"{sample.id}_mask.tif", sample.mask)
    config = yaml.safe_load((REPO_ROOT / "config" / "custom.yaml").read_text())
    config["dataset"]["import"]["encoding"] = "classes"
    edits = {
        "name": f"shapes-{bits}bit",
        "classes": SHAPES_CLASSES,
        "import": {
            "images": str(root / "images"),
            "masks": str(root / "masks"),
            "image_pattern": "{id}.tif",
            "mask_pattern": "{id}_mask.tif",
        },
    }
    return merge(config, {"dataset": edits})


@dataclass(frozen=True)
class Setup:
    """One workflow run of a preset: its folder, dataset name, config files (in merge order) and a context
    that serves its data (yielding a config override, or {})."""

    directory: Path
    dataset: str
    configfiles: list[Path]
    serving: Any

    @property
    def results(self) -> Path:
        return self.directory / "results" / self.dataset


def prepare(preset: str, directory: Path, budget: dict, seed: int) -> list[Setup]:
    """Write each run's config files under ``directory`` and say how to serve its data."""
    default_name = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())["dataset"]["name"]
    runs: list[tuple[Path, str, list[Path], Any]] = []
    if preset == "isbi2012":
        runs.append((directory, "isbi2012", [REPO_ROOT / "config" / "isbi2012.yaml"], isbi_mirror()))
    elif preset == "dsb2018":
        paths = write_yaml(directory / "paths.yaml", dsb_paths())
        runs.append((directory, "dsb2018", [REPO_ROOT / "config" / "dsb2018.yaml", paths], None))
    elif preset == "shapes":
        runs.append((directory, default_name, [], None))
    elif preset == "shapes101":
        size = write_yaml(directory / "size.yaml", {"dataset": {"shapes": {"size": 101}}})
        runs.append((directory, default_name, [size], None))
    elif preset == "custom-colour":
        config = write_custom_colour_folder(directory / "user-data")
        runs.append((directory, "custom-colour", [write_yaml(directory / "custom-colour.yaml", config)], None))
    else:  # bitdepth: the same pictures in 8 and 12 bits, one run each
        for bits in (8, 12):
            run_directory = directory / f"{bits}bit"
            config = write_shapes_folder(run_directory / "user-data", seed, bits)
            configfile = write_yaml(run_directory / "shapes.yaml", config)
            runs.append((run_directory, config["dataset"]["name"], [configfile], None))
    return [
        Setup(run_dir, dataset, [*files, write_yaml(run_dir / "budget.yaml", budget)], serving or nullcontext({}))
        for run_dir, dataset, files, serving in runs
    ]


def run_workflow(setup: Setup, cores: int, timeout: int) -> float:
    """Run the Snakefile to the end in the setup's folder; returns the wall seconds. Exits on failure."""
    directory = setup.directory
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


def score_shapes(results: Path, goal: str = ">= 0.98") -> list[Row]:
    rows = []
    for experiment in experiments_of(results):
        summary = read_summary(results, experiment)
        mean_dice = summary.loc["mean_fg_dice", "per_image_mean"]
        rows += [
            judged(experiment, "mean foreground Dice, per-image mean", mean_dice, goal),
            Row(experiment, "mean foreground Dice, pooled", summary.loc["mean_fg_dice", "pooled"]),
        ]
    return rows


def score_custom_colour(results: Path) -> list[Row]:
    rows = []
    for experiment in experiments_of(results):
        pooled = read_summary(results, experiment)["pooled"]
        precision, recall = pooled["precision_foreground"], pooled["recall_foreground"]
        rows += [
            judged(experiment, "foreground Dice, pooled", pooled["mean_fg_dice"], ">= 0.85", "~0.8 polyp U-Nets"),
            Row(experiment, "foreground precision, pooled", precision),
            Row(experiment, "foreground recall, pooled", recall),
            judged(experiment, "precision - recall, absolute", abs(precision - recall), "<= 0.1"),
        ]
    return rows


def score_bitdepth(eight_bit: Path, twelve_bit: Path) -> list[Row]:
    """The 8-bit and 12-bit runs' mean foreground Dice and their difference (goal: within 0.01)."""
    dice = {}
    rows = []
    for label, results in (("8 bit", eight_bit), ("12 bit in uint16", twelve_bit)):
        for experiment in experiments_of(results):
            dice[label] = read_summary(results, experiment).loc["mean_fg_dice", "per_image_mean"]
            rows.append(Row(f"{experiment}, {label}", "mean foreground Dice, per-image mean", dice[label]))
    if len(dice) == 2:
        difference = abs(dice["8 bit"] - dice["12 bit in uint16"])
        rows.append(judged("8 vs 12 bit", "Dice difference, absolute", difference, "<= 0.01"))
    return rows


SCORERS: dict[str, Callable[..., list[Row]]] = {
    "isbi2012": score_isbi,
    "dsb2018": score_dsb,
    "shapes": score_shapes,
    "shapes101": lambda results: score_shapes(results, ">= 0.95"),
    "custom-colour": score_custom_colour,
    "bitdepth": score_bitdepth,
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
        setups = prepare(args.preset, directory, budget, seed=42)
        seconds = [run_workflow(setup, args.cores, args.timeout) for setup in setups]
        rows = SCORERS[args.preset](*(setup.results for setup in setups))
        minutes = " + ".join(f"{value / 60:.1f}" for value in seconds)
        print(f"\n{args.preset}: workflow {minutes} min on {args.cores} cores; budget {json.dumps(budget)}")
        for setup in setups:
            print("\n".join(training_facts(setup.results)))
            print(f"  test images ({setup.dataset}): {len(test_ids(setup.results))}")
        print()
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
