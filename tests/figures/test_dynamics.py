"""Learning-dynamics figures: event detection on synthetic curves, octahedron detection on hand-built
embeddings and claims on constructed runs (the quick build through Snakemake is covered by
tests/test_pipeline.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tms.experiments import RunData
from tms.figures import dynamics as dyn
from tms.figures.base import FigureContext
from tms.findings import CLAIMS, binding, evaluate, near_miss
from tms.training import log_steps

from .conftest import ctx_with, fake_run

STEPS = log_steps(10_000, 80, include_end=True)


# --------------------------------------------------------------------------------------------
# detection on synthetic curves


def test_plateaus_split_at_a_step_and_ignore_short_runs():
    y = np.r_[np.zeros(10), [0.2], np.full(10, 0.5), [0.9, 0.1], np.ones(3)]
    assert dyn.plateaus(y) == [(0, 9), (11, 20)]


def test_detect_jumps_finds_sudden_steps_but_not_slow_ramps():
    S = len(STEPS)
    D = np.zeros((S, 3))
    D[40:, 0] = 0.5  # 0 -> 1/2 at snapshot 40
    D[:, 1] = 1.0
    D[55:, 1] = 0.5  # 1 -> 1/2 at 55
    D[:, 2] = np.clip(np.linspace(-0.2, 0.7, S), 0, 0.5)  # a slow drift
    jumps = dyn.detect_jumps(STEPS, D)
    assert [(j.feature, j.start, j.end) for j in jumps] == [(0, 39, 40), (1, 54, 55)]
    assert jumps[0].before == 0 and jumps[0].after == 0.5
    events = dyn.group_jumps(jumps + [dyn.Jump(2, 39, 41, 0, 0.5)])
    assert [(s, e, len(js)) for s, e, js in events] == [(39, 41, 2), (54, 55, 1)]


def test_detect_jumps_rejects_a_change_that_takes_too_long():
    steps = np.arange(0, 2000, 100)
    D = np.r_[np.zeros(8), [0.1, 0.2, 0.3, 0.4], np.full(8, 0.5)][:, None]
    # the change from plateau (0, 7) to (12, 19) spans steps 700 -> 1200, > 50 % of 700
    assert dyn.detect_jumps(steps, D) == []
    assert len(dyn.detect_jumps(steps, D, sudden=1.0)) == 1


def test_detect_drops_on_power_laws_with_and_without_a_drop():
    t = np.maximum(STEPS, 1).astype(float)
    base = 0.1 * t ** -0.3 + 1e-3
    assert dyn.detect_drops(STEPS, base) == []
    dropped = base * np.where(np.arange(len(t)) >= 50, 0.7, 1.0)
    drops = dyn.detect_drops(STEPS, dropped)
    assert len(drops) == 1 and drops[0].start == 49 and drops[0].end == 50
    assert drops[0].size > 0.3
    # a small wiggle (0.2 %) is not a drop
    assert dyn.detect_drops(STEPS, base * np.where(np.arange(len(t)) >= 50, 0.998, 1.0)) == []


def test_coincide_allows_one_snapshot_either_side():
    d = [dyn.Drop(10, 12, 0.2)]
    assert dyn.coincide((13, 13, []), d) and dyn.coincide((8, 9, []), d)
    assert not dyn.coincide((15, 16, []), d)


def test_at_level():
    assert dyn.at_level(np.array([0.0, 0.51, 0.6, 0.97, 0.38])).tolist() == [True, True, False, True, True]


# --------------------------------------------------------------------------------------------
# octahedra


def rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q


SETS = np.array([0, 0, 0, 1, 1, 1])


def test_octahedron_check_on_hand_built_embeddings():
    e = np.eye(3)
    cross = np.concatenate([e, -e], axis=1)  # feature i of set 0 opposite feature i of set 1
    res = dyn.octahedron_check(rotation(1) @ cross, SETS)
    assert res["octahedron"] and res["cross_set"]
    within = np.stack([e[0], -e[0], e[1], -e[1], e[2], -e[2]], axis=1)  # pairs inside each set
    res = dyn.octahedron_check(within, SETS)
    assert res["octahedron"] and not res["cross_set"]
    prism = np.stack([[np.cos(a), np.sin(a), h] for h in (-0.5, 0.5) for a in (0, 2.1, 4.2)], axis=1)
    assert not dyn.octahedron_check(prism, SETS)["octahedron"]
    short = cross.copy()
    short[:, 0] *= 0.3
    assert not dyn.octahedron_check(short, SETS)["octahedron"]


# --------------------------------------------------------------------------------------------
# claims on constructed runs


def snapshot_run(name: str, snaps_W: list[np.ndarray], snaps_b: list[np.ndarray], density: float,
                 sets=None) -> RunData:
    """A run of one density whose instances have the snapshots ``snaps_W[i] [S, m, n]`` (and
    ``snaps_b[i] [S, n]``); the last snapshot is the final model."""
    W = np.stack(snaps_W, axis=1).astype(np.float32)  # [S, N, m, n]
    b = np.stack(snaps_b, axis=1).astype(np.float32)
    N = W.shape[1]
    snaps = {"snapshot_steps": STEPS[: W.shape[0]], "snap_W": W, "snap_b": b}
    return fake_run(name, "relu_output", {"density": [density]}, W[-1], b[-1], restarts=N,
                    loss=np.arange(N, dtype=float) * 1e-6 + 1e-3, extra_arrays=snaps, feature_sets=sets)


def ctx_of(figure_id: str, run: RunData) -> FigureContext:
    return ctx_with(figure_id, {run.name: run})


def findings_of(figure_id: str, ctx: FigureContext) -> dict:
    """Claim name (without the figure prefix) -> Finding (verdict, bars, margin, near_miss)."""
    return {f.id.split(".", 1)[1]: f for f in evaluate(figure_id, ctx, ctx.experiments)}


def digon_history(jump_at: int, drop_at: int | None = None, s: float = 0.05) -> tuple[list, list]:
    """m=2, n=4: two dedicated features (others dropped) until ``jump_at``, then two digons. With
    ``drop_at`` the digons first sit behind a large negative bias (loss rises) until ``drop_at``."""
    S = len(STEPS)
    e1, e2 = np.array([1.0, 0]), np.array([0, 1.0])
    ded = np.stack([e1, e2, 0 * e1, 0 * e1], axis=1)
    dig = np.stack([e1, e2, -e1, -e2], axis=1)
    Ws, bs = [], []
    for k in range(S):
        Ws.append(ded if k < jump_at else dig)
        if k < jump_at:
            bs.append(np.array([0, 0, s / 2, s / 2]))
        elif drop_at is not None and k < drop_at:
            bs.append(np.full(4, -1.0))
        else:
            bs.append(np.zeros(4))
    return Ws, bs


def test_energy_claims_on_an_aligned_and_a_misaligned_run():
    W, b = digon_history(40)
    ctx = ctx_of("energy_level_jumps", snapshot_run("energy", [np.stack(W)], [np.stack(b)], 0.05))
    f = findings_of("energy_level_jumps", ctx)
    assert {k: f[k].verdict for k in ("discrete_jumps", "discrete_jumps_strict", "loss_drops_align")} == dict.fromkeys(
        ("discrete_jumps", "discrete_jumps_strict", "loss_drops_align"), "reproduced")
    assert f["loss_drops_align"].measured["aligned_events"] == 1
    # one jump event sits exactly at its bar of 1 (margin 0) but a whole event is needed to flip it
    assert [(b["name"], b["margin"], b["near"]) for b in f["discrete_jumps_strict"].bars][0] == (
        "jump events in the shown run", 0, False)
    # dedicated (D = 1) -> digon and not learned (D = 0) -> digon: four jumps between levels, all from a level
    m = f["discrete_jumps"].measured
    assert m["jumps_between_levels"] == 4 and m["level_pairs"] == {"0 -> 1/2": 2, "1 -> 1/2": 2}
    assert m["jumps_from_undifferentiated"] == 0 and m["from_level_ending_at_level_share"] == 1.0
    assert [(b["name"], b["margin"]) for b in f["discrete_jumps"].bars] == [
        ("jumps between two levels in the shown run", 3),
        ("share of the shown run's jumps from a level that end at a level", pytest.approx(0.2))]
    assert f["loss_drops_align"].margin == pytest.approx(0.25)  # 1 of 1 event against 0.75
    assert not any(x.near_miss for x in f.values())
    out = dyn.build_energy(ctx)
    assert {"loss", "D_0"} <= set(out.table.series)
    jumps = out.table[out.table.series.str.startswith("jump_between_levels_D_")]
    assert len(jumps) == 8 and set(jumps.value) == {0.0, 0.5, 1.0}  # (start, before) and (end, after) per jump
    assert {"D_2", "D_3"} <= set(out.table.series)  # features that jump are drawn even if they were not at the end
    assert out.table is dyn.energy_analysis(ctx).table  # the build draws the analysis, computed once

    W, b = digon_history(40, drop_at=60)
    ctx = ctx_of("energy_level_jumps", snapshot_run("energy", [np.stack(W)], [np.stack(b)], 0.05))
    m = CLAIMS["energy_level_jumps.loss_drops_align"].func(ctx)
    assert m.passed is False and m.measured["jump_events"] == 1 and m.measured["aligned_events"] == 0
    assert not any(b.passed for b in m.bars) and near_miss(m.passed, m.bars) is False
    assert m.bars[0].margin == pytest.approx(-0.75) and m.bars[1].threshold == pytest.approx(
        m.measured["chance_share"] + dyn.CHANCE_MARGIN)


def test_energy_discrete_claim_fails_without_jumps():
    S = len(STEPS)
    e1, e2 = np.array([1.0, 0]), np.array([0, 1.0])
    W = [np.stack([e1, e2, -a * e1, -a * e2], axis=1) for a in np.linspace(0, 1, S)]  # a smooth growth
    b = [np.zeros(4)] * S
    ctx = ctx_of("energy_level_jumps", snapshot_run("energy", [np.stack(W)], [np.stack(b)], 0.05))
    for cid in ("energy_level_jumps.discrete_jumps", "energy_level_jumps.discrete_jumps_strict"):
        m = CLAIMS[cid].func(ctx)
        assert m.passed is False and m.measured["shown_jump_events"] == 0
        assert not m.bars[0].passed and m.bars[0].margin == -1 and binding(m.passed, m.bars).margin < 0
    assert len(CLAIMS["energy_level_jumps.discrete_jumps"].func(ctx).bars) == 1  # no jump from a level: no share
    assert CLAIMS["energy_level_jumps.loss_drops_align"].func(ctx).bars == ()  # no event: inconclusive, no bar


def test_classify_jumps_by_the_plateaus_around_them():
    S = len(STEPS)
    D = np.zeros((S, 4))
    D[:, 0] = np.r_[np.full(20, 0.2), np.full(20, 1.0), np.full(S - 40, 0.5)]  # growth, then 1 -> 1/2
    D[:, 1] = np.r_[np.full(20, 0.5), np.full(S - 20, 0.85)]  # a level to no level
    D[:, 2] = np.r_[np.full(20, 0.2), np.full(20, 0.5), np.full(20, 0.85), np.full(S - 60, 0.2)]  # ..., off-level
    D[:, 3] = np.r_[np.full(20, 0.2), np.full(S - 20, 0.05)]  # growth to 0 (a level: not learned)
    jumps = dyn.detect_jumps(STEPS, D)
    kinds = dyn.classify_jumps(D, jumps)
    assert [(j.feature, k) for j, k in zip(jumps, kinds)] == [
        (0, "growth"), (0, "between_levels"), (1, "level_to_off_level"), (2, "growth"), (2, "level_to_off_level"),
        (2, "off_level"), (3, "growth")]
    summary = dyn.jump_kinds_summary(jumps, kinds)
    assert summary["level_pairs"] == {"1 -> 1/2": 1} and summary["from_level"] == 3
    assert summary["from_level_ending_at_level_share"] == pytest.approx(1 / 3)
    assert dyn.level_name(0.37) == "3/8" and dyn.level_name(0.41) == "2/5" and dyn.level_name(0.02) == "0"


def undifferentiated_history() -> tuple[np.ndarray, np.ndarray]:
    """m = 2, n = 4: all four features on one direction (D = 1/4, the undifferentiated phase) until snapshot
    30, then two dedicated and two not learned (D = 1 and 0) until 55, then two digons (D = 1/2)."""
    S = len(STEPS)
    e1, e2 = np.array([1.0, 0]), np.array([0, 1.0])
    W = [np.stack([0.3 * e1] * 4, axis=1) if k < 30 else
         np.stack([e1, e2, 0 * e1, 0 * e1], axis=1) if k < 55 else np.stack([e1, e2, -e1, -e2], axis=1)
         for k in range(S)]
    return np.stack(W), np.zeros((S, 4))


def test_discrete_jumps_revised_passes_where_only_the_early_plateaus_fail_the_strict_reading():
    """Every feature grows out of an undifferentiated D = 1/4 and then jumps between levels (1 or 0 -> 1/2):
    a third of the plateaus are off-level, so the strict reading fails; every jump from a level ends at one."""
    W, b = undifferentiated_history()
    ctx = ctx_of("energy_level_jumps", snapshot_run("energy", [W], [b], 0.05))
    f = findings_of("energy_level_jumps", ctx)
    rev, strict = f["discrete_jumps"], f["discrete_jumps_strict"]
    assert rev.verdict == "reproduced" and strict.verdict == "not reproduced"
    assert all(b["passed"] for b in rev.bars) and [b["passed"] for b in strict.bars] == [True, False]
    assert strict.measured["plateaus_at_level_share"] == pytest.approx(2 / 3)
    m = rev.measured
    assert m["jumps_from_undifferentiated"] == 4 and m["jumps_between_levels"] == 4
    assert m["level_pairs"] == {"0 -> 1/2": 2, "1 -> 1/2": 2} and m["jumps_from_a_level_to_no_level"] == 0
    assert m["pooled"]["growth"] == 4 and m["pooled"]["between_levels"] == 4
    assert "growth" in rev.detail and "strict" in rev.audit and "swap places" in rev.audit
    assert "discrete_jumps for why" in strict.audit
    out = dyn.build_energy(ctx)
    assert len(out.table[out.table.series.str.startswith("jump_growth_D_")]) == 8


def test_discrete_jumps_strict_passes_on_growth_alone_the_revised_reading_fails():
    """One feature grows out of the undifferentiated phase (D = 0.2 -> 1); four others sit at D = 1/2 throughout.
    5 of 6 plateaus are at a level and there is a jump event, so the strict reading passes; but no feature
    jumps from one level to another, so the revised reading fails."""
    S = len(STEPS)
    e1, e2, e3 = np.eye(3)
    a = 0.5
    W = [np.stack([a * (e1 + e2) / np.sqrt(2) if k < 40 else e1, e2, -e2, e3, -e3], axis=1) for k in range(S)]
    ctx = ctx_of("energy_level_jumps", snapshot_run("energy", [np.stack(W)], [np.zeros((S, 5))], 0.05))
    f = findings_of("energy_level_jumps", ctx)
    rev, strict = f["discrete_jumps"], f["discrete_jumps_strict"]
    assert strict.verdict == "reproduced" and rev.verdict == "not reproduced"
    assert strict.measured["plateaus_at_level_share"] == pytest.approx(5 / 6)
    assert rev.measured["jumps_from_undifferentiated"] == 1 and rev.measured["jumps_between_levels"] == 0
    assert [(b["name"], b["value"], b["passed"]) for b in rev.bars] == [
        ("jumps between two levels in the shown run", 0, False)]
    assert rev.margin == -1 and rev.near_miss is False


SETS_SPEC = [{"kind": "correlated", "size": 3, "count": 2}]


def geometry_history(final: np.ndarray, stages: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Three regimes: nothing learned, a 'PCA' stage (each set's mean direction), then ``final``."""
    S = len(STEPS)
    e = np.eye(3)
    pca = np.stack([e[0]] * 3 + [e[1]] * 3, axis=1) / np.sqrt(3)
    Ws = []
    for k in range(S):
        if not stages:
            Ws.append(final)
        elif k < 25:
            Ws.append(0.01 * pca)
        elif k < 50:
            Ws.append(pca)
        else:
            Ws.append(final)
    return np.stack(Ws), np.zeros((S, 6))


def test_geometry_claims_on_good_and_bad_runs():
    e = np.eye(3)
    cross = np.concatenate([e, -e], axis=1)
    within = np.stack([e[0], -e[0], e[1], -e[1], e[2], -e[2]], axis=1)
    good = [geometry_history(rotation(k) @ cross) for k in range(3)]
    run = snapshot_run("geo", [g[0] for g in good], [g[1] for g in good], 0.1, SETS_SPEC)
    ctx = ctx_of("geometric_transformations", run)
    f = findings_of("geometric_transformations", ctx)
    assert f["distinct_regimes"].verdict == "reproduced" and f["distinct_regimes"].measured["shown_regimes"] >= 3
    assert [(b["op"], b["threshold"]) for b in f["distinct_regimes"].bars] == [(">=", 3), (">", 0.5)]
    assert f["octahedron_attractor"].verdict == "reproduced" and f["octahedron_attractor"].margin == pytest.approx(0.5)
    out = dyn.build_geometry(ctx)
    stages = out.table[out.table.series == "embedding"].stage
    assert len(stages) == 6 * stages.nunique() and stages.nunique() >= 3
    # one 3-D panel per stage, the last one (the octahedron) with its 12 hull edges drawn in grey
    panels = [a for a in out.figure.axes if a.name == "3d"]
    assert len(panels) == stages.nunique()
    assert sum(line.get_color() == dyn.HULL_COLOUR for line in panels[-1].lines) == 12
    out.figure.clf()

    bad = [geometry_history(within, stages=False) for _ in range(3)]
    run = snapshot_run("geo", [g[0] for g in bad], [g[1] for g in bad], 0.1, SETS_SPEC)
    ctx = ctx_of("geometric_transformations", run)
    m = CLAIMS["geometric_transformations.distinct_regimes"].func(ctx)
    assert m.passed is False and [b.passed for b in m.bars] == [False, False]
    assert binding(m.passed, m.bars).name == "share of runs with >= 3 regimes"  # 0 of 3 runs: -100 % of 0.5
    m = CLAIMS["geometric_transformations.octahedron_attractor"].func(ctx)
    assert m.passed is False and m.measured["octahedron"] == 3 and m.measured["cross_set_octahedron"] == 0
    assert m.bars[0].margin == pytest.approx(-0.5) and near_miss(m.passed, m.bars) is False


def _edge_count(P) -> int:
    return len(dyn.hull_edges(np.asarray(P, dtype=float)))


def test_hull_edges_are_the_polytopes_edges():
    e = np.eye(3)
    octa = np.concatenate([e, -e], axis=1)
    assert _edge_count(rotation(2) @ octa) == 12  # every vertex joined to all but its antipode
    edges = dyn.hull_edges(octa)
    assert (0, 3) not in edges and (1, 4) not in edges and (0, 1) in edges
    tetra = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float).T
    assert _edge_count(tetra) == 6
    cube = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float).T
    assert _edge_count(cube) == 12  # the faces' diagonals are not edges
    square = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0]], dtype=float).T
    assert _edge_count(rotation(3) @ square) == 4  # a flat polygon: its outline
    assert _edge_count(e) == 3 and _edge_count(e[:, :2]) == 1 and _edge_count(e[:, :1]) == 0
    line = np.array([[1.0, 0, 0], [2.0, 0, 0], [-1.0, 0, 0]]).T
    assert dyn.hull_edges(line) == [(1, 2)]  # collinear: the two extremes


@pytest.mark.parametrize("good, verdict", [(26, "reproduced"), (25, "not reproduced")])
def test_octahedron_attractor_just_inside_and_just_outside_its_bar(good, verdict):
    # 50 runs: 26 cross-set octahedra are 0.52 > 0.5 (4 % of the bar above it; one run fewer fails), 25 are
    # exactly 0.5, not more than half (one run more passes; one run is 0.02, 4 % of the bar)
    e = np.eye(3)
    cross = np.concatenate([e, -e], axis=1)
    within = np.stack([e[0], -e[0], e[1], -e[1], e[2], -e[2]], axis=1)
    S = 12  # a short constant history: no drops, nothing but the final geometry matters
    finals = [rotation(k) @ (cross if k < good else within) for k in range(50)]
    run = snapshot_run("geo", [np.stack([w] * S) for w in finals], [np.zeros((S, 6))] * 50, 0.1, SETS_SPEC)
    f = findings_of("geometric_transformations", ctx_of("geometric_transformations", run))["octahedron_attractor"]
    assert f.verdict == verdict and f.measured["cross_set_octahedron"] == good
    assert f.margin == pytest.approx(good / 50 - 0.5, abs=1e-9) and f.near_miss is True


# --------------------------------------------------------------------------------------------
# end to end
