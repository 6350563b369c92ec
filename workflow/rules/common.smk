# Shared helpers: config validation, experiment/figure lists, resource sizing.

import json
from functools import lru_cache
from pathlib import Path

from snakemake.utils import validate

from tms import config as tms_config

# Our own validator first: it names the offending key (and checks what a schema cannot: m > n,
# feature sets that do not add up, figures naming unknown experiments). Then Snakemake's standard
# check against the same schema.
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

FINDINGS_JSON = "results/findings.json"
FINDINGS_TEX = "report/build/FINDINGS.tex"
FINDINGS_PDF = "report/build/FINDINGS.pdf"
FINDINGS_HTML = "report/build/FINDINGS.html"
FROZEN_ARCHIVE = f"report/frozen/tms-findings-{CONFIG_NAME}.tar.gz"


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    figure="|".join(FIGURES),


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
    return [f"results/{e}/run.npz" for e in config["figures"][wildcards.figure]["experiments"]]


def _work(name):
    """Model-steps x batch x (n + m) of an experiment: what its training time scales with."""
    exp = tms_config.experiment(config, name)
    cells = len(tms_config_cells(exp))
    inst = cells * exp["restarts"]
    t = exp["train"]
    return inst, inst * t["steps"] * t["batch_size"] * (exp["n_features"] + exp["n_hidden"])


def tms_config_cells(exp):
    import itertools

    axes = [tms_config.axis_values(v) for v in exp["sweep"].values()]
    return list(itertools.product(*axes))


def train_threads(wildcards):
    """Two threads for heavy experiments; light ones (most of the wall time is compiling and Python
    overhead, which one thread does as fast) take one, so two of them run side by side."""
    _, work = _work(wildcards.experiment)
    return 2 if work > 2e10 else 1  # ~1 minute of single-threaded work at ~3e8 element-updates/s


def train_mem_mb(wildcards, attempt):
    """Memory: the trainer bounds its working set by chunking (max_chunk_mb); add the process
    baseline (torch, compiled kernels) and the results kept on the host."""
    exp = tms_config.experiment(config, wildcards.experiment)
    inst, _ = _work(wildcards.experiment)
    n, m = exp["n_features"], exp["n_hidden"]
    params = 3 * n * m + 2 * n
    kept = inst * params * 4 * (1 + max(exp["train"]["snapshots"], 0)) + inst * 4 * exp["train"]["loss_points"]
    # 1500 MB baseline: the Python process with torch and compiled kernels (more on a CUDA host)
    mb = 1500 + exp["train"]["max_chunk_mb"] + 3 * kept / 2**20
    return int(min(4000, mb) * (1 + 0.5 * (attempt - 1)))


def train_runtime(wildcards, attempt):
    """Minutes (SLURM -t): a generous bound from the work estimate (1e8 element-updates/s, a third
    of one core of the 2-core machine this was tuned on), plus 10 minutes, doubled on each retry."""
    _, work = _work(wildcards.experiment)
    minutes = 10 + work / 1e8 / 60
    return int(minutes * 2 ** (attempt - 1))
