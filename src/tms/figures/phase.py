"""Phase diagrams of the smallest toy models and the loss of their mass training
(paper: "Superposition as a Phase Change"). One typed analysis per figure, computed once per
context and read by the build and the claims: ``phase_diagram_2x1`` / ``_3x2`` draw
:class:`PhaseAnalysis` (:func:`phase_analysis`: two theories beside maps of trained models on the
same (relative importance r, density s) grid); ``phase_training_loss`` draws :class:`LossAnalysis`
(:func:`training_loss`).

Two theories. The *fixed-configuration* theory (:mod:`tms.theory`, the paper's and Wattenberg's) is
the lowest closed-form loss of candidates with unit norms and zero bias for represented features. The
*optimised* theory (:mod:`tms.phase_theory`) keeps each candidate's topology but minimises the exact
expected loss over its norms, biases and angles, and classifies the optimal weights with the same
classifier as the trained models: it is the map training would produce if every restart found the
global minimum. Every agreement claim names the theory its verdict uses.

Empirical-map protocol. The paper trains "ten models for each point and average[s] over the
results, discarding the model with the highest loss". Averaging weights is meaningless (``W`` and
``-W`` are the same model), so here each of the R - 1 kept models of a cell is classified
(:func:`tms.theory.classify_solution`, sign-invariant), the one-hot classes are averaged, and the
cell takes the class with the largest mean (a majority vote; ties go to the class of the lowest-loss
kept model). The lowest-loss model's own class (the "selected" map) is reported alongside.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tms import phase_theory, theory
from tms.figures.base import PALETTE, FigureContext, FigureOutput, analysis, figure
from tms.findings import Bar, Measurement, claim
from tms.models import ModelKind

#: Colour of each label: -1 (matches no candidate) first, then the candidates in label order.
LABEL_COLOURS = {
    2: ["#eeeeee", "#9e9e9e", PALETTE["neg"], PALETTE["pos"]],
    3: ["#eeeeee", "#9e9e9e", PALETTE["neg"], "#e08214", PALETTE["pos"]],
}
#: ... and of the optimised theory's extra 2-in-1 class, "confused" (label 3; drawn only where it occurs).
CONFUSED_COLOUR = "#7b3294"
#: Line of the optimised theory's boundary: white with an ink outline, visible on every class colour and
#: apart from the fixed theory's dashed ink.
OPT_LINE = {"color": "white", "lw": 1.0, "ls": "-",
            "path_effects": [patheffects.Stroke(linewidth=2.2, foreground=PALETTE["ink"]), patheffects.Normal()]}
#: The paper's sweep: r from 0.1 to 10, density from 1 to 0.01 (both log-spaced).
R_RANGE, S_RANGE = (0.1, 10.0), (0.01, 1.0)
#: The linear model's only boundary: r = 1 at every density.
LINEAR_BOUNDARY = [("linear: r = 1", np.array([1.0, 1.0]), np.array(S_RANGE))]
#: A priori tolerances (fixed from the paper's wording before any result was seen; see the claims).
AGREE_MIN = 0.90  # fraction of cells away from a boundary whose empirical class is the theory's
BOUNDARY_TOL_DECADES = 0.05  # |log10(s_empirical / s*)|, ~12 % in density: invisible on a 2-decade axis
FLAT_SLOPE_MAX = 0.1  # |d log10 s* / d log10 r| for "flat" (the r >= 1 curve of 2x1 has slope ~ -0.55)
JUMP_FRACTION_MIN = 0.5  # share of a column's change in ||W_extra|| that happens in one grid step
MC_Z_MAX = 4.0  # closed-form loss vs Monte Carlo, in standard errors
KINK_MIN = 0.1  # relative jump of d(min loss)/ds at s*(r)
#: Agreement of the trained majority map with the *optimised* theory away from its boundaries: issue 11's
#: stated expectation "if training is right" (2 in 1: 98 %, 3 in 2: 95 %), not tuned to any result.
OPT_AGREE_MIN = {2: 0.98, 3: 0.95}
#: Coarse grid of the bias-free (McGrath's) 2-in-1 optimisation reported by the confused-feature claim.
BIAS_FREE_GRID = 24


# --------------------------------------------------------------------------------------------
# Analysis helpers (pure numpy; unit-tested on constructed inputs)


def kept_mask(loss: np.ndarray) -> np.ndarray:
    """``[C, R]`` bool: every restart except the highest-loss one of each cell (all if R = 1)."""
    loss = np.asarray(loss, dtype=float)
    keep = np.ones(loss.shape, dtype=bool)
    if loss.shape[1] > 1:
        keep[np.arange(loss.shape[0]), np.argmax(loss, axis=1)] = False
    return keep


def vote(labels: np.ndarray, loss: np.ndarray, n_candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority class of the kept models of every cell and the mean one-hot class.

    ``labels`` and ``loss`` are ``[C, R]``; labels run from -1 (no candidate) to
    ``n_candidates - 1``. Returns ``(majority [C], fractions [C, n_candidates + 1])`` where column
    ``k + 1`` is the share of kept models with label ``k``. Ties go to the tied class that holds
    the lowest-loss kept model, else to the lowest label.
    """
    labels = np.asarray(labels)
    keep = kept_mask(loss)
    onehot = (labels[..., None] == np.arange(-1, n_candidates)) & keep[..., None]
    frac = onehot.sum(1) / keep.sum(1, keepdims=True)
    best = np.argmin(np.where(keep, loss, np.inf), axis=1)
    best_label = labels[np.arange(labels.shape[0]), best]
    top = frac.max(1, keepdims=True)
    tied = np.isclose(frac, top)
    majority = np.argmax(tied, axis=1) - 1
    prefer = tied[np.arange(len(best_label)), best_label + 1]
    return np.where(prefer, best_label, majority), frac


def selected_labels(labels: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Label of the lowest-loss model of every cell: ``[C]``."""
    labels = np.asarray(labels)
    return labels[np.arange(labels.shape[0]), np.argmin(loss, axis=1)]


def near_boundary(theory_grid: np.ndarray) -> np.ndarray:
    """Cells within one grid step (8-neighbourhood) of a cell with a different theoretical class."""
    g = np.asarray(theory_grid)
    near = np.zeros(g.shape, dtype=bool)
    padded = np.pad(g, 1, mode="edge")
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            near |= padded[1 + di: 1 + di + g.shape[0], 1 + dj: 1 + dj + g.shape[1]] != g
    return near


def agreement(empirical: np.ndarray, theory_grid: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Fraction of cells (outside ``exclude``) whose empirical class equals the theory's."""
    ok = np.asarray(empirical) == np.asarray(theory_grid)
    if exclude is not None:
        ok = ok[~np.asarray(exclude)]
    return float(ok.mean()) if ok.size else float("nan")


def step_threshold(density: np.ndarray, below: np.ndarray) -> float:
    """Density threshold t of the best step fit "``below`` iff s < t" along one column.

    ``below`` marks the cells of the low-density class. Candidate thresholds are the geometric
    midpoints between adjacent densities (and beyond both ends); the one with the fewest
    misfitting cells wins (the log-middle of the winners on ties). NaN if the column has a single
    class (no transition to locate).
    """
    s = np.asarray(density, dtype=float)
    b = np.asarray(below, dtype=bool)
    if b.all() or not b.any():
        return float("nan")
    order = np.argsort(s)
    s, b = s[order], b[order]
    ls = np.log(s)
    cuts = np.concatenate([[ls[0] - 1.0], (ls[1:] + ls[:-1]) / 2, [ls[-1] + 1.0]])
    # errors for cut between k-1 and k: non-below cells under the cut + below cells above it
    err = np.array([(~b[:k]).sum() + b[k:].sum() for k in range(len(s) + 1)])
    best = np.flatnonzero(err == err.min())
    return float(np.exp(cuts[best].mean()))


def boundary_offsets(density: np.ndarray, r: np.ndarray, below_grid: np.ndarray,
                     predicted: np.ndarray) -> np.ndarray:
    """``log10(s_empirical / s_predicted)`` per r column (``below_grid`` is ``[n_s, n_r]``)."""
    out = np.array([step_threshold(density, below_grid[:, j]) for j in range(len(r))])
    return np.log10(out / np.asarray(predicted, dtype=float))


def two_class_offsets(density: np.ndarray, labels: np.ndarray, above: int, below: int,
                      predicted: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``labels [n_s, n_cols]``: ``log10(s_empirical / s_predicted)`` of the boundary between
    exactly two classes, ``below`` (the low-density class) and ``above``, fitted (:func:`step_threshold`) on
    the cells of that column whose class is one of the two; cells of any other class are left out.

    Returns ``(offsets [n_cols], excluded [n_cols])``: NaN where the column's remaining cells hold a single
    class (no transition), and the number of cells left out of each column.
    """
    labels = np.asarray(labels)
    density = np.asarray(density, dtype=float)
    pred = np.broadcast_to(np.asarray(predicted, dtype=float), (labels.shape[1],))
    keep = np.isin(labels, (above, below))
    t = np.array([step_threshold(density[keep[:, j]], labels[keep[:, j], j] == below)
                  for j in range(labels.shape[1])])
    return np.log10(t / pred), (~keep).sum(0)


def linear_phase_map(n_features: int, r: np.ndarray) -> np.ndarray:
    """Optimal class of the *linear* model: it keeps the features with the largest importance x
    variance, so the extra feature is dropped for r < 1 and dedicated for r > 1 (an antipodal
    pair, loss (1 + r) x var, never wins). r = 1 is degenerate (every direction is optimal)."""
    return np.where(np.asarray(r) < 1, 0, 1)


def discontinuity(density: np.ndarray, norm_grid: np.ndarray) -> np.ndarray:
    """Per r column: the largest change of ``norm_grid`` between adjacent densities as a share of
    the column's range (1 = all of the change happens in one grid step). NaN for flat columns."""
    order = np.argsort(density)
    g = np.asarray(norm_grid, dtype=float)[order]
    span = g.max(0) - g.min(0)
    step = np.abs(np.diff(g, axis=0)).max(0)
    return np.where(span > 0.2, step / np.where(span > 0, span, 1.0), np.nan)


def boundary_curves(n_features: int, n_points: int = 400) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The theoretical phase boundaries as ``(name, r, s)`` polylines over the paper's ranges."""
    lo = np.geomspace(R_RANGE[0], 1.0, n_points)
    hi = np.geomspace(1.0, R_RANGE[1], n_points)
    curves = [("s*(r), r <= 1", lo, theory.boundary(n_features, lo)),
              ("s*(r), r >= 1", hi, theory.boundary(n_features, hi))]
    top = 4 / 7 if n_features == 2 else S_RANGE[0]
    curves.append(("r = 1", np.array([1.0, 1.0]), np.array([top, S_RANGE[1]])))
    return curves


def stuck_share(labels: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """``[C]``: share of a cell's R restarts (all of them) whose class differs from that of its
    lowest-loss restart ("stuck restarts": they ended in another basin than the cell's best)."""
    labels = np.asarray(labels)
    return (labels != selected_labels(labels, loss)[:, None]).mean(1)


def density_decade(density: np.ndarray) -> np.ndarray:
    """Decade index k of each density: ``10^-(k+1) <= s < 10^-k`` (s = 1 in decade 0)."""
    return np.maximum(np.floor(-np.log10(np.asarray(density, dtype=float)) - 1e-9), 0).astype(int)


def decade_name(k: int) -> str:
    return f"[{10.0 ** -(k + 1):g}, {10.0 ** -k:g}" + ("]" if k == 0 else ")")


def stuck_by_decade(pm: PhaseMap) -> dict[str, float]:
    """Mean stuck share of the map's cells per density decade (:func:`density_decade`)."""
    k = density_decade(pm.density)
    return {decade_name(d): float(pm.stuck[k == d].mean()) for d in np.unique(k)}


def antipodal_classes(n_features: int) -> tuple[int, ...]:
    """Labels whose models hold an antipodal pair (2 in 1: superposition; 3 in 2: either pair)."""
    return (2,) if n_features == 2 else (2, 3)


def optimised_boundary(n_features: int, density: np.ndarray, r: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per r column, the density below which the optimised map's class is an antipodal pair (best
    step fit, :func:`step_threshold`; NaN without a transition): the optimised theory's s*(r)."""
    below = np.isin(labels, antipodal_classes(n_features))
    return np.array([step_threshold(density, below[:, j]) for j in range(len(r))])


# --------------------------------------------------------------------------------------------
# One experiment's map, and the analysis of a phase diagram


@dataclass(frozen=True)
class PhaseMap:
    """Empirical classes of one trained experiment on its (density x r) grid."""

    name: str
    kind: ModelKind
    density: np.ndarray  # [n_s] ascending
    r: np.ndarray  # [n_r] ascending
    majority: np.ndarray  # [n_s, n_r]
    selected: np.ndarray  # [n_s, n_r]
    fractions: np.ndarray  # [n_s, n_r, K + 1]
    extra_norm: np.ndarray  # [n_s, n_r] median ||W_extra|| over kept models
    model_labels: np.ndarray  # [C, R] every model's class
    kept: np.ndarray  # [C, R]
    restarts: int
    stuck: np.ndarray  # [n_s, n_r] share of the R restarts whose class differs from the lowest-loss one's


def phase_map(run: Any, n_features: int) -> PhaseMap:
    """Classify every model of a phase-diagram run and vote per cell (see the module docstring)."""
    cells = run.cells
    C, R = len(cells), run.restarts
    labels = theory.classify_solution(run.arrays["W"], n_features).reshape(C, R)
    loss = np.asarray(run.loss, dtype=float).reshape(C, R)
    K = len(theory.candidate_names(n_features))
    maj, frac = vote(labels, loss, K)
    sel = selected_labels(labels, loss)
    keep = kept_mask(loss)
    norm = np.linalg.norm(run.arrays["W"][:, :, -1], axis=1).reshape(C, R)
    med = np.array([np.median(norm[c][keep[c]]) for c in range(C)])
    s_vals, r_vals = np.unique(cells["density"]), np.unique(cells["relative_importance"])
    i = np.searchsorted(s_vals, cells["density"].to_numpy())
    j = np.searchsorted(r_vals, cells["relative_importance"].to_numpy())

    def grid(v: np.ndarray) -> np.ndarray:
        out = np.zeros((len(s_vals), len(r_vals)) + v.shape[1:], dtype=v.dtype)
        out[i, j] = v
        return out

    stuck = stuck_share(labels, loss)
    return PhaseMap(run.name, run.kind, s_vals, r_vals, grid(maj), grid(sel), grid(frac), grid(med),
                    labels, keep, R, grid(stuck))


def phase_table(n_features: int, maps: dict[str, PhaseMap],
                opt: phase_theory.OptimisedTheory | None = None) -> pd.DataFrame:
    """One row per cell (theory, every map's majority/selected class and vote shares) plus the
    boundary polylines drawn (rows with ``kind = boundary``). Maps on the same (density x r) grid
    share rows; a map on another grid (the 1,000,000-model override trains only the ReLU map
    finer) gets rows of its own, with ``grid`` naming the experiment whose grid they are.

    Appended after those (so the columns and rows above keep their content): on the ReLU map's grid,
    the optimised theory ``opt`` (class ``optimised_theory``, its ``optimised_near_boundary``, the
    minimiser's ``optimised_topology``, weights and biases, and every topology's optimised and fixed
    loss, summed over features); every map's ``<kind>_stuck_share`` per cell; the optimised boundary
    (``kind = boundary``, curve "optimised s*(r)"); and the stuck-restart shares per density decade
    (``kind = stuck_restarts``)."""
    names = ("none",) + theory.candidate_names(n_features)
    groups: dict[tuple, list[tuple[str, PhaseMap]]] = {}
    for tag, pm in maps.items():
        groups.setdefault((pm.density.tobytes(), pm.r.tobytes()), []).append((tag, pm))
    frames = []
    for members in groups.values():
        first = members[0][1]
        ss, rr = np.meshgrid(first.density, first.r, indexing="ij")
        th = theory.phase_map(n_features, first.density[:, None], first.r[None, :])[0]  # closed-form classes
        df = pd.DataFrame({"kind": "cell", "grid": "+".join(pm.name for _, pm in members), "density": ss.ravel(),
                           "relative_importance": rr.ravel(), "theory": th.ravel(),
                           "near_boundary": near_boundary(th).ravel()})
        for tag, pm in members:
            df[f"{tag}_majority"] = pm.majority.ravel()
            df[f"{tag}_selected"] = pm.selected.ravel()
            for k, nm in enumerate(names):
                df[f"{tag}_share_{nm.replace(' ', '_').replace(',', '')}"] = pm.fractions[..., k].ravel()
            df[f"{tag}_extra_norm"] = pm.extra_norm.ravel()
        frames.append(df)
    curves = boundary_curves(n_features) + (LINEAR_BOUNDARY if ModelKind.LINEAR.value in maps else [])
    rows = [pd.DataFrame({"kind": "boundary", "curve": name, "relative_importance": rc, "density": sc})
            for name, rc, sc in curves]
    base = pd.concat([*frames, *rows], ignore_index=True)
    cell = (base.kind == "cell").to_numpy()
    extra: dict[str, np.ndarray] = {}
    relu = maps.get(ModelKind.RELU_OUTPUT.value)
    at = {}  # (density, r) -> row of the cell rows on the ReLU map's grid
    if relu is not None:
        ss, rr = np.meshgrid(relu.density, relu.r, indexing="ij")
        at = {(a, b): k for k, (a, b) in enumerate(zip(ss.ravel(), rr.ravel()))}
    def of_map(pm: PhaseMap) -> np.ndarray:  # the cell rows of pm's grid group
        return cell & np.array([isinstance(g, str) and pm.name in g.split("+") for g in base.grid])

    relu_rows = of_map(relu) if relu is not None else cell & False
    rows_at = np.array([at.get((a, b), -1) if c else -1 for a, b, c in
                        zip(base.density.to_numpy(), base.relative_importance.to_numpy(), relu_rows)])
    on_relu = rows_at >= 0
    if opt is not None and relu is not None:
        def put(name: str, grid_values: np.ndarray) -> None:
            col = np.full(len(base), np.nan)
            col[on_relu] = np.asarray(grid_values, dtype=float).reshape(-1)[rows_at[on_relu]]
            extra[name] = col

        put("optimised_theory", opt.labels)
        put("optimised_near_boundary", near_boundary(opt.labels))
        put("optimised_topology", opt.topology)
        m, n = opt.W.shape[-2:]
        for i in range(m):
            for j in range(n):
                put(f"optimised_W{i}{j}", opt.W[..., i, j])
        for j in range(n):
            put(f"optimised_b{j}", opt.b[..., j])
        put("optimised_loss", opt.loss)
        for k, nm in enumerate(opt.names):
            key = nm.replace(" ", "_").replace(",", "")
            put(f"optimised_loss_{key}", opt.losses[..., k])
            put(f"fixed_loss_{key}", opt.fixed[..., k])
    for tag, pm in maps.items():
        col = np.full(len(base), np.nan)
        ss, rr = np.meshgrid(pm.density, pm.r, indexing="ij")
        where = {(a, b): v for a, b, v in zip(ss.ravel(), rr.ravel(), pm.stuck.ravel())}
        mine = of_map(pm)
        col[mine] = [where.get((a, b), np.nan) for a, b in
                     zip(base.density.to_numpy()[mine], base.relative_importance.to_numpy()[mine])]
        extra[f"{tag}_stuck_share"] = col
    base = pd.concat([base, pd.DataFrame(extra, index=base.index)], axis=1)
    new_rows = []
    if opt is not None and relu is not None:
        s_opt = optimised_boundary(n_features, relu.density, relu.r, opt.labels)
        new_rows.append(pd.DataFrame({"kind": "boundary", "curve": "optimised s*(r)", "relative_importance": relu.r,
                                      "density": s_opt}))
    for tag, pm in maps.items():
        k = density_decade(pm.density)
        new_rows.append(pd.DataFrame({"kind": "stuck_restarts", "grid": pm.name, "experiment": tag,
                                      "density_decade": [decade_name(d) for d in np.unique(k)],
                                      "stuck_share": list(stuck_by_decade(pm).values()),
                                      "cells": [int((k == d).sum()) * len(pm.r) for d in np.unique(k)],
                                      "restarts": pm.restarts}))
    return pd.concat([base, *new_rows], ignore_index=True)


@dataclass(frozen=True)
class PhaseAnalysis:
    """What a phase diagram draws and its claims read."""

    n_features: int
    maps: dict[str, PhaseMap]  # model kind value -> map (one ReLU-output, optionally one linear)
    relu: PhaseMap  # maps["relu_output"]
    theory: np.ndarray  # [n_s, n_r] fixed-configuration (closed-form) classes on the ReLU map's grid
    table: pd.DataFrame  # see phase_table
    optimised: phase_theory.OptimisedTheory  # the optimised theory on the ReLU map's grid
    optimised_boundary: np.ndarray  # [n_r] its s*(r) (optimised_boundary)

    @property
    def optimised_theory(self) -> np.ndarray:
        """[n_s, n_r] classes of the optimised theory's minimisers (the optimised map)."""
        return self.optimised.labels


N_FEATURES = {"phase_diagram_2x1": 2, "phase_diagram_3x2": 3}  # features of each diagram's models


@analysis
def phase_analysis(ctx: FigureContext) -> PhaseAnalysis:
    """Classify and vote every experiment of the diagram (keyed by model kind); both theories on the
    ReLU map's grid (the optimised one takes ~30 s of one CPU core for the default 100 x 100 grid)."""
    n = N_FEATURES[ctx.id]
    maps = {ctx.run(name).kind.value: phase_map(ctx.run(name), n) for name in ctx.experiments}
    relu = maps[ModelKind.RELU_OUTPUT.value]
    th = theory.phase_map(n, relu.density[:, None], relu.r[None, :])[0]
    opt = phase_theory.optimised(n, relu.density[:, None], relu.r[None, :])
    return PhaseAnalysis(n, maps, relu, th, phase_table(n, maps, opt), opt,
                         optimised_boundary(n, relu.density, relu.r, opt.labels))


# --------------------------------------------------------------------------------------------
# Drawing


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of log-spaced centres (geometric midpoints)."""
    lc = np.log(centres)
    if len(lc) == 1:
        return np.exp(np.array([lc[0] - 0.5, lc[0] + 0.5]))
    mid = (lc[1:] + lc[:-1]) / 2
    return np.exp(np.concatenate([[2 * lc[0] - mid[0]], mid, [2 * lc[-1] - mid[-1]]]))


def _build_phase(an: PhaseAnalysis) -> FigureOutput:
    """Both theories, then every trained map (majority class), each on its own grid with its boundaries:
    the fixed-configuration boundaries dashed, the optimised theory's s*(r) solid (on the optimised and
    the trained ReLU panels). Three panels in a row; four (2 in 1, with the linear map) as 2 x 2."""
    n = an.n_features
    panels = [("theory", an.theory, "fixed-configuration theory\n(unit norms, b = 0)", an.relu),
              ("optimised", an.optimised_theory, "optimised theory (exact loss;\nnorms, biases free)", an.relu)]
    for kind in (ModelKind.RELU_OUTPUT, ModelKind.LINEAR):
        if kind.value in an.maps:
            pm = an.maps[kind.value]
            word = "ReLU output" if kind is ModelKind.RELU_OUTPUT else "linear"
            panels.append((kind.value, pm.majority, f"trained {word}\n(majority of {pm.restarts - 1} kept of "
                           f"{pm.restarts})", pm))
    cols = len(panels) if len(panels) <= 3 else 2
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.45 * cols if cols == 3 else 5.6, 2.55 * rows + 0.5),
                             sharey=True, squeeze=False)
    colours = LABEL_COLOURS[n] + ([CONFUSED_COLOUR] if n == 2 else [])
    names = ("matches no candidate",) + phase_theory.names(n)
    cmap = mcolors.ListedColormap(colours)
    norm = mcolors.BoundaryNorm(np.arange(-1.5, len(names) - 1), cmap.N)
    for ax, (tag, g, title, grid) in zip(axes.ravel(), panels):
        ax.pcolormesh(_edges(grid.r), _edges(grid.density), g, cmap=cmap, norm=norm, shading="flat", rasterized=True)
        if tag in ("optimised", ModelKind.RELU_OUTPUT.value):  # per r column, at that column's cell edges
            ok = np.isfinite(an.optimised_boundary)
            ax.stairs(np.where(ok, an.optimised_boundary, np.nan), _edges(an.relu.r), baseline=None, **OPT_LINE)
        for _, rc, sc in LINEAR_BOUNDARY if tag == ModelKind.LINEAR.value else boundary_curves(n):
            ax.plot(rc, sc, color=PALETTE["ink"], lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(R_RANGE)
        ax.set_ylim(S_RANGE)
        ax.set_xlabel("relative importance r")
        ax.set_title(title)
    for ax in axes[:, 0]:
        ax.set_ylabel("feature density 1 - S")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    shown = set(np.unique(np.concatenate([np.ravel(p[1]) for p in panels])).tolist())
    handles = [Patch(facecolor=c, edgecolor="#999999", lw=0.3, label=nm)
               for lab, (c, nm) in enumerate(zip(colours, names), start=-1)
               if not (n == 2 and lab == phase_theory.CONFUSED) or lab in shown]
    handles.append(Line2D([], [], color=PALETTE["ink"], lw=0.8, ls="--", label="fixed-configuration boundary"))
    handles.append(Line2D([], [], label="optimised boundary s*(r)", **OPT_LINE))
    ncol = 3
    legend_rows = -(-len(handles) // ncol)
    fig.tight_layout(rect=(0, (0.1 + 0.17 * legend_rows) / fig.get_figheight(), 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0),
               handlelength=1.4, columnspacing=1.0)
    return FigureOutput(fig, an.table)


PROTOCOL = ("Each cell trains R models (restarts); the highest-loss one is discarded, each kept model is "
            "classified by its weights (tms.theory.classify_solution: a feature counts as represented if "
            "||W_i|| > 0.5; sign-invariant) and the cell shows the class most of them share (the average of "
            "their one-hot classes, the only sign-invariant reading of 'average over results'). The "
            "lowest-loss model's class is in the CSV (column *_selected).")

# --------------------------------------------------------------------------------------------
# phase_diagram_2x1


@figure("phase_diagram_2x1", section="phase_change",
        title="Phase diagram: 2 features in 1 dimension (two theories, trained ReLU, trained linear)",
        caption="What happens to the extra feature (importance r relative to the first) as density 1 - S "
                "and r vary. First panel: the fixed-configuration theory, the lowest-loss of the three closed-form "
                "configurations W = [1,0] (extra not learned), [0,1] (dedicated) and [1,-1] (superposition; "
                "antipodal pair) with unit norms and b = 0 for represented features. Second: the optimised "
                "theory, the same topologies and the same-sign 'confused' pair of McGrath's comment with norms and "
                "biases minimised on the exact expected loss, coloured by the class a trained model with the "
                "optimal weights gets (so a small second weight reads as 'not learned'; the confused_feature claim "
                "reports where, if anywhere, the confused pair is optimal). Then: trained ReLU-output and linear "
                "models. " + PROTOCOL + " Dashed: the "
                "fixed-configuration boundaries s* = 4r/(2+5r) (r <= 1), 4/(5+2r) (r >= 1) and r = 1 above the "
                "triple point s = 4/7 (on the linear panel only r = 1: the linear model keeps the feature with "
                "the larger importance x variance and never superposes). Solid: the optimised theory's s*(r) "
                "(per r column, the density below which its class is superposition), which rises above the dashed "
                "curve near r = 1. Claims: relu_agrees_with_theory, boundary_location and first_order_theory use "
                "the fixed-configuration theory; relu_agrees_with_optimised_theory and confused_feature the "
                "optimised one.")
def build_2x1(ctx: FigureContext) -> FigureOutput:
    return _build_phase(phase_analysis(ctx))


def _agreement_measurement(an: PhaseAnalysis) -> Measurement:
    pm, th, n_features = an.relu, an.theory, an.n_features
    near = near_boundary(th)
    m = {"away_from_boundary": agreement(pm.majority, th, near), "overall": agreement(pm.majority, th),
         "selected_away_from_boundary": agreement(pm.selected, th, near),
         "selected_overall": agreement(pm.selected, th),
         "cells": int(th.size), "cells_away": int((~near).sum()),
         "no_candidate_share": float((pm.majority == theory.NONE_LABEL).mean())}
    disagree = (pm.majority != th) & ~near
    names = theory.candidate_names(n_features)
    pairs: dict[str, int] = {}
    for t, e in zip(th[disagree], pm.majority[disagree]):
        key = f"{names[t]} -> {'none' if e < 0 else names[e]}"
        pairs[key] = pairs.get(key, 0) + 1
    top = ", ".join(f"{k}: {v}" for k, v in sorted(pairs.items(), key=lambda kv: -kv[1])[:4])
    away = m["cells_away"]
    return Measurement(
        measured=m, passed=m["away_from_boundary"] >= AGREE_MIN,
        bars=(Bar("agreement away from boundaries", m["away_from_boundary"], ">=", AGREE_MIN, "share of cells",
                  step=1 / away if away else 0.0),),
        detail=(f"Fixed-configuration theory. {pm.majority.shape[0]}x{pm.majority.shape[1]} cells x "
                f"{pm.restarts} restarts. Majority map: {m['away_from_boundary']:.3f} of the {m['cells_away']} cells "
                f"more than one grid step from a theoretical boundary agree with theory ({m['overall']:.3f} of all "
                f"cells); lowest-loss map: {m['selected_away_from_boundary']:.3f} ({m['selected_overall']:.3f}). "
                f"Disagreements away from the boundary (theory -> trained): {top or 'none'}."))


@claim("phase_diagram_2x1.relu_agrees_with_theory", figure="phase_diagram_2x1", section="phase_change",
       statement="There appears to be a real phase change, observed in both the empirical and theoretical "
                 "diagrams: the trained ReLU models' map matches the closed-form one (verdict on the "
                 "fixed-configuration theory: unit norms, zero bias).",
       expected=f">= {AGREE_MIN:.0%} of cells more than one grid step from a theoretical boundary have the "
                "fixed-configuration theory's class (majority of the 9 kept of 10 models); overall agreement is "
                "reported too",
       tolerance="cells within one grid step (8-neighbourhood) of a theory boundary are excluded")
def _(ctx: FigureContext) -> Measurement:
    return _agreement_measurement(phase_analysis(ctx))


def _optimised_agreement_measurement(an: PhaseAnalysis) -> Measurement:
    """Agreement of the trained majority map with the *optimised* theory (:mod:`tms.phase_theory`), away
    from the optimised map's own boundaries, judged against :data:`OPT_AGREE_MIN`: issue 11 states
    98 % (2 in 1) and 95 % (3 in 2) as what the map should reach "if training is right", because the
    optimised theory is the map of global minima classified like the trained models, so what is left
    is training that ends elsewhere. Also measured (not judged): the same for the lowest-loss map,
    where the disagreeing cells lie (density decades, theory -> trained pairs) and whether their
    lowest-loss restart had the optimised class (then the majority is out-voted by restarts stuck in
    another basin), and the stuck restarts per density decade (:func:`stuck_by_decade`)."""
    pm, opt, n = an.relu, an.optimised_theory, an.n_features
    thr = OPT_AGREE_MIN[n]
    near = near_boundary(opt)
    away = int((~near).sum())
    disagree = (pm.majority != opt) & ~near
    dec = density_decade(pm.density)[:, None] * np.ones((1, len(pm.r)), dtype=int)
    K = pm.fractions.shape[-1]
    idx = np.clip(opt + 1, 0, K - 1)
    kept_on = np.where(opt + 1 < K, np.take_along_axis(pm.fractions, idx[..., None], -1)[..., 0], 0.0)
    names = phase_theory.names(n)
    pairs: dict[str, int] = {}
    for a, e in zip(opt[disagree], pm.majority[disagree]):
        key = f"{names[a] if a >= 0 else 'none'} -> {'none' if e < 0 else names[e]}"
        pairs[key] = pairs.get(key, 0) + 1
    # where the trained majority's antipodal region ends per r column, against either theory's s*(r)
    below = np.isin(pm.majority, antipodal_classes(n))
    emp_opt = boundary_offsets(pm.density, pm.r, below, an.optimised_boundary)
    emp_fix = boundary_offsets(pm.density, pm.r, below, optimised_boundary(n, pm.density, pm.r, an.theory))

    def med(v: np.ndarray) -> float | None:
        return float(np.nanmedian(v)) if np.isfinite(v).any() else None

    m = {"away_from_boundary": agreement(pm.majority, opt, near), "overall": agreement(pm.majority, opt),
         "selected_away_from_boundary": agreement(pm.selected, opt, near),
         "selected_overall": agreement(pm.selected, opt),
         "cells": int(opt.size), "cells_away": away,
         "fixed_agreement_away": agreement(pm.majority, an.theory, near_boundary(an.theory)),
         "optimised_vs_fixed_cells_differ": float((opt != an.theory).mean()),
         "disagreeing_cells_away": int(disagree.sum()),
         "disagreeing_away_by_decade": {decade_name(d): int((disagree & (dec == d)).sum()) for d in np.unique(dec)},
         "disagreeing_whose_best_restart_agrees": float((pm.selected == opt)[disagree].mean()) if disagree.any()
         else None,
         "disagreements": dict(sorted(pairs.items(), key=lambda kv: -kv[1])[:6]),
         "trained_boundary_offset_from_optimised_decades": med(emp_opt),
         "trained_boundary_offset_from_fixed_decades": med(emp_fix),
         "stuck_restarts_by_decade": stuck_by_decade(pm),
         "kept_restarts_off_optimum_by_decade": {decade_name(d): float(1 - kept_on[dec == d].mean())
                                                 for d in np.unique(dec)}}
    top = ", ".join(f"{k}: {v}" for k, v in m["disagreements"].items())
    stuck = ", ".join(f"s in {k}: {v:.3f}" for k, v in m["stuck_restarts_by_decade"].items())
    best = m["disagreeing_whose_best_restart_agrees"]
    return Measurement(
        measured=m, passed=m["away_from_boundary"] >= thr,
        bars=(Bar("agreement with the optimised theory away from its boundaries", m["away_from_boundary"], ">=", thr,
                  "share of cells", step=1 / away if away else 0.0),),
        detail=(f"Optimised theory (exact loss minimised over each candidate's norms, biases and angles; optimal "
                f"weights classified like the trained models). {pm.majority.shape[0]}x{pm.majority.shape[1]} cells x "
                f"{pm.restarts} restarts. Majority map: {m['away_from_boundary']:.3f} of the {away} cells more than "
                f"one grid step from an optimised-theory boundary agree ({m['overall']:.3f} of all cells); "
                f"lowest-loss map: {m['selected_away_from_boundary']:.3f} ({m['selected_overall']:.3f}). The two "
                f"theories differ in {m['optimised_vs_fixed_cells_differ']:.1%} of the cells. Disagreements away "
                f"from the boundary (optimised theory -> trained): {top or 'none'}"
                + (f"; in {best:.1%} of them the lowest-loss restart has the optimised class" if best is not None
                   else "") + f". Stuck restarts (class differs from the cell's lowest-loss restart): {stuck}. "
                f"Median offset of the trained antipodal region's edge (best step fit per r column) from the "
                f"optimised theory's s*(r): {_fmt(m['trained_boundary_offset_from_optimised_decades'])} decades "
                f"(from the fixed theory's, on the same grid: "
                f"{_fmt(m['trained_boundary_offset_from_fixed_decades'])})."))


@claim("phase_diagram_2x1.relu_agrees_with_optimised_theory", figure="phase_diagram_2x1", section="phase_change",
       statement="The trained ReLU models' map is the map of the loss's global minima: it matches the optimised "
                 "theory (verdict on the optimised theory: each candidate's norms and biases minimised on the exact "
                 "loss, the optimal weights classified like the trained models).",
       expected=f">= {OPT_AGREE_MIN[2]:.0%} of cells more than one grid step from an optimised-theory boundary "
                "have the optimised theory's class (majority of the 9 kept of 10 models); issue 11's expectation if "
                "training is right",
       tolerance="cells within one grid step (8-neighbourhood) of an optimised-theory boundary are excluded",
       explanation=("The majority of the 9 kept models agrees with the optimised theory on 92.3% of the cells away "
                    "from its boundaries (needs 98%); the lowest-loss model on 99.99%. In 99.9% of the disagreeing "
                    "cells the best restart agrees: the majority is outvoted by restarts stuck at the single-feature "
                    "stationary point (one weight at 0), 25% of restarts at 1-S < 0.1 and 10% above. Training on "
                    "non-empty inputs only (this build) and twice or four times the steps (pilot, 20x20 subset: "
                    "0.917, 0.925, cosine 8,000 steps 0.922) do not free them: the shortfall is in the optimiser's "
                    "basins at this recipe (Adam 0.03, batch 64), not in the theory or the budget."))
def _(ctx: FigureContext) -> Measurement:
    """Judged on the optimised theory, at 98 % of off-boundary cells: issue 11 gives this as the expectation
    if training is right (the optimised map is where an ideal trainer ends, so unlike the fixed-configuration
    theory it leaves no room for the theory's own approximations). Not moved after seeing results."""
    return _optimised_agreement_measurement(phase_analysis(ctx))


@functools.lru_cache(maxsize=2)
def bias_free_confused(side: int = BIAS_FREE_GRID) -> dict[str, Any]:
    """Where the confused solution is optimal without biases (McGrath's setting) on a ``side x side``
    grid over the paper's ranges: cells, their density and r ranges, and the optimum at s = r = 1."""
    s = np.geomspace(S_RANGE[1], S_RANGE[0], side)[:, None]
    r = np.geomspace(*R_RANGE, side)[None, :]
    o = phase_theory.optimised(2, s, r, bias=False)
    win = o.best == phase_theory.CONFUSED
    ss, rr = np.broadcast_arrays(s, r)
    one = phase_theory.optimised(2, 1.0, 1.0, bias=False)
    return {"grid": f"{side}x{side}", "cells": int(win.sum()), "share": float(win.mean()),
            "class_confused_cells": int((o.labels == phase_theory.CONFUSED).sum()),
            "density_range": [float(ss[win].min()), float(ss[win].max())] if win.any() else None,
            "r_range": [float(rr[win].min()), float(rr[win].max())] if win.any() else None,
            "W_at_s1_r1": [float(v) for v in np.abs(one.W[0])]}


@claim("phase_diagram_2x1.confused_feature", figure="phase_diagram_2x1", section="phase_change",
       statement="McGrath's comment on the paper: the exact n = 2, m = 1 loss has a further 'confused feature' phase, "
                 "both features on one direction with the same sign (W1 ~ W2 ~ 1/sqrt(2)), where features are dense "
                 "and both important, i.e. next to the phase boundary (verdict on the optimised theory of the model "
                 "trained here, with biases).",
       expected="the confused (same-sign) topology is the optimised theory's lowest-loss topology in >= 1 cell of the "
                "trained grid, and every such cell lies within one grid step of a fixed-configuration boundary",
       tolerance="a win must be strict (within 1e-9 relative it is a tie, which goes to the other topology); the "
                 f"comment's own setting (no biases) is reported on a {BIAS_FREE_GRID}x{BIAS_FREE_GRID} grid, "
                 "not judged",
       explanation=("With the output bias the model trained here has, the confused solution (both features on one "
                    "direction, same sign) is a local optimum in 3,502 cells but the lowest-loss solution in none: "
                    "the bias lets the dedicated and antipodal solutions undercut it. Without biases, the comment's "
                    "own setting, it wins 114 of 576 cells of a 24x24 grid (1-S from 0.25 to 1, W1 = W2 = 0.707 at "
                    "1-S = 1, r = 1), reported and not judged. The comment's phase belongs to the bias-free model."))
def _(ctx: FigureContext) -> Measurement:
    """Reading of the comment. It says the confused solution is a phase of its own and that it matters near the
    boundary ("explains the 'blurry' region around the triple point"): so it must be the optimum somewhere
    (>= 1 cell) and only next to the paper's boundaries (the fixed-configuration theory's, the diagram the
    comment refers to; one grid step in the 8-neighbourhood, as the agreement claims use). Judged on the
    optimised theory of the model as trained here, which has biases; the comment's derivation ignores them, so
    the same search without biases is reported beside the verdict (not judged). A confused minimum that ties
    another topology (it degenerates to a single feature) is not a win."""
    an = phase_analysis(ctx)
    opt = an.optimised
    win = opt.best == phase_theory.CONFUSED
    near = near_boundary(an.theory)
    count, near_count = int(win.sum()), int((win & near).sum())
    ss, rr = np.meshgrid(an.relu.density, an.relu.r, indexing="ij")
    conf_W = opt.topology_W[..., phase_theory.CONFUSED, 0, :]  # the confused topology's minimiser
    interior = phase_theory.topology_2x1(conf_W) == phase_theory.CONFUSED
    # McGrath's solution proper: both weights learned (> 0.5, the classifier's threshold), same sign
    proper = phase_theory.classify(conf_W.reshape(-1, 1, 2), 2).reshape(conf_W.shape[:-1]) == phase_theory.CONFUSED
    gap = (opt.losses[..., phase_theory.CONFUSED] - opt.loss) / opt.loss
    closest = np.unravel_index(np.argmin(np.where(proper, gap, np.inf)), gap.shape) if proper.any() else None
    free = bias_free_confused()
    m = {"cells": count, "cells_near_boundary": near_count,
         "where": [[float(a), float(b)] for a, b in zip(ss[win][:20], rr[win][:20])],
         "cells_with_a_same_sign_local_optimum": int(interior.sum()),
         "cells_with_a_local_optimum_both_weights_learned": int(proper.sum()),
         "smallest_relative_excess_over_the_optimum": float(gap[closest]) if closest else None,
         "at_density_r": [float(ss[closest]), float(rr[closest])] if closest else None,
         "confused_weights_there": [float(v) for v in conf_W[closest]] if closest else None,
         "bias_free": free}
    ok = count >= 1 and near_count == count
    where = (f"wins in {count} cells ({near_count} within one grid step of a fixed-configuration boundary)" if count
             else "is the optimum in no cell")
    excess = (f"; as a local optimum with both weights learned (> 0.5) it comes closest, "
              f"{m['smallest_relative_excess_over_the_optimum']:.1%} above the optimum, at s = "
              f"{m['at_density_r'][0]:.3g}, r = {m['at_density_r'][1]:.3g} (W = "
              f"[{m['confused_weights_there'][0]:.2f}, {m['confused_weights_there'][1]:.2f}])" if closest else "")
    fr = (f"it wins {free['cells']} of {free['grid']} cells (density {free['density_range'][0]:.2g}-"
          f"{free['density_range'][1]:.2g}, r {free['r_range'][0]:.2g}-{free['r_range'][1]:.2g}; both weights "
          f"> 0.5 in {free['class_confused_cells']}) and at s = r = 1 the optimum is W = "
          f"[{free['W_at_s1_r1'][0]:.3f}, {free['W_at_s1_r1'][1]:.3f}]" if free["cells"] else "it wins no cell either")
    return Measurement(
        measured=m, passed=ok,
        bars=(Bar("cells where the confused solution is optimal", count, ">=", 1, "cells", step=1),
              Bar("confused cells more than one grid step from a boundary", count - near_count, "<", 1, "cells",
                  step=1)),
        detail=(f"Optimised theory with biases (the model trained here): the confused solution {where}{excess}. "
                f"Without biases (the comment's setting, {free['grid']} grid, not judged) {fr}: the same-sign "
                "direction stands in for the bias a dense feature needs, so the confused phase is a property of the "
                "bias-free model."))


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:+.3f}"


@claim("phase_diagram_2x1.boundary_location", figure="phase_diagram_2x1", section="phase_change",
       statement="The superposition boundary sits at s* = 4r/(2+5r) for r <= 1 and s* = 4/(5+2r) for r >= 1 "
                 "(closed form of the fixed-configuration theory; triple point r = 1, s = 4/7).",
       expected=f"median over r columns of |log10(s_empirical / s*)| <= {BOUNDARY_TOL_DECADES} decades "
                "(~12 % in density)",
       tolerance="s_empirical per column is the best step fit of the majority map; columns without a "
                 "transition are skipped")
def _(ctx: FigureContext) -> Measurement:
    pm = phase_analysis(ctx).relu
    below = pm.majority == 2
    off = boundary_offsets(pm.density, pm.r, below, theory.boundary(2, pm.r))
    ok = np.isfinite(off)
    near1 = (pm.r >= 0.5) & (pm.r <= 2.0)
    med = float(np.median(np.abs(off[ok]))) if ok.any() else float("nan")
    m = {"median_abs_offset_decades": med,
         "median_offset_decades_0.5<=r<=2": float(np.nanmedian(off[near1])) if (ok & near1).any() else None,
         "median_offset_decades_elsewhere": float(np.nanmedian(off[~near1])) if (ok & ~near1).any() else None,
         "max_abs_offset_decades": float(np.nanmax(np.abs(off))) if ok.any() else None,
         "columns": int(ok.sum())}
    return Measurement(
        measured=m, passed=bool(ok.any()) and med <= BOUNDARY_TOL_DECADES,
        bars=(Bar("median |log10(s_emp / s*)|", med, "<=", BOUNDARY_TOL_DECADES, "decades"),
              Bar("columns with a transition", m["columns"], ">=", 1, "columns", step=1)),
        detail=(f"Per r column, the density where the majority class switches to superposition (best step "
                f"fit) vs s*(r): median |log10(s_emp/s*)| = {med:.3f} decades over {m['columns']} columns "
                f"(positive = superposition above the curve); median signed offset "
                f"{_fmt(m['median_offset_decades_0.5<=r<=2'])} decades for 0.5 <= r <= 2 and "
                f"{_fmt(m['median_offset_decades_elsewhere'])} elsewhere. The theory fixes "
                "b = 0 for represented features; trained models learn b > 0, which favours superposition "
                "near r = 1."))


@claim("phase_diagram_2x1.linear_no_superposition", figure="phase_diagram_2x1", section="phase_change",
       statement="Linear models never use superposition: with one dimension they keep the feature with the "
                 "larger importance-weighted variance.",
       expected="0 cells whose majority class is superposition, away from r = 1",
       tolerance="cells within one grid step of r = 1 are excluded: there every unit direction has the same "
                 "linear loss, so the class is undefined")
def _(ctx: FigureContext) -> Measurement:
    pm = phase_analysis(ctx).maps.get(ModelKind.LINEAR.value)
    if pm is None:
        return Measurement(None, None, "no linear experiment in this figure's config")
    lin_th = np.broadcast_to(linear_phase_map(2, pm.r)[None, :], pm.majority.shape)
    near = near_boundary(lin_th)
    sup = pm.majority == 2
    per_model = float((pm.model_labels[pm.kept] == 2).mean())
    m = {"superposition_cells_away_from_r1": int((sup & ~near).sum()),
         "superposition_cells_all": int(sup.sum()), "cells": int(sup.size),
         "superposed_model_share": per_model,
         "agreement_with_linear_theory_away": agreement(pm.majority, lin_th, near)}
    return Measurement(
        measured=m, passed=m["superposition_cells_away_from_r1"] == 0,
        # "none" as "fewer than one", like every other count of the claims: one cell breaks "never"
        bars=(Bar("superposition cells away from r = 1", m["superposition_cells_away_from_r1"], "<", 1, "cells",
                  step=1),),
        detail=(f"{m['superposition_cells_away_from_r1']} of {int((~near).sum())} cells away from r = 1 "
                f"({m['superposition_cells_all']} of {m['cells']} overall) have a superposition majority; "
                f"{per_model:.4f} of all kept linear models are classified as superposition. Agreement with "
                f"the linear optimum (drop the extra feature iff r < 1) away from r = 1: "
                f"{m['agreement_with_linear_theory_away']:.3f}."))


@claim("phase_diagram_2x1.discontinuous_change", figure="phase_diagram_2x1", section="phase_change",
       statement="The optimal weight configuration discontinuously changes in magnitude and superposition.",
       expected=f"along each r column with r <= 0.8 (not learned <-> superposition), >= {JUMP_FRACTION_MIN:.0%} "
                "of the change of the extra feature's norm happens between two adjacent density cells "
                "(median over columns)",
       tolerance="norm = median ||W_extra|| over the kept models of a cell; columns whose norm changes "
                 "by less than 0.2 are skipped")
def _(ctx: FigureContext) -> Measurement:
    pm = phase_analysis(ctx).relu
    cols = pm.r <= 0.8
    share = discontinuity(pm.density, pm.extra_norm[:, cols])
    ok = np.isfinite(share)
    med = float(np.median(share[ok])) if ok.any() else float("nan")
    return Measurement(
        measured={"median_jump_share": med, "min_jump_share": float(share[ok].min()) if ok.any() else None,
                  "columns": int(ok.sum())},
        passed=bool(ok.any()) and med >= JUMP_FRACTION_MIN,
        bars=(Bar("median largest one-step share of the norm change", med, ">=", JUMP_FRACTION_MIN,
                  "share of the change"),
              Bar("columns whose norm changes", int(ok.sum()), ">=", 1, "columns", step=1)),
        detail=(f"Median over {int(ok.sum())} columns (r <= 0.8) of the largest one-step change of the extra "
                f"feature's norm as a share of its total change: {med:.2f} (1 = a pure step)."))


@claim("phase_diagram_2x1.first_order_theory", figure="phase_diagram_2x1", section="phase_change",
       statement="In the theoretical model there is a first-order phase change: the candidates' losses cross, "
                 "so the derivative of the optimal loss is discontinuous; the closed forms are exact.",
       expected="the closed-form losses match a Monte Carlo estimate of the same fixed models within 4 "
                "standard errors, and d(min loss)/ds jumps at s*(r) by > 10 % at every tested r",
       tolerance="Monte Carlo: 200,000 samples per point at s in {0.05, 0.3, 0.8} x r in {0.3, 1, 3}")
def _(ctx: FigureContext) -> Measurement:
    return first_order_check(2)


@functools.lru_cache(maxsize=4)
def first_order_check(n_features: int) -> Measurement:
    """Monte Carlo check of the closed forms and the size of the kink of the optimal loss at s*
    (independent of any trained run, so computed once per process)."""
    names = theory.candidate_names(n_features)
    W, b, dens, imp, closed = [], [], [], [], []
    for s in (0.05, 0.3, 0.8):
        for r in (0.3, 1.0, 3.0):
            table = theory.losses(n_features, s, r)
            for name in names:
                w, bb = theory.candidate_params(name, n_features, s, r)
                W.append(w)
                b.append(bb)
                dens.append(np.full(n_features, s))
                imp.append(np.r_[np.ones(n_features - 1), r])
                closed.append(float(table[name]))
    mc, se = theory.monte_carlo_loss(np.stack(W), np.stack(b), np.stack(dens), np.stack(imp),
                                     n_samples=200_000, seed=0)
    z = np.abs(mc - np.asarray(closed)) / np.maximum(se, 1e-12)
    jumps = []
    for r in (0.2, 0.5, 2.0, 5.0):
        s0, h = float(theory.boundary(n_features, r)), 1e-4
        def best(s: float) -> float:
            return float(min(v for v in theory.losses(n_features, s, r).values()))
        left = (best(s0) - best(s0 - h)) / h
        right = (best(s0 + h) - best(s0)) / h
        jumps.append(abs(right - left) / max(abs(left), abs(right)))
    ok = bool(z.max() <= MC_Z_MAX and min(jumps) > KINK_MIN)
    return Measurement(
        measured={"max_mc_z": float(z.max()), "min_relative_kink": float(min(jumps)),
                  "relative_kinks": [float(j) for j in jumps]},
        passed=ok,
        bars=(Bar("largest |MC - closed form|", float(z.max()), "<=", MC_Z_MAX, "standard errors"),
              Bar("smallest relative jump of d(min loss)/ds at s*", float(min(jumps)), ">", KINK_MIN)),
        detail=(f"{len(closed)} (candidate, s, r) points: largest |MC - closed form| = {z.max():.2f} SE. "
                f"Relative jump of d(min loss)/ds at s*(r) for r in (0.2, 0.5, 2, 5): "
                + ", ".join(f"{j:.2f}" for j in jumps) + "."))


# --------------------------------------------------------------------------------------------
# phase_diagram_3x2


@figure("phase_diagram_3x2", section="phase_change",
        title="Phase diagram: 3 features in 2 dimensions (two theories, trained ReLU)",
        caption="The extra (third) feature of a 3-feature, 2-dimension ReLU-output model. Candidates are "
                "named by the direction W ignores: W ⊥ [0,0,1] (extra not learned), W ⊥ [1,0,0] (extra "
                "dedicated, a weight-1 feature dropped), W ⊥ [1,1,0] (extra dedicated, the other two an "
                "antipodal pair) and W ⊥ [0,1,1] (extra in an antipodal pair). Left: the fixed-configuration "
                "theory (lowest closed-form loss, unit norms, b = 0). Middle: the optimised theory (each "
                "candidate's norms, biases and angles minimised on the exact loss; coloured by the class of the "
                "optimal weights under the trained models' classifier, so an antipodal pair with unequal norms "
                "can read as 'matches no candidate'). Right: trained models. " + PROTOCOL + " Dashed: the "
                "fixed-configuration boundaries s* = 4r/(2+5r) for r < 1, the flat s = 4/7 for r > 1, and r = 1. "
                "Solid: the optimised theory's s*(r), the density below which its class holds an antipodal pair. "
                "Claims: relu_agrees_with_theory and flat_boundary_above_r1 (and its _strict reading) use the "
                "fixed-configuration theory, relu_agrees_with_optimised_theory the optimised one.")
def build_3x2(ctx: FigureContext) -> FigureOutput:
    return _build_phase(phase_analysis(ctx))


@claim("phase_diagram_3x2.relu_agrees_with_theory", figure="phase_diagram_3x2", section="phase_change",
       statement="For 3 features in 2 dimensions the trained models show the same phase structure as the "
                 "closed-form four-candidate model (verdict on the fixed-configuration theory).",
       expected=f">= {AGREE_MIN:.0%} of cells more than one grid step from a theoretical boundary have the "
                "fixed-configuration theory's class (majority of the 9 kept of 10 models); overall agreement is "
                "reported too",
       tolerance="cells within one grid step (8-neighbourhood) of a theory boundary are excluded",
       explanation=("The majority of the 9 kept models agrees with the fixed-configuration theory on 82.2% of the "
                    "cells away from a boundary (needs 90%); the lowest-loss model on 95.4%. 28-33% of restarts end "
                    "off the optimum. The map is not converged at 2,000 steps: on the pilot subset the majority "
                    "map's agreement rose 0.72, 0.79, 0.86, 0.90, 0.92 at 250 to 8,000 steps, so the budget, chosen "
                    "for cost, decides this verdict (the robustness run's steps2x variant tests it). At twice the "
                    "steps it is 84.4%: closer, still short (the same under both other seeds)."))
def _(ctx: FigureContext) -> Measurement:
    return _agreement_measurement(phase_analysis(ctx))


@claim("phase_diagram_3x2.relu_agrees_with_optimised_theory", figure="phase_diagram_3x2", section="phase_change",
       statement="For 3 features in 2 dimensions the trained models' map is the map of the loss's global minima: it "
                 "matches the optimised theory (verdict on the optimised theory: each candidate's norms, biases and "
                 "angles minimised on the exact loss, the optimal weights classified like the trained models).",
       expected=f">= {OPT_AGREE_MIN[3]:.0%} of cells more than one grid step from an optimised-theory boundary "
                "have the optimised theory's class (majority of the 9 kept of 10 models); issue 11's expectation if "
                "training is right",
       tolerance="cells within one grid step (8-neighbourhood) of an optimised-theory boundary are excluded",
       explanation=("83.2% of the cells away from the optimised theory's boundaries agree by majority (needs 95%), "
                    "the lowest-loss model 98.8%. Most disagreements (1,274 of 1,589) are cells the theory gives to "
                    "'dedicated, others antipodal' where the majority is superposition; 28-33% of restarts end off "
                    "the optimum. As for the fixed theory, the majority map is not converged at 2,000 steps (pilot: "
                    "0.86 at 2,000, 0.92 at 8,000 steps)."))
def _(ctx: FigureContext) -> Measurement:
    """Judged on the optimised theory, at 95 % of off-boundary cells: issue 11 gives this as the expectation
    if training is right (lower than 2 in 1's 98 %: two hidden dimensions make the optimisation harder, as
    the paper notes for its 2-D experiments). Not moved after seeing results."""
    return _optimised_agreement_measurement(phase_analysis(ctx))


#: The two classes the r > 1 boundary separates (fixed-configuration theory): above it a weight-1 feature is
#: dropped, below it the two weight-1 features form an antipodal pair; the extra feature is dedicated in both.
FLAT_ABOVE = theory.candidate_names(3).index("dedicated")
FLAT_BELOW = theory.candidate_names(3).index("dedicated, others antipodal")

FLAT_AUDIT = (
    "Revised after review (issue 12). The paper names the two sides of this boundary, and its theory says why it "
    "is flat: for r > 1 the fixed-configuration losses of 'dedicated' (a weight-1 feature dropped, s/3 - s^2/4) and "
    "'dedicated, others antipodal' (s^2/3) do not depend on r and cross at s = 4/7. The other two classes are on "
    "neither side: 'superposition' (the extra feature antipodal with a weight-1 feature, (1 + r) s^2/6) exceeds "
    "s^2/3 by (r - 1) s^2/6 and 'not learned' (r (s/3 - s^2/4)) exceeds 'dedicated', so for r > 1 neither is ever "
    "optimal; trained cells of those classes are optimisation failures, already counted against "
    "relu_agrees_with_theory. The first reading fitted 'others antipodal' against every other class, so such cells "
    "counted as if they lay above the boundary and moved the fitted threshold and its slope. This reading fits the "
    "step per column on the cells whose majority class is one of the two, and reports how many cells it left out; "
    "the bars and thresholds are those of the first reading, unchanged. The optimised theory's boundary between "
    "the same two classes is reported for context, not judged. The first reading is still reported as "
    "phase_diagram_3x2.flat_boundary_above_r1_strict. (The default build's first-reading slope, +2.6, was known "
    "when this was written.)")


def _flat_columns(pm: PhaseMap) -> np.ndarray:
    """The r > 1 columns a flat-boundary claim reads: all but the first (within one grid step of r = 1)."""
    return np.flatnonzero(pm.r > 1)[1:]


def _two_class_fit(density: np.ndarray, r: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Fit of the 'dedicated' / 'dedicated, others antipodal' boundary on ``labels [n_s, n_cols]`` (columns at
    ``r``) against 4/7: offsets, the columns with a transition, their median, slope and left-out cells."""
    off, excluded = two_class_offsets(density, labels, FLAT_ABOVE, FLAT_BELOW, 4 / 7)
    ok = np.isfinite(off)
    names = ("none",) + theory.candidate_names(3)
    other = ~np.isin(labels, (FLAT_ABOVE, FLAT_BELOW))
    by_class = {names[k + 1]: int((labels[other] == k).sum()) for k in range(-1, 4) if (labels[other] == k).any()}
    out: dict[str, Any] = {"columns": int(ok.sum()), "columns_read": int(len(r)), "excluded_cells": int(excluded.sum()),
                           "cells_read": int(labels.size), "excluded_by_class": by_class,
                           "median_abs_offset_decades": None, "slope": None, "median_s": None}
    if ok.any():
        out["median_abs_offset_decades"] = float(np.median(np.abs(off[ok])))
        out["median_s"] = float(4 / 7 * 10 ** np.median(off[ok]))
    if ok.sum() >= 2:
        out["slope"] = float(np.polyfit(np.log10(r[ok]), off[ok], 1)[0])
    return out


@claim("phase_diagram_3x2.flat_boundary_above_r1", figure="phase_diagram_3x2", section="phase_change",
       statement="For r > 1 the boundary between 'extra dedicated, one feature dropped' and 'extra dedicated, "
                 "the other two antipodal' is flat at density 4/7 (the fixed-configuration theory's value).",
       expected=f"over the r > 1 columns, the step between those two classes fitted on the cells whose majority is "
                f"one of them: median |log10(s_emp / (4/7))| <= {BOUNDARY_TOL_DECADES} decades and "
                f"|slope of log10 s_emp vs log10 r| <= {FLAT_SLOPE_MAX}, in >= 2 columns with a transition",
       tolerance="columns within one grid step of r = 1 and columns without a transition are skipped; cells of any "
                 "other class are left out of the fit (their number is reported)",
       audit=FLAT_AUDIT,
       explanation=("The step between the two classes is flat over the 49 columns r > 1 (slope 0.017) but sits at "
                    "median 1-S = 0.67, 0.071 decades above the fixed theory's 4/7 = 0.571 (allowed 0.05). The "
                    "optimised theory (norms and biases tuned) puts the same step at 0.74, 0.112 decades above 4/7: "
                    "4/7 is the boundary of fixed unit-norm configurations, not where trained models should switch, "
                    "and the trained step lies between the two theories. Flatness reproduces; the location is the "
                    "fixed theory's."))
def _(ctx: FigureContext) -> Measurement:
    return flat_boundary_measurement(phase_analysis(ctx))


def flat_boundary_measurement(an: PhaseAnalysis) -> Measurement:
    """The two-class reading of the flat boundary (see :data:`FLAT_AUDIT`)."""
    pm = an.relu
    cols = _flat_columns(pm)
    fit = _two_class_fit(pm.density, pm.r[cols], pm.majority[:, cols])
    opt = _two_class_fit(pm.density, pm.r[cols], an.optimised_theory[:, cols])
    m = {**{k: fit[k] for k in ("median_abs_offset_decades", "slope", "columns", "columns_read")},
         "median_s_emp": fit["median_s"], "excluded_cells": fit["excluded_cells"], "cells_read": fit["cells_read"],
         "excluded_by_class": fit["excluded_by_class"],
         "optimised_theory": {k: opt[k] for k in ("median_s", "median_abs_offset_decades", "slope", "columns",
                                                  "excluded_cells")}}
    columns = Bar("r > 1 columns with a transition", fit["columns"], ">=", 2, "columns", step=1)
    left_out = (f"{fit['excluded_cells']} of {fit['cells_read']} cells in the {fit['columns_read']} r > 1 columns "
                "left out (" + (", ".join(f"{k}: {v}" for k, v in fit["excluded_by_class"].items()) or "none") + ")")
    o = opt
    opt_text = (f"Optimised theory, same fit (context, not judged): median s {_fmt_plain(o['median_s'])}, slope "
                f"{_fmt(o['slope'])} over {o['columns']} columns ({o['excluded_cells']} cells of other classes).")
    if fit["columns"] < 2:
        return Measurement(m, False, f"fewer than two r > 1 columns show a transition between the two classes; "
                                     f"{left_out}. {opt_text}", bars=(columns,))
    med, slope = fit["median_abs_offset_decades"], fit["slope"]
    return Measurement(
        measured=m, passed=med <= BOUNDARY_TOL_DECADES and abs(slope) <= FLAT_SLOPE_MAX,
        bars=(Bar("median |log10(s_emp / (4/7))|", med, "<=", BOUNDARY_TOL_DECADES, "decades"),
              Bar("|slope of log10 s_emp vs log10 r|", abs(slope), "<=", FLAT_SLOPE_MAX, "decades per decade"),
              columns),
        detail=(f"Best step fit between 'dedicated' (above) and 'dedicated, others antipodal' (below) per r > 1 "
                f"column, on the cells of those two classes: median s_emp = {m['median_s_emp']:.3f} (theory 4/7 = "
                f"0.571), median |offset| {med:.3f} decades, slope {slope:+.3f} over {fit['columns']} columns; "
                f"{left_out}. {opt_text}"))


@claim("phase_diagram_3x2.flat_boundary_above_r1_strict", figure="phase_diagram_3x2", section="phase_change",
       statement="(Strict reading, kept from before the audit.) For r > 1 the 'others antipodal' class begins at a "
                 "density flat at 4/7, fitted against every other class.",
       expected=f"over the r > 1 columns: median |log10(s_emp / (4/7))| <= {BOUNDARY_TOL_DECADES} decades and "
                f"|slope of log10 s_emp vs log10 r| <= {FLAT_SLOPE_MAX}",
       tolerance="columns within one grid step of r = 1 and columns without a transition are skipped",
       audit="The first reading; see phase_diagram_3x2.flat_boundary_above_r1 for why it was revised.")
def _(ctx: FigureContext) -> Measurement:
    pm = phase_analysis(ctx).relu
    cols = np.flatnonzero(pm.r > 1)[1:]
    off = boundary_offsets(pm.density, pm.r[cols], pm.majority[:, cols] == 2, np.full(len(cols), 4 / 7))
    ok = np.isfinite(off)
    lo_cols = np.flatnonzero(pm.r < 1)[:-1]
    off_lo = boundary_offsets(pm.density, pm.r[lo_cols], pm.majority[:, lo_cols] == 3,
                              theory.boundary(3, pm.r[lo_cols]))
    columns = Bar("r > 1 columns with a transition", int(ok.sum()), ">=", 2, "columns", step=1)
    if ok.sum() < 2:
        return Measurement({"columns": int(ok.sum())}, False,
                           "fewer than two r > 1 columns show a transition; no flat boundary found", bars=(columns,))
    med = float(np.median(np.abs(off[ok])))
    slope = float(np.polyfit(np.log10(pm.r[cols][ok]), off[ok], 1)[0])
    # secondary reading (reported, not judged): where any antipodal solution (all three features
    # represented, classes 2 or 3) begins, i.e. where superposition starts whichever pair forms
    any_off = boundary_offsets(pm.density, pm.r[cols], np.isin(pm.majority[:, cols], (2, 3)), np.full(len(cols), 4 / 7))
    aok = np.isfinite(any_off)
    m = {"median_abs_offset_decades": med, "slope": slope, "columns": int(ok.sum()),
         "median_s_emp": float(4 / 7 * 10 ** np.median(off[ok])),
         "median_offset_decades_r<1": float(np.nanmedian(off_lo)) if np.isfinite(off_lo).any() else None,
         "any_pair_median_s_emp": float(4 / 7 * 10 ** np.median(any_off[aok])) if aok.any() else None,
         "any_pair_slope": float(np.polyfit(np.log10(pm.r[cols][aok]), any_off[aok], 1)[0]) if aok.sum() > 1 else None}
    return Measurement(
        measured=m, passed=med <= BOUNDARY_TOL_DECADES and abs(slope) <= FLAT_SLOPE_MAX,
        bars=(Bar("median |log10(s_emp / (4/7))|", med, "<=", BOUNDARY_TOL_DECADES, "decades"),
              Bar("|slope of log10 s_emp vs log10 r|", abs(slope), "<=", FLAT_SLOPE_MAX, "decades per decade"),
              columns),
        detail=(f"Best step fit of the 'others antipodal' class per r > 1 column: median s_emp = "
                f"{m['median_s_emp']:.3f} (theory 4/7 = 0.571), median |offset| {med:.3f} decades, slope "
                f"{slope:+.3f} over {m['columns']} columns. Where any antipodal pair starts (classes 'others "
                f"antipodal' or 'superposition'; not judged): median s_emp {_fmt(m['any_pair_median_s_emp'])}, "
                f"slope {_fmt(m['any_pair_slope'])}. For r < 1 the superposition boundary sits "
                f"{_fmt(m['median_offset_decades_r<1'])} decades from 4r/(2+5r) (median)."))


def _fmt_plain(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


# --------------------------------------------------------------------------------------------
# phase_training_loss


def loss_summary(mean_loss: np.ndarray, tail: float = 0.1) -> dict[str, float]:
    """Decrease and convergence of a mean training-loss curve ``[steps]``.

    ``decrease``: loss at step 0 over the mean of the last ``tail`` of training; ``tail_change``:
    relative change between the mean of the last ``tail`` and of the ``tail`` before it.
    """
    y = np.asarray(mean_loss, dtype=float)
    k = max(1, int(len(y) * tail))
    last, prev = y[-k:].mean(), y[-2 * k: -k].mean() if len(y) >= 2 * k else y[:k].mean()
    return {"initial": float(y[0]), "final": float(last), "decrease": float(y[0] / last),
            "tail_change": float(abs(prev - last) / last)}


DENSITY_BANDS = ((0.3, 1.01), (0.05, 0.3), (0.0, 0.05))  # dense, middle, sparse cells
BAND_STYLES = ("-", "--", ":")  # line style of each density band
LOSS_COLOURS = [PALETTE["relu"], PALETTE["linear"], PALETTE["neg"], PALETTE["theory"], PALETTE["pos"]]
DECREASE_MIN = 100.0  # "orders of magnitude": at least two
TAIL_CHANGE_MAX = 0.01  # converged: < 1 % change between the last two tenths of training


def _smooth_log(steps: int, y: np.ndarray, points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Geometric-window means of a per-step curve on a log-spaced grid (what is drawn)."""
    edges = np.unique(np.round(np.geomspace(1, steps, points + 1)).astype(int))
    x = np.sqrt(edges[:-1] * edges[1:])
    v = np.array([y[a - 1: b - 1].mean() if b > a else y[a - 1] for a, b in zip(edges[:-1], edges[1:])])
    return x, v


@dataclass(frozen=True)
class LossCurves:
    """One experiment's curves in phase_training_loss."""

    name: str
    models: int
    x: np.ndarray  # centres of the log-spaced windows of steps
    mean: np.ndarray  # window means of the instance-averaged loss (what is drawn)
    steps: np.ndarray  # logged steps (1-based)
    bands: dict[int, np.ndarray]  # index into DENSITY_BANDS -> band mean loss / its final value


@dataclass(frozen=True)
class LossAnalysis:
    curves: list[LossCurves]  # one per experiment, in config order
    summaries: dict[str, dict[str, float]]  # experiment -> loss_summary of its per-step mean loss
    table: pd.DataFrame  # experiment, panel (mean_loss or band_<lo>_<hi>), step, value


@analysis
def training_loss(ctx: FigureContext) -> LossAnalysis:
    curves, summaries, rows = [], {}, []
    for name in ctx.experiments:
        run = ctx.run(name)
        y = np.asarray(run.arrays["mean_loss"], dtype=float)
        x, v = _smooth_log(len(y), y)
        rows.append(pd.DataFrame({"experiment": name, "panel": "mean_loss", "step": x, "value": v}))
        hist = np.asarray(run.arrays["loss_history"], dtype=float)
        steps = np.asarray(run.arrays["loss_steps"]) + 1
        dens = np.asarray(run.arrays["density"])[:, 0]
        bands = {}
        for k, (lo, hi) in enumerate(DENSITY_BANDS):
            band = (dens >= lo) & (dens < hi)
            if band.any():
                v_ = hist[:, band].mean(1)
                bands[k] = v_ / v_[-1]
                rows.append(pd.DataFrame({"experiment": name, "panel": f"band_{lo:g}_{hi:g}", "step": steps,
                                          "value": bands[k]}))
        curves.append(LossCurves(name, run.arrays["final_loss"].size, x, v, steps, bands))
        summaries[name] = loss_summary(y)
    return LossAnalysis(curves, summaries, pd.concat(rows, ignore_index=True))


def experiment_label(run: Any) -> str:
    """"2 features in 1 dimension, ReLU output" from an experiment's spec."""
    n, m = int(run.spec["n_features"]), int(run.spec["n_hidden"])
    kind = {ModelKind.RELU_OUTPUT: "ReLU output", ModelKind.LINEAR: "linear"}.get(run.kind, run.kind.value)
    return f"{n} features in {m} dimension{'' if m == 1 else 's'}, {kind}"


BAND_NAMES = ("dense cells", "middle cells", "sparse cells")


def _band_label(k: int) -> str:
    lo, hi = DENSITY_BANDS[k]
    if hi > 1:
        return f"{BAND_NAMES[k]}: $1-S \\geq {lo:g}$"
    if lo <= 0:
        return f"{BAND_NAMES[k]}: $1-S < {hi:g}$"
    return f"{BAND_NAMES[k]}: ${lo:g} \\leq 1-S < {hi:g}$"


@figure("phase_training_loss", section="phase_change",
        title="Mean training loss of the mass-trained phase-diagram models",
        caption="(a) Training loss (the per-model loss, averaged over features) averaged over every model of each "
                "phase-diagram experiment at every step, log-log, drawn as means over log-spaced windows of steps. "
                "(b) The same average within the dense, middle and sparse cells of each experiment (line style), "
                "at the logged steps, divided by its final value, so every curve ends at 1 and its height shows how "
                "far that band still was from its final loss; colours are the experiments of (a).")
def build_training_loss(ctx: FigureContext) -> FigureOutput:
    an = training_loss(ctx)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(6.3, 3.0), layout="constrained")
    handles = []
    for k, c in enumerate(an.curves):
        colour = LOSS_COLOURS[k % len(LOSS_COLOURS)]
        ax.plot(c.x, c.mean, color=colour)
        handles.append(Line2D([], [], color=colour, label=f"{experiment_label(ctx.run(c.name))} ({c.models:,} models)"))
        for band, v in c.bands.items():
            ax2.plot(c.steps, v, color=colour, ls=BAND_STYLES[band])
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("training step")
    ax.set(ylabel="mean training loss", title="(a) all models")
    ax2.set(ylabel="loss / its final value", title="(b) by density band")
    ax2.axhline(1.0, color=PALETTE["grid"], lw=0.6, zorder=0)
    bands = sorted({b for c in an.curves for b in c.bands})
    handles += [Line2D([], [], color=PALETTE["ink"], ls=BAND_STYLES[b], label=_band_label(b)) for b in bands]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, handlelength=2.2,
               columnspacing=1.5)
    return FigureOutput(fig, an.table)


@claim("phase_training_loss.decreases", figure="phase_training_loss", section="phase_change",
       statement="The mean loss of the mass-trained models decreases by orders of magnitude over training "
                 "(the replication's loss curve).",
       expected=f"loss at step 0 / loss over the last 10 % of training >= {DECREASE_MIN:.0f} for every "
                "phase-diagram experiment",
       tolerance="two orders of magnitude ('orders', plural)",
       explanation=("The mean loss falls 11-16x over training (about one order of magnitude) and then flattens "
                    "(phase_training_loss.converges reproduces). The ratio compares the loss at initialisation with "
                    "the end: with this build's initialisation (normal weights of Xavier scale, zero bias) an "
                    "untrained 2- or 3-feature model already starts within ~16x of its optimum, so one order is all "
                    "there is to lose. The replication's curve starts higher; its initialisation is not stated."))
def _(ctx: FigureContext) -> Measurement:
    summ = training_loss(ctx).summaries
    dec = {n: s["decrease"] for n, s in summ.items()}
    return Measurement(
        measured=dec, passed=min(dec.values()) >= DECREASE_MIN,
        # judged in orders of magnitude (the claim's words), so the bar is in decades: 100x = 2 decades
        bars=(Bar("smallest decrease, log10(loss at step 0 / final loss)", float(np.log10(min(dec.values()))),
                  ">=", float(np.log10(DECREASE_MIN)), "decades"),),
        detail="Decrease factor of the instance-averaged training loss: "
               + ", ".join(f"{n} {v:.1f}x ({summ[n]['initial']:.3g} -> {summ[n]['final']:.3g})" for n, v in dec.items())
               + ". The starting loss depends on the initialisation scale (the replication drew W with std 1.5).")


@claim("phase_training_loss.converges", figure="phase_training_loss", section="phase_change",
       statement="The mean training loss converges.",
       expected=f"the mean loss over the last 10 % of steps differs from that over the previous 10 % by "
                f"< {TAIL_CHANGE_MAX:.0%}",
       tolerance="relative change; for every phase-diagram experiment")
def _(ctx: FigureContext) -> Measurement:
    summ = training_loss(ctx).summaries
    ch = {n: s["tail_change"] for n, s in summ.items()}
    return Measurement(
        measured=ch, passed=max(ch.values()) < TAIL_CHANGE_MAX,
        bars=(Bar("largest change between the last two tenths of training", max(ch.values()), "<", TAIL_CHANGE_MAX,
                  "relative change"),),
        detail="Relative change of the mean loss between the last two tenths of training: "
               + ", ".join(f"{n} {v:.4f}" for n, v in ch.items()) + ".")
