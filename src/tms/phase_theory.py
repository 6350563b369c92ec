"""Optimised-candidate theory of the phase diagrams: the exact expected loss minimised over what each
candidate topology leaves free (paper: "Superposition as a Phase Change"; issue 11, item 3).

:mod:`tms.theory` compares *fixed* configurations (unit norms, bias 0 for represented features, the
mean for a dropped one). Trained models also tune norms and biases, so the boundary they find need not
be that theory's. Here every candidate keeps only its *topology* (which features are represented and
with which relative signs) and everything else is optimised on the exact expected loss.

Setting and normalisation as :mod:`tms.theory`: ReLU-output model ``y = ReLU(W^T W x + b)``, the last
("extra") feature has relative importance ``r`` and the others 1, every feature is active with
probability ``s`` (the density) and then uniform on [0, 1]; losses are summed over features.

**2 features in 1 dimension.** ``W = [w1, w2]``, ``b = [b1, b2]``. Output ``i`` sees
``p = w_i^2``, ``q = w1 w2`` and ``b_i``, so the loss is ``f(w1^2, q, b1) + r f(w2^2, q, b2)`` with

``f(p, q, b) = (1-s)^2 ReLU(b)^2 + s(1-s) [A(p, b) + B(q, b)] + s^2 C(p, q, b)``

(own feature inactive / active, other inactive / active). ``A``, ``B`` and ``C`` are integrals of
piecewise polynomials over [0, 1] and [0, 1]^2; :func:`loss_2x1` splits them at the ReLU kink (the
inner integral of ``C`` analytically in u, the outer one at the densities where the kink leaves the
square) and integrates every piece with Gauss-Legendre rules of sufficient degree, so the loss is
exact up to rounding (tests: 1e-15 relative to :func:`tms.exact.exact_loss`) and differentiable by
autograd. The integration limits are detached from the autograd graph: the integrand vanishes at a
kink and the pieces meet continuously, so by Leibniz's rule the limits contribute nothing to the
gradient, and detaching them avoids the cancellation of huge ``d(kink)/d(param)`` terms near ``q = 0``.

The four topologies of ``W = [w1, w2]`` are its sign patterns, so together they cover every model:

- "not learned" ``w2 = 0`` and "dedicated" ``w1 = 0``: the kept feature is reproduced exactly and the
  dropped one's output is a constant, best at its mean, so the fixed configuration *is* the optimum
  (free: the kept weight and both biases); their losses are the closed forms of :mod:`tms.theory`.
- "superposition" ``w1 > 0 > w2`` (antipodal) and "confused" ``w1, w2 > 0`` (both features on one
  direction with the same sign: the "confused feature" solution of McGrath's comment in the paper,
  ``W1 ~ W2 ~ 1/sqrt(2)``): all four parameters free. Each is minimised by Levenberg-Marquardt-damped
  Newton (exact autograd gradient, Hessian by forward differences of it) from several starts, within
  the topology's closure (``w1 >= 0``, ``w2 <= 0`` resp. ``>= 0``; a step is projected back).

A topology's *optimised loss* is the minimum over its closure, so it never exceeds the fixed
configuration's (the descent starts there) and may sit on the boundary: "superposition" whose best
``w2`` is exactly 0 *is* "not learned". The optimum of the whole loss is the lowest of the four. Its
**class** is that of the optimal weights under the classifier of the trained maps
(:func:`classify`, i.e. :func:`tms.theory.classify_solution` with the "confused" class added):
the optimised map says which class a trained model would get if training found the global minimum,
so it can be compared with the trained maps cell for cell. (Near the triple point the optimum is an
antipodal pair with a small second weight, ``|w2| < 0.5``, which the classifier -- like the paper's
picture -- calls "not learned"; its sign pattern is kept as ``topology``.)

**3 features in 2 dimensions.** The four candidates of :mod:`tms.theory`, named by the direction ``W``
ignores (its null vector), each with its norms, biases and angles free within the topology:

- "not learned" (``W_extra = 0``) and "dedicated" (one weight-1 feature's column 0): the other two
  features are reproduced exactly on orthogonal directions, so the fixed configuration is optimal.
- "dedicated, others antipodal" (null vector ``[a, c, 0]``: features 1, 2 antipodal, the extra on its
  own direction) and "superposition" (null ``[0, a, c]``: feature 2 and the extra antipodal, feature 1
  on its own direction): the antipodal pair is the 2-in-1 "superposition" problem (at r = 1,
  resp. r) and the single feature is reproduced exactly when its direction is orthogonal to the
  pair's. The angle between them is the topology's remaining freedom: at the pair's optimal biases
  the loss is stationary in it (the single feature is independent of the pair and each bias zeroes
  the mean residual it multiplies). So the optimised 3-in-2 losses are the 2-in-1 superposition
  optimum at (s, 1) and (s, r); the tests check the embedding against :func:`tms.exact.exact_loss`,
  its stationarity in all nine parameters (six weights, three biases) and that tilting the lone
  feature raises the loss. (A same-sign "confused" pair is not a 3-in-2 candidate: neither the paper
  nor the theory notebook lists one, and in 2 in 1 it wins nowhere on the default 100 x 100 grid.)

Deterministic: fixed starts, a fixed number of iterations at most, float64 on the CPU. Cost: about 30 s
of one (shared, loaded) CPU core for the default 100 x 100 grid (5,000 distinct problems after the
r -> 1/r mirror, five descents each); results are cached per grid within a process.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tms import theory

NAMES_2x1: tuple[str, ...] = theory.NAMES_2x1 + ("confused",)
NAMES_3x2: tuple[str, ...] = theory.NAMES_3x2
CONFUSED = 3  # label of "confused" in NAMES_2x1

#: Newton's stopping rule: the projected gradient's largest entry (loss units, summed over features).
GTOL = 1e-12
MAX_ITER = 80
#: ... or once the relative damping has grown past this (the step is then a negligible gradient step).
STALL_DAMPING = 1e3
#: A weight counts as exactly zero (the optimum lies on its topology's boundary) below this.
ZERO_W = 1e-7
#: Two optimised losses within this relative distance are a tie (the lower label wins).
TIE_RTOL = 1e-9

_GX, _GW = (torch.tensor(v, dtype=torch.float64) for v in np.polynomial.legendre.leggauss(2))  # exact to degree 3


def names(n_features: int) -> tuple[str, ...]:
    """Topology names of the optimised theory in label order (2 in 1 adds "confused" as label 3)."""
    return NAMES_2x1 if theory.n_hidden(n_features) == 1 else NAMES_3x2


# --------------------------------------------------------------------------------------------
# the exact loss of 2 features in 1 dimension (differentiable)


def _active(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[lo, hi]``: the part of [0, 1] where ``alpha u + beta > 0`` (detached; empty: lo = hi)."""
    alpha, beta = alpha.detach(), beta.detach()
    safe = torch.where(alpha != 0, alpha, torch.ones_like(alpha))
    t = (-beta / safe).clamp(0.0, 1.0)
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    flat = torch.where(beta > 0, zero, one)  # alpha = 0: all of [0, 1] or nothing
    lo = torch.where(alpha > 0, t, torch.where(alpha < 0, zero, flat))
    hi = torch.where(alpha < 0, t, one)
    return lo, torch.maximum(hi, lo)


def _gauss(lo: torch.Tensor, hi: torch.Tensor, fn) -> torch.Tensor:
    """``int_lo^hi fn(u) du`` with 2-point Gauss-Legendre (exact for cubics)."""
    half, mid = (hi - lo) / 2, (hi + lo) / 2
    u = mid[..., None] + half[..., None] * _GX
    return (half[..., None] * _GW * fn(u)).sum(-1)


def _own_active(p: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``int_0^1 (u - ReLU(p u + beta))^2 du``."""
    lo, hi = _active(p, beta)
    p_, b_ = p[..., None], beta[..., None]
    return 1.0 / 3.0 + _gauss(lo, hi, lambda u: (p_ * u + b_) ** 2 - 2 * u * (p_ * u + b_))


def output_loss(p: torch.Tensor, q: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``E[(x_own - ReLU(p x_own + q x_other + b))^2]`` for two independent features of density ``s``."""
    both_zero = torch.relu(b) ** 2
    own = _own_active(p, b)
    lo, hi = _active(q, b)
    q_, b_ = q[..., None], b[..., None]
    other = _gauss(lo, hi, lambda u: (q_ * u + b_) ** 2)
    # both active: outer integral over the other feature's value v, split where the kink -(q v + b)/p
    # of the inner integral crosses 0 or 1 (the inner integral is a cubic in v on each of the 3 pieces)
    qd, bd, pd = q.detach(), b.detach(), p.detach()
    safe = torch.where(qd != 0, qd, torch.ones_like(qd))
    v1 = torch.where(qd != 0, -bd / safe, torch.zeros_like(qd)).clamp(0.0, 1.0)
    v2 = torch.where(qd != 0, -(pd + bd) / safe, torch.zeros_like(qd)).clamp(0.0, 1.0)
    knots = torch.stack([torch.zeros_like(qd), torch.minimum(v1, v2), torch.maximum(v1, v2), torch.ones_like(qd)], -1)
    half, mid = (knots[..., 1:] - knots[..., :-1]) / 2, (knots[..., 1:] + knots[..., :-1]) / 2  # [..., 3]
    v = (mid[..., None] + half[..., None] * _GX).flatten(-2)  # [..., 6]
    inner = _own_active(p[..., None].expand(v.shape), q[..., None] * v + b[..., None])
    both = ((half[..., None] * _GW).flatten(-2) * inner).sum(-1)
    return (1 - s) ** 2 * both_zero + s * (1 - s) * (own + other) + s * s * both


def loss_2x1(theta: Any, s: Any, r: Any) -> torch.Tensor:
    """Exact expected loss (summed over features) of ``theta [..., 4] = (w1, w2, b1, b2)`` at density
    ``s`` and relative importance ``r`` (broadcast over the leading dimensions); differentiable."""
    th = torch.as_tensor(theta, dtype=torch.float64)
    s = torch.as_tensor(s, dtype=torch.float64)
    r = torch.as_tensor(r, dtype=torch.float64)
    w, b = th[..., :2], th[..., 2:]
    q = (w[..., 0] * w[..., 1])[..., None].expand(w.shape)
    per_output = output_loss(w * w, q, b, s[..., None])  # [..., 2]
    return per_output[..., 0] + r * per_output[..., 1]


def _loss_grad(theta: torch.Tensor, s: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    th = theta.detach().clone().requires_grad_(True)
    L = loss_2x1(th, s, r)
    (g,) = torch.autograd.grad(L.sum(), th)
    return L.detach(), g


# --------------------------------------------------------------------------------------------
# minimisation


def _newton(theta: torch.Tensor, s: torch.Tensor, r: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
            max_iter: int = MAX_ITER) -> torch.Tensor:
    """Minimise :func:`loss_2x1` from ``theta [N, 4]`` within the box ``[lower, upper]`` ([4] each).

    Levenberg-Marquardt-damped Newton: exact gradient, Hessian by forward differences of it
    (symmetrised), coordinates held at a bound by an outward gradient left out of the step, every
    step projected back into the box and taken only if the loss does not rise. Problems stop on their
    own once the projected gradient is below :data:`GTOL` or the damping has grown past any use.
    """
    theta = theta.clone()
    N, P = theta.shape
    lam = torch.full((N,), 1e-3, dtype=torch.float64)
    todo = torch.ones(N, dtype=torch.bool)
    eye = torch.eye(P, dtype=torch.float64)
    h = 1e-7
    for _ in range(max_iter):
        idx = torch.nonzero(todo).flatten()
        if idx.numel() == 0:
            break
        th, ss, rr, lm = theta[idx], s[idx], r[idx], lam[idx]
        # the point and its P forward-difference neighbours in one batch
        pts = torch.cat([th[None], th[None] + h * eye[:, None, :]], 0)  # [P + 1, n, P]
        L, g = _loss_grad(pts.reshape(-1, P), ss.repeat(P + 1), rr.repeat(P + 1))
        L, g = L.reshape(P + 1, -1)[0], g.reshape(P + 1, -1, P)
        H = ((g[1:] - g[0][None]) / h).permute(1, 0, 2)  # [n, P, P], H[:, k] = d g / d theta_k
        H = (H + H.transpose(1, 2)) / 2
        g = g[0]
        held = ((th <= lower) & (g > 0)) | ((th >= upper) & (g < 0))
        g = torch.where(held, torch.zeros_like(g), g)
        done = g.abs().amax(1) < GTOL
        free = ~held
        Hf = torch.where(free[:, :, None] & free[:, None, :], H, eye[None].expand_as(H))
        # damping relative to the curvature scale, so that it means the same at every density
        scale = Hf.diagonal(dim1=1, dim2=2).abs().amax(1).clamp_min(1e-300)
        step = -torch.linalg.solve(Hf + (lm * scale)[:, None, None] * eye, g[..., None])[..., 0]
        new = torch.minimum(torch.maximum(th + step, lower), upper)
        L_new = loss_2x1(new, ss, rr)
        ok = (L_new <= L) & ~done
        theta[idx] = torch.where(ok[:, None], new, th)
        lm = torch.where(ok, lm / 4, lm * 8)
        lam[idx] = lm.clamp(1e-12, 1e12)
        stalled = lm > STALL_DAMPING
        todo[idx] = ~(done | stalled)
    return theta


#: Starts of the free topologies (w1, w2; biases start at 0). Only r <= 1 is optimised (r > 1 is its
#: mirror image, see :func:`optimise_2x1`). Near the triple point two antipodal minima coexist (e.g.
#: s = 0.625, r = 0.87: W = [0.98, -0.40] and [0.92, -0.67], 0.1 % apart; McGrath's comment notes such
#: pairs), hence three superposition starts. Besides these, the "not learned" and "dedicated" optima
#: lie in both closures and are candidates too, so a topology whose best point is on its boundary ends
#: exactly there. On a 50 x 50 grid (s in [0.01, 1], r in [0.1, 10]) twice as many starts ((1, -0.2),
#: (0.7, -1), (0.4, -1); (1, 0.7), (1, 0.2), (0.4, 1), (0.7, 1)) found no lower minimum anywhere
#: (largest difference 4e-14 relative); the brute-force test checks single cells independently.
STARTS = {
    "superposition": ((1.0, -1.0), (1.0, -0.7), (1.0, -0.4)),
    "confused": ((math.sqrt(0.5), math.sqrt(0.5)), (1.0, 0.4)),
}
_INF = math.inf
#: Closure of each free topology as a box on (w1, w2, b1, b2).
BOXES = {"superposition": ((0.0, -_INF, -_INF, -_INF), (_INF, 0.0, _INF, _INF)),
         "confused": ((0.0, 0.0, -_INF, -_INF), (_INF, _INF, _INF, _INF))}


@dataclass(frozen=True)
class Optimised2x1:
    """The 2-in-1 optimisation on an (s, r) grid; every array has the grid's shape in front."""

    losses: np.ndarray  # [..., 4] optimised loss of each topology of NAMES_2x1 (min over its closure)
    params: np.ndarray  # [..., 4, 4] the minimiser (w1, w2, b1, b2) of each topology
    fixed: np.ndarray  # [..., 4] fixed-configuration loss (confused: W = [1,1]/sqrt(2), b = 0)


@functools.lru_cache(maxsize=8)
def _optimise_2x1_cached(s_bytes: bytes, r_bytes: bytes, shape: tuple[int, ...], bias: bool) -> Optimised2x1:
    s = np.frombuffer(s_bytes, dtype=np.float64).reshape(shape)
    r = np.frombuffer(r_bytes, dtype=np.float64).reshape(shape)
    return _optimise_2x1(s, r, bias)


def optimise_2x1(s: Any, r: Any, bias: bool = True) -> Optimised2x1:
    """Optimise every 2-in-1 topology at every (s, r) (broadcast; cached per grid within a process).

    ``bias=False`` fixes both biases at 0: the setting of McGrath's exact solution in the paper's
    comments ("ignoring bias terms"). A dropped feature's output is then 0, so "not learned" and
    "dedicated" lose ``r s/3`` and ``s/3`` (the mean square, not the variance).

    Only ``r <= 1`` is computed: swapping the two features maps the problem at ``r`` onto ``r`` times
    the problem at ``1/r`` (``L(w1, w2, b1, b2; s, r) = r L(w2, w1, b2, b1; s, 1/r)``), so the cell
    (s, r > 1) takes the solution at (s, 1/r) with the features swapped ("not learned" and
    "dedicated" trade places; the sign of ``W`` is immaterial). Distinct (s, min(r, 1/r)) pairs are
    optimised once.
    """
    s, r = np.broadcast_arrays(theory._density(s), theory._importance(r))
    if (s <= 0).any() or (r <= 0).any():
        raise ValueError("s (density) and r (relative importance) must be > 0 for the optimised theory")
    s = np.array(s, dtype=np.float64)
    r = np.array(r, dtype=np.float64)
    return _optimise_2x1_cached(s.tobytes(), r.tobytes(), s.shape, bool(bias))


def _optimise_2x1(s: np.ndarray, r: np.ndarray, bias: bool = True) -> Optimised2x1:
    shape = s.shape
    sf, rf = s.reshape(-1), r.reshape(-1)
    swap = rf > 1
    rl = np.where(swap, 1 / rf, rf)
    key = np.stack([sf, rl], 1)
    uniq, inverse = np.unique(np.round(key, 13), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    # solve at the first exact (s, r) of each distinct pair (rounding only groups mirror images)
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]
    su, ru = sf[first], rl[first]
    L_u, P_u, F_u = _solve(su, ru, bias)
    L, Pm, F = L_u[inverse], P_u[inverse].copy(), F_u[inverse]
    # mirror: at r > 1 the solution at 1/r with features swapped; losses scale by r
    perm_t = np.array([1, 0, 2, 3])  # topology labels: not learned <-> dedicated
    L = np.where(swap[:, None], (L * rf[:, None])[:, perm_t], L)
    F = np.where(swap[:, None], (F * rf[:, None])[:, perm_t], F)
    swapped = Pm[:, perm_t][:, :, [1, 0, 3, 2]]
    swapped[:, 2, :2] *= -1  # superposition: W -> -W keeps w1 > 0 > w2
    Pm = np.where(swap[:, None, None], swapped, Pm)
    # the closed forms hold at every cell exactly (no mirror rounding)
    closed = _closed_2x1(sf, rf, bias)
    for lab, nm in enumerate(("not learned", "dedicated")):
        L[:, lab] = F[:, lab] = closed[nm]
    F[:, 2] = closed["superposition"]
    return Optimised2x1(L.reshape(shape + (4,)), Pm.reshape(shape + (4, 4)), F.reshape(shape + (4,)))


def _closed_2x1(s: np.ndarray, r: np.ndarray, bias: bool) -> dict[str, np.ndarray]:
    """The fixed candidates' closed forms; without biases a dropped feature costs its mean square s/3."""
    closed = theory.losses(2, s, r)
    if not bias:
        closed["not learned"], closed["dedicated"] = r * s / 3, s / 3 + 0 * r
    return closed


def _solve(s: np.ndarray, r: np.ndarray, bias: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Losses [N, 4], minimisers [N, 4, 4] and fixed losses [N, 4] at the cells (s, r) (no mirroring)."""
    N = len(s)
    st, rt = torch.as_tensor(s), torch.as_tensor(r)
    closed = _closed_2x1(s, r, bias)
    losses = np.zeros((N, 4))
    params = np.zeros((N, 4, 4))
    fixed = np.zeros((N, 4))
    # the two single-feature topologies: the fixed configurations are the optima (module docstring)
    for lab, nm in enumerate(("not learned", "dedicated")):
        losses[:, lab] = fixed[:, lab] = closed[nm]
        params[:, lab, lab] = 1.0
        params[:, lab, 3 - lab] = s / 2 if bias else 0.0  # the dropped feature's bias: its mean
    fixed[:, 2] = closed["superposition"]
    c0 = torch.tensor([[math.sqrt(0.5), math.sqrt(0.5), 0.0, 0.0]], dtype=torch.float64).expand(N, 4)
    fixed[:, 3] = loss_2x1(c0, st, rt).numpy()
    for lab, nm in ((2, "superposition"), (3, "confused")):
        lower, upper = (torch.tensor(v, dtype=torch.float64) for v in BOXES[nm])
        if not bias:  # both biases held at 0
            lower[2:], upper[2:] = 0.0, 0.0
        best_L = np.full(N, np.inf)
        best = np.zeros((N, 4))
        for w in STARTS[nm]:
            th0 = torch.tensor([[w[0], w[1], 0.0, 0.0]], dtype=torch.float64).expand(N, 4)
            th = _newton(th0, st, rt, lower, upper)
            L = loss_2x1(th, st, rt).numpy()
            better = L < best_L
            best_L, best = np.where(better, L, best_L), np.where(better[:, None], th.numpy(), best)
        # the single-feature optima lie in the closure ("dedicated" as W = [0, -1] for superposition)
        for k in (0, 1):
            cand = params[:, k].copy()
            if nm == "superposition":
                cand[:, 1] *= -1
            better = losses[:, k] <= best_L * (1 + TIE_RTOL)  # a boundary optimum is taken exactly
            best_L, best = np.where(better, losses[:, k], best_L), np.where(better[:, None], cand, best)
        losses[:, lab] = best_L
        params[:, lab] = best
    return losses, params, fixed


# --------------------------------------------------------------------------------------------
# classes of optimal weights


def topology_2x1(theta: Any) -> np.ndarray:
    """Sign pattern of ``(w1, w2, ...)`` as a label into :data:`NAMES_2x1`, weights below
    :data:`ZERO_W` counting as 0 (-1: both 0)."""
    th = np.asarray(theta, dtype=np.float64)
    on1, on2 = np.abs(th[..., 0]) > ZERO_W, np.abs(th[..., 1]) > ZERO_W
    same = th[..., 0] * th[..., 1] > 0
    return np.select([on1 & ~on2, ~on1 & on2, on1 & on2 & ~same, on1 & on2 & same], [0, 1, 2, CONFUSED], -1)


def classify(W: Any, n_features: int, threshold: float = 0.5) -> np.ndarray:
    """:func:`tms.theory.classify_solution` of ``W [N, m, n]``, with one more class for 2 in 1: both
    weights above ``threshold`` with the same sign is "confused" (label 3) instead of -1."""
    lab = theory.classify_solution(W, n_features, threshold=threshold)
    if theory.n_hidden(n_features) == 1:
        Wa = np.asarray(W, dtype=np.float64).reshape(-1, 1, 2)
        both = (np.abs(Wa[:, 0, 0]) > threshold) & (np.abs(Wa[:, 0, 1]) > threshold)
        lab = np.where(both & (Wa[:, 0, 0] * Wa[:, 0, 1] > 0), CONFUSED, lab)
    return lab


def winner(losses: np.ndarray) -> np.ndarray:
    """Index of the lowest loss along the last axis; losses within :data:`TIE_RTOL` of the lowest
    tie and the lowest index among them wins (a topology whose optimum lies on its boundary ties with
    the topology it degenerates to, which always has the lower label)."""
    L = np.asarray(losses, dtype=np.float64)
    lo = L.min(-1, keepdims=True)
    tied = L <= lo + TIE_RTOL * np.abs(lo) + 1e-300
    return np.argmax(tied, axis=-1)


# --------------------------------------------------------------------------------------------
# the optimised theory of either diagram


@dataclass(frozen=True)
class OptimisedTheory:
    """The optimised-candidate theory on an (s, r) grid (every array has the grid's shape in front).

    ``losses`` are the topologies' optimised losses (minimum over each closure, summed over features);
    ``fixed`` the fixed-configuration losses of :mod:`tms.theory` (and, for "confused",
    ``W = [1, 1] / sqrt(2)``, ``b = 0``); ``topology_W``/``topology_b`` every topology's minimiser.
    ``best`` indexes the lowest (ties: :func:`winner`), ``W``/``b`` are its minimiser, ``topology`` that
    minimiser's own topology (differs from ``best`` only where the winner's optimum lies on its boundary,
    which the tie rule prevents, so it is a check) and ``labels`` its class under the trained maps'
    classifier (:func:`classify`): the optimised map.
    """

    n_features: int
    names: tuple[str, ...]
    losses: np.ndarray  # [..., K]
    fixed: np.ndarray  # [..., K]
    best: np.ndarray  # [...]
    W: np.ndarray  # [..., m, n]
    b: np.ndarray  # [..., n]
    topology: np.ndarray  # [...]
    labels: np.ndarray  # [...]
    topology_W: np.ndarray  # [..., K, m, n]
    topology_b: np.ndarray  # [..., K, n]

    @property
    def loss(self) -> np.ndarray:
        """The optimal loss: ``losses`` at ``best``."""
        return np.take_along_axis(self.losses, self.best[..., None], -1)[..., 0]


def _embed_3x2(name: str, pair: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W [N, 2, 3]``, ``b [N, 3]`` of a 3-in-2 topology from the 2-in-1 minimiser ``pair [N, 4]`` of
    its antipodal pair (ignored for the two single-feature topologies)."""
    N = len(s)
    W, b = np.zeros((N, 2, 3)), np.zeros((N, 3))
    if name == "not learned":
        W[:, 0, 0] = W[:, 1, 1] = 1.0
        b[:, 2] = s / 2
    elif name == "dedicated":
        W[:, 0, 1] = W[:, 1, 2] = 1.0
        b[:, 0] = s / 2
    elif name == "dedicated, others antipodal":  # features 0, 1 on the first axis, the extra on the second
        W[:, 0, 0], W[:, 0, 1], b[:, 0], b[:, 1] = pair.T
        W[:, 1, 2] = 1.0
    else:  # "superposition": feature 0 alone, feature 1 and the extra antipodal on the second axis
        W[:, 0, 0] = 1.0
        W[:, 1, 1], W[:, 1, 2], b[:, 1], b[:, 2] = pair.T
    return W, b


def topology_3x2(W: Any) -> np.ndarray:
    """Topology of 3-in-2 weights ``[N, 2, 3]`` as a label into :data:`NAMES_3x2`, for the structured
    minimisers of :func:`optimised` (columns below :data:`ZERO_W` count as 0): one column 0 -> that
    feature dropped ("not learned" for the extra, "dedicated" for a weight-1 feature); all three
    represented -> which pair is (anti)parallel; -1 otherwise."""
    Wa = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(Wa, axis=1)
    on = norms > ZERO_W
    out = np.full(Wa.shape[0], -1)
    out[on[:, 0] & on[:, 1] & ~on[:, 2]] = 0
    out[(on[:, 0] ^ on[:, 1]) & on[:, 2]] = 1
    unit = Wa / np.where(on, norms, 1.0)[:, None, :]
    cos = lambda i, j: np.abs((unit[:, :, i] * unit[:, :, j]).sum(1))  # noqa: E731
    all_on = on.all(1)
    out[all_on & (cos(0, 1) > 1 - 1e-9)] = 2
    out[all_on & ((cos(1, 2) > 1 - 1e-9) | (cos(0, 2) > 1 - 1e-9))] = 3
    return out


def optimised(n_features: int, s: Any, r: Any, bias: bool = True) -> OptimisedTheory:
    """The optimised theory of the ``n_features`` (2 or 3) diagram at every (s, r) (broadcast).

    2 in 1: :func:`optimise_2x1` (``bias=False``: without biases, McGrath's setting). 3 in 2: the
    single-feature topologies' closed forms and the two antipodal ones from the 2-in-1 superposition
    optimum at (s, 1) and (s, r) (module docstring).
    """
    n = theory._check_n(n_features)
    s, r = np.broadcast_arrays(theory._density(s), theory._importance(r))
    shape = s.shape
    if n == 3 and not bias:
        raise ValueError("bias=False is only implemented for n_features=2 (McGrath's setting)")
    if n == 2:
        o = optimise_2x1(s, r, bias)
        best = winner(o.losses)
        theta = np.take_along_axis(o.params, best[..., None, None], -2)[..., 0, :]
        W, b = theta[..., None, :2], theta[..., 2:]
        topo = topology_2x1(theta)
        labels = classify(W.reshape(-1, 1, 2), 2).reshape(shape)
        return OptimisedTheory(2, NAMES_2x1, o.losses, o.fixed, best, W, b, topo, labels,
                               o.params[..., None, :2], o.params[..., 2:])
    sf, rf = s.reshape(-1), r.reshape(-1)
    both = optimise_2x1(np.concatenate([sf, sf]), np.concatenate([np.ones_like(rf), rf]))
    N = len(sf)
    pair_r1, pair_r = both.params[:N, 2], both.params[N:, 2]
    closed = theory.losses(3, sf, rf)
    losses = np.stack([closed["not learned"], closed["dedicated"], both.losses[:N, 2], both.losses[N:, 2]], -1)
    fixed = np.stack([closed[k] for k in NAMES_3x2], -1)
    best = winner(losses)
    Ws, bs = zip(*(_embed_3x2(nm, pair, sf) for nm, pair in zip(NAMES_3x2, (None, None, pair_r1, pair_r))))
    Ws, bs = np.stack(Ws, 1), np.stack(bs, 1)
    W = np.take_along_axis(Ws, best[:, None, None, None], 1)[:, 0]
    b = np.take_along_axis(bs, best[:, None, None], 1)[:, 0]
    topo = topology_3x2(W)
    labels = theory.classify_solution(W, 3)
    return OptimisedTheory(3, NAMES_3x2, losses.reshape(shape + (4,)), fixed.reshape(shape + (4,)),
                           best.reshape(shape), W.reshape(shape + (2, 3)), b.reshape(shape + (3,)),
                           topo.reshape(shape), labels.reshape(shape), Ws.reshape(shape + (4, 2, 3)),
                           bs.reshape(shape + (4, 3)))
