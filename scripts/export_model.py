"""Rule export_model: a trained experiment -> its model bundle (TorchScript with BatchNorm folded, model card,
ONNX when the optional onnx package is installed; layout in :mod:`segcore.predict.bundle`), for use outside
the pipeline with ``python -m segcore.segment``. With cross-validation the bundle holds the folds' ensemble."""

from segcore.compute import configure_threads
from segcore.predict.export import export_model
from segcore.rule_runner import run_rule
from segcore.train.run import git_commit


def main(smk) -> None:
    configure_threads(smk.threads)
    commit = git_commit(smk.scriptdir)
    export_model(
        # One model file, or (cross-validation) the list of every fold's, bundled as one ensemble.
        model_path=smk.input.model,
        plan_path=smk.input.plan,
        facts_path=smk.input.facts,
        prediction=smk.params.prediction,
        folder=smk.output.bundle,
        experiment=smk.wildcards.experiment,
        pipeline_commit=None if commit == "unknown" else commit,
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
