"""Rule plan: the fingerprint and the experiment's config -> plan.json, every "auto" setting resolved
(:func:`segcore.plan.plan.plan_experiment`; each value recorded with its source, auto or config)."""

from segcore.plan.plan import plan_experiment, read_fingerprint, write_plan
from segcore.rule_runner import log, run_rule


def main(smk) -> None:
    settings = smk.params.settings
    plan = plan_experiment(
        read_fingerprint(smk.input.fingerprint),
        experiment=smk.wildcards.experiment,
        experiment_config={"model": settings["model"], "augmentation": settings["augmentation"]},
        training=settings["training"],
        prediction=settings["prediction"],
        memory_budget_mb=settings["memory_budget_mb"],
        augment_copies=settings["augment_copies"],
    )
    write_plan(smk.output.plan, plan)
    for row in plan.table():
        log.info("%s = %s (%s: %s)", row["key"], row["value"], row["source"], row["reason"])


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
