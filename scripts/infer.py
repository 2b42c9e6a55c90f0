"""Rule infer: one shard of an inference set's images -> one predictions folder, segmented as rule predict
segments test images (:func:`segcore.predict.shard.predict_set_shard`; layout in :mod:`segcore.predict.outputs`)."""

from segcore.compute import configure_threads
from segcore.data.image_sets import ImageSet
from segcore.plan.plan import read_plan, resolve_prediction
from segcore.predict.shard import PredictionSettings, predict_set_shard
from segcore.rule_runner import run_rule


def main(smk) -> None:
    configure_threads(smk.threads)
    plan = read_plan(smk.input.plan)  # tile size and overlap when "auto", and the training's normalisation
    predict_set_shard(
        model_path=smk.input.model,
        image_set=ImageSet.from_config(smk.wildcards.set, smk.params.image_set),
        shard=int(smk.wildcards.shard),
        n_shards=smk.params.n_shards,
        settings=PredictionSettings.from_config(resolve_prediction(smk.params.prediction, plan)),
        device_request=smk.params.device,
        folder=smk.output.predictions,
        normalisation=plan.normalisation,
        convert_to=smk.params.channels,
    )


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
