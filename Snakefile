# U-Net image segmentation: data -> split -> augmentation -> weight maps -> training -> prediction -> report;
# each trained model is also exported as a bundle usable outside the pipeline (python -m segcore.segment) and
# segments the configured inference sets (config inference: new, unlabelled images).
# Usage: snakemake --cores 8 --resources gpu=1   (see README.md)

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"


wildcard_constraints:
    dataset=DATASET,
    experiment="|".join(EXPERIMENTS),
    shard=r"\d+",
    # The configured inference sets only (none: a pattern that matches nothing).
    set="|".join(INFERENCE_SETS) or "(?!)",
    fold=r"\d+",


# Collecting the report is light work that needs every experiment's files: never a cluster job.
localrules:
    all,
    report,


include: "rules/data.smk"
include: "rules/plan.smk"
include: "rules/augment.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/export.smk"
include: "rules/inference.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
