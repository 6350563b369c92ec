"""Pipeline outputs for the report and freeze tests, written through the package's own code paths.

Figures are real matplotlib figures saved with :func:`tms.figures.base.save`, findings are written
with :func:`tms.findings.write` and provenance records come from :func:`tms.provenance.record`, so
the files have exactly the shape the pipeline produces. Figure ids start with ``test_`` so they never
collide with registered figures: their titles and captions come from the provenance records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tms import findings, io, provenance
from tms.figures.base import FigureOutput, new_figure, save

# Text that breaks naive LaTeX: every special character and some unicode the claims really use.
TRICKY = "50% of W_i & $x^2$ #1 ~ <a> b|c \\ {x} ≈ ≥ → × ‖W‖ … α² -- 'q' café"

FIGURES = {  # id -> (section, title, caption)
    "test_pentagon": ("introduction", "Five features in two dimensions",
                      "Columns of W for n=5, m=2 as sparsity grows; " + TRICKY),
    "test_phase": ("phase_change", "A phase diagram", "Which feature wins: 1-S ≥ 0.1 & I_1 < 1."),
}
EXPERIMENT = "test_exp"


@dataclass
class Inputs:
    root: Path
    findings: Path
    figures: Path
    results: Path
    config: Path


def _figure(fid: str) -> FigureOutput:
    fig, ax = new_figure(figsize=(3, 3))
    angles = np.linspace(0, 2 * math.pi, 6)[:-1]
    for a in angles:
        ax.annotate("", xy=(math.cos(a), math.sin(a)), xytext=(0, 0), arrowprops={"arrowstyle": "->"})
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_title(fid)
    return FigureOutput(fig, pd.DataFrame({"feature": range(5), "angle": angles}))


# A measured key longer than any table column, unbreakable but for its underscores: the layout must hold it.
LONG_KEY = "agreement_with_linear_theory_away_from_boundaries_by_majority_vote_of_the_kept_models"


def _findings() -> list[findings.Finding]:
    def f(id: str, figure: str, section: str, measured, verdict: str, claim: str = "",
          bars: tuple[findings.Bar, ...] = ()) -> findings.Finding:
        passed = None if verdict == "inconclusive" else verdict == "reproduced"
        bind = findings.binding(passed, bars)
        return findings.Finding(
            id=id, figure=figure, section=section, claim=claim or f"Claim {id} holds.", expected="> 0.5",
            tolerance="± 0.1", measured=measured, verdict=verdict, detail="Measured on the selected instances.",
            experiments=[EXPERIMENT], config="testcfg", bars=[b.to_json() for b in bars],
            margin=None if bind is None else bind.margin, near_miss=findings.near_miss(passed, bars))

    return [
        f("test_pentagon.pentagon", "test_pentagon", "introduction", 0.98765, "reproduced",
          claim="At 1-S = 0.05 the five features form a regular pentagon: " + TRICKY,
          bars=(findings.Bar("largest gap deviation ||W_i|| - 72 deg", 0.98765, "<", 5.0, unit="deg"),)),
        f("test_pentagon.norms", "test_pentagon", "introduction", {"norms": [1.1, 1.12, 1.09], "k": 5,
                                                                   LONG_KEY: 0.8995},
          "not reproduced", bars=(findings.Bar("agreement away from boundaries", 0.8995, ">=", 0.9),)),
        f("test_pentagon.none", "test_pentagon", "introduction", None, "inconclusive"),
        f("test_phase.boundary", "test_phase", "phase_change", list(range(20)), "reproduced"),
        f("test_phase.far_" + LONG_KEY, "test_phase", "phase_change", {LONG_KEY: 0.1}, "not reproduced",
          bars=(findings.Bar("plateau width in decades of 1/(1-S)", 0.1, ">=", 0.5, unit="decades"),)),
        f("test_phase.flag", "test_phase", "phase_change", True, "reproduced"),
    ]


def make_inputs(root: Path) -> Inputs:
    """Write figures, findings, provenance, one experiment's results and a config under ``root``."""
    figures_dir, results = root / "figures", root / "results"
    cfg = {
        "name": "testcfg", "seed": 0, "device": "cpu",
        "experiments": {EXPERIMENT: {"model": "relu_output", "n_features": 5, "n_hidden": 2,
                                     "sweep": {"density": [0.05]}, "train": {"steps": 10}}},
        "figures": {fid: {"experiments": [EXPERIMENT]} for fid in FIGURES},
        "report": {"title": "Test report: " + TRICKY, "authors": ["Ada Lovelace", "The Test Team"]},
    }
    config = root / "testcfg.yaml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))

    exp_prov = provenance.record(config={"seed": 0, "experiment": cfg["experiments"][EXPERIMENT]}, device="cpu")
    io.write_json(results / EXPERIMENT / "meta.json", {
        "experiment": EXPERIMENT, "config_name": "testcfg", "seed": 0, "spec": cfg["experiments"][EXPERIMENT],
        "provenance": exp_prov,
        "training": {"instances": 4, "cells": 1, "restarts": 4, "layout": "single", "compiled": False},
    })
    # timings are written beside the results and must reach neither the report nor the archive
    io.write_json(results / EXPERIMENT / "timings.json", {
        "experiment": EXPERIMENT, "wall_time_s": 2718.28, "train_wall_time_s": 1.0, "compile_time_s": 0.1,
        "model_steps_per_second": 31415.9})
    io.atomic_write_text(results / EXPERIMENT / "metrics.csv", "instance,loss\n0,0.1\n1,0.2\n")
    io.atomic_write_text(results / EXPERIMENT / "cells.csv", "cell,density\n0,0.05\n")

    for fid, (section, title, caption) in FIGURES.items():
        save(_figure(fid), figures_dir / fid)
        runs = {EXPERIMENT: {"config_hash": exp_prov["config_hash"], "device": exp_prov["device"],
                             "code": exp_prov["code"]}}
        io.write_json(results / "provenance" / f"{fid}.json", provenance.record(
            config=cfg["figures"][fid], figure=fid, rule="figure", module="tests.report_fixtures",
            section=section, title=title, caption=caption, config_name="testcfg", experiments=runs))

    findings_path = results / "findings.json"
    findings.write(_findings(), findings_path)
    return Inputs(root, findings_path, figures_dir, results, config)


def make_registry_inputs(root: Path) -> Inputs:
    """Every registered figure (a placeholder drawing) with every registered claim, under the default config.

    The report then holds every real title, caption, claim text, expectation and tolerance, with long
    measured keys and both verdicts: what its layout must hold (the overfull-box test compiles it)."""
    from tms.figures import load_all

    repo = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((repo / "workflow" / "config" / "default.yaml").read_text())
    config = root / "default.yaml"
    root.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    figures_dir, results = root / "figures", root / "results"
    registry = load_all()
    found = []
    for k, (cid, spec) in enumerate(sorted(findings.CLAIMS.items())):
        passed = k % 3 != 0
        bars = (findings.Bar("agreement with the fixed-configuration theory away from boundaries", 0.8995 + 0.2 * passed,
                             ">=", 0.9),)
        bind = findings.binding(passed, bars)
        found.append(findings.Finding(
            id=cid, figure=spec.figure, section=spec.section, claim=spec.statement, expected=spec.expected,
            tolerance=spec.tolerance, measured={LONG_KEY: 0.8995, "represented": list(range(30)), "D_i": 0.4},
            verdict=findings.verdict(passed),
            detail="Majority map: 0.899 of the 9668 cells more than one grid step from a boundary agree with "
                   "theory (needs >= 0.90); ||W_i|| > 0.5 for I_i = 0.7^i at 1-S = 0.1.",
            experiments=list((cfg["figures"].get(spec.figure) or {}).get("experiments", [])), config="default",
            bars=[b.to_json() for b in bars], margin=bind.margin, near_miss=findings.near_miss(passed, bars)))
    for fid, spec in registry.items():
        save(_figure(fid), figures_dir / fid)
        io.write_json(results / "provenance" / f"{fid}.json", provenance.record(
            config=cfg["figures"].get(fid, {}), figure=fid, rule="figure", module=spec.module, section=spec.section,
            title=spec.title, caption=spec.caption, config_name="default", experiments={}))
    findings_path = results / "findings.json"
    findings.write(found, findings_path)
    return Inputs(root, findings_path, figures_dir, results, config)
