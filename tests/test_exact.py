"""Tests of tms.exact: the exact expected loss of small models against Monte Carlo, the closed forms
of tms.theory, a second exact method, known values, and its domain errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tms import data, exact, models, rng
from tms import theory as T
from tms.data import FeatureSets
from tms.models import ModelKind

CORR = FeatureSets((("correlated", 2), ("independent", 1), ("anticorrelated", 2)))
ANTI = FeatureSets((("anticorrelated", 2), ("correlated", 2)))


def monte_carlo(kind, params, density, importance, sets=None, l1=0.0, samples=10**6, seed=0, batch=2**17):
    """Mean and standard error of the trainer's loss (float64 forward) on ``samples`` draws of tms.data."""
    kind = ModelKind(kind)
    p = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64) for k, v in params.items()}
    N, n = p["b"].shape
    sets = sets or FeatureSets.independent(n)
    dens = torch.as_tensor(np.broadcast_to(density, (N, n)).copy(), dtype=torch.float32)
    imp = torch.as_tensor(np.broadcast_to(importance, (N, n)).copy(), dtype=torch.float64)
    l1v = torch.as_tensor(np.broadcast_to(l1, (N,)).copy(), dtype=torch.float64)
    keys = torch.tensor([rng.derive_key("test_exact", seed, i) for i in range(N)])
    tot = torch.zeros(N, dtype=torch.float64)
    tot2 = torch.zeros(N, dtype=torch.float64)
    done, counter = 0, 0
    while done < samples:
        b = min(batch, samples - done)
        x = data.draw(keys, counter, b, dens, sets, kind.signed_inputs).double()
        y, h = models.forward(kind, p, x)
        per = (imp[:, None, :] * (models.target(kind, x) - y) ** 2).mean(-1) + l1v[:, None] * h.abs().sum(-1)
        tot += per.sum(1)
        tot2 += (per**2).sum(1)
        done += b
        counter += 1
    mean = tot / samples
    se = ((tot2 / samples - mean**2).clamp_min(0) / (samples - 1)).sqrt()
    return mean.numpy(), se.numpy()


def _random_case(kind, N, n, m, seed):
    rs = np.random.default_rng(seed)
    if kind == "computation":
        params = {"W1": rs.normal(size=(N, m, n)), "W2": rs.normal(size=(N, n, m)), "b": 0.3 * rs.normal(size=(N, n))}
    else:
        params = {"W": rs.normal(size=(N, m, n)), "b": 0.3 * rs.normal(size=(N, n))}
    # densities exactly representable in float32, so the sampler and the exact sum use the same ones
    dens = rs.uniform(0.15, 0.9, size=(N, n)).astype(np.float32).astype(np.float64)
    imp = rs.uniform(0.3, 1.5, size=(N, n))
    return params, dens, imp


MC_CASES = [  # kind, n, m, sets, l1
    ("relu_output", 3, 2, None, 0.0),
    ("relu_output", 5, 2, CORR, 0.03),
    ("relu_output", 4, 2, ANTI, 0.0),
    ("linear", 5, 2, CORR, 0.03),
    ("linear", 3, 2, None, 0.0),
    ("relu_hidden", 3, 2, None, 0.05),
    ("relu_hidden", 4, 3, ANTI, 0.0),
    ("computation", 3, 4, FeatureSets((("correlated", 2), ("independent", 1))), 0.02),
    ("computation", 2, 3, None, 0.0),
]


def _check_mc(kind, n, m, sets, l1, samples, seed):
    N = 3
    params, dens, imp = _random_case(kind, N, n, m, seed)
    l1v = np.array([0.0, l1, 2 * l1])
    e = exact.exact_loss(kind, params, dens, imp, sets, l1v)
    mean, se = monte_carlo(kind, params, dens, imp, sets, l1v, samples=samples, seed=seed)
    z = (e - mean) / se
    # 27 comparisons at 4.5 standard errors: a false alarm has probability ~2e-4
    assert np.all(np.abs(z) < 4.5), (kind, sets, e, mean, z)
    # and the check has teeth: a 1% error would be seen (the standard errors are well below 1%)
    assert np.all(se < 0.002 * np.abs(e)), se / e


@pytest.mark.parametrize("kind, n, m, sets, l1", MC_CASES)
def test_matches_monte_carlo_1e6(kind, n, m, sets, l1):
    _check_mc(kind, n, m, sets, l1, 10**6, seed=n + m)


@pytest.mark.slow
@pytest.mark.parametrize("kind, n, m, sets, l1", MC_CASES)
def test_matches_monte_carlo_1e7(kind, n, m, sets, l1):
    _check_mc(kind, n, m, sets, l1, 10**7, seed=100 + n + m)


# ---- against closed forms and a second exact method -----------------------------------------


@pytest.mark.parametrize("n", [2, 3])
def test_phase_candidates_equal_theory_closed_forms(n):
    s = np.array([1.0, 0.6, 0.3, 0.05, 0.01])
    r = np.array([0.1, 0.7, 1.0, 3.0, 10.0])
    for name in T.candidate_names(n):
        Ws, bs, imps, dens, want = [], [], [], [], []
        for si in s:
            for ri in r:
                W, b = T.candidate_params(name, n, si, ri)
                Ws.append(W)
                bs.append(b)
                imps.append(np.r_[np.ones(n - 1), ri])
                dens.append(np.full(n, si))
                want.append(float(T.to_trainer_convention(T.losses(n, si, ri)[name], n)))
        got = exact.exact_loss("relu_output", {"W": np.stack(Ws), "b": np.stack(bs)}, np.stack(dens), np.stack(imps))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-16)


def test_one_sparse_term_equals_theory():
    """With only one feature ever active (an anticorrelated set), the loss is the paper's L_1 / k."""
    rs = np.random.default_rng(3)
    W = rs.normal(size=(4, 2, 4))
    b = 0.2 * rs.normal(size=(4, 4))
    imp = rs.uniform(0.5, 1.5, size=(4, 4))
    p = 0.6
    sets = FeatureSets((("anticorrelated", 4),))
    got = exact.exact_loss("relu_output", {"W": W, "b": b}, p, imp, sets)
    empty = (imp * np.maximum(b, 0) ** 2).sum(-1)
    want = ((1 - p) * empty + p / 4 * T.one_sparse_loss(W, b, imp)) / 4
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_spline_and_polytope_methods_agree_on_hard_coefficients():
    """relu_output by the 1-D spline convolution and by exact polytope integration, on models with
    near-zero, exactly zero and exactly equal interference terms (where a divided-difference formula
    would lose its digits)."""
    rs = np.random.default_rng(7)
    worst = 0.0
    for trial in range(24):
        n = int(rs.integers(2, 5))
        m = int(rs.integers(1, n + 1))
        W = rs.normal(size=(m, n))
        if trial % 3 == 0:
            W[:, 0] *= 1e-7
        if trial % 3 == 1:
            W[:, -1] = 0.0
        if trial % 4 == 0:
            W[:, 1] = W[:, 0]
        b = 0.4 * rs.normal(size=n)
        if trial % 5 == 0:
            b[0] = 0.0
        dens = rs.uniform(0.05, 1.0, size=n)
        imp = rs.uniform(0.1, 2.0, size=n)
        spline = exact.exact_loss("relu_output", {"W": W, "b": b}, dens, imp)
        probs = exact.subset_probabilities(dens[None])[0]
        sq, _ = exact._nested_loss_one(ModelKind.RELU_OUTPUT, W, W.T, b, imp, probs, hidden_relu=False)
        worst = max(worst, abs(spline - sq / n) / spline)
    assert worst < 1e-11


def test_relu_moments_against_brute_force_quadrature():
    """E[ReLU(z)], E[ReLU(z)^2], E[U_f ReLU(z)] for z = s + c_f U_f + c . U (two inner uniforms): the
    inner uniform with the larger coefficient integrated in closed form, the other two on a fine
    midpoint grid (error ~1e-6 relative, from the kinks)."""
    s = np.array([0.1, -0.3, -1e-3, 0.0])
    ci = np.array([[0.5, -0.2], [1e-8, 0.9], [0.3, 0.3], [-0.7, 0.0]])
    cf = np.array([-0.4, 0.6, 1e-9, 1.2])
    t1, t2, t1x = exact.relu_moments(s, ci, cf)
    g = (np.arange(1000) + 0.5) / 1000
    U, V = np.meshgrid(g, g, indexing="ij")
    for k in range(4):
        big = int(np.argmax(np.abs(ci[k])))
        c = ci[k, big]
        a = s[k] + cf[k] * U + ci[k, 1 - big] * V
        r1 = ((np.maximum(a + c, 0) ** 2 - np.maximum(a, 0) ** 2) / (2 * c))  # int_0^1 ReLU(a + c x) dx
        r2 = ((np.maximum(a + c, 0) ** 3 - np.maximum(a, 0) ** 3) / (3 * c))
        np.testing.assert_allclose([t1[k], t2[k], t1x[k]], [r1.mean(), r2.mean(), (U * r1).mean()], rtol=1e-5)


# ---- known values -----------------------------------------------------------------------------


def test_known_values():
    rs = np.random.default_rng(0)
    dens = np.array([0.2, 0.5, 0.9])
    imp = np.array([1.0, 0.5, 2.0])
    # zero model with bias beta > 0: E[(x - beta)^2] per feature
    beta = np.array([0.1, 0.3, 0.0])
    for kind in ("linear", "relu_output"):
        got = exact.exact_loss(kind, {"W": np.zeros((2, 3)), "b": beta}, dens, imp)
        want = (imp * ((1 - dens) * beta**2 + dens * (1 / 3 - beta + beta**2))).mean()
        assert got == pytest.approx(want, rel=1e-13)
    # identity reconstructs perfectly; so does the computation model's ReLU(x) / ReLU(-x) pairing
    assert exact.exact_loss("linear", {"W": np.eye(3), "b": np.zeros(3)}, dens, imp) == pytest.approx(0, abs=1e-15)
    assert exact.exact_loss("relu_hidden", {"W": np.eye(3), "b": np.zeros(3)}, dens, imp) == pytest.approx(0, abs=1e-15)
    W1 = np.concatenate([np.eye(3), -np.eye(3)])
    W2 = np.concatenate([np.eye(3), np.eye(3)], axis=1)
    assert exact.exact_loss("computation", {"W1": W1, "W2": W2, "b": np.zeros(3)}, dens, imp) == pytest.approx(0, abs=1e-14)
    # relu_output equals linear where the ReLU never bites (non-negative weights, positive bias)
    W = rs.uniform(0, 1, size=(2, 3))
    b = np.full(3, 0.05)
    assert exact.exact_loss("relu_output", {"W": W, "b": b}, dens, imp) == pytest.approx(
        exact.exact_loss("linear", {"W": W, "b": b}, dens, imp), rel=1e-12)


def test_subset_probabilities_respect_sets():
    dens = np.array([[0.3, 0.3, 0.7, 0.4, 0.4]])
    P = exact.subset_probabilities(dens, CORR)[0]
    assert P.sum() == pytest.approx(1.0, abs=1e-15)
    bits = (np.arange(32)[:, None] >> np.arange(5)) & 1
    marg = P @ bits
    np.testing.assert_allclose(marg, [0.3, 0.3, 0.7, 0.2, 0.2], rtol=1e-14)  # anticorrelated: p / k
    assert P[(bits[:, 0] != bits[:, 1])].sum() == 0  # the correlated pair is all or nothing
    assert P[(bits[:, 3] & bits[:, 4]) == 1].sum() == 0  # never both anticorrelated members
    assert P[0] == pytest.approx(0.7 * 0.3 * 0.6)


def test_batched_single_and_torch_inputs_agree():
    params, dens, imp = _random_case("relu_output", 4, 3, 2, 11)
    batch = exact.exact_loss("relu_output", params, dens, imp, l1=0.01)
    one = exact.exact_loss("relu_output", {k: v[2] for k, v in params.items()}, dens[2], imp[2], l1=0.01)
    assert isinstance(one, float) and one == pytest.approx(batch[2], rel=1e-14)
    tens = exact.exact_loss("relu_output", {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()},
                            torch.tensor(dens), torch.tensor(imp), l1=0.01)
    np.testing.assert_array_equal(tens, batch)
    # density and importance broadcast: scalar, [n] and [N, 1]
    a = exact.exact_loss("relu_output", params, 0.3, imp[0])
    b = exact.exact_loss("relu_output", params, np.full((4, 1), 0.3), np.broadcast_to(imp[0], (4, 3)))
    np.testing.assert_array_equal(a, b)


def test_phase_map_scale_is_fast():
    """The 2 x 1 phase map's 100,000 models in well under a minute on one core."""
    import time

    N = 100_000
    rs = np.random.default_rng(0)
    W = rs.normal(size=(N, 1, 2))
    b = 0.1 * rs.normal(size=(N, 2))
    t0 = time.perf_counter()
    out = exact.exact_loss("relu_output", {"W": W, "b": b}, np.geomspace(0.01, 1, N)[:, None], [1.0, 3.0])
    assert time.perf_counter() - t0 < 20 and np.isfinite(out).all()


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, shape, match", [
    ("relu_output", (2, 7), r"n_features = 7 is beyond .*relu_output.*n <= 6"),
    ("linear", (2, 8), r"n_features = 8 is beyond .*linear"),
    ("relu_hidden", (2, 5), r"n_features = 5 is beyond .*relu_hidden.*n <= 4"),
])
def test_beyond_the_domain_raises(kind, shape, match):
    with pytest.raises(ValueError, match=match):
        exact.exact_loss(kind, {"W": np.ones(shape), "b": np.zeros(shape[1])}, 0.5)


def test_bad_arguments_raise_naming_them():
    p = {"W": np.ones((1, 3)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match="kind: unknown model kind 'banana'"):
        exact.exact_loss("banana", p, 0.5)
    with pytest.raises(ValueError, match=r"density must lie in \(0, 1\], got 0.0"):
        exact.exact_loss("relu_output", p, [0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"density must lie in \(0, 1\], got 1.5"):
        exact.exact_loss("relu_output", p, 1.5)
    with pytest.raises(ValueError, match="density must lie"):
        exact.exact_loss("relu_output", p, np.nan)
    with pytest.raises(ValueError, match=r"importance must be finite and >= 0, got -1.0"):
        exact.exact_loss("relu_output", p, 0.5, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="density of shape"):
        exact.exact_loss("relu_output", p, [0.5, 0.5])
    with pytest.raises(ValueError, match="params: W contains NaN"):
        exact.exact_loss("relu_output", {"W": np.full((1, 3), np.nan), "b": np.zeros(3)}, 0.5)
    with pytest.raises(ValueError, match="params: b must have shape"):
        exact.exact_loss("relu_output", {"W": np.ones((1, 3)), "b": np.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match=r"params: computation needs \['W1', 'W2', 'b'\]"):
        exact.exact_loss("computation", p, 0.5)
    with pytest.raises(ValueError, match="l1 must be"):
        exact.exact_loss("relu_output", p, 0.5, l1=-0.1)
    with pytest.raises(ValueError, match="sets: cover 2 features"):
        exact.exact_loss("relu_output", p, 0.5, sets=FeatureSets.independent(2))
