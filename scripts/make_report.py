"""Rule report: one self-contained HTML page comparing the experiments of a dataset
(:func:`segcore.report.build.build_report`)."""

from pathlib import Path

from segcore.report.build import ExperimentResults, build_report, write_report
from segcore.report.gallery import InferenceSetResults
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    experiments = [
        ExperimentResults(
            name=name,
            facts=Path(smk.input.facts[index]),
            history=Path(smk.input.history[index]),
            summary=Path(smk.input.summary[index]),
            per_image=Path(smk.input.per_image[index]),
            predictions=Path(smk.params.prediction_roots[index]),
            plan=Path(smk.input.plan[index]),
            confusion=Path(smk.input.confusion[index]),
            folds=Path(smk.input.fold_metrics[index]) if smk.input.fold_metrics else None,
        )
        for index, name in enumerate(smk.params.experiments)
    ]
    page = build_report(
        smk.params.dataset,
        experiments,
        data=smk.input.data,
        class_names=list(smk.params.class_names),
        n_examples=smk.params.n_examples,
        curves=smk.output.curves,
        threshold=smk.params.threshold,
        fingerprint=smk.input.fingerprint,
        inference_sets=[
            InferenceSetResults(experiment, name, Path(table))
            for (experiment, name), table in zip(smk.params.inference_sets, smk.input.inference)
        ],
        inference_examples=smk.params.inference_examples,
    )
    write_report(smk.output.html, page)
    log.info("report for %d experiments written", len(experiments))


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
