rule train:
    input:
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
        # Normalisation, patch and batch size, validation tiles and schedule (rule plan).
        plan="results/{dataset}/{experiment}/plan.json",
        # Augmented shards (originals + copies) or the canonical folder; weight maps only when the loss uses them.
        samples=training_samples,
        weights=training_weight_maps,
    output:
        model="results/{dataset}/{experiment}/model.pt",
        history=report(
            "results/{dataset}/{experiment}/history.tsv",
            caption="../report/history.rst",
            category="Training",
            labels={
                "dataset": "{dataset}",
                "experiment": "{experiment}",
                "figure": "history",
            },
        ),
        curves=report(
            "results/{dataset}/{experiment}/curves.png",
            caption="../report/curves.rst",
            category="Training",
            labels={
                "dataset": "{dataset}",
                "experiment": "{experiment}",
                "figure": "curves",
            },
        ),
        facts="results/{dataset}/{experiment}/training.json",
    log:
        "logs/{dataset}/{experiment}/train.log",
    benchmark:
        "results/benchmarks/{dataset}/{experiment}/train.tsv"
    conda:
        "../envs/torch-cpu.yaml"
    threads: 8
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        experiment=experiment_config,
        training=config["training"],
        seed=config["seed"],
        class_names=CLASSES,
        # Not an output: Snakemake deletes the outputs of a failed job, and a rerun resumes from this.
        resume_state="results/{dataset}/{experiment}/.resume/state.pt",
    script:
        "../scripts/train.py"
