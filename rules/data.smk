if config["dataset"]["source"] == "shapes":

    rule generate_shapes:
        output:
            data=directory("results/{dataset}/data"),
        params:
            seed=config["seed"],
            shapes=config["dataset"]["shapes"],
            class_names=CLASSES,
        log:
            "logs/{dataset}/generate_shapes.log",
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/generate_shapes.py"


rule split:
    input:
        data="results/{dataset}/data",
    output:
        split="results/{dataset}/split.tsv",
    params:
        split=config["split"],
        seed=config["seed"],
    log:
        "logs/{dataset}/split.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/split_dataset.py"
