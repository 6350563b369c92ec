"""Exact expected loss of small toy models (n <= 6 features), without sampling.

The paper's authors rewrote the loss "by grouping terms with the number of active features". Here
the expected loss is the sum, over every subset ``A`` of active features, of ``P(A)`` times the
integral of the importance-weighted squared error over the active values. Given which features are
active, their values are independent and uniform (on [0, 1], or [-1, 1] for the computation model)
for every kind of feature set of :mod:`tms.data`, so only ``P(A)`` depends on the sets:

- independent feature i: active with probability ``density[i]``;
- correlated set: all members active with probability ``density[lead]`` (its first feature), else none;
- anticorrelated set: none with probability ``1 - density[lead]``, else exactly one member, chosen
  uniformly (each has marginal density ``density[lead] / size``).

The loss is in the trainer's convention (:func:`tms.models.loss_per_instance`): importance-weighted
squared error *averaged* over features, plus ``l1 * E[sum_j |h_j|]``; :mod:`tms.theory`'s closed forms
are summed over features (divide those by n to compare).

How each kind is integrated:

- ``linear``: a quadratic form in the first and second moments of x (closed form).
- ``relu_output``: output i's error with active set A is ``(t_i - ReLU(b_i + sum_{j in A} G_ij x_j))^2``,
  G = W^T W. Its expectation needs ``E[ReLU(s + c.U)^k]`` (k = 1, 2) and ``E[U_f ReLU(s + c.U)]`` for
  uniform U. These are computed by convolving one uniform at a time: the function
  ``s -> E[ReLU(s + c_1 U_1 + ... + c_j U_j)^k]`` is a piecewise polynomial of degree k + j whose knots are
  the subset sums of the c's; each piece is stored as a polynomial in its local coordinate, fitted
  at Chebyshev nodes (exact: the degree is known), and each convolution integrates the previous
  spline piece by piece with Gauss-Legendre rules of sufficient degree (exact). No formula divides
  by a coefficient, so near-zero interference terms (orthogonal features) lose no accuracy.
- ``relu_hidden`` and ``computation`` (nested ReLUs, n <= 4): the hidden hyperplanes pass through the
  origin (no hidden bias), so they and the coordinate planes (for |x|) cut the input box into convex
  polytopes on which every output pre-activation is affine; each polytope is cut again at the output's
  kink, and a quadratic is integrated exactly over every piece (vertex enumeration, convex hull,
  simplex formula). Deterministic and exact up to rounding, but a Python loop over instances: meant
  for tens to hundreds of models, not a phase map.

Accuracy: rounding only. The tests find 1e-14 relative agreement with the closed forms of
:mod:`tms.theory`, 1e-15 between the two integration methods (including zero, 1e-7 and equal
interference terms), and agreement with Monte Carlo at 10^6 and 10^7 samples for every kind.

Gradients are not provided; the function is vectorised over models, so finite differences (e.g.
``scipy.optimize.minimize`` without ``jac``) over a handful of parameters are cheap.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping

import numpy as np

from tms.data import FeatureSets
from tms.models import ModelKind

#: Largest number of features :func:`exact_loss` accepts (2^n active subsets are enumerated).
MAX_FEATURES = 6
#: Largest number of features for the nested-ReLU kinds (relu_hidden, computation).
MAX_FEATURES_NESTED = 4
#: Array elements per temporary of the spline arithmetic (bounds memory: ~32 MB per temporary).
_BLOCK_ELEMENTS = 2**22


# --------------------------------------------------------------------------------------------
# argument handling


def _as_array(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor, on any device
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=np.float64)


def _per_feature(v: Any, N: int, n: int, name: str) -> np.ndarray:
    a = _as_array(v)
    try:
        out = np.broadcast_to(a, (N, n))
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to [N, n] = [{N}, {n}]") from None
    return np.ascontiguousarray(out)


def subset_probabilities(density: Any, sets: FeatureSets | None = None) -> np.ndarray:
    """``P(A)`` for every subset A of active features: ``[N, 2**n]``, subset as a bit mask (bit i =
    feature i). ``density [N, n]`` (1 - S); a correlated or anticorrelated set uses its first feature's."""
    dens = _as_array(density)
    if dens.ndim == 1:
        dens = dens[None]
    N, n = dens.shape
    sets = FeatureSets.independent(n) if sets is None else sets
    if sets.n_features != n:
        raise ValueError(f"sets cover {sets.n_features} features, density has {n}")
    probs = np.zeros((N, 2**n))
    probs[:, 0] = 1.0
    start = 0
    for kind, size in sets.sets:
        members = list(range(start, start + size))
        p = dens[:, start]
        if kind == "independent" or size == 1:
            for i in members:
                pi = dens[:, i][:, None]
                bit = 1 << i
                moved = probs * pi
                probs = probs * (1 - pi)
                probs[:, bit:] += moved[:, : 2**n - bit] * _has_no_bit(2**n - bit, bit)[None]
        else:
            mask_all = sum(1 << i for i in members)
            patterns = [(mask_all, p)] if kind == "correlated" else [(1 << i, p / size) for i in members]
            new = probs * (1 - p)[:, None]
            for m_bits, pm in patterns:
                new[:, m_bits:] += (probs * pm[:, None])[:, : 2**n - m_bits] * _has_no_bit(2**n - m_bits, m_bits)[None]
            probs = new
        start += size
    return probs


def _has_no_bit(count: int, bits: int) -> np.ndarray:
    """Which masks 0..count-1 share no bit with ``bits`` (so adding ``bits`` is a shift by ``bits``)."""
    return (np.arange(count) & bits) == 0


# --------------------------------------------------------------------------------------------
# one-dimensional spline arithmetic for E[ReLU(s + c.U)^k]

_GL_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_CHEB_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _gl(q: int) -> tuple[np.ndarray, np.ndarray]:
    if q not in _GL_CACHE:
        _GL_CACHE[q] = np.polynomial.legendre.leggauss(q)
    return _GL_CACHE[q]


def _cheb(D: int) -> tuple[np.ndarray, np.ndarray]:
    """Chebyshev nodes of degree D on [-1, 1] and the matrix taking values there to the monomial
    coefficients of the interpolating polynomial (well conditioned at these nodes for D <= 9)."""
    if D not in _CHEB_CACHE:
        t = np.cos(np.pi * (np.arange(D + 1) + 0.5) / (D + 1))
        _CHEB_CACHE[D] = (t, np.linalg.inv(np.vander(t, D + 1, increasing=True)))
    return _CHEB_CACHE[D]


def _horner(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Polynomial ``a [M, D+1, 2]`` (monomials of t) at ``t [M, ...]``: ``[M, ..., 2]``."""
    extra = (slice(None),) + (None,) * (t.ndim - 1)
    tt = t[..., None]
    acc = np.broadcast_to(a[extra + (a.shape[1] - 1,)], t.shape + (2,))
    for k in range(a.shape[1] - 2, -1, -1):
        acc = acc * tt + a[extra + (k,)]
    return acc


class _Spline:
    """``s -> (E[ReLU(s + Y)], E[ReLU(s + Y)^2])`` for ``Y = sum_j c_j U_j``, ``c_j >= 0``, per primitive.

    Knots ``[M, K]`` (ascending; the subset sums ``-sum_S c``, so the top knot is 0 and the bottom
    ``-sum c``). Below the bottom knot both functions are 0; above the top knot they are the moment
    polynomials ``s + m1`` and ``s^2 + 2 s m1 + m2``; in between, piece p is a polynomial of degree
    ``deg`` in the local coordinate ``t in [-1, 1]`` of ``[knots[p], knots[p + 1]]``, ``coef[:, p]``.
    """

    def __init__(self, M: int) -> None:
        self.knots = np.zeros((M, 1))
        self.coef = np.zeros((M, 0, 1, 2))
        self.deg = 2
        self.m1 = np.zeros(M)
        self.m2 = np.zeros(M)

    def window(self, s: np.ndarray, c: np.ndarray, weighted: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``int_0^1 f(s + c u) du`` and, if ``weighted``, ``int_0^1 u f(s + c u) du``; ``s [M, X]``,
        ``c [M, X]`` (any sign); each ``[M, X, 2]``. Each piece's overlap with the window is found in
        u, so even a coefficient far below the spacing of the knots is integrated exactly."""
        q = (self.deg + int(weighted) + 2) // 2  # Gauss-Legendre with q nodes is exact to degree 2q - 1
        xg, wg = _gl(q)
        cs = np.where(c == 0, 1e-300, c)
        plain = np.zeros(s.shape + (2,))
        wsum = np.zeros(s.shape + (2,)) if weighted else None
        K = self.knots.shape[1]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for p in range(K):
                lo_k = self.knots[:, p][:, None]
                hi_k = self.knots[:, p + 1][:, None] if p + 1 < K else np.full_like(lo_k, np.inf)
                ua = (lo_k - s) / cs
                ub = (hi_k - s) / cs
                lo = np.clip(np.minimum(ua, ub), 0.0, 1.0)
                hi = np.clip(np.maximum(ua, ub), 0.0, 1.0)
                half = (hi - lo) / 2
                u = ((hi + lo) / 2)[..., None] + half[..., None] * xg  # [M, X, q]
                y = s[..., None] + c[..., None] * u
                if p + 1 < K:
                    ell = hi_k - lo_k
                    ell = np.where(ell > 0, ell, 1.0)[..., None]
                    f = _horner(self.coef[:, p], 2 * (y - lo_k[..., None]) / ell - 1)
                else:  # above the top knot (0): the moment polynomials
                    m1 = self.m1[:, None, None]
                    f = np.stack([y + m1, y * y + 2 * y * m1 + self.m2[:, None, None]], axis=-1)
                w = half[..., None] * wg
                plain += np.einsum("mxq,mxqk->mxk", w, f)
                if weighted:
                    wsum += np.einsum("mxq,mxqk->mxk", w * u, f)
        return plain, wsum

    def convolve(self, c: np.ndarray) -> None:
        """Replace f by ``s -> int_0^1 f(s + c u) du`` for ``c [M] >= 0``."""
        M, K = self.knots.shape
        knots = np.sort(np.concatenate([self.knots, self.knots - c[:, None]], axis=1), axis=1)
        D = self.deg + 1
        tn, fit = _cheb(D)
        ell = knots[:, 1:] - knots[:, :-1]
        y = knots[:, :-1, None] + (tn + 1) / 2 * ell[..., None]  # [M, 2K-1, D+1]
        vals, _ = self.window(y.reshape(M, -1), np.broadcast_to(c[:, None], (M, y.shape[1] * (D + 1))), False)
        self.coef = np.einsum("lr,mprk->mplk", fit, vals.reshape(M, 2 * K - 1, D + 1, 2))
        self.knots = knots
        self.deg = D
        self.m2 = self.m2 + c * self.m1 + c * c / 3
        self.m1 = self.m1 + c / 2


def relu_moments(s: Any, c_inner: Any, c_final: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``E[ReLU(z)]``, ``E[ReLU(z)^2]`` and ``E[U_f ReLU(z)]`` for ``z = s + c_final U_f + c_inner . U``
    with independent uniforms on [0, 1]: ``s [M]``, ``c_inner [M, J]``, ``c_final [M]``. Exact (see the
    module docstring)."""
    s = _as_array(s).reshape(-1)
    c_inner = _as_array(c_inner).reshape(s.shape[0], -1) if s.shape[0] else np.zeros((0, 0))
    c_final = _as_array(c_final).reshape(-1)
    out = [np.empty(s.shape[0]) for _ in range(3)]
    J = c_inner.shape[1]
    # the last convolution evaluates (2^J - 1) pieces x (J + 3) nodes x ~(J + 4) / 2 quadrature points
    per = max(1, (2**J - 1) * (J + 3)) * ((J + 6) // 2) * 2
    block = max(1, _BLOCK_ELEMENTS // per)
    for lo in range(0, s.shape[0], block):
        hi = min(lo + block, s.shape[0])
        r = _relu_moments_block(s[lo:hi], c_inner[lo:hi], c_final[lo:hi])
        for o, v in zip(out, r):
            o[lo:hi] = v
    return out[0], out[1], out[2]


def _relu_moments_block(s: np.ndarray, c_inner: np.ndarray, c_final: np.ndarray):
    M, J = c_inner.shape
    # c U with c < 0 is c + |c| (1 - U): the same distribution as c + |c| U, so the spline only
    # ever sees non-negative coefficients and the shift moves into s
    shift = np.minimum(c_inner, 0.0).sum(axis=1)
    spl = _Spline(M)
    for j in range(J):
        spl.convolve(np.abs(c_inner[:, j]))
    plain, weighted = spl.window((s + shift)[:, None], c_final[:, None], True)
    return plain[:, 0, 0], plain[:, 0, 1], weighted[:, 0, 0]


# --------------------------------------------------------------------------------------------
# linear and ReLU-output models


def _subset_members(n: int) -> list[list[int]]:
    return [[i for i in range(n) if (A >> i) & 1] for A in range(2**n)]


def _relu_output_loss(W: np.ndarray, b: np.ndarray, imp: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Expected importance-weighted squared error summed over features, ``[N]``."""
    N, _, n = W.shape
    G = np.einsum("kmi,kmj->kij", W, W)
    total = probs[:, 0] * (imp * np.maximum(b, 0.0) ** 2).sum(-1)
    members = _subset_members(n)
    by_size: dict[int, list[tuple[int, int, int, list[int]]]] = {}
    possible = probs.max(axis=0) > 0  # e.g. half of a correlated set is never active alone
    for A in range(1, 2**n):
        if not possible[A]:
            continue
        mem = members[A]
        for i in range(n):
            f = i if i in mem else mem[0]  # the output's own feature carries the cross term
            by_size.setdefault(len(mem) - 1, []).append((A, i, f, [j for j in mem if j != f]))
    for J, prims in by_size.items():
        A_idx = np.array([p[0] for p in prims])
        i_idx = np.array([p[1] for p in prims])
        f_idx = np.array([p[2] for p in prims])
        own = np.array([p[1] == p[2] for p in prims])
        v_idx = np.array([p[3] for p in prims], dtype=np.int64).reshape(len(prims), J)
        c_inner = G[:, i_idx[:, None], v_idx]  # [N, P, J]
        c_final = G[:, i_idx, f_idx]
        s = b[:, i_idx]
        _, t2, t1x = relu_moments(s.reshape(-1), c_inner.reshape(N * len(prims), J), c_final.reshape(-1))
        t2 = t2.reshape(N, -1)
        t1x = t1x.reshape(N, -1)
        err = t2 + own * (1.0 / 3.0 - 2.0 * t1x)  # E[(x_i - ReLU(z))^2] or E[ReLU(z)^2]
        total += (probs[:, A_idx] * imp[:, i_idx] * err).sum(-1)
    return total


def _moments(probs: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``E[x] [N, n]`` and ``E[x x^T] [N, n, n]`` for values uniform on [0, 1] when active."""
    masks = np.arange(2**n)
    act = ((masks[:, None] >> np.arange(n)) & 1).astype(np.float64)  # [2^n, n]
    q = probs @ act  # P(i active)
    q2 = np.einsum("ka,ai,aj->kij", probs, act, act)  # P(i and j active)
    second = q2 / 4.0
    idx = np.arange(n)
    second[:, idx, idx] = q / 3.0
    return q / 2.0, second


def _linear_loss(W: np.ndarray, b: np.ndarray, imp: np.ndarray, probs: np.ndarray) -> np.ndarray:
    N, _, n = W.shape
    R = np.einsum("kmi,kmj->kij", W, W) - np.eye(n)  # residual x' - x = R x + b
    mean, second = _moments(probs, n)
    quad = np.einsum("kij,kjl,kil->ki", R, second, R)
    return (imp * (quad + 2 * b * np.einsum("kij,kj->ki", R, mean) + b * b)).sum(-1)


def _l1_linear_hidden(W: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``E[sum_j |(W x)_j|]`` ``[N]`` for unsigned inputs: ``E|h| = 2 E[ReLU(h)] - E[h]``."""
    N, m, n = W.shape
    members = _subset_members(n)
    total = np.zeros(N)
    by_size: dict[int, list[tuple[int, int, list[int]]]] = {}
    possible = probs.max(axis=0) > 0
    for A in range(1, 2**n):
        if not possible[A]:
            continue
        mem = members[A]
        for j in range(m):
            by_size.setdefault(len(mem) - 1, []).append((A, j, mem))
    for J, prims in by_size.items():
        A_idx = np.array([p[0] for p in prims])
        j_idx = np.array([p[1] for p in prims])
        mem = np.array([p[2] for p in prims], dtype=np.int64)  # [P, J + 1]
        c = W[:, j_idx[:, None], mem]  # [N, P, J + 1]
        t1, _, _ = relu_moments(np.zeros(N * len(prims)), c[..., 1:].reshape(N * len(prims), J), c[..., 0].reshape(-1))
        absval = 2 * t1.reshape(N, -1) - c.sum(-1) / 2
        total += (probs[:, A_idx] * absval).sum(-1)
    return total


# --------------------------------------------------------------------------------------------
# nested ReLUs: exact integration over the polytopes where every ReLU is fixed


def _integrate_quadratic(pts: np.ndarray, Q: np.ndarray, g: np.ndarray, c: float) -> float:
    """Integral of ``x^T Q x + g.x + c`` over the convex hull of ``pts [V, d]`` (exact)."""
    from scipy.spatial import ConvexHull, QhullError

    d = pts.shape[1]
    if pts.shape[0] < d + 1:
        return 0.0
    center = pts.mean(0)
    sv = np.linalg.svd(pts - center, compute_uv=False)
    if sv[-1] <= 1e-12 * max(sv[0], 1e-300):
        return 0.0  # flat: no volume
    if d == 1:
        simplices = np.array([[pts[:, 0].argmin()], [pts[:, 0].argmax()]])
    else:
        try:
            simplices = ConvexHull(pts).simplices
        except QhullError:  # nearly flat: a joggled hull moves points by ~1e-11 at most
            simplices = ConvexHull(pts, qhull_options="QJ").simplices
    F = pts[simplices]  # [S, d, d]
    verts = np.concatenate([np.broadcast_to(center, (F.shape[0], 1, d)), F], axis=1)  # [S, d + 1, d]
    vol = np.abs(np.linalg.det(F - center)) / math.factorial(d)
    ssum = verts.sum(1)
    M2 = (np.einsum("svi,svj->sij", verts, verts) + np.einsum("si,sj->sij", ssum, ssum)) / ((d + 1) * (d + 2))
    val = c + ssum @ g / (d + 1) + np.einsum("ij,sij->s", Q, M2)
    return float((vol * val).sum())


def _combos(R: int, k: int) -> np.ndarray:
    c = list(itertools.combinations(range(R), k))
    return np.array(c, dtype=np.int64).reshape(len(c), k)


def _vertices(rows: np.ndarray, rhs: np.ndarray, combos: np.ndarray, lo: float, extra: tuple | None = None):
    """Points where ``d`` of the constraints ``rows . x = rhs`` meet inside the box [lo, 1]^d
    (``extra``: one more constraint that every point must satisfy)."""
    d = rows.shape[1]
    if extra is not None:
        A = np.concatenate([rows[combos], np.broadcast_to(extra[0], (len(combos), 1, d))], axis=1)
        r = np.concatenate([rhs[combos], np.full((len(combos), 1), extra[1])], axis=1)
    else:
        A, r = rows[combos], rhs[combos]
    if len(A) == 0:
        return np.zeros((0, d))
    scale = np.prod(np.linalg.norm(A, axis=2), axis=1)
    det = np.linalg.det(A)
    ok = np.abs(det) > 1e-10 * np.maximum(scale, 1e-300)
    if not ok.any():
        return np.zeros((0, d))
    x = np.linalg.solve(A[ok], r[ok][..., None])[..., 0]
    inside = np.all((x >= lo - 1e-9) & (x <= 1 + 1e-9), axis=1)
    return np.clip(x[inside], lo, 1.0)


def _nested_loss_one(kind: ModelKind, Wh: np.ndarray, V: np.ndarray, b: np.ndarray, imp: np.ndarray,
                     probs: np.ndarray, hidden_relu: bool = True) -> tuple[float, float]:
    """``(E[sum_i I_i (t_i - y_i)^2], E[sum_j h_j])`` of one model with ``h = ReLU(Wh x)`` (or
    ``h = Wh x`` if not ``hidden_relu``, a cross-check of the relu_output path) and ``y = ReLU(V h + b)``."""
    n = b.shape[0]
    signed = kind.signed_inputs
    lo = -1.0 if signed else 0.0
    sq = probs[0] * float((imp * np.maximum(b, 0.0) ** 2).sum())
    hsum = 0.0
    for A in range(1, 2**n):
        if probs[A] == 0:
            continue
        mem = [i for i in range(n) if (A >> i) & 1]
        d = len(mem)
        w = Wh[:, mem]  # [m, d]
        live = np.linalg.norm(w, axis=1) > 0 if hidden_relu else np.zeros(w.shape[0], bool)
        n_live = int(live.sum())
        # the planes on which a hidden ReLU (or |x_i|) switches, all through the origin
        planes = np.concatenate([w[live], np.eye(d)]) if signed else w[live]
        rows = np.concatenate([planes, np.eye(d), np.eye(d)])
        rhs = np.concatenate([np.zeros(len(planes)), np.full(d, lo), np.ones(d)])
        combos = _combos(len(rows), d)
        sub_combos = _combos(len(rows), d - 1)
        verts = _vertices(rows, rhs, combos, lo)
        tol = 1e-10 * np.linalg.norm(planes, axis=1)
        side = verts @ planes.T
        sign = np.where(side > tol, 1, np.where(side < -tol, -1, 0))  # [V, H]
        # Every cell (a polytope) has a vertex; around it the cell's pattern agrees with the vertex's
        # signs except on the planes through it, which may take either sign.
        cands: set[tuple[int, ...]] = set()
        for sgn in sign:
            tight = np.flatnonzero(sgn == 0)
            if len(tight) > 16:
                raise ValueError(f"exact_loss: {len(tight)} ReLU hyperplanes meet in one point; too degenerate")
            for choice in itertools.product((-1, 1), repeat=len(tight)):
                pat = sgn.copy()
                pat[tight] = choice
                cands.add(tuple(int(v) for v in pat))
        acc = 0.0
        acc_h = 0.0
        for pat_t in sorted(cands):
            pat = np.array(pat_t, dtype=np.int64)
            cell = verts[np.all((sign == 0) | (sign == pat), axis=1)]
            if len(cell) < d + 1:
                continue
            if hidden_relu:
                active = np.zeros(w.shape[0], bool)
                active[np.flatnonzero(live)[pat[:n_live] > 0]] = True
            else:
                active = np.ones(w.shape[0], bool)
            eps = pat[n_live:] if signed else np.ones(d, dtype=np.int64)
            if hidden_relu and active.any():
                acc_h += _integrate_quadratic(cell, np.zeros((d, d)), w[active].sum(0), 0.0)
            for i in range(n):
                v = V[i, active] @ w[active] if active.any() else np.zeros(d)  # z_i = v.x + b_i here
                bi = float(b[i])
                t = np.zeros(d)
                if i in mem:
                    t[mem.index(i)] = eps[mem.index(i)]  # target t.x: |x_i| (or x_i) in this cell
                zv = cell @ v + bi
                ztol = 1e-12 * (1 + abs(bi) + np.abs(v).sum())
                if np.all(zv <= ztol):
                    continue
                if np.all(zv >= -ztol):
                    piece = cell
                else:
                    new = _vertices(rows, rhs, sub_combos, lo, extra=(v, -bi))
                    if len(new) and len(planes):
                        s_new = new @ planes.T
                        ok = np.all((np.abs(s_new) <= 1e-9 * np.linalg.norm(planes, axis=1)) | (np.sign(s_new) == pat),
                                    axis=1)
                        new = new[ok]
                    piece = np.concatenate([cell[zv >= 0], new])
                # on z > 0 the error is (t.x - z)^2 = (t.x)^2 + z^2 - 2 (t.x) z; the (t.x)^2 part is
                # integrated over the whole box below
                Q = np.outer(v, v) - (np.outer(t, v) + np.outer(v, t))
                g = 2 * bi * v - 2 * bi * t
                acc += imp[i] * _integrate_quadratic(piece, Q, g, bi * bi)
        vol = (1.0 - lo) ** d
        sq += probs[A] * (sum(imp[i] for i in mem) / 3.0 + acc / vol)  # E[x_i^2] = 1/3 on either box
        hsum += probs[A] * acc_h / vol
    return sq, hsum


# --------------------------------------------------------------------------------------------
# the public function


def exact_loss(
    kind: ModelKind | str,
    params: Mapping[str, Any],
    density: Any,
    importance: Any = 1.0,
    sets: FeatureSets | None = None,
    l1: Any = 0.0,
) -> np.ndarray | float:
    """Exact expected training loss of toy models, in the trainer's convention.

    ``E[mean_i I_i (t_i - y_i)^2] + l1 * E[sum_j |h_j|]`` (as :func:`tms.models.loss_per_instance` plus
    the trainer's L1 term), over the paper's feature distribution with ``sets`` (default: all
    independent), computed by summing over active subsets and integrating exactly (module docstring).

    Domain: ``kind`` ``linear`` or ``relu_output`` with ``n <= 6`` features (vectorised: 100,000
    models of n = 2 or 3 take seconds); ``relu_hidden`` or ``computation`` with ``n <= 4`` (a loop over
    models, ~0.1 s each for n = 3). ``params`` in the repository's layout: ``W [N, m, n]``, ``b [N, n]``
    (``computation``: ``W1 [N, m, n]``, ``W2 [N, n, m]``, ``b [N, n]``), numpy or torch; a single model
    without the N axis returns a float. ``density`` (1 - S, in (0, 1]) and ``importance`` (>= 0)
    broadcast to ``[N, n]``; ``l1`` (>= 0) is a scalar or ``[N]``. Anything else raises ``ValueError``
    naming the argument and its value. Returns ``[N]`` float64.
    """
    try:
        kind = ModelKind(kind)
    except ValueError:
        raise ValueError(f"kind: unknown model kind {kind!r}; expected one of {[k.value for k in ModelKind]}") from None
    missing = [k for k in kind.param_names if k not in params]
    if missing:
        raise ValueError(f"params: {kind.value} needs {list(kind.param_names)}, missing {missing}")
    arrs = {k: _as_array(params[k]) for k in kind.param_names}
    first = "W1" if kind is ModelKind.COMPUTATION else "W"
    single = arrs[first].ndim == 2
    if single:
        arrs = {k: v[None] for k, v in arrs.items()}
    if arrs[first].ndim != 3:
        raise ValueError(f"params: {first} must have shape [N, m, n] or [m, n], got {arrs[first].shape}")
    N, m, n = arrs[first].shape
    limit = MAX_FEATURES if kind in (ModelKind.LINEAR, ModelKind.RELU_OUTPUT) else MAX_FEATURES_NESTED
    if n > limit:
        raise ValueError(f"n_features = {n} is beyond exact_loss's domain for kind {kind.value!r} (n <= {limit})")
    if arrs["b"].shape != (N, n):
        raise ValueError(f"params: b must have shape {(N, n)} to match {first}, got {arrs['b'].shape}")
    if kind is ModelKind.COMPUTATION and arrs["W2"].shape != (N, n, m):
        raise ValueError(f"params: W2 must have shape {(N, n, m)} to match W1, got {arrs['W2'].shape}")
    for k, v in arrs.items():
        if not np.isfinite(v).all():
            raise ValueError(f"params: {k} contains NaN or infinite values")
    dens = _per_feature(density, N, n, "density")
    if not np.isfinite(dens).all() or (dens <= 0).any() or (dens > 1).any():
        bad = dens[~(np.isfinite(dens) & (dens > 0) & (dens <= 1))]
        raise ValueError(f"density must lie in (0, 1], got {float(bad.ravel()[0])!r}")
    imp = _per_feature(importance, N, n, "importance")
    if not np.isfinite(imp).all() or (imp < 0).any():
        bad = imp[~(np.isfinite(imp) & (imp >= 0))]
        raise ValueError(f"importance must be finite and >= 0, got {float(bad.ravel()[0])!r}")
    l1a = _as_array(l1).reshape(-1)
    if l1a.size not in (1, N) or not np.isfinite(l1a).all() or (l1a < 0).any():
        raise ValueError(f"l1 must be a finite scalar or [N] = [{N}] values >= 0, got {l1!r}")
    l1a = np.broadcast_to(l1a, (N,))
    sets = FeatureSets.independent(n) if sets is None else sets
    if sets.n_features != n:
        raise ValueError(f"sets: cover {sets.n_features} features, the model has n = {n}")
    probs = subset_probabilities(dens, sets)

    if kind in (ModelKind.LINEAR, ModelKind.RELU_OUTPUT):
        W, b = arrs["W"], arrs["b"]
        sq = _linear_loss(W, b, imp, probs) if kind is ModelKind.LINEAR else _relu_output_loss(W, b, imp, probs)
        out = sq / n
        if (l1a > 0).any():
            out = out + l1a * _l1_linear_hidden(W, probs)
    else:
        out = np.empty(N)
        for k in range(N):
            if kind is ModelKind.COMPUTATION:
                Wh, V = arrs["W1"][k], arrs["W2"][k]
            else:
                Wh, V = arrs["W"][k], arrs["W"][k].T
            sq, hsum = _nested_loss_one(kind, Wh, V, arrs["b"][k], imp[k], probs[k])
            out[k] = sq / n + l1a[k] * hsum
    return float(out[0]) if single else out
