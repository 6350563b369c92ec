"""Tests of the closed-form phase-change theory (tms.theory) against Monte Carlo and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tms import data, models, rng
from tms import theory as T
from tms.data import FeatureSets
from tms.models import ModelKind

POINTS = [(0.3, 0.5), (0.8, 2.0), (0.05, 1.0), (1.0, 0.2)]


def _stack_candidates(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """Every candidate at every (s, r) of POINTS as instances: W, b, density, importance, labels."""
    Ws, bs, dens, imps, which = [], [], [], [], []
    for s, r in POINTS:
        for name in T.candidate_names(n):
            W, b = T.candidate_params(name, n, s, r)
            Ws.append(W)
            bs.append(b)
            dens.append(np.full(n, s))
            imps.append(np.r_[np.ones(n - 1), r])
            which.append((s, r, name))
    return np.stack(Ws), np.stack(bs), np.stack(dens), np.stack(imps), which


@pytest.mark.parametrize("n", [2, 3])
def test_closed_forms_match_monte_carlo(n):
    W, b, dens, imp, which = _stack_candidates(n)
    mean, se = T.monte_carlo_loss(W, b, dens, imp, n_samples=60_000, seed=n)
    exact = np.array([float(T.losses(n, s, r)[name]) for s, r, name in which])
    z = (mean - exact) / np.maximum(se, 1e-12)
    assert np.all(np.abs(z) < 4), list(zip(which, z))
    # Sanity of the check itself: a wrong formula (antipodal error E[min^2] taken as 1/3, not 1/6)
    # is rejected by the same test.
    wrong = np.array([(1 + r) * s**2 / 3 if name == "superposition" else np.nan for s, r, name in which])
    sup = ~np.isnan(wrong)
    assert np.all(np.abs(mean[sup] - wrong[sup]) / se[sup] > 4)


def test_monte_carlo_single_model_and_trainer_convention():
    s, r = 0.4, 0.7
    W, b = T.candidate_params("superposition", 2, s, r)
    mean, se = T.monte_carlo_loss(W, b, s, [1.0, r], n_samples=40_000, seed=1)
    assert isinstance(mean, float) and isinstance(se, float) and se > 0
    exact = float(T.losses(2, s, r)["superposition"])
    assert abs(mean - exact) < 4 * se
    # The trainer's loss averages over features: the conversion divides by n.
    keys = torch.tensor([rng.derive_key("test_theory", 0)])
    x = data.draw(keys, 0, 40_000, torch.tensor([[s, s]]), FeatureSets.independent(2))
    p = {"W": torch.tensor(W[None], dtype=torch.float32), "b": torch.tensor(b[None], dtype=torch.float32)}
    trainer = float(models.loss_per_instance(ModelKind.RELU_OUTPUT, p, x, torch.tensor([[1.0, r]]))[0])
    assert trainer == pytest.approx(float(T.to_trainer_convention(exact, 2)), abs=4 * se / 2)


def test_monte_carlo_other_kinds_and_errors():
    # A linear identity model reconstructs perfectly; so does the computation model that builds
    # ReLU(x) and ReLU(-x) neurons.
    mean, se = T.monte_carlo_loss(np.eye(3), np.zeros(3), 0.5, 1.0, n_samples=2000, kind="linear")
    assert mean == pytest.approx(0.0, abs=1e-10)
    W1 = np.concatenate([np.eye(2), -np.eye(2)])  # [m=4, n=2]
    W2 = np.concatenate([np.eye(2), np.eye(2)], axis=1)  # [n=2, m=4]
    mean, _ = T.monte_carlo_loss((W1, W2), np.zeros(2), 0.5, 1.0, n_samples=2000, kind="computation")
    assert mean == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="density"):
        T.monte_carlo_loss(np.eye(2), np.zeros(2), 1.2, 1.0)
    with pytest.raises(ValueError, match="b must"):
        T.monte_carlo_loss(np.eye(2), np.zeros(3), 0.5, 1.0)
    with pytest.raises(ValueError, match="importance"):
        T.monte_carlo_loss(np.eye(2), np.zeros(2), 0.5, np.ones(5))
    with pytest.raises(ValueError, match="W must be a pair"):
        T.monte_carlo_loss(np.eye(2), np.zeros(2), 0.5, 1.0, kind="computation")


def test_monte_carlo_is_reproducible():
    W, b = T.candidate_params("dedicated", 3, 0.3)
    a = T.monte_carlo_loss(W, b, 0.3, 1.0, n_samples=5000, seed=7, batch=1000)
    c = T.monte_carlo_loss(W, b, 0.3, 1.0, n_samples=5000, seed=7, batch=1000)
    d = T.monte_carlo_loss(W, b, 0.3, 1.0, n_samples=5000, seed=8, batch=1000)
    assert a == c and a != d


# --------------------------------------------------------------------------------------------
# phase boundaries


def _switch_point(n: int, r: float, below: str) -> float:
    """Bisection on the closed forms: the density where the argmin stops being ``below``."""
    names = T.candidate_names(n)

    def is_below(s: float) -> bool:
        return names[int(T.phase_map(n, s, r)[0])] == below

    lo, hi = 1e-9, 1.0
    assert is_below(lo) and not is_below(hi)
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if is_below(mid) else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("r", [0.1, 0.3, 0.6, 0.9, 1.2, 2.0, 5.0, 10.0])
def test_boundary_equals_argmin_switch(r):
    assert _switch_point(2, r, "superposition") == pytest.approx(float(T.boundary(2, r)), abs=1e-9)
    below3 = "superposition" if r < 1 else "dedicated, others antipodal"
    assert _switch_point(3, r, below3) == pytest.approx(float(T.boundary(3, r)), abs=1e-9)
    # what lies above the boundary
    s_above = min(1.0, float(T.boundary(2, r)) + 0.05)
    above = "not learned" if r < 1 else "dedicated"
    assert T.candidate_names(2)[int(T.phase_map(2, s_above, r)[0])] == above
    assert T.candidate_names(3)[int(T.phase_map(3, min(1.0, float(T.boundary(3, r)) + 0.05), r)[0])] == above


def test_boundary_shapes_and_known_values():
    r = np.geomspace(0.01, 100, 41)
    np.testing.assert_allclose(T.boundary(2, r), T.boundary(2, 1 / r), atol=1e-15)  # s*(r) = s*(1/r)
    np.testing.assert_allclose(T.boundary(3, r[r > 1]), 4 / 7)
    np.testing.assert_allclose(T.boundary(3, r[r < 1]), T.boundary(2, r[r < 1]))
    assert float(T.boundary(2, 1.0)) == pytest.approx(4 / 7)
    assert float(T.boundary(2, 0.1)) == pytest.approx(0.16)
    assert float(T.boundary(2, 10.0)) == pytest.approx(0.16)
    assert float(T.boundary(2, 0.5)) == pytest.approx(4 / 9)


def test_phase_map_broadcasts_and_orders_names():
    s = np.linspace(0.01, 1, 7)[:, None]
    r = np.geomspace(0.1, 10, 5)[None, :]
    labels, names = T.phase_map(2, s, r)
    assert labels.shape == (7, 5) and names == T.NAMES_2x1
    L = T.losses(2, s, r)
    assert all(v.shape == (7, 5) for v in L.values())
    best = np.min(np.stack([L[k] for k in names]), axis=0)
    picked = np.take_along_axis(np.stack([L[k] for k in names]), labels[None], axis=0)[0]
    np.testing.assert_array_equal(picked, best)
    labels3, names3 = T.phase_map(3, s, r)
    assert names3 == T.NAMES_3x2 and set(np.unique(labels3)) <= set(range(4))
    # dense corner: r > 1 keeps the extra feature dedicated; sparse corner: superposition
    assert names[labels[-1, -1]] == "dedicated" and names[labels[0, 2]] == "superposition"


def test_losses_closed_forms_at_a_point():
    L = T.losses(3, 0.5, 2.0)
    assert L["not learned"] == pytest.approx(2 * (0.5 / 3 - 0.25 / 4))
    assert L["dedicated"] == pytest.approx(0.5 / 3 - 0.25 / 4)
    assert L["dedicated, others antipodal"] == pytest.approx(0.25 / 3)
    assert L["superposition"] == pytest.approx(3 * 0.25 / 6)
    assert set(T.losses(2, 0.5, 2.0)) == set(T.NAMES_2x1)


# --------------------------------------------------------------------------------------------
# classifying trained solutions


@pytest.mark.parametrize("n", [2, 3])
def test_classify_solution_recovers_candidates(n):
    names = T.candidate_names(n)
    W = np.stack([T.candidate_params(name, n, 0.3)[0] for name in names])
    expected = np.arange(len(names))
    np.testing.assert_array_equal(T.classify_solution(W, n), expected)
    np.testing.assert_array_equal(T.classify_solution(-W, n), expected)  # global sign flip
    np.testing.assert_array_equal(T.classify_solution(0.85 * W, n), expected)  # shrunken norms
    noisy = W[None] + 0.05 * np.random.default_rng(0).normal(size=(20, *W.shape))
    labels = T.classify_solution(noisy.reshape(-1, *W.shape[1:]), n).reshape(20, -1)
    np.testing.assert_array_equal(labels, np.broadcast_to(expected, labels.shape))
    np.testing.assert_array_equal(T.classify_solution(torch.tensor(W), n), expected)


def test_classify_solution_3x2_symmetries():
    names = T.NAMES_3x2
    W = np.stack([T.candidate_params(name, 3, 0.3)[0] for name in names])
    swapped = W[:, :, [1, 0, 2]]  # the two weight-1 features are interchangeable
    np.testing.assert_array_equal(T.classify_solution(swapped, 3), np.arange(4))
    for seed in range(3):  # any rotation or reflection of the hidden space
        q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(2, 2)))
        np.testing.assert_array_equal(T.classify_solution(q @ W, 3), np.arange(4))


def test_classify_solution_none_of_them():
    # 2x1: collapsed, and the "confused feature" solution (both weights 1/sqrt(2), same sign)
    W2 = np.array([[[0.0, 0.0]], [[0.7, 0.7]], [[-0.72, -0.69]], [[0.1, -0.2]]])
    np.testing.assert_array_equal(T.classify_solution(W2, 2), [-1, -1, -1, -1])
    # 3x2: collapsed (rank 1 and zero), three-way superposition (triangle), two features on one
    # line with the same sign, and a correct null vector whose kept feature is too short
    tri = np.stack([np.cos(2 * np.pi * np.arange(3) / 3), np.sin(2 * np.pi * np.arange(3) / 3)])
    W3 = np.stack([
        np.zeros((2, 3)),
        np.array([[1.0, -1.0, 0.5], [0.0, 0.0, 0.0]]),
        tri,
        np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        np.array([[1.0, 0.0, 0.0], [0.0, 0.2, 0.0]]),
    ])
    np.testing.assert_array_equal(T.classify_solution(W3, 3), [-1] * 5)


def test_classify_solution_trained_like_near_boundary():
    # norms a little below 1 and unequal, as learned near the boundary (biases are irrelevant)
    W2 = np.array([[[0.8, -0.9]], [[0.92, 0.05]], [[-0.02, -0.88]]])
    np.testing.assert_array_equal(T.classify_solution(W2, 2), [2, 0, 1])
    # 3x2: a dropped extra feature with a small residual weight, and an unbalanced antipodal pair
    W3 = np.array([
        [[0.95, 0.0, 0.2], [0.0, 0.9, -0.2]],
        [[0.9, 0.0, 0.0], [0.0, 0.8, -0.95]],
        [[0.0, 0.3, 0.9], [0.9, 0.0, 0.0]],  # feature 1 nearly dropped (0.3): "dedicated"
        [[0.0, 0.6, 0.9], [0.9, 0.0, 0.0]],  # 0.6 is half-learned: none
    ])
    np.testing.assert_array_equal(T.classify_solution(W3, 3), [0, 3, 1, -1])


# --------------------------------------------------------------------------------------------
# the L_1 term


def test_one_sparse_loss_matches_monte_carlo_on_one_sparse_inputs():
    g = torch.Generator().manual_seed(0)
    N, m, n, B = 3, 2, 4, 200_000
    W = torch.randn(N, m, n, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(N, n, generator=g, dtype=torch.float64)
    imp = torch.tensor([1.0, 0.7, 0.5, 0.2], dtype=torch.float64)
    exact = T.one_sparse_loss(W.numpy(), b.numpy(), imp.numpy())
    # 1-sparse inputs: one feature, chosen uniformly, active with a U[0,1] value
    which = torch.randint(0, n, (N, B), generator=g)
    x = torch.nn.functional.one_hot(which, n).double() * torch.rand(N, B, 1, generator=g, dtype=torch.float64)
    y, _ = models.forward(ModelKind.RELU_OUTPUT, {"W": W, "b": b}, x)
    per = (imp * (x - y) ** 2).sum(-1) * n  # L_1 sums (not averages) over the active feature
    mean, se = per.mean(-1).numpy(), (per.std(-1) / math.sqrt(B)).numpy()
    assert np.all(np.abs(mean - exact) < 4 * se), (mean, exact, se)
    assert T.one_sparse_loss(W[0].numpy(), b[0].numpy(), imp.numpy()) == pytest.approx(exact[0])


def test_one_sparse_loss_of_candidates():
    s, r = 0.3, 0.5
    assert T.one_sparse_loss(*T.candidate_params("superposition", 2, s), [1, r]) == pytest.approx(0.0)
    W, b = T.candidate_params("not learned", 2, s)
    # feature 0 active: only the constant s/2 on output 1 errs; feature 1 active: output 1 stays s/2
    expected = r * (s / 2) ** 2 + r * (1 / 3 - s / 2 + (s / 2) ** 2)
    assert T.one_sparse_loss(W, b, [1, r]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="b must"):
        T.one_sparse_loss(W, np.zeros(3), 1.0)


# --------------------------------------------------------------------------------------------
# argument errors


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="s "):
        T.losses(2, 1.5, 1.0)
    with pytest.raises(ValueError, match="r "):
        T.losses(2, 0.5, -1.0)
    with pytest.raises(ValueError, match="n_features"):
        T.losses(4, 0.5, 1.0)
    with pytest.raises(ValueError, match="n_features"):
        T.boundary(5, 1.0)
    with pytest.raises(ValueError, match="name"):
        T.candidate_params("pentagon", 2, 0.5)
    with pytest.raises(ValueError, match="s "):
        T.candidate_params("dedicated", 2, -0.1)
    with pytest.raises(ValueError, match="W must have shape"):
        T.classify_solution(np.zeros((4, 2, 3)), 2)
