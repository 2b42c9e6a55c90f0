# Inference sets (config inference): every experiment segments new, unlabelled images as rule predict segments
# the test images, one job per shard; the shards are tabled and, for stacked sets, merged into TIFF stacks
# (layout in segcore.predict.sets). Nothing here needs labels or the split.


rule infer:
    input:
        # The experiment's model, or (cross-validation) every fold's, predicting as an ensemble.
        model=trained_models(),
        # Normalisation, tile size and overlap (rule plan), as rule predict uses them.
        plan="results/{dataset}/{experiment}/plan.json",
        images=inference_images,
    output:
        predictions=directory(
            "results/{dataset}/{experiment}/inference/{set}/shard-{shard}"
        ),
    log:
        "logs/{dataset}/{experiment}/infer/{set}/shard-{shard}.log",
    conda:
        "../envs/torch-cpu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        image_set=inference_section,
        prediction=config["prediction"],
        device=config["training"]["device"],
        n_shards=len(SHARDS),
        # The training images' channel conversion (dataset.import.channels), applied to the set's images too.
        channels=config["dataset"].get("import", {}).get("channels"),
    script:
        "../scripts/infer.py"


rule merge_inference:
    input:
        shards=inference_shards,
    output:
        table="results/{dataset}/{experiment}/inference/{set}/images.tsv",
    log:
        "logs/{dataset}/{experiment}/infer/{set}/merge.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        class_names=CLASSES,
    script:
        "../scripts/merge_inference.py"


rule stack_inference:
    input:
        table="results/{dataset}/{experiment}/inference/{set}/images.tsv",
        shards=inference_shards,
    output:
        masks="results/{dataset}/{experiment}/inference/{set}/masks.tif",
        # One float32 stack per class of the dataset, e.g. membrane_probability.tif.
        probabilities=expand(
            "results/{{dataset}}/{{experiment}}/inference/{{set}}/{name}_probability.tif",
            name=PROBABILITY_STACKS,
        ),
    log:
        "logs/{dataset}/{experiment}/infer/{set}/stack.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../scripts/stack_inference.py"
