"""The worked interference example of the slide deck: three features at 120 degrees in two dimensions.

Analytic (no training). Three "university" features get unit directions 120 degrees apart in a
2-D hidden space (Clemson at 30, Duke at 150, NC State at 270 degrees). Projecting one feature on
another gives -0.5; activating Clemson and Duke together at 0.9 puts ``h = (0, 0.9)``, which the
linear read-out ``W^T h`` turns into 0.45 for each of them and a spurious -0.9 for NC State. A ReLU
on the read-out removes negative interference, which makes every 1-sparse input exact (the
paper's "ReLU makes negative interference free in the 1-sparse case").

The directions and the active values are figure options, so the claims can be checked against
other geometries (the tests do).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tms.figures.base import PALETTE, FigureContext, FigureOutput, figure, new_figure
from tms.figures.draw import draw_arrows_2d
from tms.findings import Measurement, claim

FIGURE = "interference_worked_example"
NAMES = ("Clemson", "Duke", "NC State")
ANGLES_DEG = (30.0, 150.0, 270.0)  # the slide deck's vectors (sqrt3/2, 1/2), (-sqrt3/2, 1/2), (0, -1)
ACTIVE = (0.9, 0.9, 0.0)  # Clemson and Duke active together
EXACT = 1e-9  # analytic quantities: equal up to floating-point rounding


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
    k = W.shape[1]
    worst = 0.0
    for i in range(k):
        for v in values:
            x = np.zeros(k)
            x[i] = v
            worst = max(worst, float(np.abs(readout(W, x, relu)[1] - x).max()))
    return worst


def _example(ctx: FigureContext) -> tuple[np.ndarray, np.ndarray]:
    """(W, active input x) of the figure, from its options (default: the slide deck's)."""
    W = directions(ctx.option("angles_deg"))
    x = np.asarray(ctx.option("active"), dtype=np.float64)
    if x.shape != (W.shape[1],):
        raise ValueError(f"figures.{FIGURE}.options.active needs {W.shape[1]} values, got {x.tolist()}")
    return W, x


@figure(
    FIGURE,
    section="introduction",
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
    W, x = _example(ctx)
    k = W.shape[1]
    colors = [PALETTE["relu"], PALETTE["linear"], PALETTE["neg"]]
    names = list(NAMES) if k == len(NAMES) else [f"feature {i}" for i in range(k)]
    h, lin = readout(W, x)
    _, rel = readout(W, x, relu=True)
    x1 = np.eye(k)[0]
    _, lin1 = readout(W, x1)
    _, rel1 = readout(W, x1, relu=True)
    proj = projection(W, 0, 1)

    fig, axes = new_figure(1, 4, figsize=(11.5, 3.0), gridspec_kw={"width_ratios": [1, 1, 1.3, 1.3]})
    ax = axes[0]
    draw_arrows_2d(ax, W, colors, labels=names, lim=1.35)
    foot = proj * W[:, 0]
    ax.plot([W[0, 1], foot[0]], [W[1, 1], foot[1]], ls=":", color=PALETTE["ink"], lw=0.8)
    ax.plot([0, foot[0]], [0, foot[1]], color=PALETTE["ink"], lw=2.2, alpha=0.5)
    ax.annotate(f"projection\n= {proj:+.2f}", foot, xytext=(-1.3, -0.75), fontsize=7, color=PALETTE["ink"])
    ax.set_title("(a) feature directions")

    ax = axes[1]
    draw_arrows_2d(ax, W, colors, labels=names, lim=1.35, alpha=0.35)
    ax.annotate("", xy=h, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "color": PALETTE["ink"], "lw": 1.6})
    ax.text(h[0] + 0.05, h[1] + 0.05, f"h = ({_fmt(h[0])}, {_fmt(h[1])})", fontsize=7)
    ax.set_title(f"(b) x = ({', '.join(f'{v:g}' for v in x)})")

    _bars(axes[2], names, {"input x": x, "W$^T$h": lin, "ReLU(W$^T$h)": rel}, "(c) two features active")
    _bars(axes[3], names, {"input x": x1, "W$^T$Wx": lin1, "ReLU(W$^T$Wx)": rel1}, "(d) one feature active")
    fig.tight_layout()

    rows = []
    for i, name in enumerate(names):
        rows += [("direction_x", name, W[0, i]), ("direction_y", name, W[1, i]),
                 ("two_active.input", name, x[i]), ("two_active.linear_readout", name, lin[i]),
                 ("two_active.relu_readout", name, rel[i]), ("one_active.input", name, x1[i]),
                 ("one_active.linear_readout", name, lin1[i]), ("one_active.relu_readout", name, rel1[i])]
    rows += [("two_active.hidden", "h_x", h[0]), ("two_active.hidden", "h_y", h[1]),
             ("projection", f"{names[1]} on {names[0]}", proj)]
    return FigureOutput(fig, pd.DataFrame(rows, columns=["quantity", "feature", "value"]))


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
    ax.set_ylim(-1.15, 1.25)
    ax.legend(loc="lower left", frameon=False)
    ax.set_title(title)


# --------------------------------------------------------------------------------------------
# Claims (the slide deck's numbers, and the paper's remark on negative interference)


@claim(f"{FIGURE}.projection", figure=FIGURE, section="introduction",
       statement="With three features at 120 degrees in two dimensions, projecting Duke onto Clemson "
                 "gives -0.5 Clemson: activating one feature changes the apparent activation of another.",
       expected="W_Duke . W_Clemson_hat = -0.5", tolerance="1e-9 (analytic)")
def _projection(ctx: FigureContext) -> Measurement:
    W, _ = _example(ctx)
    p = projection(W, 0, 1)
    return Measurement(measured=p, passed=abs(p + 0.5) <= EXACT, detail="dot product of the unit directions")


@claim(f"{FIGURE}.ambiguity", figure=FIGURE, section="introduction",
       statement="Activating Clemson and Duke together at 0.9 gives h = (0, 0.9), which the NC State "
                 "direction reads as -0.9: an ambiguous signal on a feature that is not present.",
       expected="NC State read-out (W^T h)_3 = -0.9", tolerance="1e-9 (analytic)")
def _ambiguity(ctx: FigureContext) -> Measurement:
    W, x = _example(ctx)
    _, out = readout(W, x)
    v = float(out[2])
    return Measurement(measured=v, passed=abs(v + 0.9) <= EXACT,
                       detail=f"h = W x = ({(W @ x)[0]:.3g}, {(W @ x)[1]:.3g}); read-out W^T h")


@claim(f"{FIGURE}.recovery", figure=FIGURE, section="introduction",
       statement="De-embedding h = (0, 0.9) with W^T recovers Clemson and Duke at 0.45 each: half their "
                 "value, because each cancels half of the other.",
       expected="(W^T h)_Clemson = (W^T h)_Duke = 0.45", tolerance="1e-9 (analytic)")
def _recovery(ctx: FigureContext) -> Measurement:
    W, x = _example(ctx)
    _, out = readout(W, x)
    got = [float(out[0]), float(out[1])]
    return Measurement(measured=got, passed=max(abs(v - 0.45) for v in got) <= EXACT,
                       detail="linear read-out of the two active features")


@claim(f"{FIGURE}.relu_filters_one_sparse", figure=FIGURE, section="demonstrating",
       statement="ReLU makes negative interference free in the 1-sparse case: with one feature active, "
                 "ReLU(W^T W x) recovers x exactly although W^T W x alone does not.",
       expected="max |ReLU(W^T W x) - x| = 0 over 1-sparse inputs, while the linear read-out errs",
       tolerance="1e-9 (analytic); linear error > 0.1")
def _relu_filters(ctx: FigureContext) -> Measurement:
    W, _ = _example(ctx)
    relu_err, lin_err = one_sparse_error(W, relu=True), one_sparse_error(W, relu=False)
    return Measurement(measured={"relu_max_error": relu_err, "linear_max_error": lin_err},
                       passed=relu_err <= EXACT and lin_err > 0.1,
                       detail="each feature alone at 0.1, 0.2, ..., 1.0; no bias")
