"""Superposition as storage: the intro pentagon, linear vs ReLU models, D* and feature dimensionality
(paper: Introduction, "Demonstrating Superposition", "The Geometry of Superposition").

The geometry predicates (represented, antipodal, superposed, gaps, plateaus, lines) live in
:mod:`tms.geometry` with their thresholds; the drawing helpers in :mod:`tms.figures.draw`. The
thresholds below are this module's own, each fixed from the paper's wording before any model was
trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tms import metrics
from tms.figures.base import PALETTE, SUPERPOSITION_CMAP, FigureContext, FigureOutput, analysis, figure, new_figure
from tms.figures.draw import (draw_arrows_2d, draw_bias, draw_gram, draw_norm_bars, importance_colors,
                              importance_label, reference_line)
from tms.findings import Bar, Measurement, claim
from tms.geometry import (ANTIPODAL_COS, LINE_MIN_COUNT, LINE_RATIO, NOT_EMBEDDED, ORTHOGONAL_COS, REPRESENTED,
                          SUPERPOSED, angular_gaps, antipodal_pairs, cosines, count_dips, gap_deviation, line_test,
                          plateau, represented, superposed)
from tms.models import ModelKind

REGULAR_DEG = 5.0  # a *regular* pentagon: every angular gap within 72 +- 5 degrees
PENTAGON_LIKE_DEG = 24.0  # "pentagon-like" (decaying importance): every gap within 72 +- 24 (a third)
D_TOL = 0.02  # |D_i - fraction| for "at a fraction" (the tolerance used by the ECD claim test)
STICKY_TOL = 0.03  # |D* - value| on a plateau (ECD's tolerance for the 1/2 sticky point)
# "Sticky" plateaus (issue 12 audit; the first readings are kept as the *_strict claims):
# at 1: the whole dedicated regime that the paper's own 2-in-1 theory allows, from the dense end to the
# triple point at density 4/7, i.e. 1/(1-S) = 7/4 (0.243 decades; the first reading's factor 2 lies beyond
# the point where that theory switches to antipodal pairs, so no model could reach it);
STICKY_ONE_DECADES = float(np.log10(7 / 4))
STICKY_ONE_STRICT_DECADES = 0.3  # the first reading: a plateau over a factor 2 in 1/(1-S)
# at 1/2: ECD's published operationalisation, >= 3 consecutive levels within 0.03 of 1/2 on the authors' notebook
# grid (20 levels over 1/(1-S) in [1, 20], 0.0685 decades apart), written as the width those levels span (2 steps),
# so that it does not depend on this build's grid; the authors' own notebook run has 4 such levels.
STICKY_HALF_DECADES = 2 * float(np.log10(20)) / 19
STICKY_HALF_STRICT_DECADES = 0.5  # the first reading: "over a wide range" as a factor ~3 in 1/(1-S)
ANTIPODAL_FIRST_MIN = 0.8  # share of superposed features in antipodal pairs where extra features appear
BIAS_REL_TOL, BIAS_ABS_TOL = 0.1, 0.001  # |b_i - E[x_i]| <= 10 % of E[x_i] + 0.001
COUNT_DIP_TOL = 1  # represented-feature counts may dip by one feature between neighbouring densities
SUM_D_TOL = 0.1  # |sum_i D_i / m - 1| for "sum of D_i ~ m"
SUM_D_SHARE = 0.8  # ... at this share of the levels ("where packed": not necessarily all)
# ECD's line rule (tms.geometry.line_test) is counted over features with D_i >= 0.1 at levels in
# superposition (D* < 0.95).
LINE_D_MIN, LINE_DSTAR_MAX = 0.1, 0.95
PAPER_LINES = {"3/4": 3 / 4, "2/3": 2 / 3, "1/2": 1 / 2, "2/5": 2 / 5, "3/8": 3 / 8}
REFERENCE_LINES = {"1": 1.0, **PAPER_LINES, "0": 0.0}


# --------------------------------------------------------------------------------------------
# Selected models of a run


def _cell_model(run: Any, **axes: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(cell, W [m, n], b [n]) of the selected model of the cell nearest ``axes``."""
    c = run.cell(**axes)
    p = run.params()
    return c, p["W"][c], p["b"][c]


def _densities(run: Any) -> np.ndarray:
    return run.cells["density"].to_numpy(dtype=float)


# --------------------------------------------------------------------------------------------
# Intro: five features in two dimensions


INTRO = "intro_pentagon"
INTRO_PANELS = (1.0, 0.2, 0.1)  # the paper's 0 %, 80 %, 90 % sparsity
TUTORIAL_PANELS = (1.0, 0.3, 0.1, 0.03, 0.01)  # the tutorial's S = 0, 0.7, 0.9, 0.97, 0.99
UNIFORM_DENSITY = 0.05  # the paper's regular pentagon: I = 1, 1 - S = 0.05


def _uniform_model(run: Any) -> tuple[int, np.ndarray, np.ndarray]:
    """The unperturbed cell (ratio 1, density 0.05) of the perturbation run, or the nearest cell."""
    axes = {"density": UNIFORM_DENSITY}
    if "perturbed_density_ratio" in run.cells:
        axes["perturbed_density_ratio"] = 1.0
    return _cell_model(run, **axes)


@dataclass(frozen=True)
class IntroPanel:
    group: str  # "paper", "uniform" (top row) or "tutorial" (bottom row)
    title: str
    density: float
    W: np.ndarray  # canonicalised [2, 5]: feature 0 points right


@dataclass(frozen=True)
class IntroAnalysis:
    """The panels drawn, their table, and the models the claims judge (selected model per cell)."""

    panels: tuple[IntroPanel, ...]
    table: pd.DataFrame
    dense: np.ndarray  # the paper's run at 1-S = 1, 0.2, 0.1
    sparse80: np.ndarray
    sparse90: np.ndarray
    uniform: np.ndarray  # I = 1, 1-S = 0.05
    tutorial_s099: np.ndarray  # the tutorial's run at S = 0.99


@analysis
def intro_analysis(ctx: FigureContext) -> IntroAnalysis:
    paper, tutorial, uniform = (ctx.run(ctx.option(k)) for k in ("paper", "tutorial", "uniform"))
    panels = []
    for p in ctx.option("panels"):
        c, W, _ = _cell_model(paper, density=p)
        d = _densities(paper)[c]
        panels.append(IntroPanel("paper", f"{100 * (1 - d):.0f}% sparsity, {importance_label(paper)}", d, W))
    c, W_uniform, _ = _uniform_model(uniform)
    p = _densities(uniform)[c]
    panels.append(IntroPanel("uniform", f"{importance_label(uniform)}, 1-S={p:.3g}", p, W_uniform))
    for c in dict.fromkeys(tutorial.cell(density=p) for p in ctx.option("tutorial_densities")):
        p = _densities(tutorial)[c]
        panels.append(IntroPanel("tutorial", f"S = {1 - p:.3g}, {importance_label(tutorial)}", p,
                                 tutorial.params()["W"][c]))
    panels = [IntroPanel(q.group, q.title, q.density, metrics.canonicalize_2d(q.W)) for q in panels]
    table = pd.DataFrame([{"panel": q.group, "density": q.density, "feature": i, "x": q.W[0, i], "y": q.W[1, i],
                           "norm": float(np.hypot(*q.W[:, i]))} for q in panels for i in range(q.W.shape[1])])
    return IntroAnalysis(tuple(panels), table, _cell_model(paper, density=1.0)[1], _cell_model(paper, density=0.2)[1],
                         _cell_model(paper, density=0.1)[1], W_uniform, _cell_model(tutorial, density=0.01)[1])


@figure(
    INTRO,
    section="introduction",
    title="Five features in two dimensions across sparsity",
    caption=(
        "Columns W_i of ReLU-output models with n = 5 features in m = 2 dimensions (x' = ReLU(W^T W x + b)), "
        "each the lowest-loss of several restarts, rotated so feature 0 points right. Top: the paper's panels "
        "(I_i = 0.9^i) at 0 %, 80 % and 90 % sparsity, and the regular pentagon of uniform importance at "
        "1-S = 0.05. Bottom: the tutorial's sweep (I_i = 0.7^i, S = 0 ... 0.99). Colour: importance rank "
        "(dark = most important). The paper: superposition emerges as the features get sparser (dense: the two "
        "most important features orthogonal, the rest not embedded; 80 % sparsity: antipodal pairs; 90 %: a "
        "pentagon)."
    ),
    options={"paper": "intro_pentagon", "tutorial": "intro_pentagon_tutorial", "uniform": "pentagon_perturbation",
             "panels": list(INTRO_PANELS), "tutorial_densities": list(TUTORIAL_PANELS)},
)
def build_intro(ctx: FigureContext) -> FigureOutput:
    an = intro_analysis(ctx)
    top = [q for q in an.panels if q.group != "tutorial"]
    bottom = [q for q in an.panels if q.group == "tutorial"]
    cols = max(len(top), len(bottom))
    fig, axes = new_figure(2, cols, figsize=(1.9 * cols, 4.1), squeeze=False)
    for r, group in enumerate((top, bottom)):
        for j in range(cols):
            ax = axes[r, j]
            if j >= len(group):
                ax.axis("off")
                continue
            n = group[j].W.shape[1]
            draw_arrows_2d(ax, group[j].W, importance_colors(n), labels=[str(i) for i in range(n)], lim=1.45)
            ax.set_title(group[j].title, fontsize=7)
    fig.suptitle("colour: importance rank, feature 0 (dark) most important ... feature 4 (yellow) least; "
                 "a dot at the centre is a feature that is not embedded", fontsize=7, y=0.02)
    fig.tight_layout()
    return FigureOutput(fig, an.table)


def measure_dense_orthogonal(W: np.ndarray) -> Measurement:
    """Dense panel: exactly features 0 and 1 represented, orthogonal, the rest ~0."""
    norms = metrics.feature_norms(W)
    rep = represented(W).tolist()
    cos01 = float(cosines(W)[0, 1])
    rest = float(norms[2:].max()) if norms.size > 2 else 0.0
    ok = rep == [0, 1] and abs(cos01) < ORTHOGONAL_COS and rest < NOT_EMBEDDED
    bars = (Bar("|cos(W_0, W_1)|", abs(cos01), "<", ORTHOGONAL_COS),
            Bar("max ||W_i||, features 2-4", rest, "<", NOT_EMBEDDED))
    return Measurement(measured={"represented": rep, "cos_01": cos01, "max_norm_rest": rest}, passed=ok,
                       detail=f"norms {np.round(norms, 3).tolist()}", bars=bars, categorical_ok=rep == [0, 1])


def measure_two_antipodal_pairs(W: np.ndarray) -> Measurement:
    """80 % panel: features 0-3 represented as two antipodal pairs, feature 4 ~0."""
    norms = metrics.feature_norms(W)
    pairs = antipodal_pairs(W)
    paired = sorted(i for pr in pairs for i in pr)
    C = cosines(W)
    ok = represented(W).tolist() == [0, 1, 2, 3] and paired == [0, 1, 2, 3] and norms[4] < NOT_EMBEDDED
    bars = (Bar("||W_4||", float(norms[4]), "<", NOT_EMBEDDED),)
    if pairs:
        bars += (Bar("largest cos within a pair", max(float(C[a, b]) for a, b in pairs), "<", ANTIPODAL_COS),)
    return Measurement(measured={"pairs": [list(p) for p in pairs], "pair_cos": [float(C[a, b]) for a, b in pairs],
                                 "norm_4": float(norms[4])}, passed=ok,
                       detail=f"norms {np.round(norms, 3).tolist()}", bars=bars,
                       categorical_ok=represented(W).tolist() == [0, 1, 2, 3] and paired == [0, 1, 2, 3])


def measure_pentagon(W: np.ndarray, tol_deg: float) -> Measurement:
    """All five features represented with every angular gap within ``72 +- tol_deg`` degrees."""
    dev = gap_deviation(W, 5)
    gaps = angular_gaps(W, represented(W))
    D = metrics.dimensionality(W)
    return Measurement(measured={"max_gap_deviation_deg": dev, "gaps_deg": gaps.tolist(), "D": D.tolist()},
                       passed=bool(dev <= tol_deg),
                       detail=f"{represented(W).size} of 5 represented; "
                              f"norms {np.round(metrics.feature_norms(W), 3).tolist()}",
                       bars=(Bar("largest |gap - 72|", dev, "<=", tol_deg, "degrees"),))


def measure_regular_pentagon(W: np.ndarray) -> Measurement:
    """Uniform importance: gaps within 72 +- 5 degrees and every D_i within 0.02 of 2/5."""
    m = measure_pentagon(W, REGULAR_DEG)
    D = metrics.dimensionality(W)
    d_dev = float(np.abs(D - 0.4).max())
    m.measured["max_D_deviation"] = d_dev
    m.passed = bool(m.passed and d_dev <= D_TOL)
    m.bars += (Bar("largest |D_i - 2/5|", d_dev, "<=", D_TOL),)
    return m


def _intro_claim(id: str, statement: str, expected: str, tolerance: str, section: str = "introduction"):
    return claim(id, figure=INTRO, section=section, statement=statement, expected=expected, tolerance=tolerance)


@_intro_claim("intro_pentagon.dense_orthogonal",
              "With dense features (0% sparsity) the two most important features get dedicated orthogonal "
              "dimensions and the other three are not embedded.",
              "represented (||W_i|| > 0.5) = {0, 1}; |cos(W_0, W_1)| < 0.1; max ||W_i|| of features 2-4 < 0.1",
              "cos 0.1 (~6 deg); 'not embedded' = norm < 0.1")
def _intro_dense(ctx: FigureContext) -> Measurement:
    return measure_dense_orthogonal(intro_analysis(ctx).dense)


@_intro_claim("intro_pentagon.sparse80_antipodal",
              "At 80% sparsity the four most important features are represented as antipodal pairs and the "
              "least important is not embedded.",
              "features 0-3 represented and paired (mutual most-negative partner, cos < -0.9); ||W_4|| < 0.1",
              "cos -0.9 (~25 deg from opposite); 'not embedded' = norm < 0.1")
def _intro_80(ctx: FigureContext) -> Measurement:
    return measure_two_antipodal_pairs(intro_analysis(ctx).sparse80)


@_intro_claim("intro_pentagon.sparse90_pentagon",
              "At 90% sparsity all five features are embedded, as a pentagon (with positive interference).",
              "5 features with ||W_i|| > 0.5; every angular gap between neighbours within 72 +- 24 degrees",
              "24 degrees (a third of 72: 'pentagon-like' under decaying importance)")
def _intro_90(ctx: FigureContext) -> Measurement:
    return measure_pentagon(intro_analysis(ctx).sparse90, PENTAGON_LIKE_DEG)


@_intro_claim("intro_pentagon.uniform_regular_pentagon",
              "With uniform importance (I = 1) and density 1-S = 0.05, five features in two dimensions form a "
              "regular pentagon: neighbours 72 degrees apart, each feature with dimensionality 2/5.",
              "every angular gap within 72 +- 5 degrees; every D_i within 0.02 of 2/5",
              "5 degrees; D 0.02", section="geometry")
def _intro_uniform(ctx: FigureContext) -> Measurement:
    return measure_regular_pentagon(intro_analysis(ctx).uniform)


@_intro_claim("intro_pentagon.tutorial_s099_pentagon",
              "(The tutorial's claim, not the paper's.) With I_i = 0.7^i at S = 0.99 all five features show up "
              "as a regular pentagon of five equally spaced directions.",
              "every angular gap within 72 +- 5 degrees (as for the uniform pentagon)", "5 degrees")
def _intro_tutorial(ctx: FigureContext) -> Measurement:
    return measure_pentagon(intro_analysis(ctx).tutorial_s099, REGULAR_DEG)


# --------------------------------------------------------------------------------------------
# Linear vs ReLU output models over sparsity


@dataclass(frozen=True)
class ModelSweep:
    """The selected model of every cell of one run, densest first."""

    label: str
    density: np.ndarray  # [C]
    W: np.ndarray  # [C, m, n]
    b: np.ndarray  # [C, n]


@dataclass(frozen=True)
class LinearReluAnalysis:
    linear: ModelSweep
    relu: ModelSweep
    relu_dense: tuple[float, np.ndarray]  # (density, W) of the ReLU cell nearest 1-S = 1
    table: pd.DataFrame


def _sweep(label: str, run: Any) -> ModelSweep:
    order = np.argsort(-_densities(run), kind="stable")
    p = run.params()
    return ModelSweep(label, _densities(run)[order], p["W"][order], p["b"][order])


def _sweep_rows(g: ModelSweep) -> list[dict[str, Any]]:
    rows = []
    for p, W, b in zip(g.density, g.W, g.b):
        G, norms, sup = metrics.gram(W), metrics.feature_norms(W), metrics.superposition(W)
        for i in range(W.shape[1]):
            rows.append({"model": g.label, "density": p, "quantity": "bias", "i": i, "j": -1, "value": b[i]})
            rows.append({"model": g.label, "density": p, "quantity": "norm", "i": i, "j": -1, "value": norms[i]})
            rows.append({"model": g.label, "density": p, "quantity": "superposition", "i": i, "j": -1,
                         "value": sup[i]})
            rows += [{"model": g.label, "density": p, "quantity": "WtW", "i": i, "j": k, "value": G[i, k]}
                     for k in range(W.shape[1])]
    return rows


@analysis
def linear_relu_analysis(ctx: FigureContext) -> LinearReluAnalysis:
    """The linear and the ReLU-output run among the figure's experiments, told apart by model kind."""
    runs = {ctx.run(e).kind: ctx.run(e) for e in ctx.experiments}
    lin, relu = _sweep("linear", runs[ModelKind.LINEAR]), _sweep("ReLU output", runs[ModelKind.RELU_OUTPUT])
    c, W, _ = _cell_model(runs[ModelKind.RELU_OUTPUT], density=1.0)
    return LinearReluAnalysis(lin, relu, (float(_densities(runs[ModelKind.RELU_OUTPUT])[c]), W),
                              pd.DataFrame(_sweep_rows(lin) + _sweep_rows(relu)))


def measure_top_m(W: np.ndarray, m: int) -> tuple[bool, list[int]]:
    """Whether exactly features ``0 .. m-1`` are represented, and the represented set."""
    rep = represented(W).tolist()
    return rep == list(range(m)), rep


def measure_counts(Ws: np.ndarray, m: int) -> Measurement:
    """Represented-feature counts (densest first): non-decreasing up to a one-feature dip, > m at the end."""
    counts = [int(represented(W).size) for W in Ws]
    dip = count_dips(counts)
    ok = dip <= COUNT_DIP_TOL and counts[-1] > m
    return Measurement(measured={"counts": counts, "largest_dip": dip}, passed=ok,
                       detail=f"features with ||W_i|| > 0.5, densest to sparsest; m = {m}",
                       bars=(Bar("largest dip in the count", dip, "<=", COUNT_DIP_TOL, "features", step=1),
                             Bar("represented at the sparsest level", counts[-1], ">", m, "features", step=1)))


def measure_antipodal_first(densities: np.ndarray, Ws: np.ndarray, m: int) -> Measurement:
    """At the first density where more than ``m`` features are represented, the share of superposed
    features that sit in antipodal pairs."""
    for p, W in zip(densities, Ws):
        if represented(W).size > m:
            sup = superposed(W)
            paired = {i for pr in antipodal_pairs(W) for i in pr}
            share = len(paired & set(sup.tolist())) / max(sup.size, 1)
            return Measurement(measured={"density": float(p), "superposed": sup.tolist(), "in_pairs": sorted(paired),
                                         "share": share}, passed=bool(sup.size > 0 and share >= ANTIPODAL_FIRST_MIN),
                               detail=f"first density with more than m = {m} represented features",
                               bars=(Bar("share of superposed features in antipodal pairs", share, ">=",
                                         ANTIPODAL_FIRST_MIN),), categorical_ok=bool(sup.size > 0))
    return Measurement(measured=None, passed=False, detail=f"no density has more than m = {m} represented features")


def _unrepresented(W: np.ndarray, b: np.ndarray, live_only: bool) -> np.ndarray:
    """Not-embedded features (``||W_i|| < 0.1``); with ``live_only`` only those whose output unit is live
    (``b_i >= 0``: a dead ReLU output, ReLU(b_i) = 0 with b_i < 0, gets no gradient to its bias)."""
    keep = metrics.feature_norms(W) < NOT_EMBEDDED
    return np.flatnonzero(keep & (b >= 0) if live_only else keep)


def measure_bias(densities: np.ndarray, Ws: np.ndarray, bs: np.ndarray, live_only: bool = False) -> dict[str, Any]:
    """Worst ``|b_i - E[x_i]| - tolerance`` over not-embedded features (``||W_i|| < 0.1``); E[x_i] = (1-S)/2."""
    worst, count, bad = -np.inf, 0, 0
    for p, W, b in zip(densities, Ws, bs):
        idx = _unrepresented(W, b, live_only)
        if idx.size == 0:
            continue
        err = np.abs(b[idx] - p / 2)
        tol = BIAS_REL_TOL * p / 2 + BIAS_ABS_TOL
        worst = max(worst, float((err - tol).max()))
        count += idx.size
        bad += int((err > tol).sum())
    return {"features": count, "outside_tolerance": bad, "worst_excess": worst if count else None}


def worst_bias_error(densities: np.ndarray, Ws: np.ndarray, bs: np.ndarray, live_only: bool = False) -> float:
    """Largest ``|b_i - E[x_i]| / tolerance`` over not-embedded features (<= 1 within the tolerance)."""
    worst = 0.0
    for p, W, b in zip(densities, Ws, bs):
        idx = _unrepresented(W, b, live_only)
        if idx.size:
            worst = max(worst, float((np.abs(b[idx] - p / 2) / (BIAS_REL_TOL * p / 2 + BIAS_ABS_TOL)).max()))
    return worst


PNG_DPI = 150  # the shared style's savefig.dpi
GRAM_PX_MIN = 2  # PNG pixels per W^T W cell at least (a whole number: every cell the same square of pixels)
GRAM_MAX_IN = 0.9  # largest W^T W panel at scale 1 (inches)
# the layout at scale 1, inches: left margin, per column the gap to b, b's width and the gap to the next column,
# right margin, the page width the figure is laid out for
LVR_LEFT, LVR_BGAP, LVR_BW, LVR_COLGAP, LVR_RIGHT, LVR_WIDTH = 0.55, 0.025, 0.07, 0.14, 0.05, 6.3


# heights at scale 1, inches: density titles, gap gram -> bars, bars, their tick labels and label, gap between the
# two blocks, gap to the colourbars, colourbar, its labels; the page height the figure is laid out for
LVR_HEIGHTS = {"title": 0.24, "bars_gap": 0.07, "bars": 0.42, "ticks": 0.34, "block_gap": 0.1, "cbar_gap": 0.12,
               "cbar": 0.08, "cbar_label": 0.5}
LVR_HEIGHT = 3.95


def linear_relu_layout(n: int, cols: int) -> tuple[int, float]:
    """(pixels per W^T W cell, scale): the most whole pixels per cell (at most a ``GRAM_MAX_IN`` panel) for which
    ``cols`` columns fit the page at scale 1; where even ``GRAM_PX_MIN`` does not (n = 80), that and the scale
    (> 1) of a figure that holds it. Everything but the matrices (text, margins, bars) grows with the scale, so
    the figure prints at about its scale-1 size, its text as large as at scale 1, while the PNG keeps its pixels
    per cell."""
    fixed_w = LVR_LEFT + cols * (LVR_BGAP + LVR_BW + LVR_COLGAP) + LVR_RIGHT
    fixed_h = sum(LVR_HEIGHTS.values()) + LVR_HEIGHTS["bars_gap"] + LVR_HEIGHTS["bars"] + LVR_HEIGHTS["ticks"]
    per_gram = min((LVR_WIDTH - fixed_w) / cols, (LVR_HEIGHT - fixed_h) / 2, GRAM_MAX_IN)
    px = int(per_gram * PNG_DPI // n)
    if px >= GRAM_PX_MIN:
        return px, 1.0
    G = GRAM_PX_MIN * n / PNG_DPI
    return GRAM_PX_MIN, max(1.0, cols * G / (LVR_WIDTH - fixed_w), 2 * G / (LVR_HEIGHT - fixed_h))


def _feature_ticks(ax: plt.Axes, n: int) -> None:
    """Features 0 and n/2 labelled, quarters as minor ticks."""
    ax.set_xticks([0, n // 2])
    ax.set_xticks([n // 4, 3 * n // 4], minor=True)


def build_linear_vs_relu(ctx: FigureContext) -> FigureOutput:
    """Two blocks (linear, ReLU output), each a row of W^T W with b beside it and a row of ||W_i|| bars under it,
    feature i in row i of W^T W and b and in column i of W^T W and the bars; columns: densities."""
    an = linear_relu_analysis(ctx)
    groups = (an.linear, an.relu)
    cols = max(len(g.density) for g in groups)
    n = an.linear.W.shape[-1]
    px, u = linear_relu_layout(n, cols)
    G = px * n / PNG_DPI  # W^T W panel, inches: exactly px pixels per cell
    h = {k: v * u for k, v in LVR_HEIGHTS.items()}
    block = G + h["bars_gap"] + h["bars"] + h["ticks"]
    W_in = LVR_LEFT * u + cols * (G + (LVR_BGAP + LVR_BW + LVR_COLGAP) * u) + LVR_RIGHT * u
    H_in = h["title"] + 2 * block + h["block_gap"] + h["cbar_gap"] + h["cbar"] + h["cbar_label"]
    fs, fs_small = 8 * u, 7 * u
    fig = plt.figure(figsize=(W_in, H_in))

    def axes(x: float, y_top: float, w: float, h: float) -> plt.Axes:  # inches from the left and the top
        ax = fig.add_axes((x / W_in, 1 - (y_top + h) / H_in, w / W_in, h / H_in))
        ax.tick_params(labelsize=fs_small, length=2.5 * u, width=0.6 * u, pad=1.5 * u)
        for sp in ax.spines.values():
            sp.set_linewidth(0.6 * u)
        return ax

    im = None
    for k, g in enumerate(groups):
        top = h["title"] + k * (block + h["block_gap"])
        fig.text(0.12 * u / W_in, 1 - (top + G / 2) / H_in, g.label, rotation=90, ha="center", va="center",
                 fontsize=fs, fontweight="bold")
        for j in range(cols):
            if j >= len(g.density):
                continue
            x = LVR_LEFT * u + j * (G + (LVR_BGAP + LVR_BW + LVR_COLGAP) * u)
            ax_g = axes(x, top, G, G)
            im = draw_gram(ax_g, g.W[j])
            ax_b = axes(x + G + LVR_BGAP * u, top, LVR_BW * u, G)
            draw_bias(ax_b, g.b[j])
            ax_n = axes(x, top + G + h["bars_gap"], G, h["bars"])
            draw_norm_bars(ax_n, g.W[j])
            _feature_ticks(ax_n, n)
            ax_n.tick_params(which="minor", length=1.5 * u, width=0.5 * u)
            ax_n.set_yticks([0, 1] if j == 0 else [])
            if j == 0:
                ax_n.set_yticklabels(["0", "1"])
                ax_n.set_ylabel("$\\|W_i\\|$", fontsize=fs_small, labelpad=1 * u)
                ax_g.set_yticks([0, n - 1])
                ax_g.tick_params(left=True, labelleft=True)
                ax_g.set_ylabel("feature $i$", fontsize=fs_small, labelpad=0)
            if j == cols // 2:
                ax_n.set_xlabel("feature $i$ (0 = most important)", fontsize=fs_small, labelpad=1 * u)
            if k == 0:
                ax_g.set_title(f"$1 - S = {g.density[j]:.3g}$", fontsize=fs if cols < 6 else fs_small, pad=3 * u)
                if j == 0:
                    ax_b.set_title("$b$", fontsize=fs_small, pad=2 * u)
    y = h["title"] + 2 * block + h["block_gap"] + h["cbar_gap"]
    w = (W_in - (LVR_LEFT + LVR_RIGHT) * u) * 0.38
    cax = axes(LVR_LEFT * u, y, w, h["cbar"])
    cb1 = fig.colorbar(im, cax=cax, orientation="horizontal")
    cax.set_xlabel("$W^T W$ and $b$", fontsize=fs_small, labelpad=1.5 * u)
    sax = axes(W_in - LVR_RIGHT * u - w, y, w, h["cbar"])
    cb2 = fig.colorbar(plt.cm.ScalarMappable(norm=mcolors.Normalize(0, 1), cmap=SUPERPOSITION_CMAP), cax=sax,
                       orientation="horizontal")
    sax.set_xlabel("bar colour: superposition of feature $i$,\n$\\sum_{j \\neq i} (\\hat W_i \\cdot W_j)^2$",
                   fontsize=fs_small, labelpad=1.5 * u)
    for cb in (cb1, cb2):
        cb.ax.tick_params(labelsize=fs_small, length=2 * u, width=0.6 * u)
        cb.outline.set_linewidth(0.4 * u)
    return FigureOutput(fig, an.table)


@dataclass(frozen=True)
class LinearReluSetting:
    """One of the two linear-vs-ReLU figures (the n = 80 one is "a rescaled version")."""

    figure: str
    n: int
    m: int
    decay: float
    rescaled: bool

    @property
    def what(self) -> str:
        return f"(n={self.n}, m={self.m}, I_i={self.decay}^i)"


N20_M5 = LinearReluSetting("linear_vs_relu_n20_m5", 20, 5, 0.7, rescaled=False)
N80_M20 = LinearReluSetting("linear_vs_relu_n80_m20", 80, 20, 0.9, rescaled=True)

for _s in (N20_M5, N80_M20):
    figure(_s.figure, section="demonstrating",
           title=f"Linear vs ReLU-output models over sparsity, n = {_s.n}, m = {_s.m}",
           caption=(f"W^T W (feature i in row and column i; diverging colours centred at 0), the bias b (the "
                    f"framed column to its right, row i: b_i, same colours) and the feature norms ||W_i|| (bars under "
                    f"W^T W, feature i under its column i; coloured by superposition: dark = orthogonal, yellow "
                    f">= 1) for the linear model (top block) and the ReLU-output model (bottom block) at each feature "
                    f"density 1-S, {_s.what}; features ordered from most to least important. Each model is the "
                    f"lowest-loss of its restarts. Every W^T W cell is a whole number of PNG pixels (at least 2).")
           )(build_linear_vs_relu)


def _linear_top_m(an: LinearReluAnalysis, m: int) -> Measurement:
    res = [measure_top_m(W, m) for W in an.linear.W]
    return Measurement(measured={f"{p:.3g}": r for p, (_, r) in zip(an.linear.density, res)},
                       passed=all(ok for ok, _ in res), detail="represented features of each linear model")


def _relu_dense_top_m(an: LinearReluAnalysis, m: int) -> Measurement:
    density, W = an.relu_dense
    ok, rep = measure_top_m(W, m)
    return Measurement(measured=rep, passed=ok, detail=f"ReLU model at 1-S = {density:.3g}")


def _bias_expected_value(an: LinearReluAnalysis, m: int, strict: bool = False) -> Measurement:
    """Not-embedded features at E[x_i]: the linear model's all, the ReLU model's live ones (all when ``strict``)."""
    out = {"linear": measure_bias(an.linear.density, an.linear.W, an.linear.b),
           "relu": measure_bias(an.relu.density, an.relu.W, an.relu.b, live_only=not strict)}
    dead = sum(int(((metrics.feature_norms(W) < NOT_EMBEDDED) & (b < 0)).sum()) for W, b in zip(an.relu.W, an.relu.b))
    if not strict:
        out["relu_dead_not_counted"] = dead
    total = sum(v["features"] for v in out.values() if isinstance(v, dict))
    bad = sum(v["outside_tolerance"] for v in out.values() if isinstance(v, dict))
    worst = max(worst_bias_error(an.linear.density, an.linear.W, an.linear.b),
                worst_bias_error(an.relu.density, an.relu.W, an.relu.b, live_only=not strict))
    which = "" if strict else f" ({dead} dead ReLU outputs with b_i < 0 not counted)"
    return Measurement(measured=out, passed=bool(total > 0 and bad == 0),
                       detail=f"{bad} of {total} not-embedded features outside the tolerance{which}",
                       bars=(Bar("worst |b_i - E[x_i]| / tolerance", worst, "<=", 1.0, "tolerances"),))


def _linear_relu_claim_text(name: str, s: LinearReluSetting) -> tuple[str, str, str]:
    """(statement, expected, tolerance) of a linear-vs-ReLU claim for one setting."""
    m, what = s.m, s.what
    pre = "The larger model is a rescaled version of the small one: " if s.rescaled else ""
    text = {
        "linear_top_m": (
            f"the linear model always learns the top-m most important features {what}, at every sparsity level.",
            f"at every density exactly features 0..{m - 1} have ||W_i|| > 0.5", "represented = ||W_i|| > 0.5"),
        "relu_dense_top_m": (
            f"the ReLU-output model behaves like the linear one on dense features (1-S = 1): it learns exactly the "
            f"top-m features {what}.", f"at 1-S = 1 exactly features 0..{m - 1} have ||W_i|| > 0.5",
            "represented = ||W_i|| > 0.5"),
        "represented_increase": (
            f"as sparsity increases the ReLU model represents more features, beyond m = {m} {what}.",
            f"number of features with ||W_i|| > 0.5 non-decreasing with sparsity and > {m} at the sparsest level",
            f"dips of at most {COUNT_DIP_TOL} feature between neighbouring densities"),
        "antipodal_first": (
            f"superposition starts with less important features, initially arranged in antipodal pairs {what}.",
            f"at the first density with more than m = {m} represented features, >= {ANTIPODAL_FIRST_MIN:.0%} of the "
            f"superposed features (superposition >= {SUPERPOSED}) are in antipodal pairs (cos < -0.9)", "cos -0.9"),
        "bias_expected_value": (
            f"the bias allows features that are not represented to be set to their expected value, E[x_i] = (1-S)/2 "
            f"{what} (linear model at every density, ReLU model where features are dropped and the output unit is "
            "live).",
            "|b_i - (1-S)/2| <= 10% of (1-S)/2 + 0.001 for every feature with ||W_i|| < 0.1 (ReLU model: "
            "with b_i >= 0)",
            "10% relative + 0.001 absolute (training noise at the sparsest levels)"),
        "bias_expected_value_strict": (
            f"(Strict reading, kept from before the audit.) Every feature that is not represented gets a bias equal to "
            f"its expected value, E[x_i] = (1-S)/2 {what}, in the linear and the ReLU model, dead outputs included.",
            "|b_i - (1-S)/2| <= 10% of (1-S)/2 + 0.001 for every feature with ||W_i|| < 0.1",
            "10% relative + 0.001 absolute (training noise at the sparsest levels)"),
    }[name]
    return pre + text[0], text[1], text[2]


_LINEAR_RELU_MEASURES: dict[str, Callable[[LinearReluAnalysis, int], Measurement]] = {
    "linear_top_m": _linear_top_m,
    "relu_dense_top_m": _relu_dense_top_m,
    "represented_increase": lambda an, m: measure_counts(an.relu.W, m),
    "antipodal_first": lambda an, m: measure_antipodal_first(an.relu.density, an.relu.W, m),
    "bias_expected_value": _bias_expected_value,
    "bias_expected_value_strict": lambda an, m: _bias_expected_value(an, m, strict=True),
}

BIAS_AUDIT = ("Revised after review (issue 12). The paper says the bias 'allows the model to set features it "
              "doesn't represent to their expected value'. A ReLU output with a negative bias is dead: ReLU(b_i) = 0 "
              "passes no gradient to b_i, so once a dropped feature's bias goes negative early in training nothing "
              "moves it back, and the incentive to do so is only ~(1-S)^2/4 of loss. Those dead outputs say nothing "
              "about what the bias allows; the revised reading counts the linear model's features and the ReLU "
              "model's live ones (b_i >= 0) and reports the dead ones. The first reading, every dropped feature, is "
              "kept as the *_strict claim.")


def _linear_relu_claim(id: str, s: LinearReluSetting, explanation: str = "") -> None:
    """Register claim ``id`` (``<figure>.<name>``) of one linear-vs-ReLU setting."""
    fid, name = id.split(".", 1)
    assert fid == s.figure, (id, s.figure)
    statement, expected, tolerance = _linear_relu_claim_text(name, s)
    measure = _LINEAR_RELU_MEASURES[name]
    audit = {"bias_expected_value": BIAS_AUDIT,
             "bias_expected_value_strict": "The first reading; see bias_expected_value for why it was revised."}
    claim(id, figure=fid, section="demonstrating", statement=statement, expected=expected, tolerance=tolerance,
          audit=audit.get(name, ""), explanation=explanation)(lambda ctx: measure(linear_relu_analysis(ctx), s.m))


_linear_relu_claim("linear_vs_relu_n20_m5.linear_top_m", N20_M5)
_linear_relu_claim("linear_vs_relu_n20_m5.relu_dense_top_m", N20_M5)
_linear_relu_claim("linear_vs_relu_n20_m5.represented_increase", N20_M5)
_linear_relu_claim("linear_vs_relu_n20_m5.antipodal_first", N20_M5)
_linear_relu_claim("linear_vs_relu_n20_m5.bias_expected_value", N20_M5, explanation=(
    "Every unrepresented feature of the linear model sits at E[x_i]. Of the ReLU model's 53 live unrepresented "
    "features one lies outside the tolerance, by 4% of it (1.04x); the 5 dead ones (b_i < 0) are reported apart. "
    "The 10% tolerance is this replication's choice, so this is a narrow miss, not a contradiction of the paper. "
    "The two other seeds and twice the steps reproduce it (fragile)."))
_linear_relu_claim("linear_vs_relu_n20_m5.bias_expected_value_strict", N20_M5)
_linear_relu_claim("linear_vs_relu_n80_m20.linear_top_m", N80_M20)
_linear_relu_claim("linear_vs_relu_n80_m20.relu_dense_top_m", N80_M20)
_linear_relu_claim("linear_vs_relu_n80_m20.represented_increase", N80_M20)
_linear_relu_claim("linear_vs_relu_n80_m20.antipodal_first", N80_M20)
_linear_relu_claim("linear_vs_relu_n80_m20.bias_expected_value", N80_M20, explanation=(
    "Every unrepresented feature of the linear model sits at E[x_i]. Of the ReLU model's 234 live unrepresented "
    "features three lie outside the tolerance, the worst by 7% of it (1.07x); the 6 dead ones (b_i < 0) are "
    "reported apart. Two other seeds miss by more (2.6x the tolerance) and twice the steps reproduces it: the "
    "ReLU model's unrepresented biases are not converged at 5,000 steps (the 10% tolerance is this replication's "
    "choice)."))
_linear_relu_claim("linear_vs_relu_n80_m20.bias_expected_value_strict", N80_M20)


# --------------------------------------------------------------------------------------------
# Uniform superposition: D* and feature dimensionality


DSTAR, FEATDIM = "dstar_stickiness", "feature_dimensionality"


@dataclass(frozen=True)
class UniformAnalysis:
    """The uniform-superposition run level by level (1/(1-S) ascending)."""

    levels: pd.DataFrame  # density, inv_density, dstar, sum_D, n_represented
    D: np.ndarray  # [levels, n] feature dimensionalities
    norms: np.ndarray  # [levels, n] feature norms ||W_i||
    m: int


@analysis
def uniform_analysis(ctx: FigureContext) -> UniformAnalysis:
    run = ctx.run(ctx.experiments[0])
    dens = _densities(run)
    order = np.argsort(-dens, kind="stable")
    W = run.params()["W"][order]
    D = metrics.dimensionality(W)
    levels = pd.DataFrame({"density": dens[order], "inv_density": 1 / dens[order], "dstar": metrics.dstar(W),
                           "sum_D": D.sum(-1), "n_represented": (metrics.feature_norms(W) > REPRESENTED).sum(-1)})
    return UniformAnalysis(levels, D, metrics.feature_norms(W), W.shape[-2])


def _draw_dstar(ax: plt.Axes, levels: pd.DataFrame) -> None:
    ax.plot(levels["inv_density"], levels["dstar"], "-o", color=PALETTE["ink"], ms=2.5, lw=1.0, zorder=3)
    ax.set_xscale("log")
    x = levels["inv_density"]
    ticks = [v for v in (1, 2, 3, 5, 10, 30, 100, 300, 1000) if x.min() <= v <= x.max() * 1.01]
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("1/(1-S)")
    ax.set_ylim(-0.02, 1.08)


@figure(
    DSTAR,
    section="geometry",
    title="Dimensions per feature D* = m / ||W||_F^2 against sparsity",
    caption=(
        "Uniform superposition (n = 400 features, m = 30 dimensions, I = 1): D* = m/||W||_F^2 of the trained "
        "ReLU-output model at each sparsity, against 1/(1-S) on a log axis. The paper: D* is \"sticky\" at 1 "
        "(a dimension per feature) and 1/2 (antipodal pairs). Shaded: D* within 0.03 of 1 and of 1/2; filled "
        "orange: the longest run of consecutive levels inside each band (the plateau the claims measure), "
        "its width in decades of 1/(1-S) written beside it."
    ),
)
def build_dstar(ctx: FigureContext) -> FigureOutput:
    levels = uniform_analysis(ctx).levels
    fig, ax = new_figure(figsize=(5.6, 3.2))
    x, y = levels["inv_density"].to_numpy(), levels["dstar"].to_numpy()
    for v, lab in ((1.0, "1"), (0.5, "1/2")):
        reference_line(ax, v, lab, ls="--", lw=0.8)
        ax.axhspan(v - STICKY_TOL, v + STICKY_TOL, color=PALETTE["grid"], alpha=0.6, lw=0, zorder=0)
        pl = plateau(x, y, v, STICKY_TOL)
        if pl["points"]:
            on = (x >= pl["x_from"]) & (x <= pl["x_to"])
            ax.plot(x[on], y[on], "o", color=PALETTE["relu"], ms=4, zorder=4)
            ax.annotate(f"{pl['points']} levels, {pl['decades']:.2f} decades", (pl["x_to"], v),
                        xytext=(6, 8 if v < 1 else -12), textcoords="offset points", fontsize=7,
                        color=PALETTE["relu"])
    _draw_dstar(ax, levels)
    ax.set_ylabel("D* = m / ||W||$_F^2$")
    fig.tight_layout()
    return FigureOutput(fig, levels[["density", "inv_density", "dstar"]].copy())


def measure_sticky(levels: pd.DataFrame, value: float, min_decades: float) -> Measurement:
    """Widest plateau of D* within 0.03 of ``value``; passes when it spans ``min_decades``."""
    pl = plateau(levels["inv_density"].to_numpy(), levels["dstar"].to_numpy(), value, STICKY_TOL)
    return Measurement(measured=pl, passed=pl["decades"] >= min_decades,
                       bars=(Bar(f"plateau width at D* = {value:g}", pl["decades"], ">=", min_decades, "decades"),),
                       detail=f"longest run of consecutive levels with |D* - {value:g}| <= {STICKY_TOL}; "
                              f"width log10 of the 1/(1-S) range it covers")


@claim("dstar_stickiness.sticky_at_one", figure=DSTAR, section="geometry",
       statement="D* = m/||W||_F^2 is sticky at 1: the dense regime keeps one dimension per feature over a "
                 "range of sparsity.",
       expected=f"a run of consecutive levels with |D* - 1| <= {STICKY_TOL} spanning >= log10(7/4) = "
                f"{STICKY_ONE_DECADES:.3f} decades of 1/(1-S): the dedicated regime up to the 2-in-1 triple point "
                "at density 4/7", tolerance=f"D* +- {STICKY_TOL}",
       audit="Revised after review (issue 12). The first reading asked for 0.3 decades (a factor 2 in 1/(1-S)); "
             "by the paper's own 2-in-1 theory antipodal pairs beat a dedicated dimension below density 4/7, "
             "i.e. from 1/(1-S) = 7/4 = 0.243 decades, so the first reading asked for a plateau no model could "
             "reach. This reading asks for the whole dedicated regime that theory allows. The first reading is "
             "still reported as dstar_stickiness.sticky_at_one_strict. (The reviewer's 48-level pilot, 0.255 "
             "decades, was known when this was written.)")
def _sticky_one(ctx: FigureContext) -> Measurement:
    return measure_sticky(uniform_analysis(ctx).levels, 1.0, STICKY_ONE_DECADES)


@claim("dstar_stickiness.sticky_at_one_strict", figure=DSTAR, section="geometry",
       statement="(Strict reading, kept from before the audit.) D* is sticky at 1 over at least a factor 2 in "
                 "1/(1-S).",
       expected=f"a run of consecutive levels with |D* - 1| <= {STICKY_TOL} spanning >= {STICKY_ONE_STRICT_DECADES} "
                "decades of 1/(1-S)", tolerance=f"D* +- {STICKY_TOL}; >= a factor 2 in 1/(1-S)",
       audit="The first reading of 'sticky at 1'; see dstar_stickiness.sticky_at_one for why it was revised.")
def _sticky_one_strict(ctx: FigureContext) -> Measurement:
    return measure_sticky(uniform_analysis(ctx).levels, 1.0, STICKY_ONE_STRICT_DECADES)


@claim("dstar_stickiness.sticky_at_half", figure=DSTAR, section="geometry",
       statement="D* is sticky at 1/2: antipodal pairs are used over a wide range of sparsity.",
       expected=f"a run of consecutive levels with |D* - 1/2| <= {STICKY_TOL} spanning >= {STICKY_HALF_DECADES:.3f} "
                "decades of 1/(1-S) (ECD's >= 3 levels on the authors' notebook grid)",
       tolerance=f"D* +- {STICKY_TOL}",
       audit="Revised after review (issue 12). The first reading asked for 0.5 decades (a factor ~3); the "
             "authors' own notebook run (measured by ECD: 4 levels within 0.03 of 1/2 on a grid 0.0685 decades "
             "apart, ~0.2 decades) would fail it, so it cannot be what the paper means. This reading is ECD's "
             "published rule (>= 3 consecutive levels within 0.03) written as the width those levels span on the "
             "authors' grid (2 steps, 0.137 decades), independent of this build's grid. The first reading is still "
             "reported as dstar_stickiness.sticky_at_half_strict.",
       explanation=("The plateau at 1/2 spans three consecutive levels (1/(1-S) from 2.80 to 3.75: 0.128 decades) "
                    "against 0.137 decades, ECD's three levels on the authors' grid. On the 48-level grid one level "
                    "is 0.064 decades wide, so the verdict turns on a single level: a narrow miss on a bar fixed "
                    "before the run, not evidence that D* is not sticky at 1/2 (the 16-level grid of earlier builds "
                    "measured 0.15). Seed 1 reproduces it (fragile)."))
def _sticky_half(ctx: FigureContext) -> Measurement:
    return measure_sticky(uniform_analysis(ctx).levels, 0.5, STICKY_HALF_DECADES)


@claim("dstar_stickiness.sticky_at_half_strict", figure=DSTAR, section="geometry",
       statement="(Strict reading, kept from before the audit.) D* is sticky at 1/2 over at least a factor ~3 in "
                 "1/(1-S).",
       expected=f"a run of consecutive levels with |D* - 1/2| <= {STICKY_TOL} spanning >= "
                f"{STICKY_HALF_STRICT_DECADES} decades of 1/(1-S)", tolerance=f"D* +- {STICKY_TOL}; >= a factor ~3",
       audit="The first reading of 'sticky at 1/2'; see dstar_stickiness.sticky_at_half for why it was revised.")
def _sticky_half_strict(ctx: FigureContext) -> Measurement:
    return measure_sticky(uniform_analysis(ctx).levels, 0.5, STICKY_HALF_STRICT_DECADES)


@figure(
    FEATDIM,
    section="geometry",
    title="Feature dimensionality D_i of every feature against sparsity",
    caption=(
        "Every feature's dimensionality D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (dots, slightly spread "
        "horizontally) at each sparsity of the uniform-superposition models of the D* figure, with D* as the "
        "line. Reference lines: 1, 3/4 (tetrahedron), 2/3 (triangle), 1/2 (antipodal pair), 2/5 (pentagon), "
        "3/8 (square antiprism), 0 (not learned). The paper: the D_i cluster at these fractions, the "
        "dimensionalities of uniform polytopes."
    ),
)
def build_feature_dimensionality(ctx: FigureContext) -> FigureOutput:
    an = uniform_analysis(ctx)
    levels, D = an.levels, an.D
    n = D.shape[1]
    spread = 10 ** (0.035 * ((np.arange(n) * 0.618034) % 1 - 0.5))  # deterministic horizontal spread
    fig, ax = new_figure(figsize=(6.2, 3.8))
    for lab, v in REFERENCE_LINES.items():
        reference_line(ax, v, lab, nudge_pt={"2/5": 3.5, "3/8": -3.5}.get(lab, 0.0), ls=":", lw=0.6)
    x = levels["inv_density"].to_numpy()[:, None] * spread[None, :]
    rep = an.norms > REPRESENTED
    ax.scatter(x[~rep], D[~rep], s=2, color=PALETTE["theory"], alpha=0.15, lw=0, zorder=1,
               label=f"not represented (||W_i|| <= {REPRESENTED:g})")
    ax.scatter(x[rep], D[rep], s=2, color=PALETTE["neg"], alpha=0.35, lw=0, zorder=2, label="represented")
    ax.legend(loc="upper right", frameon=False, markerscale=3, fontsize=7)
    _draw_dstar(ax, levels)
    ax.set_ylabel("feature dimensionality D$_i$ (line: D*)")
    fig.tight_layout()
    table = pd.DataFrame({"density": np.repeat(levels["density"].to_numpy(), n),
                          "feature": np.tile(np.arange(n), len(levels)),
                          "x_plotted": x.ravel(), "D_i": D.ravel()})
    curve = levels[["density", "inv_density", "dstar"]].rename(columns={"inv_density": "x_plotted", "dstar": "D_i"})
    curve["feature"] = -1  # the D* line
    return FigureOutput(fig, pd.concat([table, curve[table.columns]], ignore_index=True))


def measure_lines(levels: pd.DataFrame, D: np.ndarray) -> Measurement:
    """ECD's line rule at each of the paper's fractions (3/4, 2/3, 1/2, 2/5, 3/8)."""
    sel = D[levels["dstar"].to_numpy() < LINE_DSTAR_MAX]
    vals = sel[sel >= LINE_D_MIN]
    res = {k: line_test(vals, v) for k, v in PAPER_LINES.items()}
    found = [k for k, r in res.items() if r["line"]]
    bars: tuple[Bar, ...] = ()
    for k, r in res.items():  # ECD's rule: enough features at the fraction, and a peak over both flanks
        peak = r["count"] / max(r["below"], r["above"], 1e-9)
        bars += (Bar(f"features within 0.005 of {k}", r["count"], ">=", LINE_MIN_COUNT, "features", step=1),
                 Bar(f"peak over flanks at {k}", peak, ">=", LINE_RATIO, "x"))
    return Measurement(measured={"features": int(vals.size), "lines": res, "found": found},
                       passed=len(found) == len(PAPER_LINES), bars=bars,
                       detail=f"lines at {', '.join(found) or 'none'} of {', '.join(PAPER_LINES)} "
                              f"({vals.size} features with D_i >= {LINE_D_MIN} at levels with D* < {LINE_DSTAR_MAX})")


def measure_sum_d(levels: pd.DataFrame, m: int) -> Measurement:
    ratio = levels["sum_D"].to_numpy() / m
    share = float((np.abs(ratio - 1) <= SUM_D_TOL).mean())
    return Measurement(bars=(Bar("share of levels with sum D_i within 10% of m", share, ">=", SUM_D_SHARE),),
                       measured={"share_within": share, "min_ratio": float(ratio.min()),
                                 "max_ratio": float(ratio.max())},
                       passed=share >= SUM_D_SHARE,
                       detail=f"sum_i D_i / m at each of {len(ratio)} levels")


@claim("feature_dimensionality.lines_at_fractions", figure=FEATDIM, section="geometry",
       statement="Feature dimensionalities cluster in distinct lines at 3/4 (tetrahedron), 2/3 (triangle), 1/2 "
                 "(antipodal pair), 2/5 (pentagon) and 3/8 (square antiprism).",
       expected="a line at every one of the five fractions: >= 10 features within +-0.005 and >= 2x each "
                "equal window 0.0125 away (features with D_i >= 0.1 at levels with D* < 0.95)",
       tolerance="ECD's line rule, as registered there",
       explanation=("Only the 1/2 line forms (204 features within 0.005 of it, 2 in its flanks). 3/8 has 21 features "
                    "near it but more in its flanks, 2/5 has 9, and 3/4 and 2/3 none: features of the sparse levels, "
                    "where the paper's tetrahedra, triangles and pentagons sit, spread between the fractions instead "
                    "of on them. The paper does not say how long its n = 400, m = 30 models trained; whether twice "
                    "the steps sharpens these lines is what the robustness run's steps2x variant measures. It does "
                    "not: twice the steps and two other seeds give the same verdict (robust)."))
def _lines(ctx: FigureContext) -> Measurement:
    an = uniform_analysis(ctx)
    return measure_lines(an.levels, an.D)


@claim("feature_dimensionality.sum_equals_m", figure=FEATDIM, section="geometry",
       statement="The dimensionalities of all features add up to the number of embedding dimensions when the "
                 "features are packed efficiently.",
       expected=f"|sum_i D_i / m - 1| <= {SUM_D_TOL} at >= {SUM_D_SHARE:.0%} of the sparsity levels",
       tolerance=f"{SUM_D_TOL:.0%} of m; 'where packed' allows {1 - SUM_D_SHARE:.0%} of levels outside")
def _sum_d(ctx: FigureContext) -> Measurement:
    an = uniform_analysis(ctx)
    return measure_sum_d(an.levels, an.m)
