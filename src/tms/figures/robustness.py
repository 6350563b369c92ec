"""Figures III, robustness: adversarial vulnerability, L1 on hidden activations, nonlinear compression.

- ``adversarial_vulnerability`` ("Relationship to Adversarial Robustness"): the paper's analytic
  per-feature optimal L2 attack on trained ReLU-output models across sparsity. *Relative
  vulnerability* is the mean loss increase under the best attack (per example) divided by the same
  quantity for the **no-superposition reference model at the same sparsity**: the m most important
  features on dedicated unit dimensions (bias 0), every other feature dropped and replaced by its
  mean (bias E[x_i]), attacked on the same examples with the same budget. *Features per dimension*
  is 1/D* = ||W||_F^2 / m (the reciprocal of the paper's dimensions per feature D*, the measure of
  its uniform-superposition plots); the mean 1/D_i of represented features is reported beside it.
- ``l1_removes_superposition`` ("Approach 1: Creating Models Without Superposition"): superposition
  and reconstruction loss of ReLU-output models trained with ``lambda * ||h||_1`` added to the loss.
- ``nonlinear_compression`` (appendix "Nonlinear Compression"): the 2-to-1 code
  ``t = (floor(Zx) + y) / Z`` with its discontinuities replaced by linear ramps, against linear
  compression, by numerical integration (no training).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.ticker import MaxNLocator
from scipy.stats import pearsonr, spearmanr

from tms import data as data_mod
from tms import metrics, rng
from tms.data import FeatureSets
from tms.evaluation import model_losses
from tms.figures.base import (PALETTE, SUPERPOSITION_CMAP, FigureContext, FigureOutput, analysis, figure,
                              new_figure)
from tms.findings import Bar, Measurement, claim

SUPERPOSITION_NORM = mcolors.Normalize(0.0, 1.0, clip=True)


# ============================================================================================
# Shared helpers


EVAL_STREAM = rng.EVAL_COUNTER + 7919  # a counter no training step uses


def _per_feature(density: np.ndarray, n: int) -> np.ndarray:
    return np.repeat(np.asarray(density, dtype=np.float32)[:, None], n, axis=1)


def draw_inputs(seed: int, tag: str, density: np.ndarray, n: int, batch: int, signed: bool = False) -> torch.Tensor:
    """Evaluation inputs ``[C, batch, n]``, one stream per cell, on counters no training step uses.

    Keyed by (seed, tag, cell) so every figure build draws the same examples.
    """
    keys = rng.derive_keys(seed, tag, len(density), 1)
    dens = torch.as_tensor(_per_feature(density, n))
    return data_mod.draw(keys, EVAL_STREAM, batch, dens, FeatureSets.independent(n), signed)


def features_per_dimension(W: np.ndarray, threshold: float = metrics.REPRESENTED_NORM) -> np.ndarray:
    """Mean of 1/D_i over represented features (``||W_i|| > threshold``): ``[...]``; 0 if none."""
    D = metrics.dimensionality(W)
    rep = metrics.feature_norms(W) > threshold
    inv = np.divide(1.0, D, out=np.zeros_like(D), where=rep & (D > 0))
    return inv.sum(-1) / np.maximum(rep.sum(-1), 1)


def mean_superposition(W: np.ndarray, threshold: float = metrics.REPRESENTED_NORM) -> np.ndarray:
    """Mean over represented features of ``sum_{j != i} (W_i_hat . W_j)^2``: ``[...]``; 0 if none."""
    sup = metrics.superposition(W)
    rep = metrics.feature_norms(W) > threshold
    return (sup * rep).sum(-1) / np.maximum(rep.sum(-1), 1)


# ============================================================================================
# Adversarial vulnerability


def reference_model(importance: np.ndarray, m: int, density: float) -> tuple[np.ndarray, np.ndarray]:
    """The no-superposition ReLU-output model: ``W [m, n]`` and ``b [n]``.

    The m most important features (ties: lowest index) get dedicated unit dimensions and bias 0;
    every other feature is dropped and outputs its mean ``E[x_i]`` through the bias.
    """
    imp = np.asarray(importance, dtype=np.float64)
    n = imp.size
    top = np.argsort(-imp, kind="stable")[:m]
    W = np.zeros((m, n))
    W[np.arange(len(top)), top] = 1.0
    b = np.full(n, data_mod.expected_value(float(density)))
    b[top] = 0.0
    return W, b


def vulnerability_table(W: np.ndarray, b: np.ndarray, importance: np.ndarray, density: np.ndarray,
                        x: torch.Tensor, budget_fraction: float = 0.1) -> pd.DataFrame:
    """Per cell: loss increase of the trained and the reference model under the best analytic attack.

    ``W [C, m, n]``, ``b [C, n]``, ``importance [C, n]``, ``density [C]``, ``x [C, B, n]``.
    """
    C, m, _ = W.shape
    refs = [reference_model(importance[c], m, density[c]) for c in range(C)]
    W_ref = np.stack([r[0] for r in refs])
    b_ref = np.stack([r[1] for r in refs])
    trained = metrics.adversarial_vulnerability(W, b, x, importance, budget_fraction=budget_fraction)
    ref = metrics.adversarial_vulnerability(W_ref, b_ref, x, importance, budget_fraction=budget_fraction)
    return pd.DataFrame({
        "density": density,
        "vulnerability": trained["loss_increase"],
        "reference_vulnerability": ref["loss_increase"],
        "relative_vulnerability": relative(trained["loss_increase"], ref["loss_increase"]),
        "features_per_dimension": features_per_dimension(W),
        "inv_dstar": (W**2).sum(axis=(-2, -1)) / m,
        "n_represented": metrics.n_represented(W),
        "clean_loss": trained["clean_loss"],
        "budget": trained["budget"],
    })


def relative(vuln: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``vuln / ref`` (NaN where the reference is not vulnerable at all)."""
    vuln, ref = np.asarray(vuln, float), np.asarray(ref, float)
    return np.divide(vuln, ref, out=np.full_like(vuln, np.nan), where=ref > 0)


@analysis
def _adversarial(ctx: FigureContext) -> pd.DataFrame:
    """The vulnerability table (one row per sparsity): what the figure draws and its claims judge."""
    run = ctx.run(ctx.experiments[0])
    p = run.params()
    density = run.cells["density"].to_numpy(dtype=float)
    x = draw_inputs(int(run.meta["seed"]), f"{run.name}/attack", density, p["W"].shape[-1],
                    int(ctx.option("attack_examples")))
    return vulnerability_table(p["W"], p["b"], run.arrays["importance"][run.best], density, x,
                               float(ctx.option("budget_fraction")))


@figure("adversarial_vulnerability", section="robustness",
        title="Adversarial vulnerability and features per dimension across sparsity",
        caption="Trained ReLU-output models across sparsity, attacked with the paper's analytic per-feature "
                "optimal L2 attack (budget 0.1 x the mean input norm, the most harmful feature attack per "
                "example). (a) Mean loss increase relative to the no-superposition model at the same "
                "sparsity (the m most important features on dedicated dimensions). (b) Features per "
                "dimension 1/D* = ||W||_F^2 / m (dashed: mean 1/D_i of represented features). (c) Relative "
                "vulnerability against features per dimension, colour: density; the dotted line is y = x. The "
                "paper: vulnerability rises sharply (by more than 3x) as superposition forms and closely tracks "
                "the number of features per dimension.",
        options={"budget_fraction": 0.1, "attack_examples": 8192})
def build_adversarial(ctx: FigureContext) -> FigureOutput:
    t = _adversarial(ctx)
    fig, axes = new_figure(1, 3, figsize=(6.3, 2.45), layout="constrained",
                           gridspec_kw={"width_ratios": [1, 1, 1.15]})
    dens = t["density"].to_numpy()
    a, b, c = axes
    a.plot(dens, t["relative_vulnerability"], "o-", color=PALETTE["relu"], ms=4)
    a.axhline(1.0, color=PALETTE["theory"], lw=0.8, ls=":")
    a.set(xscale="log", xlabel="feature density $1 - S$", ylabel="relative vulnerability", title="(a) vs sparsity")
    a.invert_xaxis()
    b.plot(dens, t["inv_dstar"], "o-", color=PALETTE["orthogonal"], ms=4, label="$1/D^*$")
    b.plot(dens, t["features_per_dimension"], "s--", color=PALETTE["theory"], ms=3, label="mean $1/D_i$")
    b.set(xscale="log", xlabel="feature density $1 - S$", ylabel="features per dimension", title="(b) superposition")
    b.invert_xaxis()
    b.legend(frameon=False)
    norm = mcolors.LogNorm(float(dens.min()), float(dens.max())) if dens.min() < dens.max() else None
    sc = c.scatter(t["inv_dstar"], t["relative_vulnerability"], c=dens, norm=norm, cmap="viridis", s=16, zorder=3,
                   edgecolors=PALETTE["ink"], linewidths=0.3)
    # the axes follow the data (not an equal-aspect square that the line y = x would force)
    xv = t["inv_dstar"].to_numpy(dtype=float)
    yv = t["relative_vulnerability"].to_numpy(dtype=float)
    xmax = float(np.nanmax(np.append(xv, 1.0))) * 1.12
    ymax = float(np.nanmax(np.append(yv, 1.0))) * 1.08
    top = max(xmax, ymax)
    c.plot([0, top], [0, top], ls=":", color=PALETTE["theory"], lw=0.8)
    c.set(xlim=(0, xmax), ylim=(0, ymax), xlabel="features per dimension $1/D^*$", ylabel="relative vulnerability",
          title="(c) vulnerability vs $1/D^*$")
    # label the diagonal where it leaves the axes
    lx, ly = (min(xmax, ymax) * 0.92,) * 2
    c.annotate("$y = x$", (lx, ly), xytext=(-3, 3), textcoords="offset points", ha="right", va="bottom",
               fontsize=7, color=PALETTE["theory"])
    fig.colorbar(sc, ax=c, label="feature density $1 - S$", shrink=0.9, pad=0.02)
    return FigureOutput(fig, t[["density", "relative_vulnerability", "features_per_dimension", "inv_dstar",
                               "vulnerability", "reference_vulnerability", "n_represented", "budget"]].copy())


def rises_by(t: pd.DataFrame, factor: float = 3.0) -> Measurement:
    """Relative vulnerability at its peak over the densest cell's value, against ``factor``."""
    dense = t.loc[t["density"].idxmax()]
    peak = t.loc[t["relative_vulnerability"].idxmax()]
    ratio = float(peak["relative_vulnerability"] / dense["relative_vulnerability"])
    return Measurement(
        measured={"peak_over_dense": ratio, "dense_relative": float(dense["relative_vulnerability"]),
                  "peak_relative": float(peak["relative_vulnerability"]), "peak_density": float(peak["density"])},
        passed=bool(np.isfinite(ratio) and ratio > factor),
        detail=f"relative vulnerability {dense['relative_vulnerability']:.2f} at 1-S={dense['density']:.3g} "
               f"(densest cell), peak {peak['relative_vulnerability']:.2f} at 1-S={peak['density']:.3g}: "
               f"x{ratio:.2f} (needs > {factor:g}).",
        bars=(Bar("peak over densest relative vulnerability", ratio, ">", factor, "x"),))


def tracks(t: pd.DataFrame, min_r: float = 0.9) -> Measurement:
    """Pearson correlation across cells of relative vulnerability with features per dimension 1/D*
    (the correlation with the mean 1/D_i of represented features is reported beside it)."""
    ok = np.isfinite(t["relative_vulnerability"]) & np.isfinite(t["inv_dstar"])
    if ok.sum() < 3:
        return Measurement(measured=None, passed=None, detail="fewer than 3 cells with finite values")
    r = float(pearsonr(t.loc[ok, "inv_dstar"], t.loc[ok, "relative_vulnerability"])[0])
    r_di = float(pearsonr(t.loc[ok, "features_per_dimension"], t.loc[ok, "relative_vulnerability"])[0])
    return Measurement(
        measured={"pearson_r": r, "pearson_r_mean_inv_Di": r_di, "cells": int(ok.sum())},
        passed=bool(r >= min_r), bars=(Bar("Pearson r, vulnerability vs 1/D*", r, ">=", min_r),),
        detail=f"Pearson r = {r:.3f} between relative vulnerability and features per dimension 1/D* over "
               f"{int(ok.sum())} cells (r = {r_di:.3f} against the mean 1/D_i of represented features); "
               f"needs >= {min_r:g}.")


@claim("adversarial_vulnerability.rises_3x", figure="adversarial_vulnerability", section="robustness",
       statement="Vulnerability to adversarial examples sharply increases as superposition forms (increasing by >3x).",
       expected="peak relative vulnerability / relative vulnerability of the densest (no-superposition) cell > 3",
       tolerance="none: the paper's '>3x' is the threshold")
def _(ctx) -> Measurement:
    return rises_by(_adversarial(ctx), 3.0)


@claim("adversarial_vulnerability.tracks_features_per_dimension", figure="adversarial_vulnerability",
       section="robustness",
       statement="The level of vulnerability closely tracks the number of features per dimension "
                 "(the reciprocal of feature dimensionality).",
       expected="Pearson r >= 0.9 across sparsity cells between relative vulnerability and features per "
                "dimension 1/D* = ||W||_F^2 / m",
       tolerance="'closely tracks' read as r >= 0.9")
def _(ctx) -> Measurement:
    return tracks(_adversarial(ctx), 0.9)


# ============================================================================================
# L1 penalty on hidden activations


def l1_table(W: np.ndarray, l1: np.ndarray, loss: np.ndarray) -> pd.DataFrame:
    """Per cell: penalty, superposition measures, represented features, reconstruction loss."""
    return pd.DataFrame({
        "l1": l1,
        "mean_superposition": mean_superposition(W),
        "total_superposition": (metrics.superposition(W)
                                * (metrics.feature_norms(W) > metrics.REPRESENTED_NORM)).sum(-1),
        "n_represented": metrics.n_represented(W),
        "inv_dstar": (W**2).sum(axis=(-2, -1)) / W.shape[-2],
        "reconstruction_loss": loss,
    }).sort_values("l1", kind="stable").reset_index(drop=True)


@dataclass
class L1Analysis:
    table: pd.DataFrame  # one row per cell (penalty)
    W: np.ndarray  # [C, m, n] selected models, in table order


@analysis
def _l1(ctx: FigureContext) -> L1Analysis:
    run = ctx.run(ctx.experiments[0])
    p = run.params()
    density = run.cells["density"].to_numpy(dtype=float)
    examples = int(ctx.option("eval_examples"))
    # the reconstruction loss, without the penalty: one stream per cell, drawn as one batch
    loss = model_losses(run.kind, p, run.arrays["importance"][run.best],
                        rng.derive_keys(int(run.meta["seed"]), f"{run.name}/eval", len(density), 1),
                        _per_feature(density, p["W"].shape[-1]), FeatureSets.independent(p["W"].shape[-1]),
                        examples, counter=EVAL_STREAM, chunk=examples)
    l1 = run.cells["l1"].to_numpy(dtype=float)
    order = np.argsort(l1, kind="stable")
    return L1Analysis(l1_table(p["W"], l1, loss), p["W"][order])


@figure("l1_removes_superposition", section="strategic",
        title="Superposition, represented features and loss under an L1 penalty on hidden activations",
        caption="ReLU-output models in a sparse regime trained with lambda ||h||_1 added to the loss. "
                "(a) Mean superposition of represented features (sum_j (W_i_hat . W_j)^2), (b) the number of "
                "represented features (||W_i|| > 0.5) and (c) the reconstruction loss (the importance-weighted "
                "MSE, without the penalty) against lambda (log axis; lambda = 0 sits left of the break, joined by a "
                "dotted line). Bottom: feature norms ||W_i|| coloured by superposition at four penalties (dotted: "
                "the represented threshold 0.5). The paper: an L1 penalty on the hidden activations removes "
                "superposition.",
        options={"eval_examples": 16384})
def build_l1(ctx: FigureContext) -> FigureOutput:
    an = _l1(ctx)
    t = an.table
    lam = t["l1"].to_numpy()
    fig = new_figure(figsize=(6.3, 3.95), layout="constrained")[0]
    fig.clf()
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.05, 1], hspace=0.04)
    ax_s, ax_n, ax_l = top.subplots(1, 3, gridspec_kw={"wspace": 0.12})
    x = penalty_axis(lam)
    xs, positive = x(lam), lam > 0
    sup, reps, loss = (t[k].to_numpy() for k in ("mean_superposition", "n_represented", "reconstruction_loss"))
    loss = np.where(loss > 0, loss, np.nan)  # a log axis: a zero loss (exact reconstruction) is left out
    _broken_line(ax_s, xs, positive, sup, "o", color=PALETTE["superposed"], mec=PALETTE["ink"], mew=0.4, ms=5)
    ax_s.set(ylabel="mean superposition of\nrepresented features", title="(a) superposition",
             ylim=(-0.05, max(1.05, float(np.nanmax(sup)) * 1.08)))
    _broken_line(ax_n, xs, positive, reps, "s", color=PALETTE["orthogonal"], ms=3.5)
    ax_n.set(ylabel="features with $\\|W_i\\| > 0.5$", title="(b) features represented",
             ylim=(0, max(1.0, float(np.nanmax(reps))) * 1.1))
    ax_n.yaxis.set_major_locator(MaxNLocator(integer=True))
    _broken_line(ax_l, xs, positive, loss, "o", color=PALETTE["relu"], ms=4)
    ax_l.set(yscale="log", ylabel="reconstruction loss\n(without the penalty)", title="(c) loss")
    for ax in (ax_s, ax_n, ax_l):
        x.decorate(ax)
        ax.set_xlabel("L1 penalty $\\lambda$")
    shown = _panel_penalties(lam, 4)
    axes = bottom.subplots(1, len(shown), sharey=True)
    bars = []
    ymax = max(1.2, max(float(metrics.feature_norms(an.W[i]).max()) for i in shown) * 1.05)
    for k, (ax, i) in enumerate(zip(np.atleast_1d(axes), shown)):
        norms = metrics.feature_norms(an.W[i])
        sup_i = metrics.superposition(an.W[i])
        ax.bar(np.arange(norms.size), norms, color=SUPERPOSITION_CMAP(SUPERPOSITION_NORM(sup_i)), width=0.8)
        ax.axhline(metrics.REPRESENTED_NORM, color=PALETTE["theory"], lw=0.6, ls=":")
        ax.set(ylim=(0, ymax), xlim=(-0.8, norms.size - 0.2), xlabel="feature $i$",
               title=f"$\\lambda = {lam[i]:.3g}$")
        if k == 0:
            ax.set_ylabel("$\\|W_i\\|$")
        bars.append(pd.DataFrame({"panel": "norms", "l1": lam[i], "feature": np.arange(norms.size), "norm": norms,
                                  "superposition": sup_i}))
    bottom.colorbar(ScalarMappable(SUPERPOSITION_NORM, SUPERPOSITION_CMAP), ax=axes, pad=0.02, aspect=15,
                    label="superposition\n$\\sum_{j \\neq i} (\\hat W_i \\cdot W_j)^2$")
    lines = t.assign(panel="abc")
    return FigureOutput(fig, pd.concat([lines, *bars], ignore_index=True))


@dataclass(frozen=True)
class PenaltyAxis:
    """A log axis for penalties with lambda = 0 drawn one gap to the left of the smallest positive value,
    behind a break mark: ``x(lam)`` is where a penalty is drawn (``log10`` of it; the zero position for 0)."""

    zero: float  # position of lambda = 0
    first: float  # log10 of the smallest positive penalty
    last: float  # log10 of the largest

    def __call__(self, lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam, dtype=float)
        return np.where(lam > 0, np.log10(np.where(lam > 0, lam, 1.0)), self.zero)

    def decorate(self, ax: plt.Axes) -> None:
        """Ticks at 0 and at every power of ten in range (labelled), minor ticks at 2..9 x; a break mark."""
        lo, hi = self.zero - 0.35, self.last + 0.25
        ax.set_xlim(lo, hi)
        decades = np.arange(np.ceil(self.first - 0.25), np.floor(hi) + 1)
        ax.set_xticks([self.zero, *decades], ["0", *[f"$10^{{{int(d)}}}$" for d in decades]])
        minor = [np.log10(k * 10.0**d) for d in np.arange(np.floor(self.first), np.floor(hi) + 1)
                 for k in range(2, 10)]
        ax.set_xticks([v for v in minor if self.first - 0.3 <= v <= hi], minor=True)
        brk = (self.zero + self.first) / 2
        for dx in (-0.06, 0.06):  # two slanted strokes across the x axis
            ax.plot([brk + dx - 0.04, brk + dx + 0.04], [-0.03, 0.03], transform=ax.get_xaxis_transform(),
                    color=PALETTE["ink"], lw=0.8, clip_on=False, zorder=5)


def penalty_axis(lam: np.ndarray) -> PenaltyAxis:
    pos = np.asarray(lam, dtype=float)
    pos = pos[pos > 0]
    if not pos.size:
        return PenaltyAxis(-1.0, 0.0, 0.0)
    first, last = float(np.log10(pos.min())), float(np.log10(pos.max()))
    return PenaltyAxis(first - max(0.6, 0.2 * (last - first)), first, last)


def _broken_line(ax: plt.Axes, x: np.ndarray, positive: np.ndarray, y: np.ndarray, marker: str, **style) -> None:
    """``y`` at positions ``x`` (penalties in increasing order; ``positive``: lambda > 0): markers, a solid line
    through the positive penalties and a dotted one from lambda = 0 across the axis break."""
    color = style.pop("color")
    ax.plot(x[positive], y[positive], "-", color=color, zorder=2)
    zero = np.flatnonzero(~positive)
    if zero.size and positive.any():
        k = int(np.flatnonzero(positive)[0])
        ax.plot([x[zero[-1]], x[k]], [y[zero[-1]], y[k]], ":", color=color, zorder=2)
    ax.plot(x, y, marker, ls="", color=color, zorder=3, clip_on=False, **style)


def _panel_penalties(lam: np.ndarray, k: int) -> list[int]:
    """Indices of ``k`` penalties spread over the sweep (always the first and the last)."""
    idx = np.unique(np.round(np.linspace(0, len(lam) - 1, min(k, len(lam)))).astype(int))
    return [int(i) for i in idx]


def first_superposition_free(t: pd.DataFrame, zero: float = 0.05, min_features: int = 2) -> pd.Series | None:
    """The smallest penalty whose model has mean superposition <= ``zero`` with >= ``min_features`` represented."""
    ok = t[(t["l1"] > 0) & (t["mean_superposition"] <= zero) & (t["n_represented"] >= min_features)]
    return None if ok.empty else ok.iloc[0]


def superposition_vanishes(t: pd.DataFrame, present: float = 0.1, zero: float = 0.05, min_features: int = 2
                           ) -> Measurement:
    """Superposition present without a penalty, and (near) zero at some penalty that keeps features."""
    base = t[t["l1"] == 0]
    if base.empty:
        return Measurement(measured=None, passed=None, detail="the sweep has no lambda = 0 cell")
    s0 = float(base["mean_superposition"].iloc[0])
    row = first_superposition_free(t, zero, min_features)
    rho = float(spearmanr(t["l1"], t["mean_superposition"])[0])
    measured = {"superposition_at_0": s0, "spearman_l1_superposition": rho,
                "lambda_free": None if row is None else float(row["l1"]),
                "superposition_there": None if row is None else float(row["mean_superposition"]),
                "features_there": None if row is None else int(row["n_represented"])}
    passed = s0 >= present and row is not None
    bars = (Bar("mean superposition at lambda = 0", s0, ">=", present),)
    if row is not None:
        bars += (Bar("mean superposition where it vanishes", float(row["mean_superposition"]), "<=", zero),)
    where = ("no penalty in the sweep gives it" if row is None else
             f"at lambda = {row['l1']:.3g} it is {row['mean_superposition']:.3g} with "
             f"{int(row['n_represented'])} features still represented")
    return Measurement(measured, bool(passed),
                       f"mean superposition {s0:.3g} at lambda = 0 (needs >= {present:g}); {where} (needs <= "
                       f"{zero:g} with >= {min_features} features); Spearman(lambda, superposition) = {rho:.2f}.",
                       bars=bars)


def loss_rises(t: pd.DataFrame, zero: float = 0.05, min_features: int = 2, min_rho: float = 0.8) -> Measurement:
    """Reconstruction loss where superposition is gone exceeds the unpenalised loss, and rises with lambda."""
    base = t[t["l1"] == 0]
    row = first_superposition_free(t, zero, min_features)
    if base.empty or row is None:
        return Measurement(measured=None, passed=None,
                           detail="undecidable: no lambda = 0 cell or no superposition-free penalised model")
    l0 = float(base["reconstruction_loss"].iloc[0])
    rho = float(spearmanr(t["l1"], t["reconstruction_loss"])[0])
    ratio = float(row["reconstruction_loss"]) / l0
    return Measurement(
        {"loss_at_0": l0, "loss_superposition_free": float(row["reconstruction_loss"]), "ratio": ratio,
         "spearman_l1_loss": rho},
        bool(ratio > 1.0 and rho >= min_rho),
        f"reconstruction loss {l0:.3g} at lambda = 0, {row['reconstruction_loss']:.3g} at lambda = {row['l1']:.3g} "
        f"(x{ratio:.2f}, needs > 1); Spearman(lambda, loss) = {rho:.2f} (needs >= {min_rho:g}).",
        bars=(Bar("loss where superposition is gone / loss at lambda = 0", ratio, ">", 1.0, "x"),
              Bar("Spearman(lambda, loss)", rho, ">=", min_rho)))


@claim("l1_removes_superposition.superposition_to_zero", figure="l1_removes_superposition", section="strategic",
       statement="Applying an L1 regularisation term to the hidden layer activations gets rid of superposition.",
       expected="mean superposition of represented features >= 0.1 at lambda = 0, and <= 0.05 at some lambda > 0 "
                "whose model still represents >= 2 features",
       tolerance="'zero' read as <= 0.05 (the paper's colour scale runs from 0 to 1)")
def _(ctx) -> Measurement:
    return superposition_vanishes(_l1(ctx).table)


@claim("l1_removes_superposition.loss_rises", figure="l1_removes_superposition", section="strategic",
       statement="Superposition is removed at the cost of a higher loss.",
       expected="reconstruction loss (MSE without the penalty) of the first superposition-free model > loss at "
                "lambda = 0, and Spearman(lambda, loss) >= 0.8 over the sweep",
       tolerance="none")
def _(ctx) -> Measurement:
    return loss_rises(_l1(ctx).table)


# ============================================================================================
# Nonlinear compression (appendix)


def soft_floor(u: np.ndarray, Z: int, width: float) -> np.ndarray:
    """``floor(u)`` on [0, Z) with every step replaced by a linear ramp of ``width`` ending at the step.

    ``width = 0`` is the exact floor (clipped to 0..Z-1).
    """
    u = np.asarray(u, dtype=np.float64)
    if width <= 0:
        return np.clip(np.floor(u), 0, Z - 1)
    k = np.arange(1, Z, dtype=np.float64)
    return np.clip((u[..., None] - k + width) / width, 0.0, 1.0).sum(-1)


def encode(x: np.ndarray, y: np.ndarray, Z: int, width: float) -> np.ndarray:
    """``t = (floor(Z x) + y) / Z`` with a continuous floor (ramps ``width`` wide in units of ``Z x``)."""
    return (soft_floor(Z * np.asarray(x), Z, width) + y) / Z


def decode(t: np.ndarray, Z: int, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode`: ``x = (floor(Z t) + 1/2) / Z`` (mid-cell), ``y = fmod(Z t, 1)``, same ramps."""
    v = Z * np.asarray(t)
    q = soft_floor(v, Z, width)
    return (q + 0.5) / Z, v - q


def nonlinear_mse(Z: int, eps: float, grid: int = 1000, units: str = "step") -> tuple[float, float]:
    """MSE of (x, y) after encode/decode, for x, y ~ U[0, 1): (mse_x, mse_y) by the midpoint rule.

    ``units``: ``"step"`` measures ``eps`` in units of the quantisation step (the argument of floor and
    fmod is ``Z x``, ``Z t``); ``"value"`` in units of x and t themselves (ramps ``Z eps`` steps wide).
    """
    if units not in ("step", "value"):
        raise ValueError(f"units must be 'step' or 'value', got {units!r}")
    width = eps if units == "step" else Z * eps
    g = (np.arange(grid) + 0.5) / grid
    x, y = np.meshgrid(g, g, indexing="ij")
    xh, yh = decode(encode(x, y, Z, width), Z, width)
    return float(((x - xh) ** 2).mean()), float(((y - yh) ** 2).mean())


def linear_mse(scheme: str, grid: int = 1000) -> float:
    """Per-dimension MSE of the linear 2-to-1 codes, numerically: ``pick_one`` keeps x (y decoded as its
    mean 1/2), ``average`` keeps (x + y)/2 for both. Both equal 1/24 exactly."""
    g = (np.arange(grid) + 0.5) / grid
    x, y = np.meshgrid(g, g, indexing="ij")
    if scheme == "pick_one":
        xh, yh = x, np.full_like(y, 0.5)
    elif scheme == "average":
        xh = yh = (x + y) / 2
    else:
        raise ValueError(f"scheme must be 'pick_one' or 'average', got {scheme!r}")
    return float((((x - xh) ** 2).mean() + ((y - yh) ** 2).mean()) / 2)


def compression_table(Zs: list[int], eps: np.ndarray, grid: int) -> pd.DataFrame:
    rows = []
    for units in ("step", "value"):
        for Z in Zs:
            for e in eps:
                if units == "value" and Z * e >= 1:  # ramps would overlap the whole step
                    continue
                mx, my = nonlinear_mse(Z, float(e), grid, units)
                rows.append({"units": units, "Z": Z, "eps": float(e), "mse": (mx + my) / 2, "mse_x": mx, "mse_y": my})
    return pd.DataFrame(rows)


@dataclass
class CompressionAnalysis:
    table: pd.DataFrame  # units, Z, eps, mse (mean over the two dimensions), mse_x, mse_y
    linear: dict[str, float]  # scheme -> per-dimension MSE


@analysis
def _compression(ctx: FigureContext) -> CompressionAnalysis:
    grid = int(ctx.option("grid"))
    Zs = [int(z) for z in ctx.option("Z")]
    eps = np.round(np.linspace(0.0, float(ctx.option("max_eps")), int(ctx.option("eps_points"))), 6)
    eps = np.unique(np.append(eps, 0.1))
    return CompressionAnalysis(compression_table(Zs, eps, grid),
                               {s: linear_mse(s, grid) for s in ("pick_one", "average")})


@figure("nonlinear_compression", section="appendix",
        title="Reconstruction error of a nonlinear 2-to-1 code and of linear compression",
        caption="Two U[0,1) values x, y packed into one, t = (floor(Zx) + y)/Z, with the discontinuities of "
                "floor and fmod replaced by linear ramps eps wide; MSE per dimension after decoding, by "
                "numerical integration. (a) eps in units of the quantisation step; (b) eps in units of x "
                "and t (ramps Z eps steps wide). Grey: linear compression (keep one dimension, or the "
                "average), 1/24. (c) The code t(x) at Z = 3, eps = 0.1 (step units) for three values of y. The paper: "
                "nonlinear compression beats linear compression.",
        options={"grid": 1000, "Z": [2, 3, 5, 10], "max_eps": 0.3, "eps_points": 31})
def build_compression(ctx: FigureContext) -> FigureOutput:
    an = _compression(ctx)
    t = an.table
    fig, axes = new_figure(1, 3, figsize=(7.2, 2.4), constrained_layout=True)
    colors = dict(zip(sorted(t["Z"].unique()), ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"]))
    lin = min(an.linear.values())
    for ax, units, title in ((axes[0], "step", "(a) eps in quantisation steps"),
                             (axes[1], "value", "(b) eps in units of x, t")):
        for Z, g in t[t["units"] == units].groupby("Z"):
            ax.plot(g["eps"], g["mse"], "-", color=colors[Z], label=f"Z = {Z}")
        ax.axhline(lin, color=PALETTE["theory"], lw=1.0, ls="--", label="linear (1/24)")
        ax.plot([0.1], [t[(t["units"] == units) & (t["Z"] == 3) & np.isclose(t["eps"], 0.1)]["mse"].iloc[0]],
                "o", mfc="none", mec=PALETTE["ink"], ms=6)
        ax.set(xlabel="eps", ylabel="MSE per dimension", title=title, ylim=(0, 2.2 * lin))
    axes[0].legend(frameon=False, fontsize=6)
    xs = np.linspace(0, 1, 601, endpoint=False)
    curves = []
    for yv, col in ((0.0, "#1b9e77"), (0.5, "#d95f02"), (0.99, "#7570b3")):
        tv = encode(xs, np.full_like(xs, yv), 3, 0.1)
        axes[2].plot(xs, tv, color=col, label=f"y = {yv:g}")
        curves.append(pd.DataFrame({"panel": "c", "x": xs, "y": yv, "t": tv}))
    axes[2].set(xlabel="x", ylabel="t", title="(c) code at Z = 3, eps = 0.1")
    axes[2].legend(frameon=False, fontsize=6)
    lines = t.assign(panel=np.where(t["units"] == "step", "a", "b"))
    ref = pd.DataFrame({"panel": "ab", "scheme": list(an.linear), "mse": list(an.linear.values())})
    return FigureOutput(fig, pd.concat([lines, ref, *curves], ignore_index=True))


def beats_linear(an: CompressionAnalysis, units: str, Z: int = 3, eps: float = 0.1) -> Measurement:
    """Nonlinear MSE at (Z, eps) against the best linear scheme."""
    t = an.table
    row = t[(t["units"] == units) & (t["Z"] == Z) & np.isclose(t["eps"], eps)]
    if row.empty:
        return Measurement(measured=None, passed=None, detail=f"no Z={Z}, eps={eps} ({units} units) in the table")
    mse = float(row["mse"].iloc[0])
    lin = min(an.linear.values())
    return Measurement({"nonlinear_mse": mse, "linear_mse": lin, "ratio": mse / lin}, bool(mse < lin),
                       f"Z={Z}, eps={eps} ({units} units): nonlinear MSE {mse:.4f} per dimension vs linear "
                       f"{lin:.4f} (keep one dimension: {an.linear['pick_one']:.4f}, average: "
                       f"{an.linear['average']:.4f}).", bars=(Bar("nonlinear MSE per dimension", mse, "<", lin),))


@claim("nonlinear_compression.beats_linear", figure="nonlinear_compression", section="appendix",
       statement="Even with epsilons as large as 0.1 and Z values as small as 3 the nonlinear compression "
                 "outperforms linear compression such as picking one of the dimensions or using the average.",
       expected="MSE per dimension of the ramped code at Z = 3, eps = 0.1 < 1/24 (both linear schemes), "
                "eps measured in quantisation steps (the argument of floor and fmod)",
       tolerance="none")
def _(ctx) -> Measurement:
    return beats_linear(_compression(ctx), "step")


@claim("nonlinear_compression.beats_linear_value_units", figure="nonlinear_compression", section="appendix",
       statement="As nonlinear_compression.beats_linear, reading 'epsilon value wide' as a width in units of the "
                 "values x and t (the stricter reading: at Z = 3 the ramps cover 30% of every step).",
       expected="MSE per dimension at Z = 3, eps = 0.1 (units of x and t) < 1/24",
       tolerance="none",
       explanation=("With epsilon in the units of x and t the nonlinear code's MSE per dimension at Z = 3, epsilon = "
                    "0.1 is 0.047, 13% worse than the linear code's 1/24 = 0.042; with epsilon relative to the "
                    "code's range (nonlinear_compression.beats_linear) it wins. The appendix does not state the "
                    "units, so both readings are shown."))
def _(ctx) -> Measurement:
    return beats_linear(_compression(ctx), "value")
