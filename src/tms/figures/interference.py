"""The worked interference example of the slide deck: three features at 120 degrees in two dimensions.

Analytic (no training). Three "university" features get unit directions 120 degrees apart in a
2-D hidden space (Clemson at 30, Duke at 150, NC State at 270 degrees). Projecting one feature on
another gives -0.5; activating Clemson and Duke together at 0.9 puts ``h = (0, 0.9)``, which the
linear read-out ``W^T h`` turns into 0.45 for each of them and a spurious -0.9 for NC State. A ReLU
on the read-out removes negative interference, which makes every 1-sparse input exact (the
paper's "ReLU makes negative interference free in the 1-sparse case").

One figure, ``interference_worked_example``, drawn from one analysis (:func:`interference_analysis`,
computed once per context) that its claims read too. The directions and the active values are
figure options, so the claims can be checked against other geometries (the tests do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tms.figures.base import PALETTE, FigureContext, FigureOutput, analysis, figure, new_figure
from tms.figures.draw import draw_arrows_2d
from tms.findings import Bar, Measurement, claim

NAMES = ("Clemson", "Duke", "NC State")
ANGLES_DEG = (30.0, 150.0, 270.0)  # the slide deck's vectors (sqrt3/2, 1/2), (-sqrt3/2, 1/2), (0, -1)
ACTIVE = (0.9, 0.9, 0.0)  # Clemson and Duke active together
EXACT = 1e-9  # analytic quantities: equal up to floating-point rounding
LINEAR_MIN_ERROR = 0.1  # the linear read-out "errs": its 1-sparse error exceeds this


def directions(angles_deg: tuple[float, ...] | list[float]) -> np.ndarray:
    """Unit feature directions as the columns of ``W [2, k]``."""
    t = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    W = np.stack([np.cos(t), np.sin(t)])
    W[np.abs(W) < 1e-15] = 0.0  # cos(270 deg) is 1.8e-16, not 0
    return W


def projection(W: np.ndarray, onto: int, of: int) -> float:
    """Coefficient of feature ``of`` projected on feature ``onto``'s direction: ``W_of . W_onto_hat``."""
    u = W[:, onto] / np.linalg.norm(W[:, onto])
    return float(W[:, of] @ u)


def readout(W: np.ndarray, x: np.ndarray, relu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Hidden vector ``h = W x`` and the read-out ``W^T h`` (after a ReLU if ``relu``), no bias."""
    h = W @ x
    out = W.T @ h
    return h, np.maximum(out, 0.0) if relu else out


def one_sparse_error(W: np.ndarray, relu: bool, values: np.ndarray | None = None) -> float:
    """Largest ``|x' - x|`` over 1-sparse inputs (one feature active, at each of ``values``)."""
    values = np.linspace(0.1, 1.0, 10) if values is None else values
    return max((float(np.abs(readout(W, v * e, relu)[1] - v * e).max()) for e in np.eye(W.shape[1]) for v in values),
               default=0.0)


@dataclass(frozen=True)
class InterferenceAnalysis:
    W: np.ndarray  # [2, k] unit feature directions (columns)
    names: list[str]
    projection: float  # feature 1 projected on feature 0's direction
    two_active: dict[str, np.ndarray]  # (b, c) the active input: "input" x, "hidden" h = W x, "linear", "relu"
    one_active: dict[str, np.ndarray]  # (d) feature 0 alone at 1: "input", "linear", "relu" read-outs
    one_sparse_error: dict[str, float]  # largest |x' - x| over 1-sparse inputs: "relu", "linear"
    table: pd.DataFrame


@analysis
def interference_analysis(ctx: FigureContext) -> InterferenceAnalysis:
    W, x = directions(ctx.option("angles_deg")), np.asarray(ctx.option("active"), dtype=np.float64)
    k = W.shape[1]
    if x.shape != (k,):
        raise ValueError(f"figures.interference_worked_example.options.active needs {k} values, got {x.tolist()}")
    names = list(NAMES) if k == len(NAMES) else [f"feature {i}" for i in range(k)]
    (h, lin), (_, rel) = readout(W, x), readout(W, x, relu=True)
    two = {"input": x, "hidden": h, "linear": lin, "relu": rel}
    x1 = np.eye(k)[0]
    one = {"input": x1, "linear": readout(W, x1)[1], "relu": readout(W, x1, relu=True)[1]}
    proj = projection(W, 0, 1)
    per_feature = (("direction_x", W[0]), ("direction_y", W[1]), ("two_active.input", x),
                   ("two_active.linear_readout", lin), ("two_active.relu_readout", rel), ("one_active.input", x1),
                   ("one_active.linear_readout", one["linear"]), ("one_active.relu_readout", one["relu"]))
    rows = [(q, name, v[i]) for i, name in enumerate(names) for q, v in per_feature]
    rows += [("two_active.hidden", "h_x", h[0]), ("two_active.hidden", "h_y", h[1]),
             ("projection", f"{names[1]} on {names[0]}", proj)]
    errors = {"relu": one_sparse_error(W, relu=True), "linear": one_sparse_error(W, relu=False)}
    return InterferenceAnalysis(W, names, proj, two, one, errors,
                                pd.DataFrame(rows, columns=["quantity", "feature", "value"]))


@figure(
    "interference_worked_example", section="introduction",
    title="Interference: three features in two dimensions (worked example)",
    caption=(
        "Three features at 120 degrees in a 2-D hidden space (the slide deck's example). (a) Projecting "
        "Duke on Clemson gives -0.5. (b) Clemson and Duke active at 0.9 give h = (0, 0.9), which NC "
        "State reads as -0.9. (c) The linear read-out W^T h recovers 0.45 for Clemson and Duke and a "
        "spurious -0.9 for NC State; a ReLU removes the negative value. (d) With one feature active "
        "the ReLU read-out is exact: negative interference is free."
    ),
    options={"angles_deg": list(ANGLES_DEG), "active": list(ACTIVE)},
)
def build(ctx: FigureContext) -> FigureOutput:
    an = interference_analysis(ctx)
    W, names, proj, two, one = an.W, an.names, an.projection, an.two_active, an.one_active
    colors = [PALETTE["relu"], PALETTE["linear"], PALETTE["neg"]]
    fig, axes = new_figure(1, 4, figsize=(11.5, 3.0), gridspec_kw={"width_ratios": [1, 1, 1.3, 1.3]})
    ax = axes[0]
    draw_arrows_2d(ax, W, colors, labels=names, lim=1.35)
    foot = proj * W[:, 0]
    ax.plot([W[0, 1], foot[0]], [W[1, 1], foot[1]], ls=":", color=PALETTE["ink"], lw=0.8)
    ax.plot([0, foot[0]], [0, foot[1]], color=PALETTE["ink"], lw=2.2, alpha=0.5)
    ax.annotate(f"projection\n= {proj:+.2f}", foot, xytext=(-1.3, -0.75), fontsize=7, color=PALETTE["ink"])
    ax.set_title("(a) feature directions")
    ax, h = axes[1], two["hidden"]
    draw_arrows_2d(ax, W, colors, labels=names, lim=1.35, alpha=0.35)
    ax.annotate("", xy=h, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": PALETTE["ink"], "lw": 1.6})
    ax.text(h[0] + 0.05, h[1] + 0.05, f"h = ({_fmt(h[0])}, {_fmt(h[1])})", fontsize=7)
    ax.set_title(f"(b) x = ({', '.join(f'{v:g}' for v in two['input'])})")
    _bars(axes[2], names, {"input x": two["input"], "W$^T$h": two["linear"], "ReLU(W$^T$h)": two["relu"]},
          "(c) two features active")
    _bars(axes[3], names, {"input x": one["input"], "W$^T$Wx": one["linear"], "ReLU(W$^T$Wx)": one["relu"]},
          "(d) one feature active")
    fig.tight_layout()
    return FigureOutput(fig, an.table)


def _fmt(v: float) -> str:
    """Two decimals, without the "-0.00" that rounding leaves (cos 90 deg is 6e-17, not 0)."""
    return f"{v:.2f}".replace("-0.00", "0.00")


def _bars(ax, names: list[str], series: dict[str, np.ndarray], title: str) -> None:
    width = 0.8 / len(series)
    shades = [PALETTE["grid"], PALETTE["linear"], PALETTE["relu"]]
    for j, (label, v) in enumerate(series.items()):
        pos = np.arange(len(names)) + (j - (len(series) - 1) / 2) * width
        ax.bar(pos, v, width, label=label, color=shades[j % len(shades)], edgecolor=PALETTE["ink"], lw=0.4)
        for p, val in zip(pos, v):
            ax.text(p, val + (0.03 if val >= 0 else -0.03), _fmt(val), ha="center",
                    va="bottom" if val >= 0 else "top", fontsize=6)
    ax.axhline(0, color=PALETTE["ink"], lw=0.6)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set(ylim=(-1.15, 1.25), title=title)
    ax.legend(loc="lower left", frameon=False)


# --------------------------------------------------------------------------------------------
# Claims (the slide deck's numbers, and the paper's remark on negative interference)


@claim("interference_worked_example.projection", figure="interference_worked_example", section="introduction",
       statement="With three features at 120 degrees in two dimensions, projecting Duke onto Clemson "
                 "gives -0.5 Clemson: activating one feature changes the apparent activation of another.",
       expected="W_Duke . W_Clemson_hat = -0.5", tolerance="1e-9 (analytic)")
def _projection(ctx: FigureContext) -> Measurement:
    p = interference_analysis(ctx).projection
    return Measurement(measured=p, passed=abs(p + 0.5) <= EXACT, detail="dot product of the unit directions",
                       bars=(Bar("|projection + 0.5|", abs(p + 0.5), "<=", EXACT),))


@claim("interference_worked_example.ambiguity", figure="interference_worked_example", section="introduction",
       statement="Activating Clemson and Duke together at 0.9 gives h = (0, 0.9), which the NC State "
                 "direction reads as -0.9: an ambiguous signal on a feature that is not present.",
       expected="NC State read-out (W^T h)_3 = -0.9", tolerance="1e-9 (analytic)")
def _ambiguity(ctx: FigureContext) -> Measurement:
    two = interference_analysis(ctx).two_active
    v, h = float(two["linear"][2]), two["hidden"]
    return Measurement(measured=v, passed=abs(v + 0.9) <= EXACT,
                       detail=f"h = W x = ({h[0]:.3g}, {h[1]:.3g}); read-out W^T h",
                       bars=(Bar("|NC State read-out + 0.9|", abs(v + 0.9), "<=", EXACT),))


@claim("interference_worked_example.recovery", figure="interference_worked_example", section="introduction",
       statement="De-embedding h = (0, 0.9) with W^T recovers Clemson and Duke at 0.45 each: half their "
                 "value, because each cancels half of the other.",
       expected="(W^T h)_Clemson = (W^T h)_Duke = 0.45", tolerance="1e-9 (analytic)")
def _recovery(ctx: FigureContext) -> Measurement:
    out = interference_analysis(ctx).two_active["linear"]
    got = [float(out[0]), float(out[1])]
    worst = max(abs(v - 0.45) for v in got)  # the worse of the two features
    return Measurement(measured=got, passed=worst <= EXACT, detail="linear read-out of the two active features",
                       bars=(Bar("largest |read-out - 0.45|", worst, "<=", EXACT),))


@claim("interference_worked_example.relu_filters_one_sparse", figure="interference_worked_example",
       section="demonstrating",
       statement="ReLU makes negative interference free in the 1-sparse case: with one feature active, "
                 "ReLU(W^T W x) recovers x exactly although W^T W x alone does not.",
       expected="max |ReLU(W^T W x) - x| = 0 over 1-sparse inputs, while the linear read-out errs",
       tolerance="1e-9 (analytic); linear error > 0.1")
def _relu_filters(ctx: FigureContext) -> Measurement:
    err = interference_analysis(ctx).one_sparse_error
    return Measurement(measured={"relu_max_error": err["relu"], "linear_max_error": err["linear"]},
                       passed=err["relu"] <= EXACT and err["linear"] > LINEAR_MIN_ERROR,
                       detail="each feature alone at 0.1, 0.2, ..., 1.0; no bias",
                       bars=(Bar("max |ReLU(W^T W x) - x|", err["relu"], "<=", EXACT),
                             Bar("max |W^T W x - x|", err["linear"], ">", LINEAR_MIN_ERROR)))
