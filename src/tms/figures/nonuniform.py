"""Non-uniform superposition (paper: "The Geometry of Superposition", "Non-Uniform Superposition").

Four figures, each drawn from one analysis (a frozen dataclass computed once per context by an
``@analysis`` function) that its claims read too:

- ``pentagon_perturbation`` (:func:`perturbation_analysis`): one pentagon feature made sparser or denser;
- ``correlated_features`` (:func:`correlated_analysis`): correlated and anticorrelated features in m = 2;
- ``local_orthogonal_bases`` (:func:`local_analysis`): correlated sets orthogonal within, superposed across;
- ``pca_collapse`` (:func:`pca_analysis`): correlated pairs collapse into their principal components.

Two-dimensional solutions are drawn canonicalised (:func:`tms.metrics.canonicalize_2d`: rotated so an
anchor feature points right and reflected to a fixed orientation), so restarts and cells compare feature
by feature. Losses compared *across restarts* (the pentagon and digon loss curves, which restart is
selected) are the run's exact expected losses (:attr:`tms.experiments.RunData.loss`, :func:`tms.exact.exact_loss`):
no sampling noise. The pentagon perturbation also polishes the best restart of each geometry to its
local optimum of the exact loss (:func:`polish`), so its loss curves say where each geometry's optimum
lies, not only where training stopped.

Thresholds (fixed from the paper's wording before any model was trained; the represented /
not-embedded / orthogonal / antipodal thresholds of :mod:`tms.geometry` apply too):

- "~2.5x sparser": the phase change from pentagon to two digons lies at a relative density between
  1/3.125 and 1/2 (2.5x within a factor 1.25);
- ``||W_i|| = 1/(1 - b_i)`` to within 5 %, ``b_i`` read as the size of the negative bias;
- a correlated pair is *collapsed* (represents its principal component ``(a + b)/sqrt 2``) when both
  columns have norm > 0.3 and ``cos > 0.9``; the paper's regime boundaries ("approximately 0.05",
  "0.15") are checked to within a factor 1.5 in density.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy.optimize import minimize

from tms import exact, metrics
from tms.data import FeatureSets
from tms.figures.base import PALETTE, FigureContext, FigureOutput, analysis, figure, new_figure
from tms.figures.draw import GRAM_CMAP, draw_arrows_2d
from tms.findings import Bar, Measurement, claim
from tms.geometry import (ANTIPODAL_COS, NOT_EMBEDDED, ORTHOGONAL_COS, REPRESENTED, adjacent_on_circle, angular_gaps,
                          antipodal_pairs, cosines, count_dips, crossing, neighbour_span, represented, spearman)

PHASE_RATIO_RANGE = (1 / 3.125, 1 / 2.0)
PAPER_RATIO = 1 / 2.5  # "~2.5x sparser"
NORM_BIAS_TOL = 0.05
REPEL_MIN_SPEARMAN = 0.9
PENTAGON_MIN_GAP_DEG = 20.0
COLLAPSE_COS, COLLAPSE_NORM = 0.9, 0.3
REGIME_FACTOR = 1.5
NO_COLLAPSE_BELOW, ONE_COLLAPSED_FROM, TWO_COLLAPSED_FROM, MOST_PCA_FROM = 0.05, 0.05, 0.15, 0.5
LOCAL_ORTHO_MEAN_COS = 0.1
SET_COLORS = [PALETTE["pos"], PALETTE["linear"], PALETTE["neg"], PALETTE["relu"]]
#: Polishing (:func:`polish`): forward-difference step on the parameters, and L-BFGS-B's tolerances on the
#: loss relative to the starting loss (the default build's optima agree to 1e-8 with ftol 1e-12).
POLISH_STEP = 1e-7
POLISH_FTOL, POLISH_GTOL = 1e-10, 1e-9
POLISH_MAXITER = 200


# --------------------------------------------------------------------------------------------
# Helpers the four figures share


@dataclass(frozen=True)
class Polished:
    W: np.ndarray  # [m, n] where L-BFGS-B stopped (the start if that was not lower)
    b: np.ndarray  # [n]
    loss: float  # exact loss of (W, b)
    start_loss: float  # exact loss of the start
    iterations: int
    evaluations: int  # exact_loss calls, each of 1 + m n + n models (the point and its forward differences)


def polish(kind: str, W: np.ndarray, b: np.ndarray, density: np.ndarray, importance: np.ndarray,
           sets: FeatureSets | None = None, l1: float = 0.0, maxiter: int = POLISH_MAXITER) -> Polished:
    """Minimise the exact expected loss (:func:`tms.exact.exact_loss`) over all of one model's parameters
    ``W [m, n]``, ``b [n]`` from where training left them: L-BFGS-B (scipy) on the loss relative to the
    start, its gradient by forward differences (step :data:`POLISH_STEP`) evaluated in one vectorised
    ``exact_loss`` call per point. Deterministic; never returns a higher loss than the start's; ``maxiter``
    0 returns the start."""
    m, n = W.shape
    x0 = np.concatenate([np.ravel(W), np.ravel(b)]).astype(np.float64)
    k = x0.size

    def losses(X: np.ndarray) -> np.ndarray:
        return np.atleast_1d(exact.exact_loss(kind, {"W": X[:, :m * n].reshape(-1, m, n), "b": X[:, m * n:]},
                                              density, importance, sets, l1))

    f0 = float(losses(x0[None])[0])
    scale = f0 if f0 > 0 else 1.0
    calls = [0]

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        X = np.repeat(x[None], k + 1, axis=0)
        X[1:] += POLISH_STEP * np.eye(k)
        L = losses(X) / scale
        calls[0] += 1
        return float(L[0]), (L[1:] - L[0]) / POLISH_STEP

    x, nit = x0, 0
    if maxiter > 0:
        res = minimize(value_and_gradient, x0, jac=True, method="L-BFGS-B",
                       options={"maxiter": maxiter, "ftol": POLISH_FTOL, "gtol": POLISH_GTOL})
        x, nit = res.x, int(res.nit)
    f = float(losses(x[None])[0])
    if not f < f0:
        x, f = x0, f0
    return Polished(x[:m * n].reshape(m, n), x[m * n:].copy(), f, f0, nit, calls[0])


def classify_pentagon(W: np.ndarray) -> str:
    """"pentagon" (five represented features, no two within 20 degrees), "digons" (four represented
    as two antipodal pairs, the fifth not embedded) or "other", for a 2-D ``W [2, 5]``.

    A deformed pentagon may have nearly opposite features (its neighbours squeeze the sparse one),
    so antipodality does not rule a pentagon out; the five directions staying apart does.
    """
    rep = represented(W)
    if rep.size == 5 and angular_gaps(W).min() >= PENTAGON_MIN_GAP_DEG:
        return "pentagon"
    norms = metrics.feature_norms(W)
    if rep.size == 4 and len(antipodal_pairs(W)) == 2 and norms.min() < NOT_EMBEDDED:
        return "digons"
    return "other"


def set_members(sets: FeatureSets) -> list[np.ndarray]:
    """Feature indices of each set."""
    idx = np.asarray(sets.set_index())
    return [np.flatnonzero(idx == s) for s in range(len(sets.sets))]


def pair_state(W: np.ndarray, a: int, b: int) -> str:
    """"collapsed" (both norms > 0.3, cos > 0.9), "dropped" (both norms < 0.3) or "separate"."""
    norms = metrics.feature_norms(W)
    if norms[a] < COLLAPSE_NORM and norms[b] < COLLAPSE_NORM:
        return "dropped"
    if min(norms[a], norms[b]) > COLLAPSE_NORM and cosines(W)[a, b] > COLLAPSE_COS:
        return "collapsed"
    return "separate"


def collapsed_count(W: np.ndarray, pairs: Sequence[Sequence[int]]) -> int:
    return sum(pair_state(W, a, b) == "collapsed" for a, b in pairs)


def side_by_side(W: np.ndarray, pairs: Sequence[Sequence[int]]) -> bool:
    """Every feature represented, no pair collapsed, each pair's members angular neighbours."""
    return (represented(W).size == W.shape[1] and collapsed_count(W, pairs) == 0
            and all(adjacent_on_circle(W, a, b) for a, b in pairs))


def _window_bars(name: str, value: float, window: tuple[float, float], unit: str = "") -> tuple[Bar, Bar]:
    """``lo <= value <= hi`` as two bars (lower and upper)."""
    return Bar(name, value, ">=", window[0], unit), Bar(name, value, "<=", window[1], unit)


def side_by_side_bars(W: np.ndarray, pairs: Sequence[Sequence[int]]) -> tuple[Bar, ...]:
    """The numeric conditions of :func:`side_by_side`: every feature represented (the smallest norm) and no
    pair collapsed (a count); the pairs' adjacency is a condition on the order of directions, no bar (the
    claims pass it as ``categorical_ok``)."""
    return (Bar("smallest ||W_i||", float(metrics.feature_norms(W).min()), ">", REPRESENTED),
            Bar("collapsed pairs", collapsed_count(W, pairs), "<", 1, "pairs", step=1))


def _claim(id: str, statement: str, expected: str, tolerance: str, audit: str = "", explanation: str = ""):
    """Register claim ``id`` ("<figure>.<name>", written out in full) of the geometry section."""
    return claim(id, figure=id.split(".")[0], section="geometry", statement=statement, expected=expected,
                 tolerance=tolerance, audit=audit, explanation=explanation)


def _draw_canonical(ax: plt.Axes, Wc: np.ndarray, colors: Sequence[Any], title: str,
                    labels: Sequence[str] | None = None) -> None:
    """A canonicalised 2-D solution as arrows, titled small."""
    draw_arrows_2d(ax, Wc, colors, labels=labels, lim=1.5, lw=1.2)
    ax.set_title(title, fontsize=6)


def _set_colors(sets: FeatureSets) -> list[Any]:
    return [SET_COLORS[s % len(SET_COLORS)] for s in sets.set_index()]


def _set_labels(sets: FeatureSets) -> list[str]:
    """"A1, A2, B1, ..." : set letter and member number."""
    idx = list(sets.set_index())
    return [f"{chr(65 + s)}{idx[:k + 1].count(s)}" for k, s in enumerate(idx)]


def _sets_of(run: Any) -> FeatureSets:
    return FeatureSets.parse(run.spec.get("feature_sets"), int(run.spec["n_features"]))


def _pairs_of(run: Any) -> list[list[int]]:
    return [m.tolist() for m in set_members(_sets_of(run)) if m.size == 2]


def _sparsest_cell(run: Any) -> int:
    return int(np.argmin(run.cells["density"].to_numpy()))


# --------------------------------------------------------------------------------------------
# Perturbing a single feature of the pentagon


@dataclass(frozen=True)
class PerturbationAnalysis:
    models: pd.DataFrame  # one row per trained model: cell, ratio, restart, instance, geometry, exact loss, selected
    curves: pd.DataFrame  # per ratio: lowest loss of each geometry (NaN if none), difference pentagon - digons;
    #                       the same for the polished losses (pentagon_optimised, digons_optimised, ...)
    crossings: list[float]  # relative densities where the trained loss curves cross
    optimised: pd.DataFrame  # per ratio and geometry: the polished best restart (optimised_losses)
    optimised_crossings: list[float]  # where the optimised loss curves cross
    solutions: pd.DataFrame  # lowest-loss pentagon and digons at each ratio, canonicalised: a row per feature
    W: np.ndarray  # [N, 2, 5] every trained model
    b: np.ndarray  # [N, 5]
    unperturbed_cell: int  # the cell at relative density 1 (the norm-bias claim's)
    loss_source: str  # "exact" (the run stores exact losses) or "sampled" (an older run: its evaluation loss)
    table: pd.DataFrame


@analysis
def perturbation_analysis(ctx: FigureContext) -> PerturbationAnalysis:
    run = ctx.run(ctx.experiments[0])
    W, b = run.arrays["W"], run.arrays["b"]
    loss = run.loss  # exact where the run has it: the loss its restarts were selected on
    rows = []
    for c, ratio in enumerate(run.cells["perturbed_density_ratio"].to_numpy(dtype=float)):
        rows += [{"cell": c, "ratio": ratio, "restart": r, "instance": int(i), "geometry": classify_pentagon(W[i]),
                  "loss": float(loss[i])} for r, i in enumerate(run.instances_of(c))]
    df = pd.DataFrame(rows)
    df["selected"] = df.groupby("cell")["loss"].transform("min") == df["loss"]
    optimised = optimised_losses(df, run, int(ctx.option("polish_maxiter")))
    curves = with_optimised(loss_curves(df), optimised)
    solutions = pd.DataFrame(best_solutions(df, W, "pentagon", 0) + best_solutions(df, W, "digons", None),
                             columns=["panel", "ratio", "restart", "feature", "x", "y", "loss"])
    xs = crossing(curves["ratio"], curves["pentagon"], curves["digons"])
    xs_opt = crossing(curves["ratio"], curves["pentagon_optimised"], curves["digons_optimised"])
    cross = pd.DataFrame([{"curve": "trained", "ratio": x} for x in xs]
                         + [{"curve": "optimised", "ratio": x} for x in xs_opt], columns=["curve", "ratio"])
    table = pd.concat([solutions.assign(kind="solution"),
                       df.assign(kind="loss")[["kind", "ratio", "restart", "geometry", "loss"]],
                       curves.assign(kind="best_loss"), optimised.assign(kind="optimised"),
                       cross.assign(kind="crossing")], ignore_index=True)
    return PerturbationAnalysis(df, curves, xs, optimised, xs_opt, solutions, W, b,
                                run.cell(density=0.05, perturbed_density_ratio=1.0),
                                "exact" if "exact_loss" in run.arrays else "sampled", table)


def loss_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Lowest loss of each geometry at each ratio: columns ratio, pentagon, digons (NaN if none), and
    their difference pentagon - digons."""
    best = df[df["geometry"] != "other"].groupby(["ratio", "geometry"])["loss"].min().unstack()
    best = best.reindex(index=sorted(df["ratio"].unique()), columns=["pentagon", "digons"]).reset_index()
    best.columns.name = None
    return best.assign(difference=lambda t: t["pentagon"] - t["digons"])


def optimised_losses(df: pd.DataFrame, run: Any, maxiter: int = POLISH_MAXITER) -> pd.DataFrame:
    """The lowest-loss pentagon and the lowest-loss digon restart of every ratio, polished (:func:`polish`):
    one row per ratio and geometry found, with the restart, its trained exact loss (``start_loss``), the
    polished loss (``loss``), the polished model's geometry (``geometry_after``) and whether it kept its
    geometry (``kept``). A polished model that changed geometry no longer measures its geometry's loss:
    ``loss`` is then the unpolished one (and ``kept`` False says so)."""
    kind, sets = run.spec["model"], _sets_of(run)
    W, b, l1 = run.arrays["W"], run.arrays["b"], run.arrays.get("l1")
    rows = []
    for geom in ("pentagon", "digons"):
        best = df[df["geometry"] == geom].sort_values("loss", kind="stable").groupby("ratio").head(1)
        for _, r in best.sort_values("ratio").iterrows():
            i = int(r["instance"])
            p = polish(kind, W[i], b[i], run.arrays["density"][i], run.arrays["importance"][i], sets,
                       0.0 if l1 is None else float(np.ravel(l1)[i]), maxiter)
            after = classify_pentagon(p.W)
            kept = after == geom
            rows.append({"ratio": float(r["ratio"]), "geometry": geom, "restart": int(r["restart"]),
                         "start_loss": p.start_loss, "loss": p.loss if kept else p.start_loss,
                         "polished_loss": p.loss, "geometry_after": after, "kept": kept,
                         "iterations": p.iterations})
    return pd.DataFrame(rows, columns=["ratio", "geometry", "restart", "start_loss", "loss", "polished_loss",
                                       "geometry_after", "kept", "iterations"])


def with_optimised(curves: pd.DataFrame, optimised: pd.DataFrame) -> pd.DataFrame:
    """``curves`` with the optimised losses of each geometry (``pentagon_optimised``, ``digons_optimised``),
    their difference, and both differences relative to the digons' loss (what panel d draws)."""
    opt = optimised.pivot(index="ratio", columns="geometry", values="loss") if len(optimised) else pd.DataFrame()
    out = curves.copy()
    for g in ("pentagon", "digons"):
        col = opt[g] if g in opt else pd.Series(dtype=float)
        out[f"{g}_optimised"] = out["ratio"].map(col).astype(float)
    out["difference_optimised"] = out["pentagon_optimised"] - out["digons_optimised"]
    out["relative_difference"] = out["difference"] / out["digons"]
    out["relative_difference_optimised"] = out["difference_optimised"] / out["digons_optimised"]
    return out


def best_solutions(df: pd.DataFrame, W: np.ndarray, geom: str, anchor: int | None) -> list[dict]:
    """The lowest-loss solution of ``geom`` at every ratio, canonicalised (``anchor`` pointing right; None:
    the largest feature): one row per feature, ratios ascending."""
    best = df[df["geometry"] == geom].sort_values("loss", kind="stable").groupby("ratio").head(1)
    rows = []
    for _, r in best.sort_values("ratio").iterrows():
        Wc = metrics.canonicalize_2d(W[int(r["instance"])], anchor=anchor)
        rows += [{"panel": geom, "ratio": r["ratio"], "restart": int(r["restart"]), "feature": f, "x": Wc[0, f],
                  "y": Wc[1, f], "loss": r["loss"]} for f in range(Wc.shape[1])]
    return rows


@figure(
    "pentagon_perturbation", section="geometry",
    title="Perturbing one feature of the pentagon: deformation and the switch to digons",
    caption=(
        "n = 5 features in m = 2 dimensions, importance 1, density 0.05 for features 1-4; feature 0's density is "
        "0.05 times its relative density (colour: blue sparser, yellow denser). (a) The lowest-loss pentagon "
        "and (b) the lowest-loss pair of digons among the restarts at each relative density, canonicalised "
        "(feature 0, or in (b) the largest feature, pointing right): feature 0 is the star, features 1-4 the "
        "dots; thin lines in the same colour outline each solution (the pentagon's edges in angular order, "
        "each digon feature's line to the origin); the grey circle has radius 1. "
        "(c) Exact expected loss of every restart by geometry (dots) and the lowest of each geometry (solid "
        "lines); dashed lines with open markers: that restart after minimising the exact loss over all its "
        "parameters (its geometry's local optimum); dotted vertical line: where the trained curves cross. "
        "(d) Pentagon minus digon loss, as a share of the digon loss, trained and optimised (no point where no "
        "restart found digons); vertical lines: where each pair of curves crosses (dotted: trained, dashed: "
        "optimised); grey band: the paper's ~2.5x sparser, within a factor 1.25."
    ),
    options={"polish_maxiter": POLISH_MAXITER},
)
def build_perturbation(ctx: FigureContext) -> FigureOutput:
    an = perturbation_analysis(ctx)
    df, curves = an.models, an.curves
    ratios = np.sort(df["ratio"].unique())
    norm = mcolors.LogNorm(ratios.min(), ratios.max())
    cmap = plt.get_cmap("viridis")
    fig = plt.figure(figsize=(6.4, 4.05), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.05])
    axa, axb, cax, key = top.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 0.05, 0.75]})
    lim = 1.12 * max(1.0, float(np.hypot(an.solutions["x"], an.solutions["y"]).max()) if len(an.solutions) else 1.0)
    for ax, geom, outline, title in ((axa, "pentagon", "polygon", "(a) lowest-loss pentagons"),
                                     (axb, "digons", "pairs", "(b) lowest-loss digons")):
        _draw_solution_points(ax, an.solutions[an.solutions["panel"] == geom], norm, cmap, lim, outline)
        ax.set_title(title)
    cb = top.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    cb.set_label("relative density of feature 0", fontsize=7)
    ticks = [v for v in (0.2, 0.5, 1, 2, 4) if ratios.min() <= v <= ratios.max()]
    cb.set_ticks(ticks, labels=[f"{v:g}" for v in ticks])
    cb.ax.yaxis.set_minor_formatter(plt.NullFormatter())
    key.axis("off")
    key.legend(handles=[
        Line2D([], [], ls="", marker="*", ms=8, mfc="#888888", mec=PALETTE["ink"], mew=0.4,
               label="feature 0 (density varied)"),
        Line2D([], [], ls="", marker="o", ms=4, mfc="#888888", mec="none", label="features 1-4"),
        Line2D([], [], color=cmap(0.5), lw=0.6, label="outline of one solution\n(colour: its density)"),
        Line2D([], [], color=PALETTE["grid"], lw=0.8, label="unit circle"),
    ], loc="center left", frameon=False, handlelength=1.6, borderaxespad=0)
    axc, axd = bottom.subplots(1, 2, sharex=True)
    style = {"pentagon": PALETTE["neg"], "digons": PALETTE["relu"], "other": "#aaaaaa"}
    for g, col in style.items():
        sub = df[df["geometry"] == g]
        axc.scatter(sub["ratio"], sub["loss"], s=5, color=col, alpha=0.5, lw=0, zorder=1)
    for g in ("pentagon", "digons"):
        axc.plot(curves["ratio"], curves[g], color=style[g], lw=1.0, zorder=2)
        axc.plot(curves["ratio"], curves[f"{g}_optimised"], ls="--", marker="o", ms=3.5, mfc="white",
                 mec=style[g], mew=0.8, color=style[g], lw=0.8, zorder=3)
    for x in an.crossings:
        axc.axvline(x, ls=":", color=PALETTE["theory"], lw=0.8, zorder=0)
    ylabel = "exact expected loss" if an.loss_source == "exact" else "loss (sampled; optimised: exact)"
    axc.set(yscale="log", ylabel=ylabel, title="(c) loss of every restart, by geometry")
    axc.legend(handles=[
        Line2D([], [], ls="", marker="o", ms=4, color=style["pentagon"], label="pentagon"),
        Line2D([], [], ls="", marker="o", ms=4, color=style["digons"], label="digons"),
        Line2D([], [], ls="", marker="o", ms=4, color=style["other"], label="other"),
        Line2D([], [], color=PALETTE["ink"], lw=1.0, label="lowest, trained"),
        Line2D([], [], color=PALETTE["ink"], lw=0.8, ls="--", marker="o", ms=3.5, mfc="white", label="optimised"),
    ], frameon=False, loc="upper left", handlelength=1.8, labelspacing=0.3, borderaxespad=0.2)
    _draw_difference(axd, an)
    for ax in (axc, axd):
        _log_ratio_axis(ax, ratios)
    return FigureOutput(fig, an.table)


def _draw_difference(ax: plt.Axes, an: PerturbationAnalysis) -> None:
    """Panel d: (pentagon - digons) / digons in percent, trained and optimised, with the crossings, the
    paper's band and the crossings' values written out."""
    curves = an.curves
    ax.axhline(0, color=PALETTE["ink"], lw=0.6)
    ax.axvspan(*PHASE_RATIO_RANGE, color=PALETTE["grid"], alpha=0.8, lw=0, label="paper: ~2.5x (within 1.25x)")
    ax.plot(curves["ratio"], 100 * curves["relative_difference"], "-o", ms=3, color=PALETTE["ink"], lw=1.0,
            label="lowest trained")
    ax.plot(curves["ratio"], 100 * curves["relative_difference_optimised"], "--o", ms=3.5, mfc="white",
            mec=PALETTE["ink"], mew=0.8, color=PALETTE["ink"], lw=0.8, label="optimised")
    for xs, ls in ((an.crossings, ":"), (an.optimised_crossings, "--")):
        for x in xs:
            ax.axvline(x, ls=ls, color=PALETTE["theory"], lw=0.8)
    ax.set(ylabel="pentagon - digons (% of digons)", title="(d) difference of the two loss curves")
    # legend and numbers where the curves leave room: right of the paper's band, above and below zero
    ax.legend(frameon=False, loc="upper right", handlelength=1.8, labelspacing=0.3, borderaxespad=0.2)

    def fmt(xs: list[float]) -> str:
        return ", ".join(f"{x:.3g} = 1/{1 / x:.2g}" for x in xs) if xs else "none"

    ax.text(0.98, 0.12, f"curves cross at\ntrained: {fmt(an.crossings)}\noptimised: {fmt(an.optimised_crossings)}\n"
            f"paper: ~{PAPER_RATIO:g} = 1/2.5", transform=ax.transAxes, ha="right", va="bottom", fontsize=7)


def _draw_solution_points(ax: plt.Axes, solutions: pd.DataFrame, norm: mcolors.Normalize, cmap: Any,
                          lim: float, outline: str) -> None:
    """The solution at each ratio in the ratio's colour: features as points (feature 0 a star) and the shape
    they make as thin lines: ``outline`` "polygon" joins the represented features in angular order (a
    pentagon), "pairs" joins each represented feature to the origin (a digon is a line through it)."""
    draw_arrows_2d(ax, np.zeros((2, 0)), [], lim=lim)  # the unit circle in a bare square
    for ratio, pts in solutions.groupby("ratio", sort=True):
        pts = pts.sort_values("feature")
        x, y, col = pts["x"].to_numpy(), pts["y"].to_numpy(), cmap(norm(ratio))
        rep = np.hypot(x, y) > REPRESENTED
        if outline == "polygon" and rep.sum() >= 3:
            order = np.flatnonzero(rep)[np.argsort(np.arctan2(y[rep], x[rep]))]
            ax.fill(x[order], y[order], facecolor="none", edgecolor=col, lw=0.6, alpha=0.8, zorder=1)
        else:
            for k in np.flatnonzero(rep):
                ax.plot([0, x[k]], [0, y[k]], color=col, lw=0.6, alpha=0.8, zorder=1)
        ax.scatter(x[1:], y[1:], s=14, color=col, edgecolor="none", zorder=2)
        ax.scatter(x[:1], y[:1], s=55, marker="*", color=col, edgecolor=PALETTE["ink"], lw=0.4, zorder=3)
    if solutions.empty:
        ax.text(0, 0, "none found", ha="center", va="center", fontsize=7, color=PALETTE["theory"])


def _log_ratio_axis(ax: plt.Axes, ratios: np.ndarray) -> None:
    ax.set(xscale="log", xlabel="relative density of feature 0")
    ticks = [v for v in (0.2, 0.3, 0.5, 1, 2, 4) if ratios.min() <= v <= ratios.max()]
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def measure_phase_change(df: pd.DataFrame, W: np.ndarray) -> Measurement:
    """Ratio at which the selected geometry switches from digons (sparser) to pentagon (denser)."""
    sel = df[df["selected"]].sort_values("ratio")
    geo = sel["geometry"].tolist()
    ratios = sel["ratio"].to_numpy()
    digon_w0 = [float(metrics.feature_norms(W[int(i)])[0]) for i in sel.loc[sel["geometry"] == "digons", "instance"]]
    digon_zero = all(v < NOT_EMBEDDED for v in digon_w0)
    # the switch: last digon ratio below the first pentagon ratio
    pent = [k for k, g in enumerate(geo) if g == "pentagon"]
    dig = [k for k, g in enumerate(geo) if g == "digons"]
    if not pent or not dig or max(dig) > min(pent):
        return Measurement(measured={"selected": dict(zip(map(float, ratios), geo))}, passed=False,
                           detail="no clean switch from digons (sparser) to pentagons (denser) among selected models",
                           categorical_ok=False)
    r_star = float(np.sqrt(ratios[max(dig)] * ratios[min(pent)]))
    ok = PHASE_RATIO_RANGE[0] <= r_star <= PHASE_RATIO_RANGE[1] and digon_zero
    bars = (*_window_bars("switch ratio", r_star, PHASE_RATIO_RANGE, "relative density"),
            Bar("largest ||W_0|| in selected digons", max(digon_w0), "<", NOT_EMBEDDED))
    return Measurement(measured={"ratio": r_star, "times_sparser": 1 / r_star, "between": [float(ratios[max(dig)]),
                                 float(ratios[min(pent)])], "sparse_feature_at_zero": digon_zero}, passed=ok,
                       detail="geometric mean of the neighbouring ratios where the selected geometry switches",
                       bars=bars, categorical_ok=True)  # a clean switch exists (else the early return)


def measure_crossing(df: pd.DataFrame, optimised: pd.DataFrame | None = None) -> Measurement:
    """The pentagon and digon loss curves cross once, inside the paper's range, where the switch is.

    Decided on the trained curves (the lowest loss of each geometry among the restarts); ``optimised``
    (:func:`optimised_losses`), where given, adds where the curves of the polished restarts cross, for
    comparison with the paper's ~2.5x and the trained crossing (it does not enter the verdict)."""
    curves = loss_curves(df)
    xs = crossing(curves["ratio"], curves["pentagon"], curves["digons"])
    both = int(curves[["pentagon", "digons"]].notna().all(axis=1).sum())
    ok = len(xs) == 1 and PHASE_RATIO_RANGE[0] <= xs[0] <= PHASE_RATIO_RANGE[1]
    bars = (Bar("sign changes of the loss difference", len(xs), ">=", 1, "crossings", step=1),
            Bar("sign changes of the loss difference", len(xs), "<=", 1, "crossings", step=1))
    if len(xs) == 1:
        bars += _window_bars("crossing", xs[0], PHASE_RATIO_RANGE, "relative density")
    measured: dict[str, Any] = {"crossings": xs, "ratios_with_both": both}
    detail = "sign changes of L(best pentagon) - L(best digons) over ratios where both exist"
    if optimised is not None:
        cur = with_optimised(curves, optimised)
        xo = crossing(cur["ratio"], cur["pentagon_optimised"], cur["digons_optimised"])
        changed = optimised[~optimised["kept"].astype(bool)]
        gain = (optimised["start_loss"] - optimised["loss"]) / optimised["start_loss"]
        measured.update({
            "optimised_crossings": xo, "paper_crossing": PAPER_RATIO,
            "times_sparser": {"trained": [1 / x for x in xs], "optimised": [1 / x for x in xo], "paper": 2.5},
            "largest_polish_gain": float(gain.max()) if len(gain) else 0.0,
            "polish_changed_geometry": [f"{g} at {r:g} -> {a}" for r, g, a in
                                        zip(changed["ratio"], changed["geometry"], changed["geometry_after"])]})
        detail += ("; optimised: the best restart of each geometry polished to its local optimum of the exact loss "
                   f"(L-BFGS-B), whose curves cross at {', '.join(f'{x:.3g}' for x in xo) or 'no ratio'} against "
                   f"the paper's ~{PAPER_RATIO:g} (2.5x sparser)")
        if len(changed):
            detail += f"; {len(changed)} polished model(s) left their geometry and count unpolished"
    return Measurement(measured=measured, passed=ok, detail=detail, bars=bars)


def measure_repel_attract(df: pd.DataFrame, W: np.ndarray) -> Measurement:
    """Room the neighbours leave feature 0 in selected pentagons grows with its density (144 deg at 1)."""
    sel = df[df["selected"] & (df["geometry"] == "pentagon")].sort_values("ratio")
    span = [neighbour_span(W[int(i)]) for i in sel["instance"]]
    r = sel["ratio"].to_numpy()
    rho = spearman(r, span)
    denser = [s for x, s in zip(r, span) if x > 1]
    sparser = [s for x, s in zip(r, span) if x < 1]
    ok = (len(span) >= 3 and rho >= REPEL_MIN_SPEARMAN and bool(denser) and bool(sparser)
          and min(denser) > 144.0 > max(sparser))
    # a pentagon on each side of ratio 1 is a condition on which ratios exist, not a number: no bar but
    # categorical_ok, with the rank correlation being defined (it is not for tied spans)
    categorical = bool(denser) and bool(sparser) and bool(np.isfinite(rho))
    bars = (Bar("ratios with a selected pentagon", len(span), ">=", 3, "ratios", step=1),)
    if np.isfinite(rho):  # undefined for fewer than two pentagons (the count above fails then)
        bars += (Bar("Spearman(ratio, neighbour span)", rho, ">=", REPEL_MIN_SPEARMAN),)
    if denser:
        bars += (Bar("smallest neighbour span, feature 0 denser", min(denser), ">", 144.0, "degrees"),)
    if sparser:
        bars += (Bar("largest neighbour span, feature 0 sparser", max(sparser), "<", 144.0, "degrees"),)
    return Measurement(measured={"ratio": r.tolist(), "neighbour_span_deg": span, "spearman": rho}, passed=ok,
                       detail="angle between feature 0's two neighbours; 144 deg in the regular pentagon", bars=bars,
                       categorical_ok=categorical)


def measure_norm_bias(W: np.ndarray, b: np.ndarray) -> Measurement:
    """``||W_i|| (1 - beta_i)`` with ``beta_i = -b_i`` the negative bias, over pentagon solutions."""
    norms = metrics.feature_norms(W)
    beta = -b
    paper = norms * (1 - beta)
    dev = float(np.abs(paper - 1).max())
    alt = float(np.abs(norms**2 - (1 + beta)).max())
    return Measurement(measured={"max_deviation": dev, "norm_times_1_minus_beta": [float(v) for v in paper.ravel()],
                                 "bias": [float(v) for v in b.ravel()], "norm": [float(v) for v in norms.ravel()]},
                       passed=bool(dev <= NORM_BIAS_TOL and (beta > 0).all()),
                       detail=f"b_i < 0 everywhere: {bool((beta > 0).all())}; for comparison max |‖W_i‖² - (1 - b_i)| "
                              f"(output exact at x = 1) = {alt:.3f}",
                       bars=(Bar("largest | ||W_i|| (1 + b_i) - 1 |", dev, "<=", NORM_BIAS_TOL),
                             # threshold 0: b_i is an offset on outputs whose features take values in [0, 1],
                             # so its natural size is 1 (a bias within 0.05 of zero is a near miss)
                             Bar("largest b_i", float(np.max(b)), "<", 0.0, scale=1.0)))


@_claim("pentagon_perturbation.phase_change_ratio",
        "When the varied feature is about 2.5x sparser than the others, the pentagon collapses to a pair of "
        "digons with the sparser feature at zero.",
        "selected geometry switches from digons to pentagon at a relative density in [0.32, 0.5]; in the "
        "digon solutions ||W_0|| < 0.1", "2.5x within a factor 1.25",
        explanation=("The selected geometry switches from digons to the pentagon between relative density 0.25 and "
                     "0.3 (3.7x sparser; the paper: ~2.5x, the window allows up to 3.1x). Restarts are selected on "
                     "the exact expected loss, and the optima of that loss (the best restarts polished by L-BFGS) "
                     "cross at the same ratio as the trained ones (pentagon_perturbation.loss_curves_cross), so it "
                     "is not a training artefact: for this model and loss the pentagon survives to about 1/3.8. The "
                     "paper does not give its recipe for this figure (importances, biases, steps), so what moves its "
                     "crossing to 1/2.5 is not known."))
def _phase(ctx: FigureContext) -> Measurement:
    an = perturbation_analysis(ctx)
    return measure_phase_change(an.models, an.W)


@_claim("pentagon_perturbation.loss_curves_cross",
        "The phase change corresponds to the loss curves of the two geometries crossing over (a first-order "
        "phase change).",
        "L(best pentagon) - L(best digons) changes sign exactly once, at a relative density in [0.32, 0.5]",
        "2.5x within a factor 1.25",
        explanation=("The loss curves cross once, as the paper says, but at relative density 0.263 (3.8x sparser) "
                     "against its ~0.4 (2.5x). The L-BFGS-polished optima of the exact loss cross at 0.263 too, so "
                     "the trained curves are converged here; see phase_change_ratio."))
def _cross(ctx: FigureContext) -> Measurement:
    an = perturbation_analysis(ctx)
    m = measure_crossing(an.models, an.optimised)
    m.detail += f"; trained losses: {an.loss_source}"
    return m


@_claim("pentagon_perturbation.denser_repels_sparser_attracts",
        "Making the varied feature denser makes the others repel from it, giving it more space; making it "
        "sparser lets the others push towards it.",
        "in selected pentagons the angle between feature 0's neighbours rises with its density "
        f"(Spearman >= {REPEL_MIN_SPEARMAN}), above 144 deg when denser and below when sparser",
        f"Spearman {REPEL_MIN_SPEARMAN}")
def _repel(ctx: FigureContext) -> Measurement:
    an = perturbation_analysis(ctx)
    return measure_repel_attract(an.models, an.W)


@_claim("pentagon_perturbation.norm_is_one_over_one_minus_bias",
        "Pentagon solutions sit off the unit circle because the model sets a slight negative bias to cut off "
        "positive interference and compensates with ||W_i|| = 1/(1 - b_i) (b_i the size of the negative bias).",
        "every feature of the selected unperturbed pentagon (ratio 1) has b_i < 0 and "
        f"| ||W_i|| (1 + b_i) - 1 | <= {NORM_BIAS_TOL}", f"{NORM_BIAS_TOL:.0%}",
        explanation=("The unperturbed pentagon has ||W_i|| = 1.13 and b_i = -0.24: the norm exceeds 1 and the bias "
                     "is negative, as the paper says, but ||W_i||(1 + b_i) = 0.86, not 1 (the formula with beta = "
                     "|b_i| would need ||W_i|| = 1.32). ||W_i||^2 = 1 - b_i holds within 0.04: what reconstructing a "
                     "lone active feature asks of ReLU(||W_i||^2 x + b_i) near x = 1. The paper's formula is "
                     "reported as written, not reinterpreted."))
def _norm_bias(ctx: FigureContext) -> Measurement:
    an = perturbation_analysis(ctx)
    sel = an.models[(an.models["cell"] == an.unperturbed_cell) & an.models["selected"]].iloc[0]
    m = measure_norm_bias(an.W[int(sel["instance"])], an.b[int(sel["instance"])])
    m.detail += f"; geometry {sel['geometry']}"
    return m


# --------------------------------------------------------------------------------------------
# Correlated and anticorrelated features (m = 2)


@dataclass(frozen=True)
class CorrelatedRow:
    density: float  # the sparsest density of the experiment's sweep, where it is shown
    sets: FeatureSets
    pairs: list[list[int]]  # the sets of two features
    selected: np.ndarray  # [2, n] the selected model at that density (the claims read it)
    shown: list[tuple[int, float, np.ndarray]]  # (instance, final loss, canonicalised W): lowest loss first


@dataclass(frozen=True)
class CorrelatedAnalysis:
    rows: dict[str, CorrelatedRow]  # "correlated", "anticorrelated", "three pairs"
    per_row: int  # panels per row (the restarts_shown option)
    table: pd.DataFrame


@analysis
def correlated_analysis(ctx: FigureContext) -> CorrelatedAnalysis:
    per_row = int(ctx.option("restarts_shown"))
    rows, table = {}, []
    for label, option in (("correlated", "correlated"), ("anticorrelated", "anticorrelated"),
                          ("three pairs", "three_pairs")):
        run = ctx.run(ctx.option(option))
        sets, c = _sets_of(run), _sparsest_cell(run)
        inst = run.instances_of(c)
        loss = run.loss
        shown = [(int(i), float(loss[i]), metrics.canonicalize_2d(run.arrays["W"][i]))
                 for i in inst[np.argsort(loss[inst], kind="stable")][:per_row]]
        rows[label] = CorrelatedRow(float(run.cells["density"].iloc[c]), sets, _pairs_of(run),
                                    run.params()["W"][c], shown)
        table += [{"row": label, "density": rows[label].density, "instance": i, "loss": li, "feature": f,
                   "set": sets.set_index()[f], "x": Wc[0, f], "y": Wc[1, f]}
                  for i, li, Wc in shown for f in range(Wc.shape[1])]
    return CorrelatedAnalysis(rows, per_row, pd.DataFrame(table))


@figure(
    "correlated_features", section="geometry",
    title="Two-dimensional solutions for pairs of correlated and of anticorrelated features",
    caption=(
        "m = 2 solutions (rotated and flipped to a common orientation), one panel per restart, lowest loss "
        "first (framed). Top: 2 sets of 2 correlated features; middle: 2 sets of 2 anticorrelated features; "
        "bottom: 3 sets of 2 correlated features at the sparsest density of the PCA-collapse sweep. Colour: "
        "set; label: set letter and member. The paper: correlated features prefer orthogonal dimensions, "
        "anticorrelated features opposite directions, and three correlated pairs in two dimensions sit side "
        "by side."
    ),
    options={"correlated": "correlated_2x2", "anticorrelated": "anticorrelated_2x2", "three_pairs": "pca_collapse",
             "restarts_shown": 6},
)
def build_correlated(ctx: FigureContext) -> FigureOutput:
    an = correlated_analysis(ctx)
    cols = max(1, min(an.per_row, max(len(row.shown) for row in an.rows.values())))
    panel = min(1.15, 6.0 / cols)
    fig, axes = new_figure(len(an.rows), cols, figsize=(0.35 + panel * cols, (panel + 0.2) * len(an.rows)),
                           squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.25})
    # one scale for every panel, with room for the labels beyond the longest arrow
    lim = max(1.5, max(float(np.hypot(*Wc).max()) for row in an.rows.values() for _, _, Wc in row.shown) + 0.4)
    for r, (label, row) in enumerate(an.rows.items()):
        for j, ax in enumerate(axes[r]):
            if j >= len(row.shown):
                ax.axis("off")
                continue
            _, loss, Wc = row.shown[j]
            draw_arrows_2d(ax, Wc, _set_colors(row.sets), labels=_set_labels(row.sets), lim=lim, lw=1.2,
                           label_size=7, label_sep=0.42 * lim / 1.5)
            ax.set_title(f"loss {loss:.3g}", fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel(f"{label}\n$1-S = {row.density:.3g}$", fontsize=7)
                ax.spines[:].set(visible=True, linewidth=1.2)  # framed: the lowest loss
    fig.subplots_adjust(left=0.3 / (0.35 + panel * cols), right=0.995, top=0.94, bottom=0.01)
    return FigureOutput(fig, an.table)


def measure_sets(W: np.ndarray, sets: FeatureSets, want: str) -> Measurement:
    """Within-set cosines of a selected solution: "orthogonal" (|cos| < 0.1) or "antipodal" (cos < -0.9);
    every feature represented."""
    C = cosines(W)
    within = [float(C[m[0], m[1]]) for m in set_members(sets) if m.size == 2]
    ok = all(abs(c) < ORTHOGONAL_COS if want == "orthogonal" else c < ANTIPODAL_COS for c in within)
    bars = (Bar("smallest ||W_i||", float(metrics.feature_norms(W).min()), ">", REPRESENTED),)
    if within and want == "orthogonal":  # the worst set
        bars += (Bar("largest |cos| within a set", max(map(abs, within)), "<", ORTHOGONAL_COS),)
    elif within:
        bars += (Bar("largest cos within a set", max(within), "<", ANTIPODAL_COS),)
    return Measurement(measured={"within_set_cos": within, "represented": int(represented(W).size)},
                       passed=bool(ok and represented(W).size == W.shape[1]),
                       detail="selected (lowest-loss) model at the sparsest density", bars=bars)


@_claim("correlated_features.correlated_orthogonal",
        "Models prefer to represent correlated features in orthogonal dimensions (2 sets of 2 correlated "
        "features in m = 2).",
        "all four features represented; |cos| < 0.1 within each correlated set", "cos 0.1")
def _corr_orth(ctx: FigureContext) -> Measurement:
    row = correlated_analysis(ctx).rows["correlated"]
    return measure_sets(row.selected, row.sets, "orthogonal")


@_claim("correlated_features.anticorrelated_antipodal",
        "Models prefer to represent anticorrelated features in opposite directions (2 sets of 2 "
        "anticorrelated features in m = 2).",
        "all four features represented; cos < -0.9 within each anticorrelated set", "cos -0.9")
def _anti(ctx: FigureContext) -> Measurement:
    row = correlated_analysis(ctx).rows["anticorrelated"]
    return measure_sets(row.selected, row.sets, "antipodal")


@_claim("correlated_features.side_by_side",
        "When correlated features cannot be orthogonal they are arranged side by side (3 sets of 2 "
        "correlated features in m = 2 form a hexagon with each pair adjacent).",
        "all six features represented, no pair collapsed, each pair's members angular neighbours",
        "collapsed = cos > 0.9")
def _side(ctx: FigureContext) -> Measurement:
    row = correlated_analysis(ctx).rows["three pairs"]
    W, pairs = row.selected, row.pairs
    gaps = angular_gaps(W, represented(W))
    adjacent = [adjacent_on_circle(W, a, b) for a, b in pairs]
    return Measurement(measured={"side_by_side": side_by_side(W, pairs), "gaps_deg": gaps.tolist(),
                                 "adjacent": adjacent},
                       passed=side_by_side(W, pairs), detail=f"selected model at 1-S = {row.density:.3g}",
                       bars=side_by_side_bars(W, pairs), categorical_ok=all(adjacent))


# --------------------------------------------------------------------------------------------
# Local almost-orthogonal bases


@dataclass(frozen=True)
class LocalAnalysis:
    W: np.ndarray  # [m, n] the selected model at the sparsest density
    density: float
    gram: np.ndarray  # [n, n] W^T W
    bounds: np.ndarray  # where lines separate the sets in W^T W
    within: np.ndarray  # [n] per feature: mean |cos| to the other members of its set
    across: np.ndarray  # [n] per feature: mean |cos| to the features of the other sets
    stats: dict[str, float]  # local_basis_stats (the claim's)
    table: pd.DataFrame


def local_basis_stats(W: np.ndarray, sets: FeatureSets) -> dict[str, float]:
    """Mean |cos| within correlated sets and across sets, and how many features are represented."""
    C = np.abs(cosines(W))
    idx = np.asarray(sets.set_index())
    same = idx[:, None] == idx[None, :]
    off = ~np.eye(len(idx), dtype=bool)
    return {"within_mean_abs_cos": float(C[same & off].mean()), "across_mean_abs_cos": float(C[~same].mean()),
            "within_max_abs_cos": float(C[same & off].max()), "represented": int(represented(W).size),
            "m": int(W.shape[0])}


@analysis
def local_analysis(ctx: FigureContext) -> LocalAnalysis:
    run = ctx.run(ctx.experiments[0])
    sets, c = _sets_of(run), _sparsest_cell(run)
    W = run.params()["W"][c]
    G = metrics.gram(W)
    n = G.shape[0]
    C, idx = np.abs(cosines(W)), np.asarray(sets.set_index())
    same, other = (idx[:, None] == idx[None, :]) & ~np.eye(n, dtype=bool), idx[:, None] != idx[None, :]
    within, across = (C * same).sum(1) / np.maximum(same.sum(1), 1), (C * other).sum(1) / np.maximum(other.sum(1), 1)
    rows = [{"quantity": "WtW", "i": i, "j": j, "value": G[i, j]} for i in range(n) for j in range(n)]
    rows += [{"quantity": "mean_abs_cos_same_set", "i": i, "j": -1, "value": within[i]} for i in range(n)]
    rows += [{"quantity": "mean_abs_cos_other_set", "i": i, "j": -1, "value": across[i]} for i in range(n)]
    return LocalAnalysis(W, float(run.cells["density"].iloc[c]), G,
                         np.cumsum([size for _, size in sets.sets])[:-1] - 0.5, within, across,
                         local_basis_stats(W, sets), pd.DataFrame(rows))


@figure(
    "local_orthogonal_bases", section="geometry",
    title="W^T W and within-set and across-set |cos| of two sets of correlated features",
    caption=(
        "W^T W of a ReLU-output model with two sets of correlated features (lines separate the sets) and the "
        "per-feature |cos| to members of the same set and of the other set. The paper: correlated sets form "
        "local almost-orthogonal bases, nearly orthogonal within a set although the model as a whole "
        "represents more features than dimensions (superposition across the sets)."
    ),
)
def build_local(ctx: FigureContext) -> FigureOutput:
    an = local_analysis(ctx)
    m, n = an.W.shape
    fig, (ax, ax2) = new_figure(1, 2, figsize=(7.0, 3.3), gridspec_kw={"width_ratios": [1.1, 1]})
    im = ax.imshow(an.gram, cmap=GRAM_CMAP, norm=mcolors.Normalize(-1, 1), interpolation="nearest")
    for x in an.bounds:
        ax.axhline(x, color=PALETTE["ink"], lw=0.8)
        ax.axvline(x, color=PALETTE["ink"], lw=0.8)
    ax.set(xticks=[], yticks=[], title=f"W$^T$W (n = {n}, m = {m}, 1-S = {an.density:.3g})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax2.bar(np.arange(n) - 0.2, an.within, 0.4, color=PALETTE["orthogonal"], label="same set")
    ax2.bar(np.arange(n) + 0.2, an.across, 0.4, color=PALETTE["superposed"], label="other set")
    ax2.set(xlabel="feature", ylabel="mean |cos| to other features")
    ax2.legend(frameon=False)
    fig.tight_layout()
    return FigureOutput(fig, an.table)


@_claim("local_orthogonal_bases.orthogonal_within_sets",
        "In a larger model with two sets of correlated features, the correlated sets considered in isolation "
        "are (nearly) orthogonal even though the model as a whole is in superposition.",
        f"more features represented than dimensions; mean |cos| within sets <= {LOCAL_ORTHO_MEAN_COS}",
        f"mean |cos| {LOCAL_ORTHO_MEAN_COS}")
def _local(ctx: FigureContext) -> Measurement:
    s = local_analysis(ctx).stats
    ok = s["represented"] > s["m"] and s["within_mean_abs_cos"] <= LOCAL_ORTHO_MEAN_COS
    return Measurement(measured=s, passed=ok, detail="selected model at the sparsest density",
                       bars=(Bar("features represented", s["represented"], ">", s["m"], "features", step=1),
                             Bar("mean |cos| within sets", s["within_mean_abs_cos"], "<=", LOCAL_ORTHO_MEAN_COS)))


# --------------------------------------------------------------------------------------------
# Collapse of correlated pairs into their principal components


@dataclass(frozen=True)
class PCAAnalysis:
    levels: pd.DataFrame  # per density, ascending: the selected model's pair states (pca_levels)
    solutions: list[np.ndarray]  # the selected model at each level, canonicalised, in the order of levels
    colors: list[Any]  # one per feature, by set
    pairs: list[list[int]]
    dense: np.ndarray  # [2, n] the selected model at the densest cell (the dense_pca_like claim's)
    dense_density: float
    table: pd.DataFrame


def pca_levels(run: Any) -> pd.DataFrame:
    """Per density (ascending): collapsed / dropped / separate pairs and side-by-side of the selected model,
    and what side by side rests on: its smallest feature norm (above the represented threshold) and whether
    each pair's members are angular neighbours (``adjacent``)."""
    pairs = _pairs_of(run)
    dens = run.cells["density"].to_numpy(dtype=float)
    W = run.params()["W"]
    rows = []
    for c in np.argsort(dens, kind="stable"):
        states = [pair_state(W[c], a, b) for a, b in pairs]
        rows.append({"cell": int(c), "density": dens[c], "collapsed": states.count("collapsed"),
                     "dropped": states.count("dropped"), "separate": states.count("separate"),
                     "side_by_side": side_by_side(W[c], pairs),
                     "min_norm": float(metrics.feature_norms(W[c]).min()),
                     "adjacent": all(adjacent_on_circle(W[c], a, b) for a, b in pairs)})
    return pd.DataFrame(rows)


@analysis
def pca_analysis(ctx: FigureContext) -> PCAAnalysis:
    run = ctx.run(ctx.experiments[0])
    levels = pca_levels(run)
    W = run.params()["W"]
    solutions = [metrics.canonicalize_2d(W[c]) for c in levels["cell"]]
    rows = [{"kind": "solution", "density": d, "feature": f, "x": Wc[0, f], "y": Wc[1, f]}
            for d, Wc in zip(levels["density"], solutions) for f in range(Wc.shape[1])]
    c = int(np.argmax(run.cells["density"].to_numpy()))
    shown = levels.drop(columns=["min_norm", "adjacent"]).assign(kind="levels")  # the claims' inputs, not drawn
    table = pd.concat([pd.DataFrame(rows), shown], ignore_index=True)
    return PCAAnalysis(levels, solutions, _set_colors(_sets_of(run)), _pairs_of(run), W[c],
                       float(run.cells["density"].iloc[c]), table)


@figure(
    "pca_collapse", section="geometry",
    title="Three correlated pairs in two dimensions across density",
    caption=(
        "Six features in three correlated pairs (colours), m = 2, selected model at each density (canonicalised). "
        "Bottom: number of pairs represented by their principal component (both columns parallel, cos > 0.9) "
        "against 1-S, with the paper's approximate regime boundaries (0.05, 0.15, 0.2, 0.5) dashed. The paper: as "
        "density grows the pairs progressively collapse into their principal components."
    ),
)
def build_pca(ctx: FigureContext) -> FigureOutput:
    an = pca_analysis(ctx)
    levels = an.levels
    cols = int(np.ceil(len(levels) / 2))
    fig = plt.figure(figsize=(1.35 * cols, 5.0))
    gs = fig.add_gridspec(3, cols, height_ratios=[1, 1, 1.1])
    for j, (Wc, d) in enumerate(zip(an.solutions, levels["density"])):
        _draw_canonical(fig.add_subplot(gs[j // cols, j % cols]), Wc, an.colors, f"1-S={d:.3g}")
    ax = fig.add_subplot(gs[2, :])
    ax.step(levels["density"], levels["collapsed"], where="mid", color=PALETTE["ink"])
    ax.plot(levels["density"], levels["collapsed"], "o", ms=3, color=PALETTE["ink"])
    for x in (NO_COLLAPSE_BELOW, TWO_COLLAPSED_FROM, 0.2, MOST_PCA_FROM):
        ax.axvline(x, ls="--", lw=0.7, color=PALETTE["theory"])
    ax.text(NO_COLLAPSE_BELOW * 1.04, 3.0, "paper's approximate\nregime boundaries", fontsize=6, va="top",
            color=PALETTE["theory"])
    ax.set_xscale("log")
    lo, hi = levels["density"].min(), levels["density"].max()
    ticks = [v for v in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if lo <= v <= hi]
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set(yticks=[0, 1, 2, 3], xlabel="feature density 1-S", ylabel="collapsed pairs")
    fig.tight_layout()
    return FigureOutput(fig, an.table)


def measure_no_collapse(levels: pd.DataFrame) -> Measurement:
    sparse = levels[levels["density"] <= NO_COLLAPSE_BELOW / REGIME_FACTOR]
    ok = len(sparse) > 0 and bool(sparse["side_by_side"].all())
    # side by side at every sparse level: the worst level's numbers (adjacency has no bar, see side_by_side_bars,
    # but is categorical_ok, as is there being a sparse level at all)
    where = f"densities <= {NO_COLLAPSE_BELOW / REGIME_FACTOR:.2g}"
    bars = () if sparse.empty else (
        Bar(f"smallest ||W_i||, {where}", float(sparse["min_norm"].min()), ">", REPRESENTED),
        Bar(f"most collapsed pairs, {where}", int(sparse["collapsed"].max()), "<", 1, "pairs", step=1))
    return Measurement(measured={f"{d:.3g}": bool(s) for d, s in zip(sparse["density"], sparse["side_by_side"])},
                       passed=ok, detail="side-by-side hexagon (no collapse) at every density <= 0.05/1.5", bars=bars,
                       categorical_ok=not sparse.empty and bool(sparse["adjacent"].all()))


def measure_progressive(levels: pd.DataFrame) -> Measurement:
    """Pairs leave the side-by-side arrangement one after another: the number of pairs no longer
    represented separately (collapsed or dropped) never falls with density and passes through 1 and
    2; the first collapse, and the first two, happen near the paper's densities."""
    merged = (levels["collapsed"] + levels["dropped"]).tolist()
    collapsed = levels["collapsed"].tolist()
    dens = levels["density"].to_numpy()

    def first(k: int) -> float | None:
        hit = [d for d, c in zip(dens, collapsed) if c >= k]
        return float(hit[0]) if hit else None

    d1, d2 = first(1), first(2)
    f = REGIME_FACTOR
    ok = (count_dips(merged) == 0 and 1 in merged and 2 in merged and d1 is not None and d2 is not None
          and ONE_COLLAPSED_FROM / f <= d1 <= ONE_COLLAPSED_FROM * f
          and TWO_COLLAPSED_FROM / f <= d2 <= TWO_COLLAPSED_FROM * f)
    # passing through 1 and 2, and a first collapse (and two) existing at all, are conditions on which counts
    # occur: no bar, categorical_ok
    bars = (Bar("largest fall in pairs collapsed or dropped", count_dips(merged), "<", 1, "pairs", step=1),)
    if d1 is not None:
        bars += _window_bars("density of the first collapse", d1, (ONE_COLLAPSED_FROM / f, ONE_COLLAPSED_FROM * f),
                             "1-S")
    if d2 is not None:
        bars += _window_bars("density of the first two collapses", d2,
                             (TWO_COLLAPSED_FROM / f, TWO_COLLAPSED_FROM * f), "1-S")
    return Measurement(measured={"collapsed": collapsed, "collapsed_or_dropped": merged, "density": dens.tolist(),
                                 "first_one": d1, "first_two": d2},
                       passed=ok, detail="pairs of the selected model, sparse to dense", bars=bars,
                       categorical_ok=1 in merged and 2 in merged and d1 is not None and d2 is not None)


def measure_dense_pca(W: np.ndarray, pairs: Sequence[Sequence[int]]) -> Measurement:
    states = [pair_state(W, a, b) for a, b in pairs]
    dirs = [W[:, a] + W[:, b] for (a, b), s in zip(pairs, states) if s == "collapsed"]
    C = cosines(np.stack(dirs, axis=1)) if dirs else np.zeros((0, 0))
    off = np.abs(C[~np.eye(len(dirs), dtype=bool)]) if len(dirs) > 1 else np.zeros(0)
    ok = "separate" not in states and len(dirs) >= 1 and bool((off < ORTHOGONAL_COS).all())
    worst = float(off.max()) if off.size else 0.0
    # for context: the share of ||W||_F^2 along the pairs' minor components (a - b)/sqrt 2, which PCA ignores
    minor = sum(float(np.sum((W[:, a] - W[:, b]) ** 2)) / 2 for a, b in pairs) / max(float(np.sum(W**2)), 1e-12)
    bars = (Bar("separate pairs", states.count("separate"), "<", 1, "pairs", step=1),
            Bar("collapsed pairs", len(dirs), ">=", 1, "pairs", step=1))
    if off.size:  # orthogonality needs two collapsed directions
        bars += (Bar("largest |cos| between collapsed directions", worst, "<", ORTHOGONAL_COS),)
    return Measurement(measured={"pairs": states, "max_abs_cos_between_components": worst,
                                 "minor_component_share": minor}, passed=ok, bars=bars,
                       detail="every pair collapsed or dropped; collapsed directions mutually orthogonal (the "
                              "minor-component share says how much of W lies outside the pairs' principal "
                              "components)")


@_claim("pca_collapse.sparse_no_collapse",
        "In the very sparse regime (1-S < ~0.05) the six features form a hexagon with correlated features side by "
        "side and no pair collapsed.",
        "side by side (all represented, no collapse, pairs adjacent) at every density <= 0.033",
        "the paper's 0.05 within a factor 1.5")
def _pca_sparse(ctx: FigureContext) -> Measurement:
    return measure_no_collapse(pca_analysis(ctx).levels)


@_claim("pca_collapse.collapse_one_after_another",
        "As density increases, the pairs progressively collapse into their principal components one after "
        "another: one set from 1-S ~ 0.05, two sets from ~0.15.",
        "the number of pairs collapsed or dropped never falls with density and passes through 1 and 2; the "
        "first collapsed pair appears at a density in [0.033, 0.075], the first two in [0.1, 0.225]",
        "regime boundaries within a factor 1.5",
        explanation=("The order reproduces (0, 1, 2, 3 pairs collapsed, never falling), but the first collapse "
                     "appears at 1-S = 0.08, just above the window's 0.075. At 0.06 the collapsed and uncollapsed "
                     "solutions differ by 1% in exact expected loss (0.002009 against 0.001989, the uncollapsed "
                     "lower) and restarts are selected on the exact loss; a loss sampled on 65,536 examples ranks "
                     "them the other way and selected a collapsed model at 0.06 in earlier builds. The transition "
                     "lies between 0.06 and 0.08; the paper's ~0.05 is read off its figure. Seed 2 reproduces it "
                     "(fragile): the verdict turns on one grid cell."))
def _pca_progressive(ctx: FigureContext) -> Measurement:
    return measure_progressive(pca_analysis(ctx).levels)


MINOR_SHARE_MAX = (1 - COLLAPSE_COS) / 2  # a pair collapsed at cos 0.9 keeps 5 % of its energy off its PC


def measure_principal_components(W: np.ndarray, pairs: Sequence[Sequence[int]]) -> Measurement:
    """Every pair represented by its principal component (a + b)/sqrt 2: no pair separate, and the share of
    ``||W||_F^2`` along the minor components (a - b)/sqrt 2 at most that of a pair collapsed at cos 0.9."""
    states = [pair_state(W, a, b) for a, b in pairs]
    minor = sum(float(np.sum((W[:, a] - W[:, b]) ** 2)) / 2 for a, b in pairs) / max(float(np.sum(W**2)), 1e-12)
    ok = "separate" not in states and minor <= MINOR_SHARE_MAX
    return Measurement(measured={"pairs": states, "minor_component_share": minor}, passed=bool(ok),
                       bars=(Bar("separate pairs", states.count("separate"), "<", 1, "pairs", step=1),
                             Bar("share of ||W||_F^2 along the minor components", minor, "<=", MINOR_SHARE_MAX)),
                       detail="pairs of the densest model collapsed onto (or dropped along) their principal components")


PCA_AUDIT = ("Revised after review (issue 12). The first reading (pca_collapse.dense_pca_like_strict) also asked the "
             "collapsed directions to be mutually orthogonal. With three pairs in m = 2 that holds only if the model "
             "drops a whole pair, which the paper does not say; what it says is that pairs are represented by their "
             "principal components. This reading asks exactly that: every pair collapsed or dropped, and at most "
             "5 % of ||W||_F^2 off the principal components (the share a pair collapsed at the module's cos 0.9 "
             "keeps). Whether the components themselves are in superposition is the strict reading's question.")


@_claim("pca_collapse.dense_pca_like",
        "In the dense regime (1-S > ~0.5) the solution is equivalent to PCA: pairs are represented by their "
        "principal components.",
        "at the densest level no pair separate, and at most 5% of ||W||_F^2 along the pairs' minor components "
        "(a - b)/sqrt 2", "5% (a pair collapsed at cos 0.9)", audit=PCA_AUDIT)
def _pca_dense(ctx: FigureContext) -> Measurement:
    an = pca_analysis(ctx)
    m = measure_principal_components(an.dense, an.pairs)
    m.detail += f" (1-S = {an.dense_density:.3g})"
    return m


@_claim("pca_collapse.dense_pca_like_strict",
        "(Strict reading, kept from before the audit.) In the dense regime the solution is PCA without "
        "superposition: pairs collapsed onto their principal components, and those directions mutually orthogonal.",
        "at the densest level every pair is collapsed or dropped and the collapsed directions are orthogonal "
        "(|cos| < 0.1)", "cos 0.1", audit="The first reading; see pca_collapse.dense_pca_like for why it was revised.")
def _pca_dense_strict(ctx: FigureContext) -> Measurement:
    an = pca_analysis(ctx)
    m = measure_dense_pca(an.dense, an.pairs)
    m.detail += f" (1-S = {an.dense_density:.3g})"
    return m
