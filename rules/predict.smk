rule predict:
    input:
        # With cross-validation every fold's model: their softmax is averaged tile by tile (an ensemble).
        model=trained_models(),
        # Normalisation, tile size and overlap (rule plan).
        plan="results/{dataset}/{experiment}/plan.json",
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
    output:
        predictions=directory(
            "results/{dataset}/{experiment}/predictions/shard-{shard}"
        ),
    log:
        "logs/{dataset}/{experiment}/predict/shard-{shard}.log",
    conda:
        "../envs/torch-cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        prediction=config["prediction"],
        device=config["training"]["device"],
        n_shards=len(SHARDS),
    script:
        "../scripts/predict.py"


rule evaluate:
    input:
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
        predictions="results/{dataset}/{experiment}/predictions/shard-{shard}",
    output:
        per_image="results/{dataset}/{experiment}/metrics/shard-{shard}/per_image.tsv",
        confusion="results/{dataset}/{experiment}/metrics/shard-{shard}/confusion.tsv",
    log:
        "logs/{dataset}/{experiment}/evaluate/shard-{shard}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        class_names=CLASSES,
        n_shards=len(SHARDS),
    script:
        "../scripts/evaluate.py"


rule merge_metrics:
    input:
        split="results/{dataset}/split.tsv",
        per_image=expand(
            "results/{{dataset}}/{{experiment}}/metrics/shard-{shard}/per_image.tsv",
            shard=SHARDS,
        ),
        confusion=expand(
            "results/{{dataset}}/{{experiment}}/metrics/shard-{shard}/confusion.tsv",
            shard=SHARDS,
        ),
    output:
        per_image=report(
            "results/{dataset}/{experiment}/metrics/per_image.tsv",
            caption="../report/per_image.rst",
            category="Test metrics",
            labels={
                "dataset": "{dataset}",
                "experiment": "{experiment}",
                "table": "per image",
            },
        ),
        summary=report(
            "results/{dataset}/{experiment}/metrics/summary.tsv",
            caption="../report/summary.rst",
            category="Test metrics",
            labels={
                "dataset": "{dataset}",
                "experiment": "{experiment}",
                "table": "summary",
            },
        ),
        confusion=report(
            "results/{dataset}/{experiment}/metrics/confusion.tsv",
            caption="../report/confusion.rst",
            category="Test metrics",
            labels={
                "dataset": "{dataset}",
                "experiment": "{experiment}",
                "table": "confusion matrix",
            },
        ),
    log:
        "logs/{dataset}/{experiment}/merge_metrics.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        class_names=CLASSES,
    script:
        "../scripts/merge_metrics.py"
