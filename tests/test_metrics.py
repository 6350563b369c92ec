"""Tests of tms.metrics on geometries whose measures are known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tms import metrics as M
from tms import models
from tms.models import ModelKind


# --------------------------------------------------------------------------------------------
# hand-built geometries (constructed here independently of tms.metrics.polytope)


def regular_polygon(k: int) -> np.ndarray:
    t = 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(t), np.sin(t)])


def tetrahedron() -> np.ndarray:
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float).T
    return v / np.linalg.norm(v, axis=0)


def antiprism(height: float) -> np.ndarray:
    """Unit vectors: two squares at +-height, the lower one twisted by 45 degrees."""
    r = math.sqrt(1 - height**2)
    t = np.pi / 2 * np.arange(4)
    top = np.stack([r * np.cos(t), r * np.sin(t), np.full(4, height)])
    bot = np.stack([r * np.cos(t + np.pi / 4), r * np.sin(t + np.pi / 4), np.full(4, -height)])
    return np.concatenate([top, bot], axis=1)


def cube() -> np.ndarray:
    v = np.array([[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)], dtype=float).T
    return v / math.sqrt(3)


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def embed(blocks: list[np.ndarray], m: int | None = None) -> np.ndarray:
    """Orthogonal direct sum of blocks [d_k, n_k], padded to m rows."""
    d = sum(b.shape[0] for b in blocks)
    n = sum(b.shape[1] for b in blocks)
    W = np.zeros((m or d, n))
    r = c = 0
    for b in blocks:
        W[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return W


TIGHT_HEIGHT = 1 / math.sqrt(3)

SHAPES = {
    "antipodal pair": (np.array([[1.0, -1.0]]), 1 / 2),
    "triangle": (regular_polygon(3), 2 / 3),
    "pentagon": (regular_polygon(5), 2 / 5),
    "tetrahedron": (tetrahedron(), 3 / 4),
    "square antiprism": (antiprism(TIGHT_HEIGHT), 3 / 8),
    "dedicated": (np.eye(3), 1.0),
}


# --------------------------------------------------------------------------------------------
# per-feature measures


@pytest.mark.parametrize("name", list(SHAPES))
def test_dimensionality_of_tight_frames(name):
    V, frac = SHAPES[name]
    W = random_rotation(V.shape[0], 1) @ V
    np.testing.assert_allclose(M.dimensionality(W), frac, atol=1e-12)
    # The dimensionalities of a tight frame add up to its dimension.
    assert M.dimensionality(W).sum() == pytest.approx(V.shape[0])


def test_non_tight_antiprism_is_not_three_eighths():
    for h in (0.3, 0.75):
        D = M.dimensionality(antiprism(h))
        assert np.all(np.abs(D - 3 / 8) > 0.02)
        assert np.all(D < 3 / 8)  # tight frames minimise the frame potential


def test_unrepresented_features_and_zero_weights_are_finite():
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(M.dimensionality(W), [1, 1, 0])
    np.testing.assert_allclose(M.superposition(W), [0, 0, 0])
    Z = np.zeros((4, 3, 7))
    for f in (M.dimensionality, M.superposition, M.feature_norms, M.dstar, M.n_represented):
        out = f(Z)
        assert np.isfinite(out).all() and np.all(out == 0)


def test_superposition_values():
    ortho = random_rotation(4, 2)[:, :3]
    np.testing.assert_allclose(M.superposition(ortho), 0, atol=1e-12)
    np.testing.assert_allclose(M.superposition(np.array([[1.0, -1.0]])), [1, 1])
    # a short feature in the direction of a unit one: its colour is 1, the unit one's is 0.25
    np.testing.assert_allclose(M.superposition(np.array([[1.0, 0.5]])), [0.25, 1.0])
    # pentagon: sum over the other four of cos^2 = 5/2 - 1
    np.testing.assert_allclose(M.superposition(regular_polygon(5)), 1.5, atol=1e-12)


def test_norms_gram_dstar_and_n_represented():
    W = np.array([[1.0, -1.0, 0.3], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(M.feature_norms(W), [1, 1, 0.3])
    np.testing.assert_allclose(M.gram(W), W.T @ W)
    assert M.n_represented(W) == 2
    assert M.n_represented(W, threshold=0.2) == 3
    assert M.dstar(np.eye(5)) == pytest.approx(1.0)
    assert M.dstar(np.array([[1.0, -1.0]])) == pytest.approx(0.5)
    assert M.dstar(regular_polygon(5)) == pytest.approx(0.4)
    assert M.dstar(np.zeros((2, 3))) == 0.0


def test_leading_axes_are_instances():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(2, 3, 4, 6))
    for f in (M.feature_norms, M.superposition, M.dimensionality, M.dstar, M.n_represented):
        batched = f(W)
        single = np.array([[f(W[i, j]) for j in range(3)] for i in range(2)])
        np.testing.assert_allclose(batched, single)
    labels = M.classify_geometry(W)
    assert labels.shape == (2, 3, 6)
    assert labels[1, 2].tolist() == M.classify_geometry(W[1, 2]).tolist()


def test_torch_input_is_accepted():
    W = torch.tensor([[1.0, -1.0]])
    np.testing.assert_allclose(M.dimensionality(W), [0.5, 0.5])


# --------------------------------------------------------------------------------------------
# geometry labels


@pytest.mark.parametrize("name", list(SHAPES))
def test_classify_geometry_labels_each_shape(name):
    V, _ = SHAPES[name]
    m = V.shape[0] + 2
    W = random_rotation(m, 3) @ embed([V], m)
    assert set(M.classify_geometry(W).tolist()) == {name}


def test_classify_geometry_tegum_product_and_unrepresented():
    # triangular bipyramid (triangle + orthogonal antipodal pair) plus a dropped feature
    W = embed([regular_polygon(3), np.array([[1.0, -1.0]]), np.zeros((0, 1))], 4)
    W[3, 5] = 0.05
    W = random_rotation(4, 4) @ W
    labels = M.classify_geometry(W).tolist()
    assert labels == ["triangle"] * 3 + ["antipodal pair"] * 2 + ["not represented"]
    D = M.dimensionality(W)
    np.testing.assert_allclose(D[:5], [2 / 3] * 3 + [1 / 2] * 2, atol=1e-3)


def test_classify_geometry_uses_gram_structure_not_only_dimensionality():
    # A cube is also a tight frame (every D_i = 3/8), but not a square antiprism.
    np.testing.assert_allclose(M.dimensionality(cube()), 3 / 8)
    assert set(M.classify_geometry(cube()).tolist()) == {"other"}
    # Non-tight antiprism.
    assert set(M.classify_geometry(antiprism(0.3)).tolist()) == {"other"}
    # Two unit features at 120 degrees: not antipodal, not a triangle.
    assert set(M.classify_geometry(regular_polygon(3)[:, :2]).tolist()) == {"other"}
    # Antipodal but unequal norms: D = a^2 / (a^2 + b^2) = 0.74 / 0.26 (not 1/2): not a clean pair.
    W = np.array([[1.0, -0.6], [0.0, 0.0]])
    np.testing.assert_allclose(M.dimensionality(W), [1 / 1.36, 0.36 / 1.36])
    assert set(M.classify_geometry(W).tolist()) == {"other"}


def test_classify_geometry_tolerates_small_noise():
    W = embed([regular_polygon(5), np.array([[1.0, -1.0]])], 3)
    W = W + 0.01 * np.random.default_rng(5).normal(size=W.shape)
    assert M.classify_geometry(W).tolist() == ["pentagon"] * 5 + ["antipodal pair"] * 2


def test_reference_fractions_and_polytopes():
    ref = M.reference_fractions()
    assert ref == {
        "dedicated": 1.0, "tetrahedron": 0.75, "triangle": 2 / 3, "antipodal pair": 0.5,
        "pentagon": 0.4, "square antiprism": 0.375, "not represented": 0.0,
    }
    assert list(ref.values()) == sorted(ref.values(), reverse=True)
    assert set(ref) <= set(M.GEOMETRY_LABELS)
    for name, frac in ref.items():
        if name == "not represented":
            continue
        V = M.polytope(name)
        np.testing.assert_allclose(np.linalg.norm(V, axis=0), 1)
        np.testing.assert_allclose(M.dimensionality(V), frac, atol=1e-12)
    with pytest.raises(ValueError, match="name"):
        M.polytope("cube")


# --------------------------------------------------------------------------------------------
# 2-D canonicalisation


def test_canonicalize_2d_preserves_gram_and_aligns_copies():
    P = regular_polygon(5) * np.array([1.0, 0.9, 1.1, 0.8, 1.2])
    variants = []
    for k, angle in enumerate([0.3, 2.0, -1.2]):
        c, s = math.cos(angle), math.sin(angle)
        R = np.array([[c, -s], [s, c]])
        if k == 1:
            R = R @ np.diag([1.0, -1.0])  # a reflected copy
        variants.append(R @ P)
    W = np.stack(variants)
    C = M.canonicalize_2d(W)
    np.testing.assert_allclose(M.gram(C), M.gram(W), atol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(C[k], C[0], atol=1e-12)
    assert C[0, 1, 0] == pytest.approx(0.0, abs=1e-12) and C[0, 0, 0] > 0  # anchor on +x
    assert M.angles_2d(C[0])[1] > 0  # next feature counter-clockwise


def test_canonicalize_2d_anchor_choice():
    # feature 0 not represented: the largest-norm feature (2) becomes the anchor
    W = np.array([[0.1, 0.0, -2.0, 0.0], [0.0, -1.0, 0.0, 0.0]])
    C = M.canonicalize_2d(W)
    np.testing.assert_allclose(C[:, 2], [2.0, 0.0], atol=1e-12)
    assert M.angles_2d(C)[3] == 0.0  # zero column stays zero, angle 0 (no NaN)
    assert np.isfinite(C).all()
    assert M.angles_2d(C)[1] > 0  # feature 1 is the next represented one
    C1 = M.canonicalize_2d(W, anchor=1)
    np.testing.assert_allclose(C1[:, 1], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(M.gram(C1), M.gram(W), atol=1e-12)
    assert np.all(M.canonicalize_2d(np.zeros((3, 2, 4))) == 0)


def test_canonicalize_2d_rejects_other_dimensions():
    with pytest.raises(ValueError, match="W must have m=2"):
        M.canonicalize_2d(np.ones((3, 5)))
    with pytest.raises(ValueError, match="anchor"):
        M.canonicalize_2d(np.ones((2, 5)), anchor=7)


# --------------------------------------------------------------------------------------------
# neurons


def test_neuron_polysemanticity_and_counts():
    W = np.array([
        [1.0, 0.0, 0.0, 0.0],   # monosemantic
        [0.8, -0.5, 0.0, 0.05],  # two features (0.05 is below both thresholds)
        [0.02, 0.0, 0.03, 0.0],  # dead: all weights below the absolute floor
        [0.0, 1.0, 0.09, 0.3],   # two features (0.09 < 10% of 1.0)
        [0.0, 0.0, -0.7, 0.0],   # monosemantic (sign does not matter)
    ])
    np.testing.assert_array_equal(M.neuron_polysemanticity(W), [1, 2, 0, 2, 1])
    mono, poly, dead = M.neuron_counts(np.stack([W, np.eye(5, 4)]))
    np.testing.assert_array_equal(mono, [2, 4])
    np.testing.assert_array_equal(poly, [2, 0])
    np.testing.assert_array_equal(dead, [1, 1])
    np.testing.assert_array_equal(M.neuron_polysemanticity(W, rel_threshold=0.05, abs_threshold=0.05), [1, 2, 0, 3, 1])
    np.testing.assert_allclose(M.neuron_feature_weights(W), np.abs(W))


def test_rescale_hidden_units_preserves_the_model():
    g = torch.Generator().manual_seed(0)
    N, n, m = 3, 5, 7
    W1 = torch.randn(N, m, n, generator=g, dtype=torch.float64) * 3
    W1[1, 2] = 0.0  # a dead unit must survive the rescaling
    W2 = torch.randn(N, n, m, generator=g, dtype=torch.float64)
    b = torch.randn(N, n, generator=g, dtype=torch.float64) * 0.1
    R1, R2 = M.rescale_hidden_units(W1.numpy(), W2.numpy())
    top = np.abs(R1).max(-1)
    np.testing.assert_allclose(np.delete(top.ravel(), 1 * m + 2), 1.0)
    x = 2 * torch.rand(N, 64, n, generator=g, dtype=torch.float64) - 1
    y0, _ = models.forward(ModelKind.COMPUTATION, {"W1": W1, "W2": W2, "b": b}, x)
    y1, _ = models.forward(ModelKind.COMPUTATION, {"W1": torch.from_numpy(R1), "W2": torch.from_numpy(R2), "b": b}, x)
    torch.testing.assert_close(y1, y0, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="W2"):
        M.rescale_hidden_units(W1.numpy(), W2.numpy()[:, :, :4])


# --------------------------------------------------------------------------------------------
# adversarial vulnerability


def sparse_inputs(N: int, B: int, n: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.where(rng.random((N, B, n)) < density, rng.random((N, B, n)), 0.0)


def test_vulnerability_of_an_orthogonal_model_is_exact():
    # W = I: the "+" attack on any active or inactive feature adds lambda to one output, so the
    # loss (mean over features) rises by exactly lambda^2 / n for every example.
    x = sparse_inputs(1, 200, 2, 0.3, 0)
    x[0, 0] = 0.5  # make sure the mean norm is not zero
    out = M.adversarial_vulnerability(np.eye(2)[None], np.zeros((1, 2)), x, np.ones(2), dtype=torch.float64)
    lam = 0.1 * np.linalg.norm(x[0], axis=-1).mean()
    assert out["budget"][0] == pytest.approx(lam)
    assert out["clean_loss"][0] == pytest.approx(0.0, abs=1e-15)
    assert out["loss_increase"][0] == pytest.approx(lam**2 / 2, rel=1e-9)
    assert np.all(out["chosen_sign"] == 1)
    fast = M.adversarial_vulnerability(np.eye(2)[None], np.zeros((1, 2)), x, np.ones(2))  # float32
    assert fast["loss_increase"][0] == pytest.approx(lam**2 / 2, rel=1e-5)


def test_superposition_makes_a_model_more_vulnerable():
    n = 2
    x = sparse_inputs(2, 2000, n, 0.1, 1)
    x[:, 0] = [0.5, 0.0]
    W = np.zeros((2, 2, n))
    W[0] = np.eye(2)  # dedicated dimensions
    W[1, 0] = [1.0, -1.0]  # antipodal pair in one dimension
    out = M.adversarial_vulnerability(W, np.zeros((2, n)), x, np.ones(n))
    inc = out["loss_increase"]
    assert np.all(out["loss_increase"] >= 0)
    assert inc[1] > 2.0 * inc[0]
    assert out["clean_loss"][1] > out["clean_loss"][0]


def test_vulnerability_matches_attacking_the_input_directly():
    g = torch.Generator().manual_seed(3)
    N, B, m, n = 2, 40, 3, 6
    W = torch.randn(N, m, n, generator=g, dtype=torch.float64)
    b = 0.2 * torch.randn(N, n, generator=g, dtype=torch.float64)
    x = torch.tensor(sparse_inputs(N, B, n, 0.3, 4))
    imp = torch.linspace(1.0, 0.3, n, dtype=torch.float64)
    out = M.adversarial_vulnerability(W, b, x, imp, budget_fraction=0.2, dtype=torch.float64)
    G = W.transpose(1, 2) @ W
    dirs = G / G.norm(dim=-1, keepdim=True)  # [N, attack, n]
    lam = 0.2 * x.norm(dim=-1).mean(-1)
    p = {"W": W, "b": b}
    clean = models.loss_per_instance(ModelKind.RELU_OUTPUT, p, x, imp.expand(N, n))
    losses = []
    for sgn in (1, -1):
        for i in range(n):
            xa = x + sgn * lam[:, None, None] * dirs[:, None, i, :]
            y, _ = models.forward(ModelKind.RELU_OUTPUT, p, xa)
            losses.append((imp * (x - y) ** 2).mean(-1))  # target stays the clean x
    worst = torch.stack(losses).max(0).values  # [N, B]
    y0, _ = models.forward(ModelKind.RELU_OUTPUT, p, x)
    clean_ex = (imp * (x - y0) ** 2).mean(-1)
    np.testing.assert_allclose(out["clean_loss"], clean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(out["loss_increase"], (worst - clean_ex).clamp_min(0).mean(-1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(out["budget"], lam.numpy())


def test_vulnerability_skips_unrepresented_features_and_zero_models():
    x = torch.tensor(sparse_inputs(2, 50, 3, 0.5, 2))
    W = torch.zeros(2, 2, 3, dtype=torch.float64)
    W[0, :, :2] = torch.eye(2)  # feature 2 not represented: G row 2 is zero
    b = torch.zeros(2, 3)
    out = M.adversarial_vulnerability(W, b, x, torch.ones(3), signs=(1,))
    for v in out.values():
        assert np.isfinite(v).all()
    assert set(np.unique(out["chosen_feature"][0])) <= {0, 1}
    assert np.all(out["chosen_feature"][1] == -1)  # W = 0: no attack at all
    assert out["loss_increase"][1] == 0.0
    # chunking over examples does not change the answer
    small = M.adversarial_vulnerability(W, b, x, torch.ones(3), signs=(1,), chunk_elements=1)
    np.testing.assert_allclose(small["loss_increase"], out["loss_increase"])


def test_vulnerability_rejects_bad_shapes():
    W, b, x = np.zeros((2, 1, 3)), np.zeros((2, 3)), np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="b must"):
        M.adversarial_vulnerability(W, b[:, :2], x, 1.0)
    with pytest.raises(ValueError, match="x must"):
        M.adversarial_vulnerability(W, b, x[:1], 1.0)
    with pytest.raises(ValueError, match="importance"):
        M.adversarial_vulnerability(W, b, x, np.ones(4))
    with pytest.raises(ValueError, match="W must"):
        M.adversarial_vulnerability(W[0], b, x, 1.0)


# --------------------------------------------------------------------------------------------
# instance summary and argument errors


def test_instance_summary_values():
    W = np.stack([embed([np.eye(2)], 2)[:, [0, 1, 1]] * [1, 1, 0], np.array([[1.0, -1.0, 0.0], [0, 0, 1.0]])])
    out = M.instance_summary("relu_output", {"W": W, "b": np.zeros((2, 3))})
    assert set(out) >= {"frobenius_sq", "dstar", "n_represented", "mean_superposition", "max_norm"}
    assert all(v.shape == (2,) for v in out.values())
    np.testing.assert_allclose(out["frobenius_sq"], [2, 3])
    np.testing.assert_allclose(out["dstar"], [1, 2 / 3])
    np.testing.assert_array_equal(out["n_represented"], [2, 3])
    np.testing.assert_allclose(out["mean_superposition"], [0, 2 / 3])
    np.testing.assert_allclose(out["max_norm"], [1, 1])
    assert "n_dead" not in out


def test_instance_summary_neuron_models():
    keys = torch.arange(4, dtype=torch.int64)
    for kind in (ModelKind.RELU_HIDDEN, ModelKind.COMPUTATION):
        p = {k: v.numpy() for k, v in models.init_params(kind, 6, 4, keys).items()}
        out = M.instance_summary(kind, p)
        assert all(v.shape == (4,) for v in out.values())
        total = out["n_monosemantic"] + out["n_polysemantic"] + out["n_dead"]
        np.testing.assert_array_equal(total, 4)
    with pytest.raises(ValueError, match="W1"):
        M.instance_summary("computation", {"W": np.zeros((1, 2, 3))})
    with pytest.raises(ValueError, match="kind"):
        M.instance_summary("quadratic", {"W": np.zeros((1, 2, 3))})
    with pytest.raises(ValueError, match=r"params\['W'\]"):
        M.instance_summary("linear", {"W": np.zeros((2, 3))})


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="W must have shape"):
        M.dimensionality(np.ones(3))
    with pytest.raises(ValueError, match="W contains NaN"):
        M.superposition(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="W1"):
        M.rescale_hidden_units(np.ones(3), np.ones((3, 1)))
    with pytest.raises(ValueError, match="rel_threshold"):
        M.neuron_polysemanticity(np.ones((2, 2)), rel_threshold=-1)
