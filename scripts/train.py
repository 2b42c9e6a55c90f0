"""Rule train: fit one experiment's U-Net on its training images; write model, history, curves, run facts.

The run itself is :func:`segcore.train.run.train_experiment`. Its state is saved after every epoch to
``params.resume_state`` (not a declared output, so Snakemake keeps it when the job fails or is killed); a rerun
continues from it, and it is removed once the outputs are written.
"""

from pathlib import Path

from segcore.compute import configure_threads
from segcore.plan.plan import read_plan, resolve_training
from segcore.rule_runner import run_rule
from segcore.train.checkpoint import remove_state
from segcore.train.run import TrainingJob, train_experiment, write_training_outputs


def main(smk) -> None:
    configure_threads(smk.threads)
    plan = read_plan(smk.input.plan)  # the values of the keys left "auto", and the normalisation
    job = TrainingJob(
        name=smk.wildcards.experiment,
        experiment=dict(smk.params.experiment),
        training=resolve_training(smk.params.training, plan),
        seed=smk.params.seed,
        class_names=list(smk.params.class_names),
        tile_size=plan.tile_size,
        data=Path(smk.input.data),
        split=Path(smk.input.split),
        samples=[Path(folder) for folder in smk.input.samples],
        weights=[Path(folder) for folder in smk.input.weights],
        resume_state=Path(smk.params.resume_state),
        source_dir=smk.scriptdir,
        normalisation=plan.normalisation,
        # Cross-validation: this run's fold ({fold} wildcard) of the fold table; else None.
        fold=int(smk.wildcards.fold) if hasattr(smk.wildcards, "fold") else None,
        folds=Path(smk.input.folds[0]) if smk.input.folds else None,
    )
    run = train_experiment(job)
    write_training_outputs(
        run, model=smk.output.model, history=smk.output.history, curves=smk.output.curves, facts=smk.output.facts
    )
    remove_state(job.resume_state)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
