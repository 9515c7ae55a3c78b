# deepfake-xai: the CVIP 2023 TrueFace study as one DAG. Thin on purpose: configuration and helpers
# live in workflow/rules/common.smk, one rule file per stage, code in src/deepfake_xai/.
from snakemake.utils import min_version

min_version("9.0")


# The embedded demo config, unless --configfile names others: Snakemake would merge them over it
# key by key, and demo-only settings (a model's shortened epochs) would leak into real runs.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/transfer.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/xai.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        all_targets(),
        rules.report.output,
    default_target: True


# Stage targets: `snakemake --cores 2 evaluation` stops after the metrics files.
rule evaluation:
    input:
        metrics_files(),


rule explanations:
    input:
        explain_files(),
        xai_files(),
