rule train:
    input:
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
        # With cross-validation, which pool ids this fold validates on (the rest train).
        folds=FOLD_TABLE,
        # Normalisation, patch and batch size, validation tiles and schedule (rule plan).
        plan="results/{dataset}/{experiment}/plan.json",
        # Augmented shards (originals + copies) or the canonical folder; weight maps only when the loss uses them.
        samples=training_samples,
        weights=training_weight_maps,
    output:
        model=trained("model.pt"),
        history=report(
            trained("history.tsv"),
            caption="../report/history.rst",
            category="Training",
            labels=training_labels("history"),
        ),
        curves=report(
            trained("curves.png"),
            caption="../report/curves.rst",
            category="Training",
            labels=training_labels("curves"),
        ),
        facts=trained("training.json"),
    log:
        trained("train.log", root="logs"),
    benchmark:
        trained("train.tsv", root="results/benchmarks")
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
        resume_state=trained(".resume/state.pt"),
    script:
        "../scripts/train.py"


if FOLDS:

    # The experiment's training results as the report reads them (facts, history), summarised from its folds
    # (in the torch environment: segcore.train imports torch).
    rule summarise_folds:
        input:
            facts=fold_outputs("training.json"),
            history=fold_outputs("history.tsv"),
        output:
            facts="results/{dataset}/{experiment}/training.json",
            history="results/{dataset}/{experiment}/history.tsv",
            fold_metrics=report(
                "results/{dataset}/{experiment}/fold_metrics.tsv",
                caption="../report/fold_metrics.rst",
                category="Training",
                labels={
                    "dataset": "{dataset}",
                    "experiment": "{experiment}",
                    "table": "folds",
                },
            ),
        log:
            "logs/{dataset}/{experiment}/summarise_folds.log",
        conda:
            "../envs/torch-cpu.yaml"
        threads: 1
        resources:
            mem_mb=500,
            runtime=5,
        script:
            "../scripts/summarise_folds.py"
