# Helpers only: config validation, config lookups, output paths and input functions.

import jsonschema
import yaml
from snakemake.utils import min_version, validate


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


replace_experiments_from_configfiles(config)
check_config(config, workflow.source_path("../config/schema.yaml"))

DATASET = config["dataset"]["name"]
CLASSES = config["dataset"]["classes"]
EXPERIMENTS = list(config["experiments"])
SHARDS = list(range(config["shards"]))


def experiment_config(wildcards):
    """The experiment's config section with its defaults filled in."""
    return config["experiments"][wildcards.experiment]


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


def prediction_shards(wildcards):
    return expand(
        "results/{dataset}/{experiment}/predictions/shard-{shard}",
        dataset=wildcards.dataset,
        experiment=wildcards.experiment,
        shard=SHARDS,
    )


def per_experiment(pattern):
    """Input function: ``pattern`` (with {dataset} and {experiment}) for every experiment, in config order."""

    def paths(wildcards):
        return expand(pattern, dataset=wildcards.dataset, experiment=EXPERIMENTS)

    return paths


def final_outputs():
    """The final targets: the report and the metrics of every experiment."""
    return [
        f"results/{DATASET}/report.html",
        *expand(
            "results/{dataset}/{experiment}/metrics/summary.tsv",
            dataset=DATASET,
            experiment=EXPERIMENTS,
        ),
    ]
