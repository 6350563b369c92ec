"""Measurements of trained weights: feature norms, superposition, dimensionality, geometry, neurons.

Conventions (shared with :mod:`tms.models`): a weight array ``W`` has shape ``[..., m, n]`` with
``m`` hidden dimensions and ``n`` features; column ``W[..., :, i]`` is feature i's direction ``W_i``
and every leading axis is an instance axis. Functions take numpy arrays (torch tensors are
accepted and converted), compute in float64 and return numpy arrays. Zero weights never produce
NaN or inf: quantities that are undefined for an unrepresented feature are reported as 0.

Thresholds that decide whether a feature "is represented" default to ``REPRESENTED_NORM``
(``||W_i|| > 0.5``), halfway between a dropped (norm 0) and a learned (norm ~1) feature.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components

from tms.models import ModelKind

REPRESENTED_NORM = 0.5

#: Geometry labels returned by :func:`classify_geometry`.
GEOMETRY_LABELS: tuple[str, ...] = (
    "dedicated",
    "antipodal pair",
    "triangle",
    "pentagon",
    "tetrahedron",
    "square antiprism",
    "not represented",
    "other",
)


# --------------------------------------------------------------------------------------------
# argument handling


def _numpy(a: Any, name: str) -> np.ndarray:
    """float64 numpy copy of an array-like (torch tensors included); rejects NaN/inf."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array, got {type(a).__name__}") from err
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def _weights(W: Any, name: str = "W", m: int | None = None) -> np.ndarray:
    """Validate a ``[..., m, n]`` weight array."""
    out = _numpy(W, name)
    if out.ndim < 2:
        raise ValueError(f"{name} must have shape [..., m, n] (at least 2 dimensions), got shape {out.shape}")
    if out.shape[-1] < 1 or out.shape[-2] < 1:
        raise ValueError(f"{name} must have at least one feature and one hidden dimension, got shape {out.shape}")
    if m is not None and out.shape[-2] != m:
        raise ValueError(f"{name} must have m={m} hidden dimensions (shape [..., {m}, n]), got shape {out.shape}")
    return out


def _safe_div(num: np.ndarray, den: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """num / den where ``ok``, else 0 (without evaluating the division elsewhere)."""
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=ok)


# --------------------------------------------------------------------------------------------
# per-feature measures


def feature_norms(W: Any) -> np.ndarray:
    """``||W_i||`` for every feature: ``[..., n]``."""
    return np.linalg.norm(_weights(W), axis=-2)


def gram(W: Any) -> np.ndarray:
    """``W^T W``: ``[..., n, n]``; entry (i, j) is ``W_i . W_j``."""
    W = _weights(W)
    return np.einsum("...ki,...kj->...ij", W, W)


def superposition(W: Any, eps: float = 1e-6) -> np.ndarray:
    """The paper's bar colour ``sum_{j != i} (W_i_hat . W_j)^2``: ``[..., n]``.

    0 for orthogonal features, >= 1 for a feature sharing its direction with a unit-norm feature;
    0 for a feature with ``||W_i|| <= eps`` (it has no direction).
    """
    G = gram(W)
    sq_norm = np.diagonal(G, axis1=-2, axis2=-1)
    off = (G**2).sum(-1) - sq_norm**2  # sum over j != i of (W_i . W_j)^2
    off = np.maximum(off, 0.0)  # rounding can make it a hair negative
    return _safe_div(off, sq_norm, sq_norm > eps**2)


def dimensionality(W: Any, eps: float = 1e-6) -> np.ndarray:
    """Feature dimensionality ``D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2``: ``[..., n]``.

    Equivalent to ``||W_i||^4 / sum_j (W_i . W_j)^2``, which needs no division by the norm. It is 1
    for a dedicated dimension, ``d/k`` for each of ``k`` unit vectors forming a tight frame in ``d``
    dimensions, and 0 for features with ``||W_i|| <= eps`` (unrepresented).
    """
    G = gram(W)
    sq_norm = np.diagonal(G, axis1=-2, axis2=-1)
    den = (G**2).sum(-1)
    return _safe_div(sq_norm**2, den, sq_norm > eps**2)


def dstar(W: Any) -> np.ndarray:
    """Dimensions per feature ``D* = m / ||W||_F^2``: ``[...]``; 0 when ``W`` is all zeros.

    (For a zero ``W`` the quotient is undefined; 0 matches the convention D_i = 0 for
    unrepresented features and keeps metrics tables free of inf.)
    """
    W = _weights(W)
    fro = (W**2).sum(axis=(-2, -1))
    return _safe_div(np.full_like(fro, W.shape[-2]), fro, fro > 0)


def n_represented(W: Any, threshold: float = REPRESENTED_NORM) -> np.ndarray:
    """Number of features with ``||W_i|| > threshold``: integer ``[...]``."""
    return (feature_norms(W) > threshold).sum(-1)


# --------------------------------------------------------------------------------------------
# 2-D solutions


def angles_2d(W: Any) -> np.ndarray:
    """Angle of every feature direction of a 2-D solution, radians in (-pi, pi]: ``[..., n]``.

    A zero column has angle 0.
    """
    W = _weights(W, m=2)
    return np.arctan2(W[..., 1, :], W[..., 0, :])


def canonicalize_2d(
    W: Any, anchor: int | None = None, threshold: float = REPRESENTED_NORM, collinear_tol: float = 0.1
) -> np.ndarray:
    """Rotate and reflect 2-D solutions (``m = 2``) to a canonical orientation: ``[..., 2, n]``.

    Per instance: rotate so the anchor feature lies on +x. The anchor is ``anchor`` if given, else
    feature 0 if it is represented (``||W_0|| > threshold``), else the largest-norm feature. Then
    reflect across the x axis if needed so that the *next represented feature in index order*
    after the anchor (wrapping around, skipping features within ``collinear_tol`` radians of the
    anchor's line, which cannot fix an orientation) has a positive angle. Both operations are
    orthogonal, so ``W^T W`` is unchanged; overlaid solutions then agree feature by feature.
    """
    W = _weights(W, m=2)
    n = W.shape[-1]
    norms = np.linalg.norm(W, axis=-2)
    rep = norms > threshold
    if anchor is None:
        a = np.where(rep[..., 0], 0, np.argmax(norms, axis=-1))
    else:
        if not 0 <= int(anchor) < n:
            raise ValueError(f"anchor must be a feature index in [0, {n}), got {anchor}")
        a = np.full(W.shape[:-2], int(anchor))
    theta = np.take_along_axis(angles_2d(W), a[..., None], axis=-1)[..., 0]
    c, s = np.cos(theta), np.sin(theta)
    # rotation by -theta applied to every column
    x = c[..., None] * W[..., 0, :] + s[..., None] * W[..., 1, :]
    y = -s[..., None] * W[..., 0, :] + c[..., None] * W[..., 1, :]
    ang = np.arctan2(y, x)
    idx = np.arange(n)
    order = (idx - a[..., None]) % n  # 0 for the anchor, then index order, wrapping
    off_line = np.abs(np.sin(ang)) > math.sin(collinear_tol)
    key = np.where(rep & (idx != a[..., None]) & off_line, order, n)
    j = np.argmin(key, axis=-1)
    has = np.min(key, axis=-1) < n
    flip = has & (np.take_along_axis(ang, j[..., None], axis=-1)[..., 0] < 0)
    y = np.where(flip[..., None], -y, y)
    return np.stack([x, y], axis=-2)


# --------------------------------------------------------------------------------------------
# geometry


def reference_fractions() -> dict[str, float]:
    """Dimensionality of each named geometry, largest first (the lines of the D_i scatter)."""
    return {
        "dedicated": 1.0,
        "tetrahedron": 3 / 4,
        "triangle": 2 / 3,
        "antipodal pair": 1 / 2,
        "pentagon": 2 / 5,
        "square antiprism": 3 / 8,
        "not represented": 0.0,
    }


def polytope(name: str) -> np.ndarray:
    """Unit vectors ``[d, k]`` of a named geometry in its own ``d``-dimensional span.

    The square antiprism is the tight one: squares at heights +-1/sqrt(3), twisted by 45 degrees
    (only that height makes the 8 vectors a tight frame, so that every D_i is 3/8).
    """
    if name == "dedicated":
        return np.ones((1, 1))
    if name == "antipodal pair":
        return np.array([[1.0, -1.0]])
    if name in ("triangle", "pentagon"):
        k = 3 if name == "triangle" else 5
        t = 2 * np.pi * np.arange(k) / k
        return np.stack([np.cos(t), np.sin(t)])
    if name == "tetrahedron":
        v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float).T
        return v / math.sqrt(3)
    if name == "square antiprism":
        h, r = 1 / math.sqrt(3), math.sqrt(2 / 3)
        t = np.pi / 2 * np.arange(4)
        top = np.stack([r * np.cos(t), r * np.sin(t), np.full(4, h)])
        bottom = np.stack([r * np.cos(t + np.pi / 4), r * np.sin(t + np.pi / 4), np.full(4, -h)])
        return np.concatenate([top, bottom], axis=1)
    raise ValueError(f"name must be one of {GEOMETRY_LABELS[:6]}, got {name!r}")


def _cos_profile(C: np.ndarray) -> np.ndarray:
    """Each vertex's sorted cosines to the other vertices: ``[k, k-1]``."""
    k = C.shape[0]
    off = C[~np.eye(k, dtype=bool)].reshape(k, k - 1)
    return np.sort(off, axis=1)


def _reference_shapes() -> dict[int, tuple[str, int, float, np.ndarray]]:
    """size k -> (label, span dimension, D, cosine profile of one vertex)."""
    out = {}
    for name in GEOMETRY_LABELS[:6]:
        V = polytope(name)
        d, k = V.shape
        out[k] = (name, d, d / k, _cos_profile(V.T @ V)[0] if k > 1 else np.zeros(0))
    return out


def classify_geometry(
    W: Any,
    norm_threshold: float = REPRESENTED_NORM,
    edge_threshold: float = 0.2,
    d_tol: float = 0.05,
    cos_tol: float = 0.1,
    rank_tol: float = 0.2,
) -> np.ndarray:
    """Label every feature with the geometry it belongs to: string array ``[..., n]``.

    Labels are :data:`GEOMETRY_LABELS`. Per instance: features with ``||W_i|| <= norm_threshold``
    are "not represented". The others are linked when ``|cos(W_i, W_j)| > edge_threshold``; each
    connected group of ``k`` features is compared with the reference geometry having ``k``
    vertices (1 dedicated, 2 antipodal pair, 3 triangle, 4 tetrahedron, 5 pentagon, 8 square
    antiprism). The group gets that label only if (a) it spans the reference's dimension
    (singular values of its unit vectors above ``rank_tol`` times the largest), (b) every member's
    D_i is within ``d_tol`` of the reference fraction and (c) every member's sorted cosines to the
    other members are within ``cos_tol`` of the reference's (so a cube, also D = 3/8, is not a
    square antiprism). Anything else is "other".
    """
    W = _weights(W)
    lead, (m, n) = W.shape[:-2], W.shape[-2:]
    flat = W.reshape(-1, m, n)
    D_all = dimensionality(flat)
    refs = _reference_shapes()
    out = np.empty((flat.shape[0], n), dtype=object)
    for k_inst in range(flat.shape[0]):
        Wk, D = flat[k_inst], D_all[k_inst]
        norms = np.linalg.norm(Wk, axis=0)
        rep = np.flatnonzero(norms > norm_threshold)
        out[k_inst, :] = "not represented"
        if rep.size == 0:
            continue
        U = Wk[:, rep] / norms[rep]
        C = U.T @ U
        n_comp, comp = connected_components(np.abs(C) > edge_threshold, directed=False)
        for c in range(n_comp):
            members = np.flatnonzero(comp == c)
            out[k_inst, rep[members]] = _group_label(U[:, members], C[np.ix_(members, members)], D[rep[members]],
                                                     refs, d_tol, cos_tol, rank_tol)
    return out.astype(str).reshape(*lead, n)


def _group_label(U: np.ndarray, C: np.ndarray, D: np.ndarray, refs: dict, d_tol: float, cos_tol: float,
                 rank_tol: float) -> str:
    k = C.shape[0]
    if k not in refs:
        return "other"
    name, d, frac, profile = refs[k]
    sv = np.linalg.svd(U, compute_uv=False)
    if int((sv > rank_tol * sv[0]).sum()) != d:
        return "other"
    if np.abs(D - frac).max() > d_tol:
        return "other"
    if k > 1 and np.abs(_cos_profile(C) - profile).max() > cos_tol:
        return "other"
    return name


# --------------------------------------------------------------------------------------------
# privileged basis: neurons


def neuron_feature_weights(W: Any) -> np.ndarray:
    """``|W|`` as ``[..., m, n]``: row j holds neuron j's weight magnitude to every feature.

    These are the bars of the paper's neuron stack plots (use ``W1`` for the computation model,
    after :func:`rescale_hidden_units` for its visual convention).
    """
    return np.abs(_weights(W))


def neuron_polysemanticity(W: Any, rel_threshold: float = 0.1, abs_threshold: float = 0.1) -> np.ndarray:
    """Number of features each neuron stores: integer ``[..., m]``.

    Feature i counts for neuron j if ``|W[j, i]| >= rel_threshold * max_i' |W[j, i']|`` (a
    non-negligible fraction of that neuron's primary weight) and ``|W[j, i]| > abs_threshold``
    (so that a neuron whose weights are all near zero is dead, count 0).
    """
    if rel_threshold < 0 or abs_threshold < 0:
        raise ValueError(f"rel_threshold and abs_threshold must be >= 0, got {rel_threshold}, {abs_threshold}")
    A = neuron_feature_weights(W)
    top = A.max(axis=-1, keepdims=True)
    return ((A >= rel_threshold * top) & (A > abs_threshold)).sum(-1)


def neuron_counts(W: Any, rel_threshold: float = 0.1, abs_threshold: float = 0.1
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(n_monosemantic, n_polysemantic, n_dead)`` neurons per instance, each integer ``[...]``."""
    k = neuron_polysemanticity(W, rel_threshold, abs_threshold)
    return (k == 1).sum(-1), (k >= 2).sum(-1), (k == 0).sum(-1)


def rescale_hidden_units(W1: Any, W2: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rescale every hidden unit so its largest ``|W1|`` weight is 1, compensating in ``W2``.

    ``W1 [..., m, n]`` (row j feeds hidden unit j), ``W2 [..., n, m]`` (column j reads it). Since
    ``ReLU(a z) = a ReLU(z)`` for ``a > 0``, dividing row j of W1 by ``a_j`` and multiplying
    column j of W2 by ``a_j`` leaves the model function unchanged. Units with an all-zero row are
    left as they are.
    """
    W1 = _weights(W1, "W1")
    W2 = _weights(W2, "W2")
    m, n = W1.shape[-2:]
    if W2.shape[-2:] != (n, m) or W2.shape[:-2] != W1.shape[:-2]:
        raise ValueError(f"W2 must have shape [..., n, m] = {(*W1.shape[:-2], n, m)} to match W1, got {W2.shape}")
    a = np.abs(W1).max(axis=-1)  # [..., m]
    a = np.where(a > 0, a, 1.0)
    return W1 / a[..., :, None], W2 * a[..., None, :]


# --------------------------------------------------------------------------------------------
# adversarial vulnerability


def _tensor(a: Any, name: str, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = a.detach() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a, dtype=np.float64))
    t = t.to(device=device, dtype=dtype)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def adversarial_vulnerability(
    W: Any,
    b: Any,
    x: Any,
    importance: Any,
    budget_fraction: float = 0.1,
    signs: Sequence[float] = (1, -1),
    eps: float = 1e-8,
    chunk_elements: int = 2**22,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, np.ndarray]:
    """Loss increase under the paper's analytic L2 attacks on ReLU-output models.

    For ``y = ReLU(W^T W x + b)`` the attack on feature i is ``delta = lambda * G_i / ||G_i||``
    with ``G = W^T W`` (``G_i`` its row i), for each sign in ``signs``; ``lambda`` is
    ``budget_fraction`` times the mean ``||x||_2`` of the instance's evaluation inputs. For every
    example the attack that most increases its loss is chosen. The loss of an example is the
    trainer's: ``mean_i I_i (x_i - y_i)^2`` with the *clean* ``x`` as target (the attack changes
    the input, not what the model should recover). Features with ``||G_i|| <= eps`` (not
    represented) offer no attack. The increase is clipped at 0 (no perturbation is also within the
    budget).

    Shapes: W ``[N, m, n]``, b ``[N, n]``, x ``[N, B, n]``, importance ``[n]``, ``[N, n]`` or
    scalar. Returns numpy arrays: ``clean_loss``, ``adversarial_loss``, ``loss_increase`` and
    ``budget`` (``[N]``, means over examples), and per example ``chosen_feature`` and
    ``chosen_sign`` (``[N, B]``; -1 and 0 when there is no attack).

    Cost is ``O(N B n^2)`` (every attack on every example), in chunks of about ``chunk_elements``
    numbers; ``device`` (default: that of a torch ``x``, else CPU) and ``dtype`` (float32 by
    default; pass ``torch.float64`` for exact comparisons) set where and how it runs.
    """
    if budget_fraction < 0:
        raise ValueError(f"budget_fraction must be >= 0, got {budget_fraction}")
    if not signs:
        raise ValueError("signs must name at least one sign, e.g. (1, -1)")
    dev = torch.device(device) if device is not None else (
        x.device if isinstance(x, torch.Tensor) else torch.device("cpu"))
    Wt, bt, xt = (_tensor(a, name, dev, dtype) for a, name in ((W, "W"), (b, "b"), (x, "x")))
    if Wt.dim() != 3:
        raise ValueError(f"W must have shape [N, m, n], got {tuple(Wt.shape)}")
    N, m, n = Wt.shape
    if tuple(bt.shape) != (N, n):
        raise ValueError(f"b must have shape [N, n] = {(N, n)}, got {tuple(bt.shape)}")
    if xt.dim() != 3 or xt.shape[0] != N or xt.shape[2] != n or xt.shape[1] < 1:
        raise ValueError(f"x must have shape [N, B, n] = ({N}, B, {n}), got {tuple(xt.shape)}")
    imp = _tensor(importance, "importance", dev, dtype)
    try:
        imp = imp.reshape(-1, n).expand(N, n) if imp.numel() > 1 else imp.reshape(1, 1).expand(N, n)
    except RuntimeError as err:
        raise ValueError(f"importance must broadcast to [N, n] = {(N, n)}, got {tuple(imp.shape)}") from err
    B = xt.shape[1]

    G = Wt.transpose(1, 2) @ Wt  # [N, n, n], symmetric
    row_norm = G.norm(dim=-1)  # [N, n]
    valid = row_norm > eps
    dirs = G / torch.where(valid, row_norm, torch.ones_like(row_norm))[..., None]  # attack directions
    # Effect of attack i on the pre-activations: G d_i, i.e. row i of d @ G since G is symmetric.
    effect = dirs @ G  # [N, attack, out]
    lam = budget_fraction * xt.norm(dim=-1).mean(-1)  # [N]
    z = xt @ G + bt[:, None, :]
    imp_col = imp[:, None, :, None]  # weighted sums over outputs as batched mat-vec products
    clean = torch.matmul((torch.relu(z) - xt) ** 2, imp[:, :, None])[..., 0] / n  # [N, B]

    best = torch.full((N, B), -math.inf, dtype=dtype, device=dev)
    chosen = torch.full((N, B), -1, dtype=torch.int64, device=dev)
    chosen_sign = torch.zeros((N, B), dtype=dtype, device=dev)
    step = max(1, int(chunk_elements) // max(1, N * n * n))
    for lo in range(0, B, step):
        hi = min(B, lo + step)
        for sgn in signs:
            # [N, b, attack, out]; in place to keep the number of passes over memory small
            err = z[:, lo:hi, None, :] + (float(sgn) * lam)[:, None, None, None] * effect[:, None, :, :]
            err.relu_().sub_(xt[:, lo:hi, None, :]).square_()
            la = torch.matmul(err, imp_col)[..., 0] / n  # [N, b, attack]
            la = torch.where(valid[:, None, :], la, torch.full_like(la, -math.inf))
            val, arg = la.max(dim=-1)
            better = val > best[:, lo:hi]
            best[:, lo:hi] = torch.where(better, val, best[:, lo:hi])
            chosen[:, lo:hi] = torch.where(better, arg, chosen[:, lo:hi])
            chosen_sign[:, lo:hi] = torch.where(better, torch.full_like(val, float(sgn)), chosen_sign[:, lo:hi])
    increase = torch.where(chosen >= 0, (best - clean).clamp_min(0.0), torch.zeros_like(clean))
    as64 = lambda t: t.double().cpu().numpy()  # noqa: E731
    return {
        "clean_loss": as64(clean.mean(-1)),
        "adversarial_loss": as64((clean + increase).mean(-1)),
        "loss_increase": as64(increase.mean(-1)),
        "budget": as64(lam),
        "chosen_feature": chosen.cpu().numpy(),
        "chosen_sign": as64(chosen_sign),
    }


# --------------------------------------------------------------------------------------------
# per-instance summary


def instance_summary(kind: ModelKind | str, params: dict[str, Any],
                     threshold: float = REPRESENTED_NORM) -> dict[str, np.ndarray]:
    """One value per instance for an experiment's metrics table: dict of 1-D arrays ``[N]``.

    Always: ``frobenius_sq`` (``||W||_F^2``), ``dstar``, ``n_represented`` (norm > ``threshold``),
    ``mean_superposition`` and ``mean_dimensionality`` (means over represented features; 0 if
    none), ``max_norm``. For ``relu_hidden`` and ``computation`` also ``n_monosemantic``,
    ``n_polysemantic`` and ``n_dead`` neurons (default thresholds of :func:`neuron_counts`). For the
    computation model every measure is taken on ``W1`` (raw, not rescaled).
    """
    try:
        kind = ModelKind(kind)
    except ValueError as err:
        raise ValueError(f"kind must be one of {[k.value for k in ModelKind]}, got {kind!r}") from err
    key = "W1" if kind is ModelKind.COMPUTATION else "W"
    if key not in params:
        raise ValueError(f"params must contain {key!r} for a {kind.value} model, got keys {sorted(params)}")
    W = _weights(params[key], f"params[{key!r}]")
    if W.ndim != 3:
        raise ValueError(f"params[{key!r}] must have shape [N, m, n] (leading instance axis), got {W.shape}")
    norms = np.linalg.norm(W, axis=-2)
    rep = norms > threshold
    count = rep.sum(-1)
    denom = np.maximum(count, 1)
    out = {
        "frobenius_sq": (W**2).sum(axis=(-2, -1)),
        "dstar": dstar(W),
        "n_represented": count,
        "mean_superposition": (superposition(W) * rep).sum(-1) / denom,
        "mean_dimensionality": (dimensionality(W) * rep).sum(-1) / denom,
        "max_norm": norms.max(-1),
    }
    if kind in (ModelKind.RELU_HIDDEN, ModelKind.COMPUTATION):
        mono, poly, dead = neuron_counts(W)
        out.update(n_monosemantic=mono, n_polysemantic=poly, n_dead=dead)
    return out
