# Toy Models of Superposition: the whole replication.
#
#   snakemake --cores all                       everything (default.yaml, paper fidelity)
#   snakemake --cores all --configfile workflow/config/quick.yaml     the same, tiny
#   snakemake --cores all figures/intro_pentagon.pdf                  one figure
#   snakemake --profile workflow/profiles/slurm                       on a SLURM cluster
#
# Rules live in workflow/rules/; each calls the `tms` command-line interface.

import os

from snakemake.utils import min_version

min_version("9.19")


# The default config is the full replication. A --configfile given on the command line replaces it
# (Snakemake would otherwise deep-merge the two, so a quick run would still train every default
# experiment); --config KEY=VALUE overrides still apply on top of either.
# The path is anchored at this file so that `--snakefile <repo>/Snakefile` works from any directory.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "workflow", "config", "default.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/robustness.smk"
include: "workflow/rules/report.smk"


# Every documented output, so that deleting any one of them (a figure's PNG, say) rebuilds it.
rule all:
    default_target: True
    input:
        expand("figures/{figure}.{ext}", figure=FIGURES, ext=["pdf", "png", "csv"]),
        FINDINGS_JSON,
        FINDINGS_PDF,
        FINDINGS_HTML,
        FROZEN_ARCHIVE,
        [ROBUSTNESS_JSON] if ROBUSTNESS else [],
