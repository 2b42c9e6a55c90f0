# Acquire and import: results/{dataset}/data is generated (source shapes), downloaded and imported (source
# download) or imported from the user's folder (source folder); then split into train/val/test, and with
# cross-validation (split.folds) the train and val ids dealt into folds.

if config["dataset"]["source"] == "shapes":

    rule generate_shapes:
        output:
            data=directory("results/{dataset}/data"),
        log:
            "logs/{dataset}/generate_shapes.log",
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            seed=config["seed"],
            shapes=config["dataset"]["shapes"],
            class_names=CLASSES,
        script:
            "../scripts/generate_shapes.py"


if config["dataset"]["source"] == "download":

    # Network access happens on the machine Snakemake runs on, never in a cluster job.
    localrules:
        download,

    rule download:
        output:
            files=directory("resources/{dataset}/download"),
        log:
            "logs/{dataset}/download.log",
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=60,
        params:
            download=config["dataset"]["download"],
        script:
            "../scripts/download_dataset.py"

    IMPORT_INPUTS = ["resources/{dataset}/download"]

elif config["dataset"]["source"] == "folder":
    # The user's own folders or TIFF stacks, so that files added there rerun the import (checked to exist).
    IMPORT_INPUTS = import_folders


if config["dataset"]["source"] in ("download", "folder"):

    rule import_dataset:
        input:
            raw=IMPORT_INPUTS,
        output:
            data=directory("results/{dataset}/data"),
        log:
            "logs/{dataset}/import_dataset.log",
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            source=config["dataset"]["source"],
            settings=config["dataset"]["import"],
            class_names=CLASSES,
        script:
            "../scripts/import_dataset.py"


rule split:
    input:
        data="results/{dataset}/data",
        # A split table given in the config replaces the drawn one (and reruns the split when it changes).
        table=config["split"]["table"] or [],
    output:
        split="results/{dataset}/split.tsv",
    log:
        "logs/{dataset}/split.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        split=SPLIT_SETTINGS,
        seed=config["seed"],
    script:
        "../scripts/split_dataset.py"


if FOLDS:

    rule folds:
        input:
            # The manifest's foreground fractions and groups: folds are stratified and grouped as the split.
            data="results/{dataset}/data",
            split="results/{dataset}/split.tsv",
        output:
            folds="results/{dataset}/folds.tsv",
        log:
            "logs/{dataset}/folds.log",
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            split=config["split"],
            seed=config["seed"],
        script:
            "../scripts/assign_folds.py"
