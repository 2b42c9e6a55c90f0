# The model bundle: a trained experiment packaged for use outside the pipeline (python -m segcore.segment).


rule export_model:
    input:
        # With cross-validation every fold's model, bundled as the ensemble rule predict runs.
        model=trained_models(),
        # Normalisation, tile size and overlap (rule plan), as rule predict uses them.
        plan="results/{dataset}/{experiment}/plan.json",
        # The run facts; with cross-validation rule summarise_folds's summary of the folds.
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
