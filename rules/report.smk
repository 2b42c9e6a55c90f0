rule report:
    input:
        data="results/{dataset}/data",
        fingerprint="results/{dataset}/fingerprint.json",
        plan=per_experiment("results/{dataset}/{experiment}/plan.json"),
        facts=per_experiment("results/{dataset}/{experiment}/training.json"),
        history=per_experiment("results/{dataset}/{experiment}/history.tsv"),
        summary=per_experiment("results/{dataset}/{experiment}/metrics/summary.tsv"),
        per_image=per_experiment("results/{dataset}/{experiment}/metrics/per_image.tsv"),
        confusion=per_experiment("results/{dataset}/{experiment}/metrics/confusion.tsv"),
        predictions=all_prediction_shards,
        # The tables of the inference sets (none by default); the gallery shows a few images of each.
        inference=inference_tables,
        # With cross-validation: the per-fold validation metrics (mean, sd) of every experiment.
        fold_metrics=(
            per_experiment("results/{dataset}/{experiment}/fold_metrics.tsv")
            if FOLDS
            else []
        ),
    output:
        html=report(
            "results/{dataset}/report.html",
            caption="../report/report_html.rst",
            category="Report",
            labels={"dataset": "{dataset}", "figure": "pipeline report"},
        ),
        curves=report(
            "results/{dataset}/curves.png",
            caption="../report/curves_all.rst",
            category="Training",
            labels={"dataset": "{dataset}", "figure": "curves of all experiments"},
        ),
    log:
        "logs/{dataset}/report.log",
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        dataset=DATASET,
        experiments=EXPERIMENTS,
        prediction_roots=per_experiment("results/{dataset}/{experiment}/predictions"),
        n_examples=config["report"]["examples"],
        threshold=config["prediction"]["threshold"],
        class_names=CLASSES,
        inference_sets=inference_pairs(),
        inference_examples=config["report"]["inference_examples"],
    script:
        "../scripts/make_report.py"
