"""Learning dynamics (paper: "Superposition and Learning Dynamics"): ``energy_level_jumps`` and
``geometric_transformations``, each drawn from one typed analysis computed once per context
(:class:`EnergyAnalysis`, :class:`GeometryAnalysis`) that its build and its claims read.

Both figures read weight snapshots taken on a log-spaced schedule (``train.snapshots``) and the
loss of every snapshot on one fixed evaluation batch (common random numbers: the curve is then a
deterministic function of the weights, so its kinks are the model's, not sampling noise).

Events are detected by rules fixed before looking at results:

- a *plateau* of a curve is a run of at least ``min_len`` consecutive snapshots whose values stay
  within ``tol`` of each other;
- a *jump* of a feature's dimensionality is a change of at least ``JUMP_MIN`` between two
  consecutive plateaus, completed within ``SUDDEN`` of the elapsed training time;
- a *loss drop* is a run of snapshot intervals where the loss falls, per unit of log-step, at least
  ``DROP_RATE`` times as fast as the background around it (the lower quartile of the rates within
  half a decade of steps), removing at least ``DROP_MIN`` of the loss and at least ``NOISE_FACTOR``
  times the curve's snapshot-to-snapshot jitter once training has settled; its extent is the run;
- a jump and a drop *coincide* when the jump's interval overlaps the drop's extent widened by one
  snapshot on each side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from tms import metrics, rng
from tms.data import FeatureSets
from tms.evaluation import draw_inputs, losses_on
from tms.figures.base import PALETTE, FigureContext, FigureOutput, analysis, figure
from tms.figures.draw import reference_line
from tms.findings import Bar, Measurement, claim

# detection rules (see the module docstring)
PLATEAU_TOL = 0.05  # D values within a plateau stay within this of each other
PLATEAU_LEN = 4  # snapshots
JUMP_MIN = 0.15  # smallest level change that counts as a jump (the gap 2/3 -> 1/2 is 1/6)
SUDDEN = 0.5  # a jump completes within this fraction of the steps trained so far
DROP_RATE = 3.0  # a drop falls >= 3x faster (per log-step) than the background around it
DROP_WINDOW = 0.5  # decades of steps on each side that define "around it"
DROP_BASE_Q = 0.25  # the background: this quantile of the falling rates around (the plateaus)
DROP_MIN = 0.002  # a drop removes >= 0.2 % of the loss ...
NOISE_FACTOR = 5.0  # ... and >= 5x the curve's own snapshot-to-snapshot jitter (SGD noise in the weights)
LEVELS = np.array([0.0, 3 / 8, 2 / 5, 1 / 2, 2 / 3, 3 / 4, 1.0])  # the paper's dimensionality lines
LEVEL_NAMES = ("0", "3/8", "2/5", "1/2", "2/3", "3/4", "1")  # ... as the paper writes them
LEVEL_TOL = 0.05
#: What a jump is, by the plateaus around it (:func:`classify_jumps`).
BETWEEN, GROWTH, LEVEL_TO_OFF, OFF_LEVEL = "between_levels", "growth", "level_to_off_level", "off_level"
JUMP_KINDS = (BETWEEN, GROWTH, LEVEL_TO_OFF, OFF_LEVEL)
#: A priori claim thresholds.
ALIGN_MIN = 0.75  # share of jump events that coincide with a loss drop ...
CHANCE_MARGIN = 0.2  # ... and by at least this much more than randomly placed events would
CHANCE_FROM = 10  # random placements start at this step (no jumps are detected in the first steps)
ATTRACTOR_MIN = 0.5  # share of runs that end in the cross-set octahedron ("a strong attractor")
REGIMES_MIN = 3  # loss plateaus (distinct regimes) in training: >= 2 drops between them
REGIMES_RUNS_MIN = 0.5  # ... in more than this share of all runs ("the majority")
LEVEL_SHARE_MIN = 0.8  # share of the shown run's plateaus that lie at a discrete level (strict reading) and of
#                        its jumps from a level that end at one (the revised reading keeps the same 0.8)


# --------------------------------------------------------------------------------------------
# Event detection (pure numpy; unit-tested on synthetic curves)


def plateaus(y: np.ndarray, tol: float = PLATEAU_TOL, min_len: int = PLATEAU_LEN) -> list[tuple[int, int]]:
    """Maximal runs ``(first, last)`` of >= ``min_len`` consecutive values within ``tol`` of each other
    (greedy from the left)."""
    y = np.asarray(y, dtype=float)
    out, i = [], 0
    while i < len(y):
        j, lo, hi = i, y[i], y[i]
        while j + 1 < len(y) and max(hi, y[j + 1]) - min(lo, y[j + 1]) <= tol:
            j += 1
            lo, hi = min(lo, y[j]), max(hi, y[j])
        if j - i + 1 >= min_len:
            out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


@dataclass(frozen=True)
class Jump:
    feature: int
    start: int  # last snapshot of the plateau before
    end: int  # first snapshot of the plateau after
    before: float
    after: float


def detect_jumps(steps: np.ndarray, D: np.ndarray, jump_min: float = JUMP_MIN, sudden: float = SUDDEN,
                 tol: float = PLATEAU_TOL, min_len: int = PLATEAU_LEN) -> list[Jump]:
    """Jumps of every feature's dimensionality: ``D [S, n]`` at ``steps [S]``."""
    steps = np.asarray(steps, dtype=float)
    out = []
    for i in range(D.shape[1]):
        ps = plateaus(D[:, i], tol, min_len)
        for (a0, a1), (b0, b1) in zip(ps[:-1], ps[1:]):
            before, after = float(np.median(D[a0: a1 + 1, i])), float(np.median(D[b0: b1 + 1, i]))
            quick = steps[b0] - steps[a1] <= sudden * max(steps[a1], 1.0)
            if abs(after - before) >= jump_min and quick:
                out.append(Jump(i, a1, b0, before, after))
    return out


@dataclass(frozen=True)
class Drop:
    start: int  # snapshot where the fast fall begins
    end: int  # snapshot where it ends
    size: float  # fraction of the loss removed


def detect_drops(steps: np.ndarray, loss: np.ndarray, rate: float = DROP_RATE, window: float = DROP_WINDOW,
                 min_drop: float = DROP_MIN, quantile: float = DROP_BASE_Q) -> list[Drop]:
    """Sudden drops of a loss curve ``loss [S]`` at ``steps [S]`` (see the module docstring).

    The falling rate is measured per unit of log-step (a power-law background decay is then
    constant; step 0 counts as step 1); the background is the ``quantile`` of the rates within
    ``window`` decades of steps on either side, so a drop as wide as the window still stands out.
    """
    t = np.log10(np.maximum(np.asarray(steps, dtype=float), 1.0))
    ll = np.log(np.asarray(loss, dtype=float))
    dt = np.diff(t)
    g = np.where(dt > 0, -np.diff(ll) / np.where(dt > 0, dt, 1.0), 0.0)  # falling rate per interval
    mid = (t[1:] + t[:-1]) / 2
    fast = np.zeros(len(g), dtype=bool)
    for k in range(len(g)):
        near = np.abs(mid - mid[k]) <= window
        base = max(float(np.quantile(g[near], quantile)), 0.0)
        fast[k] = g[k] > 0 and g[k] >= rate * base
    floor = max(min_drop, 1.0 - float(np.exp(-NOISE_FACTOR * jitter(ll))))
    out, k = [], 0
    while k < len(g):
        if not fast[k]:
            k += 1
            continue
        j = k
        while j + 1 < len(g) and fast[j + 1]:
            j += 1
        size = 1.0 - float(np.exp(ll[j + 1] - ll[k]))
        if size >= floor:
            out.append(Drop(k, j + 1, size))
        k = j + 1
    return out


def jitter(log_loss: np.ndarray, tail: float = 0.25) -> float:
    """Snapshot-to-snapshot noise of a log-loss curve: the median absolute change over the last
    ``tail`` of the snapshots (where training has settled), scaled to a standard deviation."""
    d = np.diff(np.asarray(log_loss, dtype=float)[-max(3, int(len(log_loss) * tail)):])
    return float(1.4826 * np.median(np.abs(d - np.median(d)))) if d.size else 0.0


def group_jumps(jumps: list[Jump]) -> list[tuple[int, int, list[Jump]]]:
    """Jump *events*: jumps whose snapshot intervals overlap are one event ``(start, end, jumps)``."""
    events: list[tuple[int, int, list[Jump]]] = []
    for j in sorted(jumps, key=lambda j: (j.start, j.end)):
        if events and j.start <= events[-1][1]:
            s, e, js = events[-1]
            events[-1] = (s, max(e, j.end), js + [j])
        else:
            events.append((j.start, j.end, [j]))
    return events


def coincide(event: tuple[int, int, Any], drops: list[Drop]) -> bool:
    """Whether a jump event overlaps a drop widened by one snapshot on each side."""
    s, e = event[0], event[1]
    return any(s <= d.end + 1 and e >= d.start - 1 for d in drops)


def chance_alignment(events: list[tuple[int, int, Any]], drops: list[Drop], lo: int, hi: int) -> float:
    """Share of ``events`` that would coincide with ``drops`` if the events were placed at random:
    the mean over every circular shift of the events within snapshots ``[lo, hi)``."""
    span = hi - lo
    if not events or span <= 0:
        return float("nan")
    hits = 0
    for d in range(span):
        for s, e, _ in events:
            s2 = lo + (s - lo + d) % span
            hits += coincide((s2, s2 + (e - s), None), drops)
    return hits / (span * len(events))


def at_level(values: np.ndarray, levels: np.ndarray = LEVELS, tol: float = LEVEL_TOL) -> np.ndarray:
    """Whether each value lies within ``tol`` of one of the discrete dimensionality levels."""
    v = np.asarray(values, dtype=float)
    return (np.abs(v[..., None] - levels).min(-1) <= tol)


def level_name(value: float) -> str:
    """The paper's name of the level nearest to ``value`` (``LEVEL_NAMES``)."""
    return LEVEL_NAMES[int(np.argmin(np.abs(LEVELS - value)))]


def classify_jumps(D: np.ndarray, jumps: list[Jump], tol: float = PLATEAU_TOL, min_len: int = PLATEAU_LEN,
                   level_tol: float = LEVEL_TOL) -> list[str]:
    """The kind of each jump of ``D [S, n]`` (from :func:`detect_jumps` with the same plateau rule):

    - ``between_levels``: the plateaus before and after both lie within ``level_tol`` of a level;
    - ``growth``: the plateau before is off-level and the feature has not yet sat on a plateau at a level, i.e.
      it leaves the undifferentiated phase of early training (a feature's growth, not a jump between levels);
    - ``level_to_off_level``: starts at a level and ends off-level;
    - ``off_level``: starts off-level after the feature has already sat at a level.
    """
    D = np.asarray(D, dtype=float)
    first_at_level: dict[int, float] = {}  # feature -> last snapshot of its first plateau at a level
    for i in {j.feature for j in jumps}:
        for a, b in plateaus(D[:, i], tol, min_len):
            if at_level(np.median(D[a: b + 1, i]), tol=level_tol):
                first_at_level[i] = b
                break
    out = []
    for j in jumps:
        start, end = bool(at_level(j.before, tol=level_tol)), bool(at_level(j.after, tol=level_tol))
        if start:
            out.append(BETWEEN if end else LEVEL_TO_OFF)
        else:
            out.append(OFF_LEVEL if first_at_level.get(j.feature, np.inf) <= j.start else GROWTH)
    return out


def jump_kinds_summary(jumps: list[Jump], kinds: list[str]) -> dict[str, Any]:
    """Counts of each jump kind and the level pairs of the jumps between levels ("1 -> 1/2": k)."""
    pairs: dict[str, int] = {}
    for j, k in zip(jumps, kinds):
        if k == BETWEEN:
            key = f"{level_name(j.before)} -> {level_name(j.after)}"
            pairs[key] = pairs.get(key, 0) + 1
    counts = {k: sum(x == k for x in kinds) for k in JUMP_KINDS}
    from_level = counts[BETWEEN] + counts[LEVEL_TO_OFF]
    return {"jumps": len(jumps), **counts, "level_pairs": dict(sorted(pairs.items())), "from_level": from_level,
            "from_level_ending_at_level_share": counts[BETWEEN] / from_level if from_level else None}


# --------------------------------------------------------------------------------------------
# Geometry of 3-D embeddings


def octahedron_check(W: np.ndarray, sets: np.ndarray, norm_min: float = 0.5, anti: float = -0.9,
                     ortho: float = 0.1) -> dict[str, Any]:
    """Whether ``W [3, 6]`` is an octahedron of 3 mutually orthogonal antipodal pairs, and whether
    every pair joins features of different sets (``sets [6]``).

    Pairs are matched greedily by most negative cosine. Returns ``octahedron``, ``cross_set`` (both
    bool) and the measured ``min_norm``, ``max_pair_cos``, ``max_cross_cos``.
    """
    W = np.asarray(W, dtype=float)
    norms = np.linalg.norm(W, axis=0)
    U = W / np.maximum(norms, 1e-12)
    C = U.T @ U
    free, pairs = list(range(W.shape[1])), []
    while len(free) >= 2:
        sub = C[np.ix_(free, free)] + 3 * np.eye(len(free))
        a, b = np.unravel_index(np.argmin(sub), sub.shape)
        pairs.append((free[a], free[b]))
        free = [f for k, f in enumerate(free) if k not in (a, b)]
    pair_cos = [C[a, b] for a, b in pairs]
    cross = [abs(C[i, j]) for p in pairs for q in pairs if p < q for i in p for j in q]
    octa = bool(W.shape[1] == 6 and norms.min() > norm_min and max(pair_cos) < anti and max(cross) < ortho)
    mixed = bool(all(sets[a] != sets[b] for a, b in pairs))
    return {"octahedron": octa, "cross_set": octa and mixed, "min_norm": float(norms.min()),
            "max_pair_cos": float(max(pair_cos)), "max_cross_cos": float(max(cross)), "pairs": pairs}


# --------------------------------------------------------------------------------------------
# Snapshot losses


def snapshot_losses(run: Any, instance: int, examples: int = 8192, seed: int = 0) -> np.ndarray:
    """Loss (the trainer's convention) of every snapshot of one instance on one fixed batch, drawn once
    and scored one snapshot at a time (scoring all snapshots as one batch of models changes the last
    bits of the losses at the default config's sizes, and with them the drops)."""
    key = torch.tensor([rng.derive_key("tms.figures.dynamics", int(seed), int(instance))], dtype=torch.int64)
    sets = FeatureSets.parse(run.spec.get("feature_sets"), int(run.spec["n_features"]))
    imp, dens = run.arrays["importance"][instance], run.arrays["density"][instance]
    x = draw_inputs(key, dens, sets, examples, run.kind.signed_inputs)
    snaps = {name: run.snapshots(name)[:, instance] for name in run.kind.param_names}
    return np.concatenate([losses_on(run.kind, {k: v[s: s + 1] for k, v in snaps.items()}, imp, x)
                           for s in range(len(run.arrays["snapshot_steps"]))])


# --------------------------------------------------------------------------------------------
# energy_level_jumps


@dataclass(frozen=True)
class RunEvents:
    """Events of one instance's training run."""

    instance: int
    density: float
    steps: np.ndarray
    D: np.ndarray  # [S, n]
    loss: np.ndarray  # [S]
    jumps: list[Jump]
    kinds: list[str]  # classify_jumps of each jump
    drops: list[Drop]
    events: list[tuple[int, int, list[Jump]]]
    aligned: list[bool]
    chance: float  # aligned share expected for randomly placed events (see chance_alignment)
    final_digon_share: float  # share of represented features with D within LEVEL_TOL of 1/2
    final_loss: float


def run_events(run: Any, instance: int) -> RunEvents:
    steps = np.asarray(run.arrays["snapshot_steps"])
    W = run.snapshots("W")[:, instance]
    D = metrics.dimensionality(W)
    loss = snapshot_losses(run, instance)
    jumps = detect_jumps(steps, D)
    drops = detect_drops(steps, loss)
    events = group_jumps(jumps)
    rep = np.linalg.norm(W[-1], axis=0) > metrics.REPRESENTED_NORM
    digon = float((np.abs(D[-1][rep] - 0.5) <= LEVEL_TOL).mean()) if rep.any() else 0.0
    lo = int(np.searchsorted(steps, CHANCE_FROM))  # events before this step are the initial transient
    return RunEvents(instance, float(run.arrays["density"][instance, 0]), steps, D, loss, jumps,
                     classify_jumps(D, jumps), drops, events,
                     [coincide(e, drops) for e in events], chance_alignment(events, drops, lo, len(steps) - 1),
                     digon, float(run.loss[instance]))


DIGON_MIN = 0.9  # "all features converge into digons": >= 90 % of represented features at D = 1/2


def _jump_stats(runs: list[RunEvents]) -> dict[str, Any]:
    events = sum(len(r.events) for r in runs)
    aligned = sum(sum(r.aligned) for r in runs)
    chance = sum(r.chance * len(r.events) for r in runs if r.events) / events if events else float("nan")
    widths = [np.log10(max(r.steps[d.end], 1) / max(r.steps[d.start], 1)) for r in runs for d in r.drops]
    return {"runs": len(runs), "runs_with_jumps": sum(bool(r.events) for r in runs),
            "jump_events": events, "aligned_events": aligned,
            "aligned_share": aligned / events if events else float("nan"), "chance_share": chance,
            "drops": sum(len(r.drops) for r in runs),
            "median_drop_width_decades": float(np.median(widths)) if widths else float("nan")}


@dataclass(frozen=True)
class EnergyAnalysis:
    """What energy_level_jumps draws and its claims read."""

    runs: list[RunEvents]  # every instance of the experiment
    digon: list[RunEvents]  # the runs whose represented features all end as digons
    shown: RunEvents  # among the all-digon runs, the one with the most jump events (ties: lowest final loss)
    drawn: np.ndarray  # features of the shown run represented at the end (D > 0.05), drawn
    extra: np.ndarray  # features of the shown run not represented at the end that jump, drawn too
    stats: dict[str, Any]  # jump and drop statistics pooled over the all-digon runs (every run if none is)
    table: pd.DataFrame  # series (D_<i>, loss, drop_start_end, jump_event_start_end, then D_<i> of the extra
    #                      features and jump_<kind>_D_<i>: start step and D before, end step and D after), step, value


@analysis
def energy_analysis(ctx: FigureContext) -> EnergyAnalysis:
    run = ctx.run(ctx.experiments[0])
    runs = [run_events(run, i) for i in range(run.arrays["final_loss"].shape[0])]
    digon = [r for r in runs if r.final_digon_share >= DIGON_MIN]
    r = min(digon or runs, key=lambda r: (-len(r.events), r.final_loss))
    keep = np.flatnonzero(r.D[-1] > 0.05)
    rows = [pd.DataFrame({"series": f"D_{i}", "step": r.steps, "value": r.D[:, i]}) for i in keep]
    rows.append(pd.DataFrame({"series": "loss", "step": r.steps, "value": r.loss}))
    rows.append(pd.DataFrame({"series": "drop_start_end",
                              "step": [r.steps[v] for d in r.drops for v in (d.start, d.end)],
                              "value": [d.size for d in r.drops for _ in (0, 1)]}))
    rows.append(pd.DataFrame({"series": "jump_event_start_end",
                              "step": [r.steps[v] for s, e, _ in r.events for v in (s, e)],
                              "value": [float(a) for a in r.aligned for _ in (0, 1)]}))
    extra = np.array(sorted({j.feature for j in r.jumps} - set(keep.tolist())), dtype=int)
    rows += [pd.DataFrame({"series": f"D_{i}", "step": r.steps, "value": r.D[:, i]}) for i in extra]
    rows += [pd.DataFrame({"series": f"jump_{k}_D_{j.feature}", "step": [r.steps[j.start], r.steps[j.end]],
                           "value": [j.before, j.after]}) for j, k in zip(r.jumps, r.kinds)]
    return EnergyAnalysis(runs, digon, r, keep, extra, _jump_stats(digon or runs), pd.concat(rows, ignore_index=True))


#: How each kind of jump is drawn: marker, colour, filled, legend label.
JUMP_STYLE = {
    BETWEEN: ("D", PALETTE["pos"], True, "jump between two levels"),
    GROWTH: ("o", "#777777", False, "growth, out of the undifferentiated phase"),
    LEVEL_TO_OFF: ("v", PALETTE["neg"], False, "jump from a level to no level"),
    OFF_LEVEL: ("s", "#777777", False, "jump between off-level plateaus"),
}
#: Labels of the level lines that would overprint at 7 pt (points up / down).
LEVEL_NUDGE = {"2/5": 3.5, "3/8": -3.5}


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def _loss_axis(ax: plt.Axes, loss: np.ndarray, decades_only: bool = False) -> None:
    """Readable loss axis: plain decimals; log scale only where the loss spans more than a factor 5 (ticks at
    1, 2 and 5 x 10^k; with ``decades_only`` at 10^k alone where the loss spans more than a factor 30)."""
    fmt = FuncFormatter(lambda v, _: f"{v:.3g}")
    lo, hi = float(np.min(loss)), float(np.max(loss))
    if lo > 0 and hi / lo > 5:
        ax.set_yscale("log")
        subs = (1.0,) if decades_only and hi / lo > 30 else (1.0, 2.0, 5.0)
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_formatter(fmt)


@figure("energy_level_jumps", section="learning_dynamics",
        title="Feature dimensionalities and loss over training (uniform superposition)",
        caption="Uniform superposition (all features equally important and sparse). Shown: among the runs "
                "(densities x restarts) whose represented features all end as digons (D = 1/2), the one with the "
                "most detected jump events. Top: the dimensionality D_i over training of every feature represented "
                "at the end and of any other feature that jumps (one line per feature; the colours only tell "
                "features apart). Dotted lines: the levels, the dimensionalities of the paper's uniform polytopes "
                "1, 3/4 (tetrahedron), 2/3 (triangle), 1/2 (antipodal pair), 2/5 (pentagon), 3/8 (square "
                "antiprism) and 0 (not learned). Markers: the detected jumps of a feature's D (>= 0.15 between two "
                "plateaus of >= 4 snapshots within 0.05, done within half the steps trained so far), drawn from the "
                "end of the plateau before to the start of the plateau after: filled red diamonds, a jump whose "
                "plateaus before and after both lie within 0.05 of a level (a jump between levels); open grey "
                "circles, a jump out of the undifferentiated D of early training (growth: the plateau before is "
                "off-level and the feature has not yet sat at a level); open blue triangles, a jump from a level to "
                "an off-level plateau; open grey squares, a jump between off-level plateaus after the feature has "
                "sat at a level (the last two are shown only where they occur). Bottom: the loss over the same "
                "steps, every snapshot evaluated on one fixed batch (log scale where it spans more than a factor "
                "5). Grey bands (both panels): detected loss drops (rules in tms.figures.dynamics).")
def build_energy(ctx: FigureContext) -> FigureOutput:
    an = energy_analysis(ctx)
    r = an.shown
    x = np.maximum(r.steps, 1)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.4, 4.9), sharex=True, gridspec_kw={"height_ratios": [3, 1.6]})
    for name, v in zip(LEVEL_NAMES, LEVELS):
        reference_line(ax, float(v), name, nudge_pt=LEVEL_NUDGE.get(name, 0.0), ls=":", lw=0.6, zorder=0)
    cmap = plt.get_cmap("viridis")
    lines = list(an.drawn) + list(an.extra)
    for k, i in enumerate(lines):
        ax.plot(x, r.D[:, i], color=cmap(0.85 * k / max(len(lines) - 1, 1)), lw=0.8, alpha=0.85, zorder=2)
    counts = {k: sum(x_ == k for x_ in r.kinds) for k in JUMP_KINDS}
    for j, kind in zip(r.jumps, r.kinds):
        marker, colour, filled, _ = JUMP_STYLE[kind]
        ax.plot([x[j.start], x[j.end]], [j.before, j.after], color=colour, lw=1.6, alpha=0.5, zorder=3)
        ax.plot([x[j.start], x[j.end]], [j.before, j.after], ls="none", marker=marker, ms=4.5, mew=0.9,
                color=colour, mfc=colour if filled else "white", zorder=4)
    for d in r.drops:
        for a in (ax, ax2):
            a.axvspan(x[d.start], x[d.end], color="#999999", alpha=0.25, lw=0, zorder=0)
    ax2.plot(x, r.loss, color=PALETTE["relu"], lw=1.0)
    ax.set(ylabel="feature dimensionality D_i", ylim=(-0.03, 1.06), xscale="log")
    ax2.set(ylabel="loss", xlabel="training step")
    _loss_axis(ax2, r.loss)
    between = sum(x_ == BETWEEN for x_ in r.kinds)
    ax.set_title(f"instance {r.instance}, density {r.density:.3g}: {_n(len(r.jumps), 'feature jump')} ({between} "
                 f"between levels) in {_n(len(r.events), 'event')}; {_n(len(r.drops), 'loss drop')}", fontsize=8)
    more = f" + {len(an.extra)} that jump" if len(an.extra) else ""
    handles = [Line2D([], [], color=cmap(0.4), lw=0.8, label=f"D_i of a feature ({len(an.drawn)} represented "
                                                             f"at the end{more})"),
               Line2D([], [], color=PALETTE["theory"], ls=":", lw=0.6, label="level (label on the right)"),
               Patch(facecolor="#999999", alpha=0.25, lw=0, label="detected loss drop"),
               Line2D([], [], color=PALETTE["relu"], lw=1.0, label="loss (fixed evaluation batch)")]
    for kind in JUMP_KINDS:
        marker, colour, filled, label = JUMP_STYLE[kind]
        if kind in (BETWEEN, GROWTH) or counts[kind]:
            handles.append(Line2D([], [], color=colour, ls="none", marker=marker, ms=4.5, mew=0.9,
                                  mfc=colour if filled else "white", label=f"{label} ({counts[kind]})"))
    ncol = 2
    rows = -(-len(handles) // ncol)
    fig.tight_layout(rect=(0, (0.12 + 0.16 * rows) / fig.get_figheight(), 0.97, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0),
               handlelength=1.6, columnspacing=1.2)
    return FigureOutput(fig, an.table)


DISCRETE_AUDIT = (
    "Revised after review (issue 12). The paper: the learning dynamics are dominated by 'energy level jumps' "
    "'where features jump between different feature dimensionalities', and 'the dimensionality of some features "
    "\"jump\" between different values and swap places'. A jump between levels starts and ends at a level. The first "
    "reading asked that 80 % of all plateaus of the shown run lie at a level, and so counted the undifferentiated D "
    "of early training (D ~ 0.1-0.3 in this build's runs), before a feature first reaches a level. That phase is not "
    "a level: the levels are the dimensionalities of the polytopes a feature can belong to (1, 3/4, 2/3, 1/2, 2/5, "
    "3/8, and 0 for a feature not learned), and a jump out of it is the feature's growth, not a jump between "
    "levels. This reading asks for what the sentence describes: at least one jump in the shown run whose plateaus "
    "before and after both lie at a level, and that the jumps which start at a level end at one (the first "
    "reading's 80 %, now over the jumps the paper's sentence is about). Growth jumps and jumps from a level to no "
    "level are counted in measured, not hidden. The first reading is still reported as "
    "energy_level_jumps.discrete_jumps_strict. (The default build's first-reading numbers, 0 % of 29 jumps "
    "starting at a level, were known when this was written.)")


@claim("energy_level_jumps.discrete_jumps", figure="energy_level_jumps", section="learning_dynamics",
       statement="Feature dimensionalities jump between discrete values ('energy levels') during training: some "
                 "features jump from one level to another.",
       expected=f"the shown all-digon run has >= 1 jump whose plateaus before and after both lie within {LEVEL_TOL} "
                f"of a level {{0, 3/8, 2/5, 1/2, 2/3, 3/4, 1}}, and >= {LEVEL_SHARE_MIN:.0%} of its jumps that start "
                "at a level end at one",
       tolerance=f"jump: >= {JUMP_MIN} between plateaus ({PLATEAU_LEN}+ snapshots within {PLATEAU_TOL}), done within "
                 f"{SUDDEN:.0%} of the steps so far; jumps out of the undifferentiated phase (before a feature's first "
                 "plateau at a level) are growth, counted apart",
       audit=DISCRETE_AUDIT,
       explanation=("At the paper's n = 400, m = 30 jumps between levels occur (2 in the shown run, 12 of 115 jumps "
                    "in the four all-digon runs, 11 of them 3/8 -> 1/2), but of the shown run's 3 jumps that start "
                    "at a level one ends off any level (2 of 3 = 0.67, needs 0.8); most jumps (94 of 115) are growth "
                    "out of the undifferentiated phase. At n = 100, m = 10 (earlier builds) there were none between "
                    "levels (0 of 29): each feature grew once into its final level. The dynamics the paper describes "
                    "appear at its scale, at a rate this criterion, fixed before the run, judges short. The two "
                    "other seeds and twice the steps reproduce it (fragile): the verdict rests on the three jumps of "
                    "one run."))
def _(ctx: FigureContext) -> Measurement:
    return discrete_jumps_measurement(energy_analysis(ctx))


def discrete_jumps_measurement(an: EnergyAnalysis) -> Measurement:
    """The between-levels reading of the energy-level jumps (see :data:`DISCRETE_AUDIT`)."""
    r = an.shown
    shown = jump_kinds_summary(r.jumps, r.kinds)
    pool = an.digon or an.runs
    pooled = jump_kinds_summary([j for run in pool for j in run.jumps], [k for run in pool for k in run.kinds])
    between, from_level, share = shown[BETWEEN], shown["from_level"], shown["from_level_ending_at_level_share"]
    bars = [Bar("jumps between two levels in the shown run", between, ">=", 1, "jumps", step=1)]
    if from_level:
        bars.append(Bar("share of the shown run's jumps from a level that end at a level", share, ">=",
                        LEVEL_SHARE_MIN, "share of jumps", step=1 / from_level))
    ok = between >= 1 and share is not None and share >= LEVEL_SHARE_MIN
    m = {"shown_jumps": shown["jumps"], "shown_jump_events": len(r.events),
         "jumps_between_levels": between, "level_pairs": shown["level_pairs"],
         "jumps_from_undifferentiated": shown[GROWTH], "jumps_from_a_level_to_no_level": shown[LEVEL_TO_OFF],
         "jumps_between_off_level_plateaus": shown[OFF_LEVEL], "jumps_from_a_level": from_level,
         "from_level_ending_at_level_share": share,
         "pooled": {"runs": len(pool), "all_digon": bool(an.digon), **{k: pooled[k] for k in (
             "jumps", BETWEEN, GROWTH, LEVEL_TO_OFF, OFF_LEVEL, "level_pairs")}}}
    pairs = ", ".join(f"{k}: {v}" for k, v in shown["level_pairs"].items()) or "none"
    return Measurement(
        measured=m, passed=bool(ok), bars=tuple(bars),
        detail=(f"Shown run (instance {r.instance}, density {r.density:.3g}): {shown['jumps']} feature jumps in "
                f"{len(r.events)} events: {between} between two levels ({pairs}), {shown[GROWTH]} growth out of the "
                f"undifferentiated phase, {shown[LEVEL_TO_OFF]} from a level to no level, {shown[OFF_LEVEL]} between "
                f"off-level plateaus; of the {from_level} jumps that start at a level "
                + (f"{share:.0%} end at one" if share is not None else "none can be judged") + ". Pooled over the "
                f"{len(pool)} {'all-digon ' if an.digon else ''}runs (not judged): {pooled['jumps']} jumps, "
                f"{pooled[BETWEEN]} between levels, {pooled[GROWTH]} growth, {pooled[LEVEL_TO_OFF]} from a level to no "
                f"level, {pooled[OFF_LEVEL]} between off-level plateaus."))


@claim("energy_level_jumps.discrete_jumps_strict", figure="energy_level_jumps", section="learning_dynamics",
       statement="(Strict reading, kept from before the audit.) Feature dimensionalities jump between discrete values "
                 "('energy levels') during training, and the plateaus they sit on lie at the levels.",
       expected="the shown all-digon run has >= 1 jump event, and >= 80 % of the plateaus its features sit on "
                "lie within 0.05 of a level {0, 3/8, 2/5, 1/2, 2/3, 3/4, 1}",
       tolerance=f"jump: >= {JUMP_MIN} between plateaus ({PLATEAU_LEN}+ snapshots within {PLATEAU_TOL}), done "
                 f"within {SUDDEN:.0%} of the steps so far",
       audit="The first reading; see energy_level_jumps.discrete_jumps for why it was revised.")
def _(ctx: FigureContext) -> Measurement:
    an = energy_analysis(ctx)
    r, stats = an.shown, an.stats
    levels = [float(np.median(r.D[a: b + 1, i])) for i in an.drawn for a, b in plateaus(r.D[:, i])]
    share = float(at_level(np.asarray(levels)).mean()) if levels else float("nan")
    jumps = [j for run in an.digon or an.runs for j in run.jumps]
    before = float(at_level(np.array([j.before for j in jumps])).mean()) if jumps else float("nan")
    after = float(at_level(np.array([j.after for j in jumps])).mean()) if jumps else float("nan")
    ok = bool(r.events) and levels and share >= LEVEL_SHARE_MIN
    return Measurement(
        measured={"shown_jump_events": len(r.events), "plateaus_at_level_share": share,
                  "jump_start_at_level_share": before, "jump_end_at_level_share": after,
                  "all_digon_runs": len(an.digon), "runs": len(an.runs), **stats},
        passed=bool(ok),
        bars=(Bar("jump events in the shown run", len(r.events), ">=", 1, "events", step=1),
              Bar("share of the shown run's plateaus at a level", share, ">=", LEVEL_SHARE_MIN, "share of plateaus",
                  step=1 / len(levels) if levels else 0.0)),
        detail=(f"Shown run (instance {r.instance}, density {r.density:.3g}): {len(r.jumps)} feature jumps in "
                f"{len(r.events)} events; {share:.0%} of {len(levels)} plateaus at a discrete level. "
                f"{len(an.digon)} of {len(an.runs)} runs end all-digon; {stats['runs_with_jumps']} of them "
                f"show jumps ({stats['jump_events']} events, {len(jumps)} feature jumps): {after:.0%} of the jumps "
                f"end at a discrete level but only {before:.0%} start at one (most start from the undifferentiated "
                "D ~ 0.1-0.3 of early training)."))


@claim("energy_level_jumps.loss_drops_align", figure="energy_level_jumps", section="learning_dynamics",
       statement="As features jump between dimensionalities, the loss curve undergoes a sudden drop at the "
                 "same time.",
       expected=f">= {ALIGN_MIN:.0%} of jump events coincide with a detected loss drop, pooled over every run "
                f"that ends all-digon, and >= {CHANCE_MARGIN:.0%} more than for randomly placed events",
       tolerance="coincide: the event's snapshot interval overlaps the drop's widened by one snapshot",
       explanation=("5 of 6 jump events coincide with a loss drop (83%, above the 75% bar), but at the paper's n = "
                    "400, m = 30 the 9 detected drops are broad (median 0.38 decades of training steps), so randomly "
                    "placed events would coincide 72% of the time: the alignment is not 20% above chance. With only "
                    "6 events in 4 runs the test has little power; at n = 100, m = 10 (earlier builds, more "
                    "separated drops) it passed. Not reproduced in every variant of the robustness run."))
def _(ctx: FigureContext) -> Measurement:
    an = energy_analysis(ctx)
    stats, shown = an.stats, an.shown
    ok = (stats["jump_events"] > 0 and stats["aligned_share"] >= ALIGN_MIN
          and stats["aligned_share"] >= stats["chance_share"] + CHANCE_MARGIN)
    n = stats["jump_events"]
    # the chance bar compares the aligned share with chance + margin exactly as the verdict does
    bars = (Bar("share of jump events with a loss drop", stats["aligned_share"], ">=", ALIGN_MIN, "share of events",
                step=1 / n),
            Bar(f"share of jump events with a loss drop, vs chance + {CHANCE_MARGIN:.0%}", stats["aligned_share"],
                ">=", stats["chance_share"] + CHANCE_MARGIN, "share of events", step=1 / n)) if n else ()
    return Measurement(
        measured={**stats, "shown_aligned": sum(shown.aligned), "shown_events": len(shown.events)},
        passed=bool(ok) if stats["jump_events"] else None,
        bars=bars,
        detail=(f"{stats['aligned_events']} of {stats['jump_events']} jump events in {stats['runs']} "
                f"{'all-digon ' if an.digon else ''}runs coincide with one of {stats['drops']} detected loss "
                f"drops ({stats['aligned_share']:.0%}; randomly placed events would: {stats['chance_share']:.0%}); "
                f"shown run {sum(shown.aligned)}/{len(shown.events)}. The drops are broad (median width "
                f"{stats['median_drop_width_decades']:.2f} decades of steps), so one drop often holds several events."))


# --------------------------------------------------------------------------------------------
# geometric_transformations


def _stage_snapshots(steps: np.ndarray, drops: list[Drop]) -> list[int]:
    """One snapshot per regime: the middle (in log-step) of each stretch of >= 3 snapshots between
    consecutive drops, plus the final snapshot."""
    starts = [0] + [d.end for d in drops]
    ends = [d.start for d in drops] + [len(steps) - 1]
    out = []
    for a, b in zip(starts, ends):
        if b - a >= 2:
            t = np.log(np.maximum(steps[a: b + 1], 1))
            out.append(a + int(np.argmin(np.abs(t - (t[0] + t[-1]) / 2))))
    if not out or out[-1] < len(steps) - 2:
        out.append(len(steps) - 1)
    else:
        out[-1] = len(steps) - 1
    return out


def gram_change(W_before: np.ndarray, W_after: np.ndarray) -> float:
    """Relative change of the geometry ``W^T W`` across a drop: ``||G1 - G0||_F / ||G1||_F``."""
    g0, g1 = W_before.T @ W_before, W_after.T @ W_after
    return float(np.linalg.norm(g1 - g0) / max(np.linalg.norm(g1), 1e-12))


GEOMETRY_CHANGE_MIN = 0.1  # a drop marks a new regime only if W^T W changes by >= 10 % across it
STAGE_LETTERS = "ABCDEFGHIJ"  # names of the snapshots drawn in 3-D


@dataclass(frozen=True)
class RunGeometry:
    """Loss drops and geometry of one instance's training run."""

    instance: int
    density: float
    loss: np.ndarray  # [S] every snapshot on one fixed batch
    drops: list[Drop]
    gram_change: list[float]  # across each drop
    regimes: int  # 1 + the drops across which the geometry changes (each regime a distinct transformation)
    final: dict[str, Any]  # octahedron_check of the final W
    final_loss: float


@dataclass(frozen=True)
class GeometryAnalysis:
    """What geometric_transformations draws and its claims read."""

    runs: list[RunGeometry]  # every instance of the experiment
    good: list[RunGeometry]  # the runs that end as a cross-set octahedron
    shown: RunGeometry  # among the good runs, the one with the most regimes (ties: lowest final loss)
    steps: np.ndarray  # [S] snapshot steps
    stages: list[int]  # the snapshots drawn in 3-D, one per regime of the shown run
    W: np.ndarray  # [S, m, n] the shown run's snapshots
    sets: np.ndarray  # [n] each feature's set
    table: pd.DataFrame  # the loss (series loss) and the embeddings at each stage (series embedding)


@analysis
def geometry_analysis(ctx: FigureContext) -> GeometryAnalysis:
    run = ctx.run(ctx.experiments[0])
    sets = np.asarray(FeatureSets.parse(run.spec.get("feature_sets"), int(run.spec["n_features"])).set_index())
    steps = np.asarray(run.arrays["snapshot_steps"])
    runs = []
    for i in range(run.arrays["final_loss"].shape[0]):
        loss = snapshot_losses(run, i)
        drops = detect_drops(steps, loss)
        change = [gram_change(run.snapshots("W")[d.start, i], run.snapshots("W")[d.end, i]) for d in drops]
        runs.append(RunGeometry(i, float(run.arrays["density"][i, 0]), loss, drops, change,
                                1 + sum(c >= GEOMETRY_CHANGE_MIN for c in change),
                                octahedron_check(run.arrays["W"][i], sets), float(run.loss[i])))
    good = [o for o in runs if o.final["cross_set"]]
    o = min(good or runs, key=lambda o: (-o.regimes, o.final_loss))
    stages = _stage_snapshots(steps, o.drops)
    W = run.snapshots("W")[:, o.instance]
    rows = [pd.DataFrame({"series": "loss", "stage": "", "step": steps, "feature": -1, "x": o.loss,
                          "y": np.nan, "z": np.nan})]
    for k, s in enumerate(stages):
        rows.append(pd.DataFrame({"series": "embedding", "stage": STAGE_LETTERS[k], "step": int(steps[s]),
                                  "feature": np.arange(W.shape[2]), "x": W[s, 0], "y": W[s, 1], "z": W[s, 2]}))
    return GeometryAnalysis(runs, good, o, steps, stages, W, sets, pd.concat(rows, ignore_index=True))


@figure("geometric_transformations", section="learning_dynamics",
        title="Loss and 3-D feature embeddings over training: 6 features (two correlated sets of 3) in 3 dimensions",
        caption="Top: the loss over training (each snapshot on one fixed batch); grey bands are detected loss "
                "drops, letters mark one snapshot per regime (the log-middle of each stretch between drops, "
                "and the end). Bottom: the six feature embeddings W_i in 3-D at those snapshots (red: set 1, "
                "blue: set 2), each snapshot scaled to its longest W_i (written under it), with the edges of the "
                "convex hull of the feature tips (grey; features shorter than 0.3 of the longest left out) and "
                "the hidden axes h1-h3 (faint), all from one viewpoint. Shown: among the runs (densities x "
                "restarts) that end as an octahedron with antipodal pairs mixing the two sets, the one with the "
                "most regimes (drops across which W^T W changes by >= 10 %). The paper: learning proceeds in "
                "distinct regimes visible in the loss curve, each a distinct geometric transformation, and the "
                "final octahedron is a strong attractor.")
def build_geometry(ctx: FigureContext) -> FigureOutput:
    an = geometry_analysis(ctx)
    o, steps, stages, W, letters = an.shown, an.steps, an.stages, an.W, STAGE_LETTERS
    x = np.maximum(steps, 1)
    panel = min(1.65, 6.3 / len(stages))  # width (and height) of a 3-D snapshot, inches
    fig = plt.figure(figsize=(6.4, 1.75 + panel + 0.75))
    outer = fig.add_gridspec(2, 1, height_ratios=[1.75, panel], hspace=0.3, left=0.09, right=0.995,
                             top=0.98, bottom=0.09)
    top = outer[0].subgridspec(1, 2, width_ratios=[3.1, 1.0], wspace=0.03)
    ax = fig.add_subplot(top[0])
    key = fig.add_subplot(top[1])
    key.set_axis_off()
    ax.plot(x, o.loss, color=PALETTE["relu"], lw=1.1)
    for d in o.drops:
        ax.axvspan(x[d.start], x[d.end], color="#999999", alpha=0.25, lw=0)
    for k, s in enumerate(stages):
        ax.annotate(letters[k], (x[s], o.loss[s]), textcoords="offset points", xytext=(0, 5),
                    ha="center", va="bottom", fontsize=8, fontweight="bold", color=PALETTE["ink"])
        ax.plot(x[s], o.loss[s], "o", ms=3.5, color=PALETTE["ink"], zorder=3)
    ax.set(xscale="log", xlabel="training step", ylabel="loss")
    _loss_axis(ax, o.loss, decades_only=True)
    ax.set_ylim(top=float(np.max(o.loss)) * (1.5 if ax.get_yscale() == "log" else 1.1))
    key.legend(handles=[Line2D([], [], color=PALETTE["relu"], lw=1.1, label="loss (fixed batch)"),
                       Patch(facecolor="#999999", alpha=0.25, lw=0, label="detected loss drop"),
                       Line2D([], [], color=PALETTE["ink"], marker="o", ms=3.5, ls="none",
                              label="snapshot drawn below"),
                       Line2D([], [], color=PALETTE["pos"], lw=1.2, marker="o", ms=3, label="$W_i$, set 1"),
                       Line2D([], [], color=PALETTE["neg"], lw=1.2, marker="o", ms=3, label="$W_i$, set 2"),
                       Line2D([], [], color=HULL_COLOUR, lw=0.9, label="convex hull edge")],
               loc="center left", frameon=False, fontsize=7, handlelength=1.5, borderaxespad=0.0)
    side = max(6.3 - panel * len(stages), 0.0) / 2  # the snapshots centred under the loss panel
    row = outer[1].subgridspec(1, len(stages) + 2, wspace=0.0,
                               width_ratios=[side + 1e-3, *[panel] * len(stages), side + 1e-3])
    for k, s in enumerate(stages):
        a3 = fig.add_subplot(row[k + 1], projection="3d")
        draw_embedding_3d(a3, W[s], an.sets)
        a3.text2D(0.5, 0.07, f"{letters[k]}: step {int(steps[s])}\nlongest $\\|W_i\\|$ = "
                  f"{float(np.linalg.norm(W[s], axis=0).max()):.2g}", transform=a3.transAxes, ha="center",
                  va="top", fontsize=7)
    return FigureOutput(fig, an.table)


HULL_COLOUR = "#777777"
HULL_MIN_NORM = 0.3  # features shorter than this share of a snapshot's longest are left out of its hull


def hull_edges(P: np.ndarray, tol: float = 1e-6) -> list[tuple[int, int]]:
    """Edges of the convex hull of the points ``P [3, k]`` (polytope edges, no diagonals of flat faces);
    for fewer than 4 points or points in a plane, the edges of their 2-D hull (or the segment)."""
    from scipy.spatial import ConvexHull, QhullError

    k = P.shape[1]
    if k < 2:
        return []
    if k == 2:
        return [(0, 1)]
    X = P.T - P.T.mean(0)
    _, sv, Vt = np.linalg.svd(X, full_matrices=False)
    rank = int((sv > tol * max(sv[0], 1e-12) * 10).sum())
    try:
        if rank >= 3:
            hull = ConvexHull(P.T)
            normals = hull.equations[:, :3]
            edges: dict[tuple[int, int], list[int]] = {}
            for f, simplex in enumerate(hull.simplices):
                for i in range(3):
                    a, b = sorted((int(simplex[i]), int(simplex[(i + 1) % 3])))
                    edges.setdefault((a, b), []).append(f)
            # an edge between two facets of one flat face is a diagonal of the triangulation, not an edge
            return sorted(e for e, fs in edges.items()
                          if len(fs) < 2 or float(normals[fs[0]] @ normals[fs[1]]) < 1 - 1e-6)
        if rank == 2:
            hull = ConvexHull(X @ Vt[:2].T)
            v = list(hull.vertices)
            return sorted(tuple(sorted((int(v[i]), int(v[(i + 1) % len(v)])))) for i in range(len(v)))
    except QhullError:
        pass
    ends = np.argsort(X @ Vt[0])  # collinear: the segment between the two extremes
    return [tuple(sorted((int(ends[0]), int(ends[-1]))))]


def draw_embedding_3d(a3: Any, W: np.ndarray, sets: np.ndarray) -> None:
    """The columns of ``W [3, n]`` as arrows from the origin (set 1 red, set 2 blue) with the edges of the convex
    hull of their tips, faint h1-h3 axes, scaled to the snapshot's longest feature."""
    norms = np.linalg.norm(W, axis=0)
    lim = float(norms.max()) * 1.05 if norms.max() > 0 else 1.0
    for d in range(3):  # axis cues: the three hidden dimensions, labelled at their positive ends
        v = np.zeros((3, 2))
        v[d] = (-lim, lim)
        a3.plot(*v, color=PALETTE["grid"], lw=0.6, zorder=0)
        a3.text(*(np.eye(3)[d] * lim * 1.12), f"$h_{d + 1}$", fontsize=7, color="#888888", ha="center",
                va="center")
    keep = np.flatnonzero(norms >= HULL_MIN_NORM * norms.max()) if norms.max() > 0 else np.array([], int)
    for a, b in hull_edges(W[:, keep]):
        i, j = keep[a], keep[b]
        a3.plot(*np.stack([W[:, i], W[:, j]], axis=1), color=HULL_COLOUR, lw=0.9, zorder=1)
    for i in range(W.shape[1]):
        c = PALETTE["pos"] if sets[i] == 0 else PALETTE["neg"]
        v = W[:, i]
        a3.plot([0, v[0]], [0, v[1]], [0, v[2]], color=c, lw=1.4, zorder=2)
        a3.scatter([v[0]], [v[1]], [v[2]], color=c, s=10, depthshade=False, zorder=3)
    a3.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim))
    a3.set_box_aspect((1, 1, 1), zoom=1.3)
    a3.view_init(elev=22, azim=-55)
    a3.set_axis_off()


@claim("geometric_transformations.distinct_regimes", figure="geometric_transformations",
       section="learning_dynamics",
       statement="Learning proceeds in distinct regimes which are visible in the loss curve, each regime "
                 "corresponding to a distinct geometric transformation.",
       expected=f">= {REGIMES_MIN} regimes (>= {REGIMES_MIN - 1} sudden loss drops across which W^T W changes by "
                f">= {GEOMETRY_CHANGE_MIN:.0%}) in the shown run, and in the majority of all runs",
       tolerance=f"drop: falls >= {DROP_RATE}x faster per log-step than the lower quartile within +-{DROP_WINDOW} "
                 f"decades of steps, >= {DROP_MIN:.1%} of the loss",
       explanation=("The shown run has three regimes, but only 3 of the 9 runs do (the criterion asks a majority): "
                    "the other six reach their final geometry through one sudden drop. The paper shows a single run "
                    "and does not say how typical it is, so the 'majority of runs' half of this criterion is this "
                    "replication's reading; the shown-run half reproduces. Seeds 1 and 2 reproduce it, twice the "
                    "steps does not (fragile)."))
def _(ctx: FigureContext) -> Measurement:
    an = geometry_analysis(ctx)
    counts = [o.regimes for o in an.runs]
    drops = [len(o.drops) for o in an.runs]
    shown = an.shown.regimes
    share = float(np.mean([c >= REGIMES_MIN for c in counts]))
    return Measurement(
        measured={"shown_regimes": shown, "regimes_per_run": counts, "drops_per_run": drops,
                  "share_runs_with_enough": share},
        passed=shown >= REGIMES_MIN and share > REGIMES_RUNS_MIN,
        bars=(Bar("regimes in the shown run", shown, ">=", REGIMES_MIN, "regimes", step=1),
              Bar(f"share of runs with >= {REGIMES_MIN} regimes", share, ">", REGIMES_RUNS_MIN, "share of runs",
                  step=1 / len(counts))),
        detail=(f"Shown run: {shown} regimes; runs with >= {REGIMES_MIN} regimes: "
                f"{sum(c >= REGIMES_MIN for c in counts)} of {len(counts)} (regimes per run: {counts}; loss drops "
                f"per run, with or without a geometric change: {drops}). Geometry change across the shown run's "
                f"drops: " + ", ".join(f"{c:.0%}" for c in an.shown.gram_change) + "."))


@claim("geometric_transformations.octahedron_attractor", figure="geometric_transformations",
       section="learning_dynamics",
       statement="The final solution, an octahedron with features from different correlated sets arranged "
                 "in antipodal pairs, is a strong attractor.",
       expected=f"> {ATTRACTOR_MIN:.0%} of all runs end as an octahedron (3 mutually orthogonal antipodal pairs) "
                "whose every pair joins the two sets",
       tolerance="norms > 0.5, pair cosines < -0.9, |cos| < 0.1 across pairs")
def _(ctx: FigureContext) -> Measurement:
    an = geometry_analysis(ctx)
    octa, cross, total = sum(o.final["octahedron"] for o in an.runs), len(an.good), len(an.runs)
    return Measurement(
        measured={"runs": total, "octahedron": octa, "cross_set_octahedron": cross, "share": cross / total},
        passed=cross / total > ATTRACTOR_MIN,
        bars=(Bar("share of runs ending as a cross-set octahedron", cross / total, ">", ATTRACTOR_MIN, "share of runs",
                  step=1 / total),),
        detail=(f"{cross} of {total} runs end as a cross-set octahedron ({octa} as any octahedron). By density: "
                + ", ".join(f"{d:.3g}: {sum(o.final['cross_set'] for o in an.runs if o.density == d)}/"
                            f"{sum(o.density == d for o in an.runs)}"
                            for d in sorted({o.density for o in an.runs})) + "."))
