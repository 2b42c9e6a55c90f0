"""Rule predict: one shard of the test images -> one folder of predictions (class masks, colour masks,
overlays and, when ``prediction.save_probabilities`` is set, probabilities; layout in
:mod:`segcore.predict.outputs`)."""

from segcore.compute import configure_threads
from segcore.plan.plan import read_plan, resolve_prediction
from segcore.predict.shard import PredictionSettings, predict_shard, shard_test_ids
from segcore.rule_runner import run_rule


def main(smk) -> None:
    configure_threads(smk.threads)
    plan = read_plan(smk.input.plan)  # tile size and overlap when "auto", and the training's normalisation
    predict_shard(
        # One model file, or (cross-validation) the list of every fold's, predicting as an ensemble.
        model_path=smk.input.model,
        data=smk.input.data,
        ids=shard_test_ids(smk.input.split, int(smk.wildcards.shard), smk.params.n_shards),
        settings=PredictionSettings.from_config(resolve_prediction(smk.params.prediction, plan)),
        device_request=smk.params.device,
        folder=smk.output.predictions,
        normalisation=plan.normalisation,
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
