# Helpers only: config validation, config lookups, output paths and input functions.

import os
import re

import jsonschema
import yaml
from snakemake.utils import validate

# Environment of every job (segcore.compute.JOB_ENVIRONMENT, read by OpenMP when torch loads): idle threads
# of torch jobs running side by side sleep instead of spinning on the cores the other job needs.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def check_config(config, schema_path):
    """Stop with the config key's name and the problem for every schema violation, then fill defaults."""
    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(config),
        key=lambda e: list(e.path),
    )
    if errors:
        lines = []
        for error in errors:
            key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
            lines.append(f"  config key {key}: {error.message}")
        raise ValueError("Invalid configuration:\n" + "\n".join(lines))
    validate(config, schema_path)


def replace_experiments_from_configfiles(config):
    """Let a --configfile's ``experiments`` replace the default ones instead of merging into them.

    Snakemake deep-merges every --configfile over config/config.yaml; for the map of named experiments that
    would add the default experiment to every preset's comparison.
    """
    for path in workflow.overwrite_configfiles:
        with open(path) as handle:
            loaded = yaml.safe_load(handle) or {}
        if "experiments" in loaded:
            config["experiments"] = loaded["experiments"]


def check_split_counts(config):
    """Stop when split.counts asks for more images than a generated dataset has (known before any job)."""
    if config["dataset"]["source"] != "shapes" or config["split"]["method"] != "counts":
        return
    counts = config["split"]["counts"]
    asked = counts["train"] + counts["val"] + counts["test"]
    available = config["dataset"]["shapes"]["count"]
    if asked > available:
        raise ValueError(
            f"config key split.counts: asks for {asked} samples ({counts['train']}:{counts['val']}:"
            f"{counts['test']}) but dataset.shapes.count is {available}"
        )


replace_experiments_from_configfiles(config)
check_config(config, workflow.source_path("../config/schema.yaml"))
check_split_counts(config)

DATASET = config["dataset"]["name"]
CLASSES = config["dataset"]["classes"]
EXPERIMENTS = list(config["experiments"])
SHARDS = list(range(config["shards"]))
INFERENCE_SETS = list(config["inference"])
# Cross-validation (split.folds k >= 2): one training run per fold, the k models predict as an ensemble.
FOLDS = list(range(config["split"]["folds"]))
# The fold table, an input of the runs that need it; none without cross-validation.
FOLD_TABLE = ["results/{dataset}/folds.tsv"] if FOLDS else []
# Rule split's settings: split.folds deals the folds from the split but leaves the split as it is, so
# switching cross-validation on or off must not redraw it (and rerun everything after it).
SPLIT_SETTINGS = {
    key: value for key, value in config["split"].items() if key != "folds"
}


def trained(name, root="results"):
    """Path pattern of a training run's output ``name``: per experiment, or per fold of it with
    cross-validation (``{fold}`` wildcard), so a cluster runs the folds as parallel jobs.
    """
    fold = "fold-{fold}/" if FOLDS else ""
    return f"{root}/{{dataset}}/{{experiment}}/{fold}{name}"


def training_labels(figure):
    """Report labels of a training run's ``figure``; a fold's run is labelled with its fold too."""
    labels = {"dataset": "{dataset}", "experiment": "{experiment}", "figure": figure}
    return labels | ({"fold": "{fold}"} if FOLDS else {})


def fold_outputs(name):
    """Input function: the output ``name`` of every fold's training run of the experiment, in fold order."""

    def paths(wildcards):
        return expand(
            "results/{dataset}/{experiment}/fold-{fold}/{name}",
            dataset=wildcards.dataset,
            experiment=wildcards.experiment,
            fold=FOLDS,
            name=name,
        )

    return paths


def trained_models():
    """The model file(s) that predict the test set: the experiment's model, or every fold's (an ensemble)."""
    if FOLDS:
        return fold_outputs("model.pt")
    return "results/{dataset}/{experiment}/model.pt"


def experiment_config(wildcards):
    """The experiment's config section with its defaults filled in."""
    return config["experiments"][wildcards.experiment]


PLANNED_TRAINING_KEYS = (
    "patch_size",
    "batch_size",
    "normalisation",
    "validation_every",
    "epochs",
)
PLANNED_PREDICTION_KEYS = ("tile_size", "overlap")


def plan_settings(wildcards):
    """The config values the plan is made from (its params): the experiment's model and augmentation flag,
    and the keys whose value it resolves; only these, so changing another key does not rewrite the plan and
    retrain.
    """
    experiment = experiment_config(wildcards)
    return {
        "model": experiment["model"],
        "augmentation": experiment["augmentation"],
        "training": {key: config["training"][key] for key in PLANNED_TRAINING_KEYS},
        "prediction": {
            key: config["prediction"][key] for key in PLANNED_PREDICTION_KEYS
        },
        "memory_budget_mb": config["plan"]["memory_budget_mb"],
        "augment_copies": config["augment"]["copies"],
    }


def import_folders(wildcards):
    """The import's folders or TIFF stacks of a folder-source dataset, the inputs of its import.

    A path that does not exist stops the run before any job, naming its config key (relative paths start in
    the working directory). An input function and not a parse-time check, so that linting the unedited
    template config/custom.yaml still parses.
    """
    settings = config["dataset"]["import"]
    keys = [key for key in ("images", "masks", "instances") if key in settings]
    for key in keys:
        if not os.path.exists(settings[key]):
            raise ValueError(
                f"config key dataset.import.{key}: {settings[key]!r} does not exist "
                f"(relative paths start in the working directory {os.getcwd()})"
            )
    return sorted({settings[key] for key in keys})


def augment_settings():
    """Augmentation settings as segcore.augment.transforms receives them."""
    return dict(config["augment"])


def sample_shards(wildcards):
    return expand(
        "results/{dataset}/train/samples/shard-{shard}",
        dataset=wildcards.dataset,
        shard=SHARDS,
    )


def weight_shards(wildcards):
    return expand(
        "results/{dataset}/train/weights/shard-{shard}",
        dataset=wildcards.dataset,
        shard=SHARDS,
    )


def training_samples(wildcards):
    """The experiment's training images: the augmentation shards (originals and copies) when it trains on
    augmented data, else the canonical data folder (the train ids are taken from the split).
    """
    if experiment_config(wildcards)["augmentation"]:
        return sample_shards(wildcards)
    return [f"results/{wildcards.dataset}/data"]


def training_weight_maps(wildcards):
    """The weight-map shards when the experiment's loss uses weight maps, else none (so changing
    ``weights.*`` reruns only the experiments that use them)."""
    if experiment_config(wildcards)["weight_maps"]:
        return weight_shards(wildcards)
    return []


def prediction_shards(wildcards):
    return expand(
        "results/{dataset}/{experiment}/predictions/shard-{shard}",
        dataset=wildcards.dataset,
        experiment=wildcards.experiment,
        shard=SHARDS,
    )


def all_prediction_shards(wildcards):
    """Every experiment's prediction shards (the report shows example images from them)."""
    return expand(
        "results/{dataset}/{experiment}/predictions/shard-{shard}",
        dataset=wildcards.dataset,
        experiment=EXPERIMENTS,
        shard=SHARDS,
    )


def per_experiment(pattern):
    """Input function: ``pattern`` (with {dataset} and {experiment}) for every experiment, in config order."""

    def paths(wildcards):
        return expand(pattern, dataset=wildcards.dataset, experiment=EXPERIMENTS)

    return paths


# --- inference sets (config inference: new, unlabelled images; segcore.predict.sets) -------------------


def probability_stack_names(classes):
    """File-name stems of the per-class probability stacks: each class name with characters other than
    letters, digits, ``_``, ``.`` and ``-`` replaced by ``_`` (``membrane`` -> ``membrane_probability.tif``);
    ``class<i>`` (the class id) where that leaves nothing, or two classes the same name.
    """
    names = [re.sub(r"[^A-Za-z0-9_.-]", "_", name) for name in classes]
    return [
        name if name.strip("_") and names.count(name) == 1 else f"class{index}"
        for index, name in enumerate(names)
    ]


PROBABILITY_STACKS = probability_stack_names(CLASSES)


def inference_section(wildcards):
    """The inference set's config section with its defaults filled in."""
    return config["inference"][wildcards.set]


def inference_stacked(name):
    """Whether the set ``name`` is merged into page stacks (a TIFF stack, or a folder with stack: true)."""
    section = config["inference"][name]
    return section["format"] == "tiff_stack" or section.get("stack", False)


def inference_input(name):
    """What the set ``name`` gives rule infer as input, its folder or TIFF stack (files added there rerun it);
    a path inside the dataset's download folder stands for that folder, rule download's output.
    """
    path = config["inference"][name]["images"]
    download = f"resources/{DATASET}/download"
    if config["dataset"]["source"] != "download":
        return path
    return (
        download
        if (os.path.normpath(path) + os.sep).startswith(download + os.sep)
        else path
    )


def check_inference_sets():
    """Stop before any job, naming the config key, when an inference set's images do not exist (relative
    paths start in the working directory; files still to be downloaded are not checked).
    """
    for name in INFERENCE_SETS:
        path = inference_input(name)
        if path != f"resources/{DATASET}/download" and not os.path.exists(path):
            raise ValueError(
                f"config key inference.{name}.images: {path!r} does not exist "
                f"(relative paths start in the working directory {os.getcwd()})"
            )


check_inference_sets()


def inference_images(wildcards):
    return [inference_input(wildcards.set)]


def inference_shards(wildcards):
    return expand(
        "results/{dataset}/{experiment}/inference/{set}/shard-{shard}",
        dataset=wildcards.dataset,
        experiment=wildcards.experiment,
        set=wildcards.set,
        shard=SHARDS,
    )


def inference_pairs():
    """(experiment, set) of every experiment and inference set, experiments first, in config order."""
    return [(experiment, name) for experiment in EXPERIMENTS for name in INFERENCE_SETS]


def inference_tables(wildcards=None):
    """Every experiment's table (images.tsv) of every inference set, in :func:`inference_pairs` order."""
    return [
        f"results/{DATASET}/{experiment}/inference/{name}/images.tsv"
        for experiment, name in inference_pairs()
    ]


def inference_outputs():
    """The final outputs of the inference sets: every table, and the stacks of the stacked sets."""
    stacks = ["masks.tif", *[f"{name}_probability.tif" for name in PROBABILITY_STACKS]]
    outputs = []
    for experiment, name in inference_pairs():
        folder = f"results/{DATASET}/{experiment}/inference/{name}"
        outputs.append(f"{folder}/images.tsv")
        if inference_stacked(name):
            outputs += [f"{folder}/{stack}" for stack in stacks]
    return outputs


def final_outputs():
    """The final targets: the report, the metrics and model bundle of every experiment (with
    cross-validation, the ensemble's metrics and bundle, and the per-fold table), and the outputs of every
    inference set.
    """
    targets = ["metrics/summary.tsv", "bundle"]
    if FOLDS:
        targets.append("fold_metrics.tsv")
    return [
        f"results/{DATASET}/report.html",
        *expand(
            "results/{dataset}/{experiment}/{target}",
            dataset=DATASET,
            experiment=EXPERIMENTS,
            target=targets,
        ),
        *inference_outputs(),
    ]


# --- segcore for the rule scripts when this workflow runs from a remote source ---------------------------
# Snakemake puts a Python script's own folder on sys.path only when the script is a local file. From a
# remote source (a module with snakefile: github(...), an http(s) URL; snakedeploy deploys this way) it
# downloads the script into its source cache, where the remote folder layout is mirrored, and puts that
# cached folder on sys.path instead (snakemake/script/__init__.py, PythonScript.generate_preamble). Caching
# every file of segcore at parse time places the package next to the cached scripts, so the scripts'
# ``import segcore`` works unchanged. Remote folders cannot be listed, hence scripts/segcore/FILES.txt.

from snakemake.sourcecache import LocalSourceFile


def cache_segcore_next_to_scripts():
    """Fetch every file of scripts/segcore into Snakemake's source cache when the workflow is not local."""
    if isinstance(workflow.current_basedir, LocalSourceFile):
        return  # a local script runs with scripts/ itself on sys.path
    with open(workflow.source_path("../scripts/segcore/FILES.txt")) as handle:
        lines = [line.strip() for line in handle]
    for name in lines:
        if name and not name.startswith("#"):
            workflow.source_path(f"../scripts/segcore/{name}")


cache_segcore_next_to_scripts()
