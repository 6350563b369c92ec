"""Tests of the neuron figures' analysis (tms.figures.neurons) on hand-built weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tms.figures import neurons as N


def abs_model(n: int, scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The textbook |x| model: neuron 2i = ReLU(x_i), 2i+1 = ReLU(-x_i), read out with weight 1,
    each hidden unit rescaled by an arbitrary positive factor (the model function is unchanged)."""
    m = 2 * n
    W1 = np.zeros((m, n))
    W2 = np.zeros((n, m))
    for i in range(n):
        W1[2 * i, i], W1[2 * i + 1, i] = 1.0, -1.0
        W2[i, 2 * i] = W2[i, 2 * i + 1] = 1.0
    s = np.ones(m) if scales is None else scales
    return W1 * s[:, None], W2 / s[None, :]


# --------------------------------------------------------------------------------------------
# ReLU(x) / ReLU(-x) pairing


def test_pairing_detects_the_textbook_model_under_rescaling():
    W1, W2 = abs_model(3, np.array([0.5, 2.0, 1.3, 0.7, 3.0, 0.9]))
    p = N.pairing(W1, W2)
    assert p.ok, p.detail
    assert np.allclose(p.pairs["gain"], 1.0)


def test_pairing_rejects_a_missing_negative_side():
    W1, W2 = abs_model(3)
    W1[1, 0] = 1.0  # feature 0 now has two ReLU(+x) neurons and no ReLU(-x)
    p = N.pairing(W1, W2)
    assert not p.ok and "ReLU(-x)" in p.detail


def test_pairing_rejects_polysemantic_and_unbalanced_neurons():
    W1, W2 = abs_model(3)
    W1[2, 2] = 0.5  # neuron 2 also reads feature 2
    assert not N.pairing(W1, W2).ok
    W1, W2 = abs_model(3)
    W2[0, 0] = 2.0  # ReLU(x_0) read out twice as strongly as ReLU(-x_0)
    p = N.pairing(W1, W2)
    assert not p.ok and "unbalanced" in p.detail


def test_dead_neurons_are_not_rescaled_into_features():
    W1, W2 = abs_model(2)
    W1 = np.vstack([W1, [[1e-4, 2e-4]]])
    W2 = np.hstack([W2, [[1e-4], [1e-4]]])
    _, _, counts = N.computation_neurons(W1, W2)
    assert counts.tolist() == [1, 1, 1, 1, 0]
    assert N.pairing(W1, W2).ok


def test_computed_features_and_single_feature_response():
    W1, W2 = abs_model(3)
    b = np.zeros(3)
    assert N.computed_features(W1, W2, b).tolist() == [True, True, True]
    vals = np.linspace(-1, 1, 9)
    assert np.allclose(N.single_feature_response(W1, W2, b, vals), np.abs(vals)[None].repeat(3, 0))
    W2[1, 3] = 0.0  # ReLU(-x_1) no longer reaches output 1
    assert N.computed_features(W1, W2, b).tolist() == [True, False, True]
    pos, neg = N.computed_sides(W1, W2, b)
    assert pos.tolist() == [True, True, True] and neg.tolist() == [True, False, True]
    # batched over instances
    assert N.computed_features(np.stack([W1, W1]), np.stack([W2, W2]), np.zeros((2, 3))).shape == (2, 3)


# --------------------------------------------------------------------------------------------
# the asymmetric superposition motif


def motif_model() -> tuple[np.ndarray, np.ndarray]:
    """Neuron 0 stores x0 at 2 and x1 at -1/2, read out 1/2 and 2 (the paper's example); neuron 1 is
    ReLU(x0) inhibiting output 1; neuron 2 is a plain ReLU(-x0) for completeness."""
    W1 = np.array([[2.0, -0.5], [1.0, 0.0], [-1.0, 0.0]])
    W2 = np.array([[0.5, 0.5, 1.0],
                   [2.0, -5.0, 0.0]])
    return W1, W2


def test_motif_found_in_the_papers_example():
    W1, W2 = motif_model()
    found = N.find_motifs(W1, W2)
    assert len(found) == 1
    mo = found[0]
    assert (mo.j, mo.a, mo.b, mo.k) == (0, 0, 1, 1)
    assert mo.in_ratio == pytest.approx(4.0) and mo.out_ratio == pytest.approx(4.0)
    assert mo.interference == pytest.approx(4.0) and mo.net == pytest.approx(-1.0)


def test_motif_is_invariant_to_rescaling_hidden_units():
    W1, W2 = motif_model()
    s = np.array([3.0, 0.2, 1.7])
    scaled = N.find_motifs(W1 * s[:, None], W2 / s[None, :])
    plain = N.find_motifs(W1, W2)
    assert [(m.j, m.a, m.b, m.k) for m in scaled] == [(m.j, m.a, m.b, m.k) for m in plain]
    assert scaled[0].in_ratio == pytest.approx(plain[0].in_ratio)
    assert scaled[0].net == pytest.approx(plain[0].net)


def test_no_motif_without_inhibition_or_asymmetry():
    W1, W2 = motif_model()
    W2[1, 1] = 0.0  # no inhibitor: x0 pushes output 1 up
    assert N.find_motifs(W1, W2) == []
    W1, W2 = motif_model()
    W2[1, 1] = -1.0  # inhibition too weak to make the net push non-positive
    assert N.find_motifs(W1, W2) == []
    W1, W2 = motif_model()
    W1[0] = [1.0, -1.0]  # symmetric superposition
    W2[:, 0] = [1.0, 1.0]
    assert N.find_motifs(W1, W2) == []
    W1, W2 = motif_model()
    W2[:, 0] = [1.0, 1.0]  # asymmetric storage without reciprocal read-out
    assert N.find_motifs(W1, W2) == []


def test_motif_analysis_counts_and_picks_the_example():
    W1, W2 = motif_model()
    plain1, plain2 = W1.copy(), W2.copy()
    plain2[1, 1] = 0.0
    A1 = np.stack([W1, plain1, plain1, W1])
    A2 = np.stack([W2, plain2, plain2, W2])
    an = N.motif_analysis(A1, A2, np.zeros((4, 2)), cell=np.array([0, 0, 1, 1]), density=np.array([0.3, 0.1]),
                          loss=np.array([2.0, 1.0, 1.0, 3.0]), selected=np.array([False, True, True, False]))
    assert an.with_motif == 2 and an.total == 4
    assert an.frequency["fraction"].tolist() == [0.5, 0.5]
    assert an.frequency["selected_has_motif"].tolist() == [False, False]
    assert an.example == 0  # lowest loss among models with the motif
    assert N.motif_found(an).passed is True
    none = N.motif_analysis(A1[1:3], A2[1:3], np.zeros((2, 2)), cell=np.array([0, 1]), density=np.array([0.3, 0.1]),
                            loss=np.array([1.0, 1.0]), selected=np.array([True, True]))
    assert N.motif_found(none).passed is False


# --------------------------------------------------------------------------------------------
# privileged basis claims


def pb_cells(mono, poly, rep, dead=None):
    k = len(mono)
    return pd.DataFrame({"density": np.geomspace(1, 0.02, k), "monosemantic": mono, "polysemantic": poly,
                         "dead": dead if dead is not None else [0] * k, "n_represented": rep, "loss": [0.0] * k})


def test_privileged_basis_claims_on_good_cells():
    cells = pb_cells(mono=[5, 3, 2, 1, 0], poly=[0, 2, 3, 4, 5], rep=[5, 6, 7, 7, 9])
    assert N.dense_monosemantic(cells, 5).passed is True
    assert N.polysemanticity_rises(cells, 5).passed is True
    m = N.coexist(cells)
    assert m.passed is True and m.measured["cells"] == 3


def test_privileged_basis_claims_on_bad_cells():
    cells = pb_cells(mono=[4, 5, 5], poly=[1, 0, 0], rep=[5, 5, 5])
    assert N.dense_monosemantic(cells, 5).passed is False
    assert N.polysemanticity_rises(cells, 5).passed is False
    assert N.coexist(cells).passed is True  # the dense cell has both
    assert N.coexist(pb_cells(mono=[5, 0], poly=[0, 5], rep=[5, 9])).passed is False
    # represented count falls on the way: not a rise
    assert N.polysemanticity_rises(pb_cells(mono=[5, 1, 0], poly=[0, 4, 5], rep=[5, 8, 7]), 5).passed is False


def test_privileged_basis_analysis_on_constructed_weights():
    dense = np.hstack([np.eye(5), np.zeros((5, 5))])
    sparse = dense.copy()
    sparse[3, 5:] = [0.9, -0.8, 0, 0, 0]  # neuron 3 also stores features 5 and 6
    an = N.privileged_basis_analysis(np.stack([dense, sparse]), np.array([1.0, 0.05]), np.zeros(2))
    assert an.cells[["monosemantic", "polysemantic", "n_represented"]].values.tolist() == [[5, 0, 5], [4, 1, 7]]
    assert len(an.weights) == 2 * 5 * 10
    first = an.weights[(an.weights["density"] == 0.05) & (an.weights["position"] == 4)]
    assert set(first["neuron"]) == {3}  # the polysemantic neuron is drawn last


# --------------------------------------------------------------------------------------------
# absolute value in superposition


def test_mono_before_poly():
    counts = np.array([1, 1, 2, 3])
    assert N.mono_before_poly(np.array([0, 1, 5, 7]), counts) == 1.0
    assert N.mono_before_poly(np.array([5, 7, 0, 1]), counts) == 0.0
    assert np.isnan(N.mono_before_poly(np.array([0, 1]), np.array([1, 1])))


def abs_cells(computed, mono, poly, p, represented=None):
    k = len(computed)
    return pd.DataFrame({"density": np.geomspace(1, 0.001, k), "computed": computed, "sides": np.multiply(computed, 2),
                         "represented": represented if represented is not None else computed, "monosemantic": mono,
                         "polysemantic": poly, "dead": [0] * k, "p_mono_more_important": p})


def test_abs_superposition_claims():
    good = abs_cells([20, 25, 30.5], [40, 30, 10], [0, 10, 30], [np.nan, 0.8, 0.7], represented=[20, 30, 45])
    assert N.abs_dense_monosemantic(good).passed is True
    assert N.sparse_computes_more(good, "computed", 20, "m/2").passed is True
    assert N.sparse_computes_more(good, "represented", 40, "m").passed is True
    assert N.important_on_mono(good).passed is True
    # the dense cell does not count: superposition must come from sparsity
    bad = abs_cells([21, 20, 18], [38, 30, 10], [2, 10, 30], [0.9, 0.3, 0.4], represented=[41, 40, 40])
    assert N.abs_dense_monosemantic(bad).passed is False
    assert N.sparse_computes_more(bad, "computed", 20, "m/2").passed is False
    assert N.sparse_computes_more(bad, "represented", 40, "m").passed is False
    assert N.important_on_mono(bad).passed is False


def test_abs_superposition_analysis_on_the_textbook_model():
    W1, W2 = abs_model(3)
    an = N.abs_superposition_analysis(W1[None], W2[None], np.zeros((1, 3)), np.array([1.0]))
    row = an.cells.iloc[0]
    assert (row["computed"], row["sides"], row["represented"]) == (3, 6, 3)
    assert (row["monosemantic"], row["polysemantic"], row["dead"]) == (6, 0, 0)
    assert an.bars["superposition"].max() == pytest.approx(0.0)


def test_trivial_loss_closed_form():
    # dense signed features: Var|x| = 1/3 - 1/4 = 1/12 per unit importance
    assert N.trivial_loss(np.ones((1, 4)), np.array([1.0]))[0] == pytest.approx(1 / 12)
    assert N.trivial_loss(np.array([[2.0, 0.0]]), np.array([0.1]))[0] == pytest.approx((0.1 / 3 - 0.01 / 4))
