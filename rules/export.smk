# The model bundle: a trained experiment packaged for use outside the pipeline (python -m segcore.segment).


rule export_model:
    input:
        model="results/{dataset}/{experiment}/model.pt",
        # Normalisation, tile size and overlap (rule plan), as rule predict uses them.
        plan="results/{dataset}/{experiment}/plan.json",
        facts="results/{dataset}/{experiment}/training.json",
    output:
        bundle=directory("results/{dataset}/{experiment}/bundle"),
    log:
        "logs/{dataset}/{experiment}/export_model.log",
    conda:
        "../envs/torch-cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        prediction=config["prediction"],
    script:
        "../scripts/export_model.py"
