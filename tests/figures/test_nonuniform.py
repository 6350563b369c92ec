"""Non-uniform superposition figures (tms.figures.nonuniform): helpers and claims on constructed weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tms import exact, metrics
from tms.data import FeatureSets
from tms.figures import nonuniform as U
from tms.findings import binding, evaluate, near_miss
from tms.geometry import adjacent_on_circle, crossing

from .conftest import PAIRS, PENTAGON, ctx_with, fake_run, rot, verdicts


def _hexagon(order: list[int]) -> np.ndarray:
    """Six unit features 60 degrees apart; ``order[k]`` is the feature at angle 60 k."""
    W = np.zeros((2, 6))
    for k, f in enumerate(order):
        W[:, f] = [np.cos(np.pi * k / 3), np.sin(np.pi * k / 3)]
    return W


SIDE_BY_SIDE = _hexagon([0, 1, 2, 3, 4, 5])  # pairs (0,1), (2,3), (4,5) adjacent
INTERLEAVED = _hexagon([0, 2, 4, 1, 3, 5])  # each pair's members 180 degrees apart
PAIRS3 = [[0, 1], [2, 3], [4, 5]]


def _findings(fid: str, ctx) -> dict:
    """Claim name (without the figure prefix) -> Finding (verdict, bars, margin, near_miss)."""
    return {f.id.split(".", 1)[1]: f for f in evaluate(fid, ctx, ctx.experiments)}


def _bind(m) -> str:
    """Name of the bar that decides a measurement's verdict."""
    return binding(m.passed, m.bars).name


def _collapsed(k: int) -> np.ndarray:
    """Three pairs, the first ``k`` collapsed onto one direction each, the rest side by side."""
    W = SIDE_BY_SIDE.copy()
    for p in range(k):
        a, b = PAIRS3[p]
        W[:, b] = W[:, a]
    return W


# --------------------------------------------------------------------------------------------
# helpers


def test_classify_pentagon():
    assert U.classify_pentagon(rot(17) @ PENTAGON) == "pentagon"
    assert U.classify_pentagon(rot(17) @ PAIRS) == "digons"
    crowded = PAIRS.copy()
    crowded[:, 4] = [0.7, 0.7]  # the fifth feature squeezed 45 degrees between two others: still five apart
    assert U.classify_pentagon(crowded) == "pentagon"
    crowded[:, 4] = rot(10) @ crowded[:, 0]  # ... but not on top of one
    assert U.classify_pentagon(crowded) == "other"
    squeezed = PENTAGON.copy()
    squeezed[:, 1], squeezed[:, 4] = rot(-24) @ squeezed[:, 1], rot(24) @ squeezed[:, 4]  # 2 and 4 nearly opposite
    assert U.classify_pentagon(squeezed) == "pentagon"


def test_pairs_adjacency_and_collapse():
    assert U.side_by_side(SIDE_BY_SIDE, PAIRS3)
    assert not U.side_by_side(INTERLEAVED, PAIRS3)
    assert [U.collapsed_count(_collapsed(k), PAIRS3) for k in range(4)] == [0, 1, 2, 3]
    dropped = _collapsed(1)
    dropped[:, 4:] = 0
    assert [U.pair_state(dropped, a, b) for a, b in PAIRS3] == ["collapsed", "separate", "dropped"]
    assert adjacent_on_circle(INTERLEAVED, 0, 2) and not adjacent_on_circle(INTERLEAVED, 0, 4)


def test_set_members():
    sets = FeatureSets.parse([{"kind": "correlated", "size": 2, "count": 2}, {"kind": "independent", "size": 1}], 5)
    assert [m.tolist() for m in U.set_members(sets)] == [[0, 1], [2, 3], [4]]


# --------------------------------------------------------------------------------------------
# pentagon perturbation


RATIOS = [0.25, 0.3, 0.5, 1.0, 2.0]


def _perturbation_run(good: bool) -> tuple:
    """Two restarts per ratio (pentagon, digons), trained-looking: b < 0, ||W|| (1 - |b|) = 1."""
    Ws, bs = [], []
    for r in RATIOS:
        pent = PENTAGON.copy()
        if good:  # the neighbours of feature 0 move away when it is denser
            shift = 12 * np.log2(r)
            pent[:, 1], pent[:, 4] = rot(shift) @ pent[:, 1], rot(-shift) @ pent[:, 4]
        dig = np.stack([[0, 1, -1, 0, 0], [0, 0, 0, 1, -1]]).astype(float)
        Ws += [pent / 0.9, dig]
        bs += [np.full(5, -0.1), np.array([0.025, 0, 0, 0, 0])]
    return np.stack(Ws), np.stack(bs)


def _perturbation_table(good: bool, ratios: list[float] = RATIOS, switch: float = 0.4
                        ) -> tuple[pd.DataFrame, np.ndarray]:
    W, _ = _perturbation_run(good)
    rows = []
    for c, r in enumerate(ratios):
        # pentagon loss falls faster with sparsity than the digons' only above the crossing (``switch``)
        lp, ld = 1.0 + (switch - r if good else -0.5), 1.0
        for k, (g, loss) in enumerate((("pentagon", lp), ("digons", ld))):
            rows.append({"cell": c, "ratio": r, "restart": k, "instance": 2 * c + k, "geometry": g, "loss": loss})
    df = pd.DataFrame(rows)
    df["selected"] = df.groupby("cell")["loss"].transform("min") == df["loss"]
    return df, W


def test_perturbation_measures_pass_and_fail():
    df, W = _perturbation_table(True)
    m = U.measure_phase_change(df, W)
    assert m.passed and m.measured["ratio"] == pytest.approx(np.sqrt(0.3 * 0.5))
    assert [(b.op, b.threshold) for b in m.bars] == [(">=", 1 / 3.125), ("<=", 0.5), ("<", 0.1)]
    assert _bind(m) == "switch ratio" and binding(m.passed, m.bars).op == ">="  # 0.39: nearer 0.32 than 0.5
    assert near_miss(m.passed, m.bars) is False
    m = U.measure_crossing(df)
    assert m.passed and [b.name for b in m.bars][2:] == ["crossing", "crossing"]
    assert all(b.margin >= 0 for b in m.bars)
    m = U.measure_repel_attract(df, W)
    assert m.passed and {b.name for b in m.bars} == {
        "ratios with a selected pentagon", "Spearman(ratio, neighbour span)",
        "smallest neighbour span, feature 0 denser", "largest neighbour span, feature 0 sparser"}
    bad, Wb = _perturbation_table(False)
    m = U.measure_phase_change(bad, Wb)
    assert not m.passed and m.bars == ()  # pentagons everywhere: no switch, nothing numeric to miss by
    assert m.categorical_ok is False and near_miss(m.passed, m.bars, m.categorical_ok) is None
    assert U.measure_phase_change(df, W).categorical_ok is True
    m = U.measure_crossing(bad)
    assert not m.passed and _bind(m) == "sign changes of the loss difference" and m.bars[0].margin == -1
    assert near_miss(m.passed, m.bars) is False  # a whole crossing is missing
    m = U.measure_repel_attract(df, _perturbation_run(False)[0])  # no deformation
    assert not m.passed and not all(b.passed for b in m.bars)


@pytest.mark.parametrize("low, high, passed", [(0.47, 0.51, True), (0.49, 0.53, False)])
def test_phase_change_just_inside_and_just_outside_its_bar(low, high, passed):
    # the switch at sqrt(low * high): 0.490 (1.0 % of 0.5 inside the bar) and 0.510 (1.0 % outside)
    df, W = _perturbation_table(True, [0.3, low, high, 1.0, 2.0], switch=(low + high) / 2)
    m = U.measure_phase_change(df, W)
    assert m.passed is passed and m.measured["ratio"] == pytest.approx(np.sqrt(low * high))
    bind = binding(m.passed, m.bars)
    assert (bind.name, bind.op, bind.threshold) == ("switch ratio", "<=", 0.5)
    assert bind.margin == pytest.approx(0.5 - np.sqrt(low * high)) and (bind.margin > 0) is passed
    assert near_miss(m.passed, m.bars) is True


def _spans_table(ratios: list[float], spans: list[float]) -> tuple[pd.DataFrame, np.ndarray]:
    """One selected pentagon per ratio whose feature 0 has neighbours ``spans[k]`` degrees apart."""
    Ws = []
    for s in spans:
        W = PENTAGON.copy()
        W[:, 1], W[:, 4] = rot((s - 144) / 2) @ W[:, 1], rot(-(s - 144) / 2) @ W[:, 4]
        Ws.append(W)
    df = pd.DataFrame({"ratio": ratios, "instance": range(len(ratios)), "geometry": "pentagon", "selected": True})
    return df, np.stack(Ws)


@pytest.mark.parametrize("ratios, spans, both_sides", [
    ([0.5, 2.0, 3.0, 4.0], [140.0, 143.0, 150.0, 155.0], True),
    ([2.0, 3.0, 4.0], [143.0, 150.0, 155.0], False),  # no sparser pentagon: nothing numeric flips it
])
def test_repel_attract_needs_a_pentagon_on_each_side(ratios, spans, both_sides):
    df, W = _spans_table(ratios, spans)
    m = U.measure_repel_attract(df, W)
    assert m.measured["neighbour_span_deg"] == pytest.approx(spans) and m.measured["spearman"] == 1
    # the denser side's smallest span misses 144 by 1 degree (0.7 %): the only failing bar, a narrow one
    assert not m.passed and [b.name for b in m.bars if not b.passed] == ["smallest neighbour span, feature 0 denser"]
    assert m.categorical_ok is both_sides and near_miss(m.passed, m.bars, m.categorical_ok) is both_sides


def test_norm_bias_relation():
    m = U.measure_norm_bias(PENTAGON / 0.9, np.full(5, -0.1))
    assert m.passed and _bind(m) == "largest b_i" and m.bars[1].margin == pytest.approx(0.1)
    m = U.measure_norm_bias(PENTAGON, np.full(5, -0.1))  # on the unit circle
    assert not m.passed and [b.passed for b in m.bars] == [False, True]
    assert m.bars[0].margin == pytest.approx(0.05 - 0.1)
    m = U.measure_norm_bias(PENTAGON / 1.1, np.full(5, 0.1))  # positive bias: the norm relation holds, the sign not
    assert not m.passed and [b.passed for b in m.bars] == [True, False] and _bind(m) == "largest b_i"
    assert m.bars[1].margin == pytest.approx(-0.1) and near_miss(m.passed, m.bars) is False  # 0.1 past 0, scale 1


def test_perturbation_claims_through_the_figure_context():
    W, b = _perturbation_run(True)
    run = fake_run("p", "relu_output", {"density": [0.05], "perturbed_density_ratio": RATIOS}, W, b, restarts=2,
                   perturbed_feature=0)
    ctx = ctx_with("pentagon_perturbation", {"p": run}, polish_maxiter=1)
    v = verdicts("pentagon_perturbation", ctx)
    assert v["norm_is_one_over_one_minus_bias"] == "reproduced"
    an = U.perturbation_analysis(ctx)
    df = an.models
    assert set(df["geometry"]) == {"pentagon", "digons"} and df["loss"].tolist() == run.loss.tolist()
    assert an.unperturbed_cell == RATIOS.index(1.0) and an.loss_source == "sampled"  # no exact_loss stored
    # every ratio's pentagon and digons polished (one L-BFGS-B iteration here), never to a higher loss
    opt = an.optimised
    assert len(opt) == 2 * len(RATIOS) and (opt["loss"] <= opt["start_loss"]).all() and opt["kept"].all()
    out = U.build_perturbation(ctx)
    assert {"solution", "loss", "best_loss", "optimised"} <= set(out.table["kind"])
    assert {"pentagon_optimised", "digons_optimised", "relative_difference"} <= set(out.table.columns)
    assert out.table is an.table  # drawn from the analysis the claims read, computed once
    out.figure.clf()


# --------------------------------------------------------------------------------------------
# exact losses and polishing


DIGONS = np.array([[0, 1.0, -1.0, 0, 0], [0, 0, 0, 1.0, -1.0]])  # feature 0 not embedded


def _dens(ratio: float) -> np.ndarray:
    d = np.full(5, 0.05)
    d[0] *= ratio
    return d


@pytest.mark.parametrize("W0, geometry, ratio", [(PENTAGON, "pentagon", 1.0), (DIGONS, "digons", 0.25)])
def test_polish_lowers_the_exact_loss_keeps_the_geometry_and_is_deterministic(W0, geometry, ratio):
    W0 = rot(20) @ W0
    b0 = np.zeros(5)  # unit norms and no bias: not the optimum of either geometry
    p = U.polish("relu_output", W0, b0, _dens(ratio), np.ones(5), maxiter=8)
    assert p.start_loss == pytest.approx(exact.exact_loss("relu_output", {"W": W0, "b": b0}, _dens(ratio)), rel=1e-12)
    assert p.loss < p.start_loss * (1 - 1e-3) and 0 < p.iterations <= 8 and p.evaluations >= p.iterations
    assert p.loss == pytest.approx(exact.exact_loss("relu_output", {"W": p.W, "b": p.b}, _dens(ratio)), rel=1e-12)
    assert U.classify_pentagon(p.W) == geometry
    if geometry == "pentagon":  # the pentagon cuts interference off with a negative bias
        assert (p.b < 0).all()
    else:  # the feature the digons leave out outputs its mean, E[x_0] = 0.0125 / 2
        assert p.b[0] == pytest.approx(0.0125 / 2, rel=0.05)
    again = U.polish("relu_output", W0, b0, _dens(ratio), np.ones(5), maxiter=8)
    assert np.array_equal(again.W, p.W) and np.array_equal(again.b, p.b) and again.loss == p.loss
    # from its own end point it cannot get worse; no iterations: the start, untouched
    assert U.polish("relu_output", p.W, p.b, _dens(ratio), np.ones(5), maxiter=2).loss <= p.loss
    still = U.polish("relu_output", W0, b0, _dens(ratio), np.ones(5), maxiter=0)
    assert np.array_equal(still.W, W0) and still.loss == still.start_loss and still.iterations == 0


def _exact_run() -> tuple:
    """A pentagon and a digon restart at each ratio, with their exact losses stored (``exact_loss``) and a
    sampled ``final_loss`` that ranks them the other way round."""
    ratios = [0.15, 0.25, 0.4, 1.0]
    Ws, bs = [], []
    for _ in ratios:
        Ws += [PENTAGON / 0.9, DIGONS]
        bs += [np.full(5, -0.1), np.zeros(5)]
    W, b = np.stack(Ws), np.stack(bs)
    dens = np.stack([_dens(r) for r in ratios for _ in range(2)])
    ex = exact.exact_loss("relu_output", {"W": W, "b": b}, dens)
    sampled = ex.reshape(-1, 2)[:, ::-1].ravel()  # each cell's two losses swapped
    run = fake_run("p", "relu_output", {"density": [0.05], "perturbed_density_ratio": ratios}, W, b, restarts=2,
                   loss=sampled, extra_arrays={"exact_loss": ex}, perturbed_feature=0)
    return run, ratios, ex


def test_perturbation_loss_curves_use_the_exact_loss():
    run, ratios, ex = _exact_run()
    an = U.perturbation_analysis(ctx_with("pentagon_perturbation", {"p": run}, polish_maxiter=0))
    df = an.models
    assert an.loss_source == "exact" and np.array_equal(df["loss"].to_numpy(), ex)
    # selection, best of each geometry and the curves follow the exact loss, not the sampled one
    sel = df[df["selected"]]
    assert sel["instance"].tolist() == [2 * c + int(np.argmin(ex[2 * c:2 * c + 2])) for c in range(len(ratios))]
    curves = an.curves
    assert curves["pentagon"].tolist() == ex[0::2].tolist() and curves["digons"].tolist() == ex[1::2].tolist()
    assert an.crossings == crossing(ratios, ex[0::2], ex[1::2]) and len(an.crossings) == 1
    # the digons win when feature 0 is sparse, the (undeformed) pentagon when it is dense
    assert ex[1] < ex[0] and ex[-2] < ex[-1]
    # no polishing (maxiter 0): the optimised curves are the exact losses of the same restarts
    assert np.allclose(curves["pentagon_optimised"], curves["pentagon"], rtol=1e-12)
    assert np.allclose(curves["digons_optimised"], curves["digons"], rtol=1e-12)
    assert an.optimised_crossings == pytest.approx(an.crossings, rel=1e-9)
    m = U.measure_crossing(df, an.optimised)
    assert m.measured["crossings"] == an.crossings and m.measured["optimised_crossings"] == an.optimised_crossings
    assert m.measured["paper_crossing"] == 0.4 and m.measured["times_sparser"]["paper"] == 2.5
    assert m.measured["polish_changed_geometry"] == [] and m.bars == U.measure_crossing(df).bars  # same verdict rule


def test_a_polish_that_changes_geometry_is_reported_and_not_used(monkeypatch):
    run, ratios, ex = _exact_run()
    real = U.polish

    def into_pentagon(kind, W, b, *args, **kwargs):  # the digon at ratio 0.4 "polishes" into a pentagon
        p = real(kind, W, b, *args, **kwargs)
        if U.classify_pentagon(W) == "digons" and args[0][0] == pytest.approx(0.02):
            return U.Polished(PENTAGON / 0.9, np.full(5, -0.1), p.start_loss / 2, p.start_loss, 1, 1)
        return p

    monkeypatch.setattr(U, "polish", into_pentagon)
    ctx = ctx_with("pentagon_perturbation", {"p": run}, polish_maxiter=0)
    an = U.perturbation_analysis(ctx)
    row = an.optimised[~an.optimised["kept"]]
    assert row[["ratio", "geometry", "geometry_after"]].values.tolist() == [[0.4, "digons", "pentagon"]]
    assert row["loss"].item() == row["start_loss"].item() == pytest.approx(ex[5], rel=1e-12)
    assert row["polished_loss"].item() == pytest.approx(ex[5] / 2, rel=1e-12)
    m = U.measure_crossing(an.models, an.optimised)
    assert m.measured["polish_changed_geometry"] == ["digons at 0.4 -> pentagon"] and "left their geometry" in m.detail


# --------------------------------------------------------------------------------------------
# correlated features, local bases, PCA collapse


def _sets_run(name: str, kind: str, W: np.ndarray, dens: list[float]) -> object:
    n = W.shape[-1]
    sets = [{"kind": kind, "size": 2, "count": n // 2}]
    return fake_run(name, "relu_output", {"density": dens}, W, feature_sets=sets)


SQUARE = np.array([[1.0, 0, -1, 0], [0, 1.0, 0, -1]])  # A1 _|_ A2, B1 = -A1, B2 = -A2
ANTI = np.array([[1.0, -1, 0, 0], [0, 0, 1.0, -1]])  # A1 = -A2, B1 = -B2


def _corr_ctx(corr: np.ndarray, anti: np.ndarray, three: np.ndarray) -> object:
    runs = {"correlated_2x2": _sets_run("c", "correlated", corr[None], [0.03]),
            "anticorrelated_2x2": _sets_run("a", "anticorrelated", anti[None], [0.1]),
            "pca_collapse": _sets_run("pca", "correlated", np.stack([three, _collapsed(3)]), [0.01, 0.5])}
    return ctx_with("correlated_features", runs)


def test_correlated_claims_pass_and_fail():
    good = _findings("correlated_features", _corr_ctx(SQUARE, ANTI, rot(33) @ SIDE_BY_SIDE))
    assert {f.verdict for f in good.values()} == {"reproduced"}, good
    assert all(b["passed"] for f in good.values() for b in f.bars) and not any(f.near_miss for f in good.values())
    assert good["correlated_orthogonal"].bars[1]["value"] == pytest.approx(0.0, abs=1e-12)
    bad = _findings("correlated_features", _corr_ctx(ANTI, SQUARE, INTERLEAVED))
    assert {f.verdict for f in bad.values()} == {"not reproduced"}, bad
    # swapped data: correlated pairs antipodal (|cos| 1), anticorrelated pairs orthogonal (cos 0)
    assert bad["correlated_orthogonal"].margin == pytest.approx(0.1 - 1.0)
    assert bad["anticorrelated_antipodal"].margin == pytest.approx(-0.9 - 0.0, abs=1e-12)
    # interleaved hexagon: every feature represented, no pair collapsed; only adjacency fails (no bar)
    assert all(b["passed"] for b in bad["side_by_side"].bars) and bad["side_by_side"].near_miss is False
    ctx = _corr_ctx(SQUARE, ANTI, SIDE_BY_SIDE)
    an = U.correlated_analysis(ctx)
    assert an.rows["three pairs"].pairs == PAIRS3 and an.rows["correlated"].density == 0.03
    out = U.build_correlated(ctx)
    assert set(out.table["row"]) == {"correlated", "anticorrelated", "three pairs"}
    out.figure.clf()


def _shrunk(W: np.ndarray) -> np.ndarray:
    """``W`` with its last feature just below the represented threshold (0.49 < 0.5: a 2 % miss)."""
    W = W.copy()
    W[:, -1] *= 0.49
    return W


@pytest.mark.parametrize("W, adjacent", [(SIDE_BY_SIDE, True), (INTERLEAVED, False)])
def test_side_by_side_adjacency_blocks_a_near_miss(W, adjacent):
    # one feature narrowly unrepresented; interleaved pairs are not adjacent either, which no number flips
    f = _findings("correlated_features", _corr_ctx(SQUARE, ANTI, _shrunk(W)))["side_by_side"]
    assert f.verdict == "not reproduced" and [b["passed"] for b in f.bars] == [False, True]
    assert f.bars[0]["margin"] == pytest.approx(0.49 - 0.5) and f.near_miss is adjacent
    run = _sets_run("pca", "correlated", np.stack([_shrunk(W), _collapsed(3)]), [0.01, 0.5])
    m = U.measure_no_collapse(U.pca_levels(run))  # the same at the one sparse level of the PCA sweep
    assert not m.passed and m.categorical_ok is adjacent and near_miss(m.passed, m.bars, m.categorical_ok) is adjacent
    m = U.measure_no_collapse(U.pca_levels(_sets_run("pca", "correlated", np.stack([_collapsed(3)] * 2), [0.5, 0.7])))
    assert m.bars == () and m.categorical_ok is False  # no sparse level at all


def _local_W(orthogonal_within: bool) -> np.ndarray:
    """Two correlated sets of 4 in m = 4: set B = -set A (orthogonal within), or a random mix."""
    if orthogonal_within:
        return np.concatenate([np.eye(4), -np.eye(4)], axis=1)
    rng = np.random.default_rng(3)
    W = rng.normal(size=(4, 8))
    return W / np.linalg.norm(W, axis=0)


def test_local_bases_claim():
    for good in (True, False):
        run = fake_run("l", "relu_output", {"density": [0.05]}, _local_W(good)[None],
                       feature_sets=[{"kind": "correlated", "size": 4, "count": 2}])
        ctx = ctx_with("local_orthogonal_bases", {"l": run})
        f = _findings("local_orthogonal_bases", ctx)["orthogonal_within_sets"]
        assert f.verdict == ("reproduced" if good else "not reproduced")
        assert [(b["name"], b["op"], b["threshold"]) for b in f.bars] == [
            ("features represented", ">", 4), ("mean |cos| within sets", "<=", 0.1)]
        assert (f.margin > 0) is good and f.bars[0]["margin"] == 4  # 8 features in 4 dimensions either way
        an = U.local_analysis(ctx)
        assert np.allclose(an.gram, metrics.gram(_local_W(good))) and an.bounds.tolist() == [3.5]
        out = U.build_local(ctx)
        assert (out.table["quantity"] == "WtW").sum() == 64
        out.figure.clf()
    stats = U.local_basis_stats(_local_W(True), FeatureSets.parse([{"kind": "correlated", "size": 4, "count": 2}], 8))
    assert stats["within_mean_abs_cos"] == 0 and stats["across_mean_abs_cos"] == pytest.approx(0.25)


PCA_DENS = [0.01, 0.02, 0.04, 0.06, 0.1, 0.17, 0.3, 0.7]


def _pca_run(counts: list[int], dense: np.ndarray) -> object:
    Ws = [_collapsed(k) for k in counts[:-1]] + [dense]
    return _sets_run("pca", "correlated", np.stack(Ws), PCA_DENS)


def _pca_dense() -> np.ndarray:
    """PCA-like: two pairs collapsed onto orthogonal directions, the third dropped."""
    W = np.zeros((2, 6))
    W[:, 0] = W[:, 1] = [0.7, 0]
    W[:, 2] = W[:, 3] = [0, 0.7]
    return W


def test_pca_collapse_claims_pass_and_fail():
    good = _pca_run([0, 0, 0, 1, 1, 2, 3, 2], _pca_dense())
    ctx = ctx_with("pca_collapse", {"pca": good})
    found = _findings("pca_collapse", ctx)
    assert {f.verdict for f in found.values()} == {"reproduced"}, found
    prog = {(b["name"], b["op"]): b for b in found["collapse_one_after_another"].bars}
    assert prog[("density of the first collapse", ">=")]["value"] == 0.06
    assert prog[("density of the first two collapses", "<=")]["margin"] == pytest.approx(0.225 - 0.17)
    assert found["dense_pca_like_strict"].bars[2]["name"] == "largest |cos| between collapsed directions"
    assert found["dense_pca_like"].bars[1]["name"] == "share of ||W||_F^2 along the minor components"
    an = U.pca_analysis(ctx)
    assert an.levels["collapsed"].tolist()[:-1] == [0, 0, 0, 1, 1, 2, 3]
    assert an.dense_density == 0.7 and np.array_equal(an.dense, _pca_dense())
    # all at once (0 -> 3) and too early; dense end still in superposition (a triangle of components)
    bad = _pca_run([0, 3, 3, 3, 3, 3, 3, 3], _collapsed(3))
    found = _findings("pca_collapse", ctx_with("pca_collapse", {"pca": bad}))
    # the triangle of components lies on the principal components (the revised reading holds) but is in
    # superposition (the strict reading fails)
    assert found.pop("dense_pca_like").verdict == "reproduced"
    assert {f.verdict for f in found.values()} == {"not reproduced"}, found
    # at 0.02 three pairs are collapsed already; the first collapse at 0.02 < 0.033 and all three at once
    assert found["sparse_no_collapse"].bars[1]["value"] == 3 and found["sparse_no_collapse"].margin == -2
    prog = {(b["name"], b["op"]): b for b in found["collapse_one_after_another"].bars}
    assert not prog[("density of the first collapse", ">=")]["passed"]
    assert not prog[("density of the first two collapses", ">=")]["passed"]
    # a triangle of components: no pair separate, but the directions are 60 degrees apart (|cos| 0.5)
    assert found["dense_pca_like_strict"].margin == pytest.approx(0.1 - 0.5)
    assert not any(f.near_miss for f in found.values())
    out = U.build_pca(ctx)
    assert (out.table["kind"] == "levels").sum() == len(PCA_DENS)
    out.figure.clf()


@pytest.mark.parametrize("collapsed, through_two", [
    ([0, 0, 0, 1, 1, 2, 3, 3], True),
    ([0, 0, 0, 1, 1, 3, 3, 3], False),  # 1 -> 3: never two pairs merged, which no number flips
])
def test_progressive_collapse_must_pass_through_one_and_two(collapsed, through_two):
    dens = [0.01, 0.02, 0.04, 0.077, 0.1, 0.17, 0.3, 0.7]  # the first collapse at 0.077: 2.7 % past 0.075
    m = U.measure_progressive(pd.DataFrame({"density": dens, "collapsed": collapsed, "dropped": 0}))
    assert m.measured["first_one"] == 0.077 and m.measured["first_two"] == 0.17
    assert not m.passed and [(b.name, b.op) for b in m.bars if not b.passed] == [
        ("density of the first collapse", "<=")]
    assert m.categorical_ok is through_two and near_miss(m.passed, m.bars, m.categorical_ok) is through_two
    m = U.measure_progressive(pd.DataFrame({"density": dens, "collapsed": 0, "dropped": collapsed}))
    assert m.measured["first_one"] is None and m.categorical_ok is False  # dropped, never collapsed


def test_dense_pca_measure():
    m = U.measure_dense_pca(_pca_dense(), PAIRS3)
    assert m.passed and all(b.margin > 0 for b in m.bars)
    skew = _pca_dense()
    skew[:, 2] = skew[:, 3] = [0.5, 0.5]  # components not orthogonal
    m = U.measure_dense_pca(skew, PAIRS3)
    assert not m.passed and _bind(m) == "largest |cos| between collapsed directions"
    m = U.measure_dense_pca(SIDE_BY_SIDE, PAIRS3)
    assert not m.passed and _bind(m) == "separate pairs" and m.bars[0].value == 3


# --------------------------------------------------------------------------------------------
# end to end on the quick config


def test_metrics_canonicalisation_is_what_the_figures_use():
    # the figures draw canonicalised solutions: rotated and reflected copies must coincide
    W = rot(40) @ PENTAGON * np.array([1, 1.1, 0.9, 1, 1])
    flipped = np.diag([1, -1]) @ rot(-75) @ W
    assert np.allclose(metrics.canonicalize_2d(W), metrics.canonicalize_2d(flipped), atol=1e-9)
