"""Drawing helpers every figure family shares: 2-D feature arrows, ``W^T W`` with the bias, feature-norm
bars, importance colours, labelled reference lines. They draw under the shared style of
:mod:`tms.figures.base`.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np

from tms import metrics
from tms.figures.base import PALETTE, SUPERPOSITION_CMAP

GRAM_CMAP = "RdBu_r"  # diverging, white at 0 (as the paper's W^T W plots)
LABEL_MIN_NORM = 0.25  # shorter arrows are drawn but not labelled (their labels would pile up at 0)


def spread_labels(pos: np.ndarray, sep: float, iterations: int = 60, reach: float = 1.2) -> np.ndarray:
    """Label positions ``pos [k, 2]`` pushed apart until no two are closer than ``sep`` (or the iterations run
    out): each too-close pair moves apart along the line between them (across the pair's mean direction from the
    origin if they coincide); no label moves further than ``reach`` x ``sep`` from where it started, so it stays
    by its arrow. Deterministic."""
    pos = np.array(pos, dtype=float)
    start = pos.copy()
    for _ in range(iterations):
        moved = False
        for i in range(len(pos)):
            for j in range(i + 1, len(pos)):
                d = pos[j] - pos[i]
                dist = float(np.hypot(*d))
                if dist >= sep:
                    continue
                if dist < 1e-9:
                    m = pos[i] + pos[j]
                    d = np.array([-m[1], m[0]]) if np.hypot(*m) > 1e-9 else np.array([1.0, 0.0])
                    dist = 0.0
                u = d / max(float(np.hypot(*d)), 1e-12)
                push = (sep - dist) / 2 + 1e-6
                pos[i] -= push * u
                pos[j] += push * u
                moved = True
        off = pos - start
        far = np.hypot(off[:, 0], off[:, 1]) > reach * sep
        if far.any():
            off[far] *= (reach * sep / np.hypot(off[far, 0], off[far, 1]))[:, None]
            pos = start + off
        if not moved:
            break
    return pos


def draw_arrows_2d(ax: plt.Axes, W: np.ndarray, colors: Sequence[Any], labels: Sequence[str] | None = None,
                   lim: float = 1.5, alpha: float = 1.0, lw: float = 1.5, circle: bool = True,
                   label_size: float = 6, label_sep: float = 0.0, not_embedded: float = 0.0) -> list[int]:
    """Columns of a 2-D ``W [2, n]`` as arrows from the origin (the paper's feature diagrams).

    ``label_sep`` > 0 pushes labels apart to at least that distance (data units; see :func:`spread_labels`).
    ``not_embedded`` > 0: features shorter than it get no arrow but an x marker (with their label) in a row
    under the circle; their indices are returned. Otherwise a feature shorter than 1e-3 is a dot at the origin.
    """
    if circle:
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color=PALETTE["grid"], lw=0.6, zorder=0)
    norms = np.hypot(W[0], W[1])
    absent = [i for i in range(W.shape[1]) if norms[i] < not_embedded]
    shown = []
    for i in range(W.shape[1]):
        x, y = W[0, i], W[1, i]
        if i in absent:
            continue
        if norms[i] > 1e-3:
            ax.annotate("", xy=(x, y), xytext=(0, 0), zorder=2,
                        arrowprops={"arrowstyle": "-|>", "color": colors[i], "lw": lw, "alpha": alpha,
                                    "shrinkA": 0, "shrinkB": 0, "mutation_scale": 8})
        else:
            ax.plot([0], [0], "o", color=colors[i], ms=3, alpha=alpha, zorder=3)
        if labels is not None and norms[i] > LABEL_MIN_NORM:
            shown.append(i)
    if shown:
        gap = 0.16 if label_sep <= 0 else 0.16 + 0.01 * label_size  # clear of the arrowhead
        pos = np.array([W[:, i] * (1 + gap / norms[i]) for i in shown])
        if label_sep > 0:
            pos = np.clip(spread_labels(pos, label_sep), -lim + 0.2, lim - 0.15)  # and inside the panel
        for (lx, ly), i in zip(pos, shown):
            ax.text(lx, ly, labels[i], fontsize=label_size, ha="center", va="center", color=colors[i], alpha=alpha)
    for k, i in enumerate(absent):  # a row of x markers under the circle
        x = (k - (len(absent) - 1) / 2) * 0.5 - (0.08 if labels is not None else 0.0)
        ax.plot([x], [-lim + 0.17], marker="x", ms=4.5, mew=1.3, color=colors[i], alpha=alpha, zorder=3,
                clip_on=False)
        if labels is not None:
            ax.text(x + 0.11, -lim + 0.17, labels[i], fontsize=label_size, ha="left", va="center", color=colors[i],
                    alpha=alpha)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return absent


def draw_gram(ax: plt.Axes, W: np.ndarray, vmax: float = 1.0):
    """``W^T W`` cell by cell (``interpolation="nearest"``; give the axes a whole number of pixels per cell for
    a crisp image), diverging colours centred at 0, feature 0 at the top left."""
    im = ax.imshow(metrics.gram(W), cmap=GRAM_CMAP, norm=mcolors.Normalize(-vmax, vmax), interpolation="nearest",
                   aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    return im


def draw_bias(ax: plt.Axes, b: np.ndarray, vmax: float = 1.0) -> None:
    """The bias ``b`` as a column of cells beside ``W^T W`` (row i: feature i), on the same colour scale."""
    ax.imshow(np.asarray(b, dtype=float)[:, None], cmap=GRAM_CMAP, norm=mcolors.Normalize(-vmax, vmax),
              interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines:
        ax.spines[side].set_visible(True)
        ax.spines[side].set_linewidth(0.4)
        ax.spines[side].set_color(PALETTE["theory"])


def draw_norm_bars(ax: plt.Axes, W: np.ndarray, ymax: float = 1.2) -> None:
    """Vertical bars of ``||W_i||`` (feature 0 on the left, under column 0 of ``W^T W``), coloured by
    superposition (0 dark, >= 1 yellow)."""
    norms, sup = metrics.feature_norms(W), metrics.superposition(W)
    n = norms.size
    ax.bar(np.arange(n), norms, width=1.0, color=SUPERPOSITION_CMAP(np.clip(sup, 0, 1)), lw=0)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, max(ymax, float(norms.max()) * 1.05))
    ax.axhline(1.0, color=PALETTE["grid"], lw=0.6, zorder=0)


def importance_colors(n: int) -> list[Any]:
    """One colour per feature, most important (index 0) dark purple to least important yellow."""
    return [plt.get_cmap("viridis")(v) for v in np.linspace(0.0, 0.9, n)]


def importance_label(run: Any) -> str:
    """"I=0.7^i", "I=1" ... from an experiment's importance spec."""
    imp = run.spec.get("importance", {"constant": 1.0})
    if "decay" in imp:
        return f"I={imp['decay']:g}^i"
    return f"I={imp['constant']:g}" if "constant" in imp else "I given"


def reference_line(ax: plt.Axes, y: float, label: str, nudge_pt: float = 0.0, **line: Any) -> None:
    """A horizontal reference line labelled just outside the right edge of the axes; ``nudge_pt`` moves the
    label up (points) so that labels of close lines do not overprint."""
    ax.axhline(y, color=PALETTE["theory"], **line)
    ax.annotate(label, (1.01, y), xycoords=ax.get_yaxis_transform(), xytext=(0, nudge_pt), textcoords="offset points",
                va="center", fontsize=7, color=PALETTE["theory"])
