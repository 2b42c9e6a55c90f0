rule augment:
    input:
        data="results/{dataset}/data",
        split="results/{dataset}/split.tsv",
        # With cross-validation every pool id (train and val) trains in some fold, so all are augmented.
        folds=FOLD_TABLE,
    output:
        samples=directory("results/{dataset}/train/samples/shard-{shard}"),
    log:
        "logs/{dataset}/augment/shard-{shard}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        augment=augment_settings(),
        seed=config["seed"],
        n_shards=len(SHARDS),
        class_names=CLASSES,
    script:
        "../scripts/augment_shard.py"


rule class_weights:
    input:
        samples=sample_shards,
    output:
        weights="results/{dataset}/train/class_weights.tsv",
    log:
        "logs/{dataset}/class_weights.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        class_names=CLASSES,
        class_balance=config["weights"]["class_balance"],
    script:
        "../scripts/class_weights.py"


rule weight_maps:
    input:
        samples="results/{dataset}/train/samples/shard-{shard}",
        class_weights="results/{dataset}/train/class_weights.tsv",
    output:
        weights=directory("results/{dataset}/train/weights/shard-{shard}"),
    log:
        "logs/{dataset}/weight_maps/shard-{shard}.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        weights=config["weights"],
    script:
        "../scripts/weight_maps.py"
