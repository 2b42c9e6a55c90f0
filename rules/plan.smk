# Fingerprint and plan: what the dataset looks like (after import or generation, with the split), and per
# experiment every training and prediction setting left "auto" in the config, resolved from it.


rule fingerprint:
    input:
        data="results/{dataset}/data",
        # Intensity statistics come from the train and val images only.
        split="results/{dataset}/split.tsv",
    output:
        fingerprint="results/{dataset}/fingerprint.json",
    log:
        "logs/{dataset}/fingerprint.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        class_names=CLASSES,
        seed=config["seed"],
    script:
        "../scripts/fingerprint.py"


rule plan:
    input:
        fingerprint="results/{dataset}/fingerprint.json",
    output:
        plan="results/{dataset}/{experiment}/plan.json",
    log:
        "logs/{dataset}/{experiment}/plan.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        settings=plan_settings,
    script:
        "../scripts/plan.py"
