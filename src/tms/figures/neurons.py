"""Figures III, neurons: superposition in a privileged basis and computation in superposition.

- ``privileged_basis`` ("Superposition in a Privileged Basis"): the ReLU hidden-layer model
  (n=10, m=5, I=0.75^i); raw W and per-neuron stacked weight bars across sparsity, the
  lowest-loss model of many restarts per sparsity.
- ``abs_value_small`` ("Computation in Superposition", basic results): n=3 features, m=6 neurons
  computing |x|; each feature should get a ReLU(x) and a ReLU(-x) neuron.
- ``abs_value_superposition`` (same section, "Superposition vs Sparsity"): n=100, m=40, I=0.8^i;
  stacked |W1| per neuron across sparsity.
- ``asymmetric_motif`` ("The Asymmetric Superposition Motif"): a systematic search over many
  absolute-value models for asymmetric superposition with an inhibiting neuron.

Neuron conventions. A neuron's features are those whose weight is at least 10% of the neuron's
largest weight (and > 0.1): :func:`tms.metrics.neuron_polysemanticity`. For the computation model
hidden units are first rescaled so the largest |W1| weight of every neuron is 1 (the paper's
visual convention, which also removes the per-neuron scale freedom); a neuron whose end-to-end gain
``max|W1[j]| * max|W2[:, j]|`` is below ``DEAD_GAIN`` is dead (rescaling would otherwise blow its
near-zero weights up to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from tms import metrics
from tms.figures.base import (PALETTE, SUPERPOSITION_CMAP, FigureContext, FigureOutput, analysis, figure,
                              new_figure)
from tms.findings import Bar, Measurement, claim

SUPERPOSITION_NORM = mcolors.Normalize(0.0, 1.0, clip=True)
NEURON_TINT = {"monosemantic": "#e3ecf7", "polysemantic": "#fbe0cf", "dead": "#ffffff"}
DEAD_GAIN = 0.05
DRAWN = 0.02  # rescaled |W1| below this is not drawn in the abs-value stacks (invisible slivers)
REL, ABS = 0.1, 0.1  # thresholds of a neuron's features (metrics.neuron_polysemanticity defaults)
FEATURE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"]


# ============================================================================================
# Neuron analysis (shared)


def neuron_kind(counts: np.ndarray) -> np.ndarray:
    """'dead' / 'monosemantic' / 'polysemantic' from features-per-neuron counts."""
    return np.where(counts == 0, "dead", np.where(counts == 1, "monosemantic", "polysemantic"))


def neuron_order(A: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Display order of the neurons of one model (``A = |W| [m, n]``): monosemantic, then polysemantic,
    then dead; within each, by the index (importance rank) of the neuron's strongest feature."""
    group = np.where(counts == 1, 0, np.where(counts >= 2, 1, 2))
    primary = A.argmax(-1)
    return np.lexsort((-A.max(-1), primary, group))


def computation_neurons(W1: np.ndarray, W2: np.ndarray, dead_gain: float = DEAD_GAIN
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rescaled ``W1 [..., m, n]``, ``W2 [..., n, m]`` and features per neuron ``[..., m]`` (0 = dead)."""
    gain = np.abs(W1).max(-1) * np.abs(W2).max(-2)
    R1, R2 = metrics.rescale_hidden_units(W1, W2)
    counts = metrics.neuron_polysemanticity(R1, REL, ABS)
    return R1, R2, np.where(gain < dead_gain, 0, counts)


def stack_rects(ax, pos: np.ndarray, height: np.ndarray, bottom: np.ndarray, colors, width: float = 0.75) -> None:
    """Draw many bar segments at once (one PolyCollection: thousands of ``ax.bar`` patches are slow)."""
    x0, x1 = pos - width / 2, pos + width / 2
    y0, y1 = bottom, bottom + height
    verts = np.stack([np.stack([x0, y0], -1), np.stack([x0, y1], -1), np.stack([x1, y1], -1),
                      np.stack([x1, y0], -1)], axis=1)
    ax.add_collection(PolyCollection(verts, facecolors=colors, edgecolors="white", linewidths=0.2, zorder=2))


def stacked_bars(ax, A: np.ndarray, colors: np.ndarray, kinds: np.ndarray, order: np.ndarray,
                 min_weight: float = 1e-3) -> None:
    """Per-neuron stacked bars of ``A [m, n]`` (features stacked in index order), neuron background tinted."""
    pos, height, bottom, col = [], [], [], []
    for p, j in enumerate(order):
        ax.axvspan(p - 0.5, p + 0.5, color=NEURON_TINT[kinds[j]], lw=0, zorder=0)
        keep = np.flatnonzero(A[j] >= min_weight)
        pos += [p] * keep.size
        height += A[j, keep].tolist()
        bottom += (np.cumsum(A[j, keep]) - A[j, keep]).tolist()
        col += [colors[i] for i in keep]
    if pos:
        stack_rects(ax, np.array(pos, float), np.array(height), np.array(bottom), col, width=0.7)
    ax.set_xlim(-0.5, len(order) - 0.5)


def _tint_legend(fig) -> None:
    handles = [Patch(color=NEURON_TINT[k], label=f"{k} neuron") for k in ("monosemantic", "polysemantic")]
    fig.legend(handles=handles, frameon=False, loc="outside lower center", ncol=2, fontsize=6)


def _superposition_colorbar(fig, axes) -> None:
    sm = ScalarMappable(SUPERPOSITION_NORM, SUPERPOSITION_CMAP)
    fig.colorbar(sm, ax=axes, label="feature superposition", shrink=0.9, pad=0.01)


# ============================================================================================
# Privileged basis (ReLU hidden layer model)


@dataclass
class PBAnalysis:
    cells: pd.DataFrame  # per cell: density, n_represented, mono, poly, dead, loss
    weights: pd.DataFrame  # per (cell, neuron, feature): the drawn numbers
    W: np.ndarray  # [C, m, n] selected models


def privileged_basis_analysis(W: np.ndarray, density: np.ndarray, loss: np.ndarray) -> PBAnalysis:
    """Neuron counts and the long table of drawn weights, for selected models ``W [C, m, n]``."""
    counts = metrics.neuron_polysemanticity(W, REL, ABS)
    sup = metrics.superposition(W)
    rows = []
    for c in range(W.shape[0]):
        A = np.abs(W[c])
        kinds = neuron_kind(counts[c])
        for pos, j in enumerate(neuron_order(A, counts[c])):
            for i in range(W.shape[2]):
                rows.append((density[c], pos, j, i, W[c, j, i], A[j, i], sup[c, i], counts[c, j], kinds[j]))
    weights = pd.DataFrame(rows, columns=["density", "position", "neuron", "feature", "weight", "abs_weight",
                                          "superposition", "neuron_features", "neuron_kind"])
    cells = pd.DataFrame({
        "density": density,
        "n_represented": metrics.n_represented(W),
        "monosemantic": (counts == 1).sum(-1),
        "polysemantic": (counts >= 2).sum(-1),
        "dead": (counts == 0).sum(-1),
        "loss": loss,
    })
    return PBAnalysis(cells, weights, W)


@analysis
def _pb(ctx: FigureContext) -> PBAnalysis:
    run = ctx.run(ctx.experiments[0])
    return privileged_basis_analysis(run.params()["W"], run.cells["density"].to_numpy(dtype=float),
                                     run.cells["loss"].to_numpy(dtype=float))


@figure("privileged_basis", section="privileged_basis",
        title="Weights and neurons of a ReLU hidden-layer model across sparsity",
        caption="ReLU hidden-layer model h = ReLU(Wx), x' = ReLU(W^T h + b), n = 10, m = 5, I_i = 0.75^i; the "
                "lowest-loss of all restarts at each sparsity. Top: raw W (features x neurons, blue negative, red "
                "positive). Bottom: per-neuron stacked |W| bars, features coloured by superposition "
                "(sum_j (W_i_hat . W_j)^2, dark = none), neurons tinted monosemantic (blue) or polysemantic "
                "(orange). Neurons ordered monosemantic first, each group by its strongest feature. The paper: with "
                "dense features every neuron is monosemantic; as sparsity increases neurons become polysemantic "
                "and more features are represented (superposition in a privileged basis).")
def build_privileged_basis(ctx: FigureContext) -> FigureOutput:
    an = _pb(ctx)
    C, m, n = an.W.shape
    fig, axes = new_figure(2, C, figsize=(1.05 * C + 0.8, 3.6), squeeze=False, constrained_layout=True,
                           gridspec_kw={"height_ratios": [1.3, 1]})
    vmax = float(np.abs(an.W).max())
    for c in range(C):
        w = an.weights[an.weights["density"] == an.cells["density"][c]]
        order = w.drop_duplicates("position").sort_values("position")["neuron"].to_numpy()
        kinds = neuron_kind(metrics.neuron_polysemanticity(an.W[c], REL, ABS))
        ax = axes[0, c]
        ax.imshow(an.W[c][order].T, cmap="coolwarm", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_title(f"1-S={an.cells['density'][c]:.3g}", fontsize=7)
        ax.set_xticks(range(m))
        ax.set_yticks(range(n) if c == 0 else [])
        if c == 0:
            ax.set_ylabel("feature")
        colors = SUPERPOSITION_CMAP(SUPERPOSITION_NORM(metrics.superposition(an.W[c])))
        stacked_bars(axes[1, c], np.abs(an.W[c]), colors, kinds, order)
        axes[1, c].set_xticks(range(m))
        axes[1, c].set_xlabel("neuron")
        axes[1, c].set_ylim(0, max(1.0, float(np.abs(an.W).sum(-1).max()) * 1.05))
        if c:
            axes[1, c].set_yticklabels([])
    axes[1, 0].set_ylabel("|W| stacked")
    _tint_legend(fig)
    _superposition_colorbar(fig, axes[1, :])
    return FigureOutput(fig, an.weights)


def dense_monosemantic(cells: pd.DataFrame, m: int) -> Measurement:
    """Densest cell: every one of the m neurons monosemantic."""
    row = cells.loc[cells["density"].idxmax()]
    mono = int(row["monosemantic"])
    return Measurement({"monosemantic": mono, "polysemantic": int(row["polysemantic"]), "dead": int(row["dead"]),
                        "density": float(row["density"])}, mono == m,
                       f"at 1-S={row['density']:.3g}: {mono} monosemantic, {int(row['polysemantic'])} polysemantic, "
                       f"{int(row['dead'])} dead of {m} neurons.",
                       bars=(Bar("monosemantic neurons, densest level", mono, ">=", m, "neurons", step=1),))


def polysemanticity_rises(cells: pd.DataFrame, m: int) -> Measurement:
    """Sparsest cell has polysemantic neurons and represents more features than m (and than the densest
    cell); the count of represented features never falls as sparsity increases."""
    t = cells.sort_values("density", ascending=False, kind="stable")
    reps = t["n_represented"].to_numpy()
    polys = t["polysemantic"].to_numpy()
    monotone = bool((np.diff(reps) >= 0).all())
    passed = polys[-1] >= 1 and reps[-1] > max(m, reps[0]) and monotone
    return Measurement(
        {"represented": [int(v) for v in reps], "polysemantic": [int(v) for v in polys],
         "density": [float(v) for v in t["density"]]}, bool(passed),
        f"features represented (||W_i|| > 0.5) from dense to sparse: {list(map(int, reps))}; polysemantic neurons: "
        f"{list(map(int, polys))}; non-decreasing: {monotone}.",
        bars=(Bar("polysemantic neurons, sparsest level", int(polys[-1]), ">=", 1, "neurons", step=1),
              Bar("features represented, sparsest level", int(reps[-1]), ">", int(max(m, reps[0])), "features",
                  step=1)), categorical_ok=monotone)


def coexist(cells: pd.DataFrame) -> Measurement:
    """Cells whose selected model has both monosemantic and polysemantic neurons."""
    both = cells[(cells["monosemantic"] >= 1) & (cells["polysemantic"] >= 1)]
    return Measurement({"cells": int(len(both)), "densities": [float(v) for v in both["density"]]}, len(both) >= 1,
                       f"{len(both)} of {len(cells)} sparsities have a model with both monosemantic and polysemantic "
                       f"neurons (1-S = {', '.join(f'{v:.3g}' for v in both['density'])}).",
                       bars=(Bar("sparsities with both kinds of neuron", len(both), ">=", 1, "cells", step=1),))


@claim("privileged_basis.dense_monosemantic", figure="privileged_basis", section="privileged_basis",
       statement="With dense features every neuron is monosemantic (dedicated to one feature).",
       expected="densest sparsity: all 5 neurons store exactly one feature (weights >= 10% of the neuron's largest)",
       tolerance="none")
def _(ctx) -> Measurement:
    an = _pb(ctx)
    return dense_monosemantic(an.cells, an.W.shape[1])


@claim("privileged_basis.polysemantic_with_sparsity", figure="privileged_basis", section="privileged_basis",
       statement="As sparsity increases there is a shift from monosemantic to polysemantic neurons and more features "
                 "are represented.",
       expected="sparsest cell: >= 1 polysemantic neuron and more than m = 5 features with ||W_i|| > 0.5; the number "
                "of represented features is non-decreasing from dense to sparse",
       tolerance="none")
def _(ctx) -> Measurement:
    an = _pb(ctx)
    return polysemanticity_rises(an.cells, an.W.shape[1])


@claim("privileged_basis.mono_poly_coexist", figure="privileged_basis", section="privileged_basis",
       statement="Monosemantic and polysemantic neurons can both exist in the same model.",
       expected=">= 1 sparsity whose lowest-loss model has both a monosemantic and a polysemantic neuron",
       tolerance="none")
def _(ctx) -> Measurement:
    return coexist(_pb(ctx).cells)


# ============================================================================================
# Absolute value, small (n = 3, m = 6)


@dataclass
class Pairing:
    ok: bool  # every (feature, sign) has exactly one monosemantic neuron, read out positively and balanced
    pairs: pd.DataFrame  # per neuron: feature, sign, monosemantic, gain (W1 * W2 through the neuron)
    detail: str


def pairing(W1: np.ndarray, W2: np.ndarray, balance: float = 1.25, dead_gain: float = DEAD_GAIN) -> Pairing:
    """Detect the ReLU(x_i) + ReLU(-x_i) construction in one model (``W1 [m, n]``, ``W2 [n, m]``).

    Each live neuron must be monosemantic; every feature must have exactly one neuron with a positive
    and one with a negative W1 weight; both must feed the feature's own output positively
    (``W1 * W2`` gain > 0), with gains within a factor ``balance`` of each other (so W2 adds them).
    """
    R1, R2, counts = computation_neurons(W1[None], W2[None], dead_gain)
    R1, R2, counts = R1[0], R2[0], counts[0]
    m, n = R1.shape
    feat = np.abs(R1).argmax(-1)
    sign = np.sign(R1[np.arange(m), feat]).astype(int)
    gain = R1[np.arange(m), feat] * sign * R2[feat, np.arange(m)]
    pairs = pd.DataFrame({"neuron": np.arange(m), "feature": feat, "sign": sign, "features": counts, "gain": gain})
    live = pairs[pairs["features"] > 0]
    problems = []
    if (live["features"] > 1).any():
        problems.append(f"polysemantic neurons {live.loc[live['features'] > 1, 'neuron'].tolist()}")
    for i in range(n):
        for s in (1, -1):
            k = live[(live["feature"] == i) & (live["sign"] == s) & (live["features"] == 1)]
            if len(k) != 1:
                problems.append(f"feature {i} has {len(k)} ReLU({'+' if s > 0 else '-'}x) neurons")
            elif k["gain"].iloc[0] <= 0:
                problems.append(f"feature {i} ({'+' if s > 0 else '-'}) is not read out positively")
        g = live[(live["feature"] == i) & (live["features"] == 1)]["gain"]
        if len(g) == 2 and (g > 0).all() and g.max() / g.min() > balance:
            problems.append(f"feature {i}: unbalanced gains {g.min():.2f} / {g.max():.2f}")
    detail = "; ".join(problems) if problems else \
        f"all {n} features have a ReLU(x) and a ReLU(-x) neuron; gains {np.round(live['gain'].to_numpy(), 3).tolist()}"
    return Pairing(not problems, pairs, detail)


def single_feature_response(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Output ``y_i`` when only feature i is active with each value: ``[n, len(values)]``."""
    n = W1.shape[1]
    out = np.zeros((n, len(values)))
    for k, v in enumerate(values):
        x = np.eye(n) * v  # row i: only feature i active
        h = np.maximum(x @ W1.T, 0)
        out[:, k] = np.diagonal(np.maximum(h @ W2.T + b, 0))
    return out


@dataclass
class AbsSmallAnalysis:
    W1: np.ndarray  # selected model, rescaled
    W2: np.ndarray
    b: np.ndarray
    order: np.ndarray  # display order of neurons
    pairing: Pairing
    restarts_paired: float  # fraction of all restarts with the pairing


@analysis
def _abs_small(ctx: FigureContext) -> AbsSmallAnalysis:
    run = ctx.run(ctx.experiments[0])
    p = run.params()
    c = run.cell(density=1.0)
    W1, W2, b = p["W1"][c], p["W2"][c], p["b"][c]
    pr = pairing(W1, W2)
    R1, R2 = metrics.rescale_hidden_units(W1, W2)
    order = np.lexsort((-pr.pairs["sign"].to_numpy(), pr.pairs["feature"].to_numpy()))
    inst = run.instances_of(c)
    paired = np.mean([pairing(run.arrays["W1"][k], run.arrays["W2"][k]).ok for k in inst])
    return AbsSmallAnalysis(R1, R2, b, order, pr, float(paired))


@figure("abs_value_small", section="computation", title="Computing |x| for 3 features with 6 neurons",
        caption="Absolute-value model h = ReLU(W1 x), y = ReLU(W2 h + b), n = 3 dense features uniform on [-1, 1], "
                "m = 6 neurons, lowest-loss restart; hidden units rescaled so each neuron's largest |W1| weight "
                "is 1. (a) W1 and (b) W2 (features x neurons). (c) Output y_i for inputs with only feature i "
                "active, against |x| (dashed): every feature has a ReLU(x) and a ReLU(-x) neuron whose outputs "
                "W2 adds.")
def build_abs_small(ctx: FigureContext) -> FigureOutput:
    an = _abs_small(ctx)
    n, m = an.W2.shape
    fig, axes = new_figure(1, 3, figsize=(7.2, 2.3), constrained_layout=True,
                           gridspec_kw={"width_ratios": [1, 1, 1.2]})
    rows = []
    for ax, M, name in ((axes[0], an.W1.T, "W1"), (axes[1], an.W2, "W2")):
        Mo = M[:, an.order]
        v = float(np.abs(Mo).max())
        ax.imshow(Mo, cmap="coolwarm", vmin=-v, vmax=v, aspect="auto")
        for (i, j), val in np.ndenumerate(Mo):
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=5.5)
            rows.append({"panel": name, "feature": i, "neuron": int(an.order[j]), "position": j, "value": val})
        ax.set(xticks=range(m), yticks=range(n), xlabel="neuron", ylabel="feature",
               title=f"({'a' if name == 'W1' else 'b'}) {name} (rescaled)")
    vals = np.linspace(-1, 1, 81)
    resp = single_feature_response(an.W1, an.W2, an.b, vals)
    for i in range(n):
        axes[2].plot(vals, resp[i], color=FEATURE_COLORS[i], ls=("-", "--", ":")[i % 3], label=f"feature {i}")
        rows += [{"panel": "response", "feature": i, "x": x, "value": y} for x, y in zip(vals, resp[i])]
    axes[2].plot(vals, np.abs(vals), color=PALETTE["theory"], lw=3, alpha=0.3, zorder=0, label="|x|")
    axes[2].set(xlabel="x_i (others 0)", ylabel="y_i", title="(c) single-feature response")
    axes[2].legend(frameon=False, fontsize=6)
    return FigureOutput(fig, pd.DataFrame(rows))


@claim("abs_value_small.relu_pairs", figure="abs_value_small", section="computation",
       statement="For each input feature x_i the model constructs a 'positive side' neuron ReLU(x_i) and a "
                 "'negative side' neuron ReLU(-x_i), and adds them together to compute absolute value.",
       expected="after rescaling: every neuron monosemantic (others < 10% of its largest W1 weight); each of the 3 "
                "features has exactly one +x and one -x neuron; both feed the feature's output positively with "
                "W1*W2 gains within a factor 1.25",
       tolerance="factor 1.25 between the two gains of a feature")
def _(ctx) -> Measurement:
    an = _abs_small(ctx)
    return Measurement({"paired": an.pairing.ok, "fraction_of_restarts_paired": an.restarts_paired,
                        "gains": [float(g) for g in an.pairing.pairs["gain"]]}, an.pairing.ok,
                       f"lowest-loss model: {an.pairing.detail}. {an.restarts_paired:.0%} of all restarts show the "
                       f"pairing.")


# ============================================================================================
# Absolute value in superposition (n = 100, m = 40)


def computed_sides(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, frac: float = 0.5
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Which halves of |x_i| the model computes: ``(positive, negative)``, each ``[..., n]`` bool.

    With only feature i active at +1 (-1), output y_i must rise above its value at x = 0 by at
    least ``frac`` of the target |x_i| = 1. Without superposition a neuron computes at most one
    side of one feature, so more than m sides in total means computation in superposition.
    """
    W1, W2, b = np.asarray(W1), np.asarray(W2), np.asarray(b)
    base = np.maximum(b, 0)

    def resp(sign: float) -> np.ndarray:
        h = np.maximum(sign * np.swapaxes(W1, -1, -2), 0)  # [..., n(input i), m]
        z = np.einsum("...im,...im->...i", h, W2)  # y_i: output i reads h of input i
        return np.maximum(z + b, 0) - base

    return resp(1.0) >= frac, resp(-1.0) >= frac


def computed_features(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, frac: float = 0.5) -> np.ndarray:
    """Features computed on both sides (see :func:`computed_sides`): ``[..., n]`` bool."""
    pos, neg = computed_sides(W1, W2, b, frac)
    return pos & neg


@dataclass
class AbsSuperAnalysis:
    cells: pd.DataFrame  # per cell: density, sides, computed, represented, mono, poly, dead, mono-before-poly
    neurons: pd.DataFrame  # per (cell, neuron): kind, primary feature, position
    bars: pd.DataFrame  # per (cell, neuron, feature) with |W1| > 0: the drawn numbers
    m: int


def abs_superposition_analysis(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, density: np.ndarray) -> AbsSuperAnalysis:
    """Neuron kinds, computed features and the drawn bars for selected models ``W1 [C, m, n]``."""
    R1, _, counts = computation_neurons(W1, W2)
    A = np.abs(R1)
    sup = metrics.superposition(R1 * (counts > 0)[..., None])  # dead neurons carry no feature
    plus, minus = computed_sides(W1, W2, b)
    sides = plus.sum(-1) + minus.sum(-1)
    cell_rows, neuron_rows, bar_rows = [], [], []
    for c in range(W1.shape[0]):
        kinds = neuron_kind(counts[c])
        primary = A[c].argmax(-1)
        order = np.lexsort((-A[c].max(-1), primary))  # by importance of the strongest feature
        for pos, j in enumerate(order):
            neuron_rows.append((density[c], pos, j, kinds[j], primary[j], counts[c, j]))
            if kinds[j] == "dead":
                continue
            for i in np.flatnonzero(A[c, j] >= DRAWN):
                bar_rows.append((density[c], pos, j, i, A[c, j, i], sup[c, i], kinds[j]))
        cell_rows.append((density[c], int(sides[c]), sides[c] / 2, int((plus[c] | minus[c]).sum()),
                          int((counts[c] == 1).sum()),
                          int((counts[c] >= 2).sum()), int((counts[c] == 0).sum()),
                          mono_before_poly(primary, counts[c])))
    return AbsSuperAnalysis(
        pd.DataFrame(cell_rows, columns=["density", "sides", "computed", "represented", "monosemantic",
                                         "polysemantic", "dead", "p_mono_more_important"]),
        pd.DataFrame(neuron_rows, columns=["density", "position", "neuron", "kind", "primary_feature", "features"]),
        pd.DataFrame(bar_rows, columns=["density", "position", "neuron", "feature", "abs_weight", "superposition",
                                        "neuron_kind"]),
        W1.shape[1])


def mono_before_poly(primary: np.ndarray, counts: np.ndarray) -> float:
    """P(a random monosemantic neuron's primary feature is more important than a random polysemantic
    neuron's), ties counting 1/2; NaN unless both kinds exist."""
    mono, poly = primary[counts == 1], primary[counts >= 2]
    if not mono.size or not poly.size:
        return float("nan")
    d = mono[:, None] - poly[None, :]
    return float(((d < 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def trivial_loss(importance: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Loss of the model that computes nothing (y_i = b_i = E|x_i| = p/2): mean_i I_i (p/3 - p^2/4), ``[C]``."""
    p = np.asarray(density, dtype=np.float64)[:, None]
    return (np.asarray(importance) * (p / 3 - p**2 / 4)).mean(-1)


@analysis
def _abs_super(ctx: FigureContext) -> AbsSuperAnalysis:
    run = ctx.run(ctx.experiments[0])
    p = run.params()
    density = run.cells["density"].to_numpy(dtype=float)
    an = abs_superposition_analysis(p["W1"], p["W2"], p["b"], density)
    # how far training got: the sparsest cells see few active features per feature
    an.cells["loss"] = run.cells["loss"].to_numpy(dtype=float)
    an.cells["loss_vs_trivial"] = an.cells["loss"] / trivial_loss(run.arrays["importance"][run.best], density)
    return an


STARVED_LOSS = 0.5  # display only: a cell whose loss is >= half that of computing nothing is drawn as not trained


@figure("abs_value_superposition", section="computation", title="Computing |x| in superposition across sparsity",
        caption="Absolute-value models with n = 100 features, m = 40 neurons, I_i = 0.8^i, the lowest-loss model at "
                "each sparsity. (a) Features whose |x| the model computes (both sides) against the feature density "
                "1-S, with the claims' bars m/2 and m; hollow: cells whose loss is at least half that of computing "
                "nothing (not trained at this budget). (b) One row per sparsity: each neuron's rescaled |W1| as a "
                "stack of its features' shares (a single block: one feature; many thin blocks: many), coloured by "
                "the feature's superposition (dark = none); neurons tinted monosemantic (blue) or polysemantic "
                "(orange), dead neurons left blank, sorted by the importance of their strongest feature. Hatched "
                "rows are the untrained cells of (a).")
def build_abs_super(ctx: FigureContext) -> FigureOutput:
    an = _abs_super(ctx)
    cells = an.cells
    dens = cells["density"].to_numpy()
    starved = (cells["loss_vs_trivial"].to_numpy() >= STARVED_LOSS if "loss_vs_trivial" in cells
               else np.zeros(len(dens), bool))
    C = len(dens)
    fig = plt.figure(figsize=(7.2, 2.0 + 0.7 * C), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.9, 0.7 * C])
    ax = top.subplots()
    comp = cells["computed"].to_numpy(float)
    ax.plot(dens, comp, "-", color=PALETTE["ink"], lw=1, zorder=2)
    ax.plot(dens[~starved], comp[~starved], "o", color=PALETTE["ink"], ms=4, zorder=3, label="trained")
    ax.plot(dens[starved], comp[starved], "o", mfc="white", mec=PALETTE["ink"], ms=4, zorder=3,
            label="not trained (loss >= 50% of computing nothing)")
    for y, lab in ((an.m / 2, f"m/2 = {an.m / 2:g}"), (an.m, f"m = {an.m}")):
        ax.axhline(y, color=PALETTE["theory"], ls="--", lw=0.8)
        ax.text(1.0, y, f" {lab}", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                color=PALETTE["theory"])
    ax.set(xscale="log", xlabel="feature density 1-S", ylabel="features computed", ylim=(0, an.m * 1.12),
           title="(a) features whose |x| is computed, against sparsity")
    ax.invert_xaxis()
    ax.legend(loc="upper left", frameon=False)
    rows = bottom.subplots(C, 1, sharex=True, squeeze=False)[:, 0]
    for c, axr in enumerate(rows):
        nb = an.neurons[an.neurons["density"] == dens[c]]
        for _, r in nb.iterrows():
            axr.axvspan(r["position"] - 0.5, r["position"] + 0.5, color=NEURON_TINT[r["kind"]], lw=0, zorder=0)
        bars = an.bars[an.bars["density"] == dens[c]].sort_values(["position", "feature"])
        total = bars.groupby("position")["abs_weight"].transform("sum").to_numpy()
        share = bars["abs_weight"].to_numpy() / np.where(total > 0, total, 1.0)
        bottoms = np.cumsum(share) - share
        starts = bars["position"].ne(bars["position"].shift()).to_numpy()  # restart the stack at each neuron
        bottoms = bottoms - np.maximum.accumulate(np.where(starts, bottoms, 0.0))
        stack_rects(axr, bars["position"].to_numpy(float), share, bottoms,
                    SUPERPOSITION_CMAP(SUPERPOSITION_NORM(bars["superposition"].to_numpy())))
        axr.set(xlim=(-0.5, an.m - 0.5), ylim=(0, 1.02), yticks=[])
        axr.set_ylabel(f"1-S = {dens[c]:.3g}", rotation=0, ha="right", va="center", fontsize=7)
        row = cells.iloc[c]
        note = f"{row['computed']:g} computed; {int(row['polysemantic'])} polysemantic neurons"
        if starved[c]:
            axr.add_patch(plt.Rectangle((-0.5, 0), an.m, 1.02, facecolor="none", edgecolor=PALETTE["theory"],
                                        hatch="////", lw=0, zorder=4, alpha=0.6))
            note += f"; not trained (loss {row['loss_vs_trivial']:.0%} of computing nothing)"
        axr.set_title(note, loc="right", fontsize=6.5, pad=1.5)
    rows[0].set_title("(b) each neuron's features, as shares of its rescaled |W1|", loc="left", fontsize=7, pad=1.5)
    rows[-1].set_xlabel("neuron (sorted by the importance of its strongest feature)")
    _tint_legend(fig)
    sm = ScalarMappable(SUPERPOSITION_NORM, SUPERPOSITION_CMAP)
    bottom.colorbar(sm, ax=list(rows), label="feature superposition", shrink=0.6, pad=0.01)
    return FigureOutput(fig, an.bars)


def abs_dense_monosemantic(cells: pd.DataFrame) -> Measurement:
    row = cells.loc[cells["density"].idxmax()]
    live = int(row["monosemantic"] + row["polysemantic"])
    return Measurement({"monosemantic": int(row["monosemantic"]), "polysemantic": int(row["polysemantic"]),
                        "dead": int(row["dead"])}, bool(live > 0 and row["polysemantic"] == 0),
                       f"at 1-S={row['density']:.3g}: {int(row['monosemantic'])} monosemantic, "
                       f"{int(row['polysemantic'])} polysemantic, {int(row['dead'])} dead neurons.",
                       bars=(Bar("polysemantic neurons, densest level", int(row["polysemantic"]), "<", 1, "neurons",
                                 step=1),), categorical_ok=live > 0)


def sparse_computes_more(cells: pd.DataFrame, column: str, threshold: float, what: str) -> Measurement:
    """The sparse cell with the most ``column`` (computed or represented features) against ``threshold``."""
    sparse = cells[cells["density"] < cells["density"].max()]
    best = sparse.loc[sparse[column].idxmax()]
    dense = cells.loc[cells["density"].idxmax()]
    by = {f"{d:.3g}": float(k) for d, k in zip(cells["density"], cells[column])}
    measured = {"max": float(best[column]), "at_density": float(best["density"]), "dense": float(dense[column]),
                "threshold": threshold, "by_density": by}
    conv = ""
    if "loss_vs_trivial" in cells:
        measured["loss_vs_trivial"] = {f"{d:.3g}": float(v) for d, v in zip(cells["density"], cells["loss_vs_trivial"])}
        conv = (" Loss as a fraction of computing nothing: "
                + ", ".join(f"{d:.3g}: {v:.0%}" for d, v in zip(cells["density"], cells["loss_vs_trivial"])) + ".")
    return Measurement(measured, bool(best[column] > threshold),
                       f"{what}: {float(dense[column]):g} dense, up to {float(best[column]):g} at 1-S="
                       f"{best['density']:.3g} (needs > {threshold:g}); by density {by}.{conv}",
                       bars=(Bar(f"most {what}, sparse cells", float(best[column]), ">", threshold, "features",
                                 step=1),))


def important_on_mono(cells: pd.DataFrame) -> Measurement:
    both = cells[(cells["monosemantic"] >= 1) & (cells["polysemantic"] >= 1)]
    if both.empty:
        return Measurement({"cells": 0}, False, "no sparsity has both monosemantic and polysemantic neurons")
    p = both["p_mono_more_important"].to_numpy()
    frac = float((p > 0.5).mean())
    return Measurement({"cells_with_both": int(len(both)), "p_mono_more_important": [float(v) for v in p],
                        "fraction_of_cells": frac}, bool(frac > 0.5),
                       f"{len(both)} sparsities have both kinds "
                       f"(1-S = {', '.join(f'{v:.3g}' for v in both['density'])}); "
                       f"P(monosemantic neuron's strongest feature more important than a polysemantic one's) = "
                       f"{', '.join(f'{v:.2f}' for v in p)}; > 0.5 in {frac:.0%} of them (needs a majority).",
                       bars=(Bar("share of cells where monosemantic neurons carry the more important features", frac,
                                 ">", 0.5, step=1 / len(both)),))


@claim("abs_value_superposition.dense_monosemantic", figure="abs_value_superposition", section="computation",
       statement="In the dense regime each neuron represents a single feature.",
       expected="densest cell: no polysemantic neuron (every live neuron's other weights < 10% of its largest)",
       tolerance="none")
def _(ctx) -> Measurement:
    return abs_dense_monosemantic(_abs_super(ctx).cells)


@claim("abs_value_superposition.more_than_half_m", figure="abs_value_superposition", section="computation",
       statement="Once features are sufficiently sparse the model uses superposition to compute |x| for more "
                 "features than it could without it (m/2: two neurons per feature).",
       expected="some sparse cell computes > m/2 = 20 features, counting each side (x_i = +1 or -1 alone raises y_i "
                "by >= 0.5) as half a feature; i.e. more sides than neurons",
       tolerance="none")
def _(ctx) -> Measurement:
    an = _abs_super(ctx)
    return sparse_computes_more(an.cells, "computed", an.m / 2,
                                "features computed (each side x_i = +-1 raising y_i by >= 0.5 counts 1/2)")


@claim("abs_value_superposition.more_than_m", figure="abs_value_superposition", section="computation",
       statement="Once features are sufficiently sparse the model uses superposition to represent more features "
                 "than it has neurons.",
       expected="some sparse cell has > m = 40 features with at least one side computed (x_i = +1 or -1 alone "
                "raises y_i by >= 0.5)",
       tolerance="none",
       explanation=("At most 22 of the 100 features are computed on the 40 neurons in any cell (1-S = 0.1). The "
                    "sparse cells where the paper's count exceeds m (1-S <= 0.01) end at 85-88% of the loss of "
                    "computing nothing. That is not a shortage of examples: trained on non-empty inputs only "
                    "(train.condition_nonempty, same expected loss, every example informative) the pilot's sparse "
                    "cells still ended at 85-98% of it. At this initialisation and budget the sparse models stay "
                    "near the trivial solution; the paper gives no recipe for this figure, so which setting lets "
                    "them leave it is open."))
def _(ctx) -> Measurement:
    an = _abs_super(ctx)
    return sparse_computes_more(an.cells, "represented", an.m, "features with at least one side computed")


@claim("abs_value_superposition.mono_poly_coexist", figure="abs_value_superposition", section="computation",
       statement="In some regimes many neurons encode pure features while a subset are highly polysemantic.",
       expected=">= 1 sparse cell whose model has both monosemantic and polysemantic neurons",
       tolerance="none")
def _(ctx) -> Measurement:
    return coexist(_abs_super(ctx).cells)


@claim("abs_value_superposition.important_on_monosemantic", figure="abs_value_superposition", section="computation",
       statement="The neurons representing the most important features tend to be monosemantic.",
       expected="in most cells with both kinds, P(a monosemantic neuron's strongest feature is more important than a "
                "polysemantic neuron's) > 0.5",
       tolerance="'tend to': a majority of such cells")
def _(ctx) -> Measurement:
    return important_on_mono(_abs_super(ctx).cells)


# ============================================================================================
# The asymmetric superposition motif


@dataclass(frozen=True)
class Motif:
    """Neuron ``j`` stores feature ``a`` strongly and ``b`` weakly with reciprocal output weights; neuron
    ``k`` inhibits output ``b`` when ``a`` is active on neuron j's side."""

    j: int
    a: int
    b: int
    k: int
    in_ratio: float  # |W1[j, a]| / |W1[j, b]|
    out_ratio: float  # W2[b, j] / W2[a, j]
    interference: float  # W2[b, j] * |W1[j, a]|: a's push on output b through j, per unit x_a
    net: float  # all neurons' push on output b per unit x_a (<= 0 when inhibited)


def find_motifs(W1: np.ndarray, W2: np.ndarray, ratio: float = 2.0, min_gain: float = 0.5,
                inhibit: float = 0.5) -> list[Motif]:
    """Every asymmetric-superposition-with-inhibition motif of one model (``W1 [m, n]``, ``W2 [n, m]``).

    Neuron j and features a != b (with s_a = sign W1[j, a]) form one when
      1. asymmetric storage: |W1[j, a]| >= ``ratio`` |W1[j, b]| > 0;
      2. reciprocal read-out: W2[b, j] >= ``ratio`` W2[a, j] > 0;
      3. j really computes both: gains |W1[j, a]| W2[a, j] and |W1[j, b]| W2[b, j] both >= ``min_gain``;
      4. inhibition: with x_a = s_a (the side j fires on), the summed push on output b's pre-activation,
         sum_l W2[b, l] ReLU(s_a W1[l, a]), is <= 0, and some neuron k != j alone contributes
         <= -``inhibit`` x the interference W2[b, j] |W1[j, a]|.
    All quantities are invariant to rescaling hidden units.
    """
    m, n = W1.shape
    A1 = np.abs(W1)
    V2 = W2.T  # [m, n]: neuron j's read-out weight to each output
    with np.errstate(divide="ignore", invalid="ignore"):
        in_ratio = A1[:, :, None] / A1[:, None, :]  # [j, a, b]
        out_ratio = V2[:, None, :] / V2[:, :, None]
    gain_a = (A1 * V2)[:, :, None]
    gain_b = (A1 * V2)[:, None, :]
    cand = ((A1[:, None, :] > 0) & (V2[:, :, None] > 0) & (in_ratio >= ratio) & (out_ratio >= ratio)
            & (gain_a >= min_gain) & (gain_b >= min_gain) & ~np.eye(n, dtype=bool)[None])
    found = []
    for j, a, b in zip(*np.nonzero(cand)):
        s_a = np.sign(W1[j, a])
        push = W2[b, :] * np.maximum(s_a * W1[:, a], 0)  # each neuron's push on output b per unit x_a
        others = np.delete(np.arange(m), j)
        k = int(others[np.argmin(push[others])])
        if push.sum() <= 0 and push[k] <= -inhibit * push[j]:
            found.append(Motif(int(j), int(a), int(b), k, float(in_ratio[j, a, b]), float(out_ratio[j, a, b]),
                               float(push[j]), float(push.sum())))
    return found


@dataclass
class MotifAnalysis:
    frequency: pd.DataFrame  # per cell: density, restarts, with_motif, fraction, selected_has_motif
    example: int  # instance shown
    example_motifs: list[Motif]
    W1: np.ndarray  # the example's weights (raw)
    W2: np.ndarray
    b: np.ndarray
    density: float
    total: int
    with_motif: int


def motif_analysis(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, cell: np.ndarray, density: np.ndarray,
                   loss: np.ndarray, selected: np.ndarray, **criteria: float) -> MotifAnalysis:
    """Search every instance; the example is the lowest-loss selected model with a motif, else the
    lowest-loss instance with one, else the overall lowest-loss model."""
    found = [find_motifs(W1[k], W2[k], **criteria) for k in range(W1.shape[0])]
    has = np.array([len(f) > 0 for f in found])
    rows = []
    for c in np.unique(cell):
        idx = np.flatnonzero(cell == c)
        rows.append((float(density[c]), len(idx), int(has[idx].sum()), float(has[idx].mean()),
                     bool(has[idx][selected[idx]].any())))
    freq = pd.DataFrame(rows, columns=["density", "restarts", "with_motif", "fraction", "selected_has_motif"])
    pool = [np.flatnonzero(has & selected), np.flatnonzero(has), np.arange(len(has))]
    cand = next(p for p in pool if p.size)
    ex = int(cand[np.argmin(loss[cand])])
    return MotifAnalysis(freq, ex, found[ex], W1[ex], W2[ex], b[ex], float(density[cell[ex]]), len(has),
                         int(has.sum()))


@analysis
def _motif(ctx: FigureContext) -> MotifAnalysis:
    run = ctx.run(ctx.experiments[0])
    a = run.arrays
    crit = {k: float(ctx.option(k)) for k in ("ratio", "min_gain", "inhibit")}
    return motif_analysis(a["W1"], a["W2"], a["b"], a["cell"], run.cells["density"].to_numpy(dtype=float),
                          run.loss, a["selected"].astype(bool), **crit)


@figure("asymmetric_motif", section="computation",
        title="Search for the asymmetric superposition motif in absolute-value models",
        caption="Absolute-value models searched for asymmetric superposition with inhibition (criterion in "
                "tms.figures.neurons.find_motifs). (a) The example model's rescaled |W1| per neuron, features in "
                "colours; the asymmetric neuron (*) and its inhibitor (v) are marked. (b) Output b's pre-activation "
                "against x_a (only feature a active) with and without the inhibiting neuron, and the target |x_b| = 0. "
                "(c) Fraction of restarts showing the motif at each sparsity (filled: the lowest-loss model has it). "
                "The paper: one neuron stores two features with very different magnitudes and reciprocal output "
                "weights, and another neuron inhibits the positive interference.",
        options={"ratio": 2.0, "min_gain": 0.5, "inhibit": 0.5})
def build_motif(ctx: FigureContext) -> FigureOutput:
    an = _motif(ctx)
    fig, axes = new_figure(1, 3, figsize=(7.2, 2.5), constrained_layout=True, gridspec_kw={"width_ratios": [1.6, 1, 1]})
    R1, R2, counts = computation_neurons(an.W1[None], an.W2[None])
    R1, counts = R1[0], counts[0]
    A = np.abs(R1)
    m, n = A.shape
    order = np.lexsort((-A.max(-1), A.argmax(-1)))
    colors = np.array([FEATURE_COLORS[i % len(FEATURE_COLORS)] for i in range(n)])
    stacked_bars(axes[0], A, colors, neuron_kind(counts), order)
    rows = [{"panel": "a", "position": pos, "neuron": int(j), "feature": i, "value": float(A[j, i])}
            for pos, j in enumerate(order) for i in range(n) if A[j, i] >= 1e-3]
    pos_of = {int(j): pos for pos, j in enumerate(order)}
    top = float(A.sum(-1).max())
    for mo in an.example_motifs:
        axes[0].text(pos_of[mo.j], top * 1.02, "*", ha="center", fontsize=10, color=PALETTE["ink"])
        axes[0].text(pos_of[mo.k], top * 1.02, "v", ha="center", fontsize=7, color=PALETTE["ink"])
    axes[0].set(ylim=(0, top * 1.15), xlabel="neuron", ylabel="|W1| (rescaled)",
                title=f"(a) example, 1 - S = {an.density:.3g}")
    axes[0].legend(handles=[Patch(color=colors[i], label=f"x{i}") for i in range(n)], frameon=False, fontsize=5,
                   loc="upper left", bbox_to_anchor=(1.0, 1.0), handlelength=1)
    if an.example_motifs:
        mo = an.example_motifs[0]
        s_a = np.sign(an.W1[mo.j, mo.a])
        xs = np.linspace(0, 1, 51)
        push = an.W2[mo.b, :] * np.maximum(s_a * an.W1[:, mo.a], 0)
        with_k = xs * push.sum() + an.b[mo.b]
        without = xs * (push.sum() - push[mo.k]) + an.b[mo.b]
        axes[1].plot(xs, with_k, color=PALETTE["orthogonal"], label="all neurons")
        axes[1].plot(xs, without, color=PALETTE["relu"], ls="--", label=f"without inhibitor {mo.k}")
        axes[1].axhline(0, color=PALETTE["theory"], lw=0.6)
        axes[1].set(xlabel=f"|x_{mo.a}| (sign {'+' if s_a > 0 else '-'}, others 0)",
                    ylabel=f"pre-activation of y_{mo.b}", title=f"(b) inhibition of y_{mo.b}")
        axes[1].legend(frameon=False, fontsize=6)
        rows += [{"panel": "b", "x": float(x), "series": s, "value": float(v)}
                 for s, ys in (("all", with_k), ("without_inhibitor", without)) for x, v in zip(xs, ys)]
    else:
        axes[1].text(0.5, 0.5, "no motif found", ha="center", va="center", transform=axes[1].transAxes)
        axes[1].set_axis_off()
    f = an.frequency
    axes[2].plot(f["density"], f["fraction"], "-", color=PALETTE["theory"], lw=0.8)
    for _, r in f.iterrows():
        axes[2].plot(r["density"], r["fraction"], "o", ms=4, mec=PALETTE["ink"],
                     mfc=PALETTE["superposed"] if r["selected_has_motif"] else "white")
    axes[2].set(xscale="log", xlabel="feature density 1 - S", ylabel="fraction of restarts",
                title=f"(c) how often ({an.with_motif}/{an.total})", ylim=(-0.03, 1.05))
    axes[2].set_xticks(f["density"], [f"{d:.3g}" for d in f["density"]], rotation=45)
    axes[2].minorticks_off()
    axes[2].legend(handles=[Line2D([], [], marker="o", ls="", mec=PALETTE["ink"], mfc=PALETTE["superposed"],
                                   label="lowest-loss model has it")], frameon=False, fontsize=6)
    rows += [{"panel": "c", "density": r["density"], "value": r["fraction"],
              "selected_has_motif": r["selected_has_motif"]} for _, r in f.iterrows()]
    return FigureOutput(fig, pd.DataFrame(rows))


def motif_found(an: MotifAnalysis) -> Measurement:
    mo = an.example_motifs
    desc = "; ".join(f"neuron {x.j} stores x{x.a}:x{x.b} at {x.in_ratio:.1f}:1 with read-out 1:{x.out_ratio:.1f}, "
                     f"neuron {x.k} inhibits y{x.b} (net push {x.net:.2f} vs {x.interference:.2f} without)"
                     for x in mo[:2])
    n_sel = int(an.frequency["selected_has_motif"].sum())
    return Measurement(
        {"models_with_motif": an.with_motif, "models_searched": an.total, "fraction": an.with_motif / max(an.total, 1),
         "cells_whose_selected_model_has_it": n_sel, "example_instance": an.example, "example_motifs": len(mo)},
        bool(an.with_motif >= 1),
        f"{an.with_motif} of {an.total} models ({an.with_motif / max(an.total, 1):.1%}) show the motif; "
        f"the lowest-loss "
        f"model has it at {n_sel} of {len(an.frequency)} sparsities. Example (instance {an.example}, 1-S="
        f"{an.density:.3g}): {desc or 'none'}.",
        bars=(Bar("models showing the motif", an.with_motif, ">=", 1, "models", step=1),))


@claim("asymmetric_motif.found", figure="asymmetric_motif", section="computation",
       statement="One neuron does asymmetric superposition (features stored with very different magnitudes, "
                 "reciprocal output weights) and another neuron heavily inhibits the feature where there would "
                 "have been positive interference.",
       expected=">= 1 trained model with a motif: |W1[j,a]| >= 2|W1[j,b]|, W2[b,j] >= 2 W2[a,j] > 0, both gains "
                ">= 0.5, net push of x_a on y_b's pre-activation <= 0 with one neuron k cancelling >= half of the "
                "interference",
       tolerance="magnitude ratios >= 2 read as 'very different' (the paper's example: 4)")
def _(ctx) -> Measurement:
    return motif_found(_motif(ctx))
