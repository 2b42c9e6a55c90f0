rule predict:
    input:
        model="results/{dataset}/{experiment}/model.pt",
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
    output:
        predictions=directory("results/{dataset}/{experiment}/predictions/shard-{shard}"),
    params:
        prediction=config["prediction"],
        device=config["training"]["device"],
        n_shards=len(SHARDS),
    log:
        "logs/{dataset}/{experiment}/predict/shard-{shard}.log",
    conda:
        "../envs/torch-cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/predict.py"


rule evaluate:
    input:
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
        predictions=prediction_shards,
    output:
        per_image="results/{dataset}/{experiment}/metrics/per_image.tsv",
        summary="results/{dataset}/{experiment}/metrics/summary.tsv",
    params:
        class_names=CLASSES,
    log:
        "logs/{dataset}/{experiment}/evaluate.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/evaluate.py"
