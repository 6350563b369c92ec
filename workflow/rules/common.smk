# Shared helpers: config validation, experiment/figure lists, resource sizing.

import json
import os
import re
from functools import lru_cache
from pathlib import Path

from snakemake.utils import validate

from tms import config as tms_config

# Snakemake has already read the config files with a YAML loader that keeps the second of two
# duplicate keys; read each again strictly so a duplicate is refused with its file and line.
for _configfile in workflow.configfiles:
    tms_config.read_yaml(_configfile)

# Our own validator first: it names the offending key (and checks what a schema cannot: finite
# numbers, safe names, m > n, feature sets that do not add up, figures naming unknown experiments,
# the size bound). Then Snakemake's standard check against the same schema.
tms_config.validate(config)


validate(config, schema="../schemas/config.schema.yaml")


# Figure options against what each figure declares (@figure(options=...)): a typo in a key fails here.
def _validate_figure_options():
    from tms.figures import load_all, validate_options

    load_all()
    validate_options(config["figures"])


_validate_figure_options()


CONFIG_NAME = config.get("name", "default")
EXPERIMENTS = list(config["experiments"])
FIGURES = list(config["figures"])
DEVICE = config.get("device", "auto")

# The merged config (every --configfile in order, then --config overrides, then schema defaults):
# what rules `report` and `freeze` read and archive. Written here, while the workflow is parsed,
# and only when its content changes, so an unchanged config never makes them rerun. No training
# or figure job reads it.
RESOLVED_CONFIG = "results/config.resolved.yaml"
tms_config.write_resolved(config, RESOLVED_CONFIG, CONFIG_NAME, [Path(p).name for p in workflow.configfiles])

# The config name is provenance, not a rerun trigger: as a `params` entry, an override file that
# renames the config (phase_1m.yaml) would retrain every experiment. It reaches `tms train` and
# `tms plot` through the environment instead, set here while the workflow is parsed (a cluster job
# parses it again, so the variable is set there too).
os.environ["TMS_CONFIG_NAME"] = CONFIG_NAME


envvars:
    "TMS_CONFIG_NAME",

FINDINGS_JSON = "results/findings.json"
FINDINGS_TEX = "report/build/FINDINGS.tex"
FINDINGS_PDF = "report/build/FINDINGS.pdf"
FINDINGS_HTML = "report/build/FINDINGS.html"
FROZEN_ARCHIVE = f"report/build/tms-findings-{CONFIG_NAME}.tar.gz"  # ignored; `tms release` copies it to report/release/


# names may contain '.', a regex metacharacter: escape them so `a.b` never matches `axb`
wildcard_constraints:
    experiment="|".join(map(re.escape, EXPERIMENTS)),
    figure="|".join(map(re.escape, FIGURES)),


def experiment_spec(wildcards):
    """The experiment's config (defaults filled in) as JSON: a change retrains exactly this experiment."""
    return json.dumps(tms_config.experiment(config, wildcards.experiment), sort_keys=True)


def figure_spec(wildcards):
    return json.dumps(config["figures"][wildcards.figure], sort_keys=True)


@lru_cache(maxsize=None)
def figure_meta(figure):
    """Title, caption and paper section of a figure, from the figure registry."""
    from tms.report import figure_report_meta

    return figure_report_meta(figure)


def figure_section(wildcards):
    return figure_meta(wildcards.figure)["section"]


def figure_labels(wildcards):
    return {"figure": wildcards.figure, "title": figure_meta(wildcards.figure)["title"]}


def figure_inputs(wildcards):
    """Every file `tms plot` reads: the four results files of each experiment of the figure."""
    return [
        f"results/{e}/{name}"
        for e in config["figures"][wildcards.figure]["experiments"]
        for name in ("run.npz", "meta.json", "cells.csv", "metrics.csv")
    ]


def _work(name):
    """Model-steps x batch x (n + m) of an experiment: what its training time scales with."""
    exp = tms_config.experiment(config, name)
    inst = tms_config.cell_count(exp) * exp["restarts"]
    t = exp["train"]
    return inst, inst * t["steps"] * t["batch_size"] * (exp["n_features"] + exp["n_hidden"])


def train_threads(wildcards):
    """Two threads for heavy experiments; light ones (most of the wall time is compiling and Python
    overhead, which one thread does as fast) take one, so two of them run side by side."""
    _, work = _work(wildcards.experiment)
    return 2 if work > 2e10 else 1  # ~1 minute of single-threaded work at ~3e8 element-updates/s


def train_mem_mb(wildcards, attempt):
    """Memory: the estimate the config's size bound checks (tms.config.memory_estimate_mb), raised
    by half on each retry. It is not capped: a job is never planned under a request it would exceed."""
    mb = tms_config.memory_estimate_mb(tms_config.experiment(config, wildcards.experiment))
    return int(mb * (1 + 0.5 * (attempt - 1)))


def train_runtime(wildcards, attempt):
    """Minutes (SLURM -t): a generous bound from the work estimate (1e8 element-updates/s, a third
    of one core of the 2-core machine this was tuned on), plus 10 minutes, doubled on each retry."""
    _, work = _work(wildcards.experiment)
    minutes = 10 + work / 1e8 / 60
    return int(minutes * 2 ** (attempt - 1))


# The robustness run (workflow/rules/robustness.smk; config `robustness`).
from tms import variants as tms_variants

ROBUSTNESS = bool(config.get("robustness", {}).get("enabled", False))
VARIANTS = {v.name: v for v in tms_variants.variants(config)} if ROBUSTNESS else {}
ROBUSTNESS_JSON = "results/robustness.json"


def variant_spec(wildcards):
    """The experiment's spec under the variant (the budget variant multiplies the steps)."""
    exp = tms_config.experiment(config, wildcards.experiment)
    return json.dumps(tms_variants.variant_experiment(exp, VARIANTS[wildcards.variant]), sort_keys=True)


def variant_seed(wildcards):
    return tms_variants.variant_seed(config, VARIANTS[wildcards.variant])


def variant_figure_inputs(wildcards):
    return [
        f"results/variants/{wildcards.variant}/{e}/{name}"
        for e in config["figures"][wildcards.figure]["experiments"]
        for name in ("run.npz", "meta.json", "cells.csv", "metrics.csv")
    ]
