"""Rule summarise_folds: an experiment trained by cross-validation, from its folds' runs -> the experiment's
training.json and history.tsv (as the report reads them) and fold_metrics.tsv, the per-fold validation
metrics with their mean and sd (:mod:`segcore.train.folds`)."""

from segcore.rule_runner import log, run_rule
from segcore.train.folds import ensemble_facts, fold_metrics, mean_history, write_fold_metrics
from segcore.train.run import read_history, read_training_facts, write_history, write_training_facts


def main(smk) -> None:
    facts = [read_training_facts(path) for path in smk.input.facts]
    write_training_facts(smk.output.facts, ensemble_facts(facts))
    write_history(smk.output.history, mean_history([read_history(path) for path in smk.input.history]))
    table = fold_metrics(facts)
    write_fold_metrics(smk.output.fold_metrics, table)
    mean, sd = table.set_index("fold").loc[["mean", "sd"], "best_val_dice"]
    log.info("%d folds: best val Dice %.4f +- %.4f", len(facts), mean, sd)


run_rule(main, snakemake)  # noqa: F821 - injected by Snakemake
