"""Closed-form phase-change theory for the smallest toy models (paper: "Superposition as a Phase Change").

Setting: ReLU-output model, ``n`` features of which the last ("extra") one has relative importance
``r`` and the others importance 1; every feature is non-zero with probability ``s`` (the density,
1 - S) and then uniform on [0, 1]. A *candidate* is a fixed configuration with unit-norm feature
directions, bias 0 for represented features and bias ``s/2`` (the feature's mean) for a dropped
feature; its expected loss has a closed form.

Normalisation: every loss here is the expected loss **summed over features**,
``E[sum_i I_i (x_i - y_i)^2]`` (the paper's and the theory notebook's convention). The trainer
(:func:`tms.models.loss_per_instance`) averages over features instead; convert with
:func:`to_trainer_convention` (divide by ``n_features``).

Sign convention: the paper writes ``ReLU(W^T W x - b)``; the models here use ``ReLU(W^T W x + b)``,
so a dropped feature's bias is ``+s/2``.

Candidates (names are the phase-diagram labels; integer labels index these tuples):

- ``n = 2, m = 1``: "not learned" ``W = [1, 0]`` (extra dropped), "dedicated" ``W = [0, 1]``
  (extra kept, the other dropped), "superposition" ``W = [1, -1]`` (antipodal pair).
- ``n = 3, m = 2``, each named by the direction ``W`` ignores (its null vector): "not learned"
  ``W⊥[0,0,1]``; "dedicated" ``W⊥[1,0,0]`` (a weight-1 feature dropped, extra dedicated);
  "dedicated, others antipodal" ``W⊥[1,1,0]``; "superposition" ``W⊥[0,1,1]`` (extra antipodal
  with a weight-1 feature).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tms import data as data_mod
from tms import models, rng
from tms.data import FeatureSets
from tms.models import ModelKind

NAMES_2x1: tuple[str, ...] = ("not learned", "dedicated", "superposition")
NAMES_3x2: tuple[str, ...] = ("not learned", "dedicated", "dedicated, others antipodal", "superposition")
#: Label of a trained solution that matches none of the candidates.
NONE_LABEL = -1

# Unit null vectors of the 3x2 candidates, with every variant obtained by swapping the two
# interchangeable weight-1 features (features 0 and 1).
_NULL_3x2: tuple[tuple[tuple[float, float, float], ...], ...] = (
    ((0, 0, 1),),
    ((1, 0, 0), (0, 1, 0)),
    ((1, 1, 0),),
    ((0, 1, 1), (1, 0, 1)),
)


# --------------------------------------------------------------------------------------------
# argument handling


def _check_n(n_features: int) -> int:
    if n_features not in (2, 3):
        raise ValueError(f"n_features must be 2 (m=1) or 3 (m=2), got {n_features}")
    return int(n_features)


def _density(s: Any, name: str = "s") -> np.ndarray:
    a = np.asarray(s, dtype=np.float64)
    if not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name} (density, 1 - sparsity) must lie in [0, 1]")
    return a


def _importance(r: Any, name: str = "r") -> np.ndarray:
    a = np.asarray(r, dtype=np.float64)
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} (relative importance of the extra feature) must be finite and >= 0")
    return a


def candidate_names(n_features: int) -> tuple[str, ...]:
    """The candidate (phase) names for ``n_features`` in label order."""
    return NAMES_2x1 if _check_n(n_features) == 2 else NAMES_3x2


def n_hidden(n_features: int) -> int:
    """``m`` of the theory model with ``n_features`` features (n - 1)."""
    return _check_n(n_features) - 1


# --------------------------------------------------------------------------------------------
# closed forms


def losses(n_features: int, s: Any, r: Any) -> dict[str, np.ndarray]:
    """Expected loss (summed over features) of every candidate; arrays broadcast over ``s`` and ``r``.

    ``s/3 - s^2/4`` is the variance of a dropped unit-importance feature (E[x^2] = s/3,
    E[x] = s/2); an antipodal pair errs only when both are active, by ``min(x_1, x_2)^2`` per
    feature, whose mean is 1/6.
    """
    n = _check_n(n_features)
    s, r = np.broadcast_arrays(_density(s), _importance(r))
    var = s / 3 - s**2 / 4
    out = {"not learned": r * var, "dedicated": var + 0 * r}
    if n == 3:
        out["dedicated, others antipodal"] = s**2 / 3 + 0 * r
    out["superposition"] = (1 + r) * s**2 / 6
    return out


def to_trainer_convention(loss: Any, n_features: int) -> np.ndarray:
    """Convert a summed-over-features loss to the trainer's mean over features."""
    return np.asarray(loss, dtype=np.float64) / _check_n(n_features)


def phase_map(n_features: int, s: Any, r: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer label of the lowest-loss candidate at every (s, r) and the names the labels index."""
    names = candidate_names(n_features)
    table = losses(n_features, s, r)
    return np.argmin(np.stack([table[k] for k in names]), axis=0), names


def boundary(n_features: int, r: Any) -> np.ndarray:
    """Critical density ``s*(r)`` of the phase change: below it an antipodal candidate wins.

    ``n = 2`` (the extra feature is in superposition for ``s < s*``): ``4r / (2 + 5r)`` for ``r <= 1``, ``4 / (5 + 2r)`` for ``r >= 1`` (so s*(r) =
    s*(1/r)). ``n = 3``: ``4r / (2 + 5r)`` for ``r < 1`` (not learned above it); for ``r >= 1`` the
    extra feature is always dedicated and ``s* = 4/7`` separates "dedicated" (above) from
    "dedicated, others antipodal" (below).
    """
    n = _check_n(n_features)
    r = _importance(r)
    low = 4 * r / (2 + 5 * r)
    high = 4 / (5 + 2 * r) if n == 2 else np.full_like(r, 4 / 7)
    return np.where(r <= 1, low, high)


def candidate_params(name: str, n_features: int, s: float, r: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(W [m, n], b [n])`` of a candidate, for ``x' = ReLU(W^T W x + b)``.

    Dropped features get bias ``s/2``, the others 0. (``r`` does not change the configuration; it
    is accepted so every candidate is addressed the same way.)
    """
    names = candidate_names(n_features)
    s = float(_density(s))
    _importance(r)
    if name not in names:
        raise ValueError(f"name must be one of {names} for n_features={n_features}, got {name!r}")
    b = np.zeros(n_features)
    if n_features == 2:
        W = {"not learned": [[1.0, 0.0]], "dedicated": [[0.0, 1.0]], "superposition": [[1.0, -1.0]]}[name]
        dropped = {"not learned": 1, "dedicated": 0}.get(name)
    else:
        W = {
            "not learned": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            "dedicated": [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            "dedicated, others antipodal": [[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
            "superposition": [[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]],
        }[name]
        dropped = {"not learned": 2, "dedicated": 0}.get(name)
    if dropped is not None:
        b[dropped] = s / 2
    return np.asarray(W, dtype=np.float64), b


# --------------------------------------------------------------------------------------------
# Monte Carlo check of any fixed model


def _per_feature(v: Any, N: int, n: int, name: str) -> torch.Tensor:
    """Scalar, ``[n]`` or ``[N, n]`` -> float32 ``[N, n]``."""
    a = np.asarray(v, dtype=np.float64)
    if a.ndim == 0 or a.shape == (n,) or a.shape == (N, n):
        return torch.as_tensor(np.broadcast_to(a, (N, n)).copy(), dtype=torch.float32)
    raise ValueError(f"{name} must be a scalar, [n] = [{n}] or [N, n] = [{N}, {n}], got shape {a.shape}")


def monte_carlo_loss(
    W: Any,
    b: Any,
    density: Any,
    importance: Any,
    n_samples: int = 200_000,
    seed: int = 0,
    kind: ModelKind | str = "relu_output",
    batch: int = 8192,
) -> tuple[Any, Any]:
    """Monte Carlo estimate ``(mean, standard error)`` of the summed-over-features expected loss.

    ``W [m, n]`` / ``b [n]`` for one model (returns floats) or ``W [N, m, n]`` / ``b [N, n]`` for
    several (returns ``[N]`` arrays); for ``kind="computation"`` pass ``W`` as a pair ``(W1, W2)``.
    ``density`` (1 - S) and ``importance`` are scalars, ``[n]`` or ``[N, n]``. Inputs come from
    :func:`tms.data.draw` (independent features) with keys derived from ``seed``; the model is
    :func:`tms.models.forward`. Memory is bounded by drawing ``batch`` examples at a time.
    """
    kind = ModelKind(kind)
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if kind is ModelKind.COMPUTATION:
        if not (isinstance(W, (tuple, list)) and len(W) == 2):
            raise ValueError("W must be a pair (W1, W2) for the computation model")
        mats = [np.asarray(w, dtype=np.float64) for w in W]
    else:
        mats = [np.asarray(W, dtype=np.float64)]
    single = mats[0].ndim == 2
    if single:
        mats = [w[None] for w in mats]
    b_arr = np.asarray(b, dtype=np.float64)
    b_arr = b_arr[None] if single and b_arr.ndim == 1 else b_arr
    if mats[0].ndim != 3:
        raise ValueError(f"W must have shape [m, n] or [N, m, n], got {mats[0].shape}")
    N, m, n = mats[0].shape
    if kind is ModelKind.COMPUTATION and mats[1].shape != (N, n, m):
        raise ValueError(f"W2 must have shape {(N, n, m)} to match W1, got {mats[1].shape}")
    if b_arr.shape != (N, n):
        raise ValueError(f"b must have shape {(n,) if single else (N, n)} to match W, got {np.shape(b)}")
    dens = _per_feature(density, N, n, "density")
    if ((dens < 0) | (dens > 1)).any():
        raise ValueError("density (1 - sparsity) must lie in [0, 1]")
    imp = _per_feature(importance, N, n, "importance").double()
    names = kind.param_names
    params = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in zip(names, [*mats, b_arr])}
    keys = torch.tensor([rng.derive_key("tms.theory.monte_carlo_loss", int(seed), i) for i in range(N)],
                        dtype=torch.int64)
    sets = FeatureSets.independent(n)
    total = torch.zeros(N, dtype=torch.float64)
    total_sq = torch.zeros(N, dtype=torch.float64)
    done, counter = 0, 0
    with torch.no_grad():
        while done < n_samples:
            bsz = min(batch, n_samples - done)
            x = data_mod.draw(keys, counter, bsz, dens, sets, kind.signed_inputs)
            y, _ = models.forward(kind, params, x)
            per_example = (imp[:, None, :] * (models.target(kind, x).double() - y.double()) ** 2).sum(-1)
            total += per_example.sum(-1)
            total_sq += (per_example**2).sum(-1)
            done += bsz
            counter += 1
    mean = total / n_samples
    var = (total_sq / n_samples - mean**2).clamp_min(0.0) * n_samples / (n_samples - 1)
    se = (var / n_samples).sqrt()
    if single:
        return float(mean[0]), float(se[0])
    return mean.numpy(), se.numpy()


# --------------------------------------------------------------------------------------------
# the paper's L_1 term


_GL_X, _GL_W = np.polynomial.legendre.leggauss(3)  # exact for the piecewise quadratics below


def one_sparse_loss(W: Any, b: Any, importance: Any) -> Any:
    """The paper's ``L_1``: loss on 1-sparse inputs, summed over which feature is active.

    ``L_1 = sum_i int_0^1 I_i (x - ReLU(||W_i||^2 x + b_i))^2 dx
    + sum_{i != j} int_0^1 I_j ReLU((W_j . W_i) x + b_j)^2 dx`` for the ReLU-output model. Each
    integrand is quadratic on either side of its ReLU kink, so splitting at the kink and using
    3-point Gauss-Legendre on both pieces is exact. ``W [m, n]`` (float) or ``[N, m, n]`` (``[N]``).
    """
    Wa = np.asarray(W, dtype=np.float64)
    single = Wa.ndim == 2
    Wa = Wa[None] if single else Wa
    if Wa.ndim != 3:
        raise ValueError(f"W must have shape [m, n] or [N, m, n], got {np.shape(W)}")
    N, _, n = Wa.shape
    if np.shape(b) not in ((n,), (N, n)):
        raise ValueError(f"b must have shape [n] or [N, n] with n={n}, got {np.shape(b)}")
    ba = np.broadcast_to(np.asarray(b, dtype=np.float64), (N, n))
    if np.ndim(importance) > 0 and np.shape(importance) not in ((n,), (N, n)):
        raise ValueError(f"importance must be a scalar, [n] or [N, n] with n={n}, got {np.shape(importance)}")
    imp = np.broadcast_to(np.asarray(importance, dtype=np.float64), (N, n))
    G = np.einsum("kmi,kmj->kij", Wa, Wa)  # G[k, i, j] = W_i . W_j
    # input feature i active with value x; output j has pre-activation G[i, j] x + b_j
    slope = G  # [N, i, j]
    off = ba[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        kink = np.where(slope != 0, -off / slope, 0.0)
    t = np.clip(kink, 0.0, 1.0)
    delta = np.eye(n)[None]

    def integrand(x: np.ndarray) -> np.ndarray:
        y = np.maximum(slope[..., None] * x + off[..., None], 0.0)
        return imp[:, None, :, None] * (delta[..., None] * x - y) ** 2

    total = np.zeros((N, n, n))
    for lo, hi in ((np.zeros_like(t), t), (t, np.ones_like(t))):
        half = (hi - lo) / 2
        x = (lo + hi)[..., None] / 2 + half[..., None] * _GL_X
        total += half * (integrand(x) * _GL_W).sum(-1)
    out = total.sum(axis=(1, 2))
    return float(out[0]) if single else out


# --------------------------------------------------------------------------------------------
# classifying trained solutions


def classify_solution(W: Any, n_features: int, threshold: float = 0.5, align: float = 0.9) -> np.ndarray:
    """Nearest candidate of each trained instance: integer labels ``[N]`` into
    :func:`candidate_names`, or ``NONE_LABEL`` (-1) when none fits.

    ``n = 2`` (``W [N, 1, 2]``): a weight counts as learned if ``|w_i| > threshold``. Only the
    first learned -> "not learned"; only the extra -> "dedicated"; both, with opposite signs ->
    "superposition"; both with the same sign (e.g. the "confused" 1/sqrt(2) solution) or neither
    -> -1. Invariant to ``W -> -W``; biases are not needed.

    ``n = 3`` (``W [N, 2, 3]``): the unit null vector ``v`` of ``W`` (cross product of its rows) is
    compared, up to sign, with the candidates' null vectors, allowing the two weight-1 features to
    swap; the best match is taken if ``|cos| >= align`` and every feature the candidate keeps has
    ``||W_i|| > threshold``. The default ``align = 0.9`` (about 26 degrees) lets a "dropped"
    feature keep a residual norm up to about 0.48 next to unit-norm features, in line with the
    ``n = 2`` threshold; distinct candidates' null vectors are at least 45 degrees apart. Rank-deficient ``W`` (collapsed) and e.g. a three-way superposition
    (``v ~ [1,1,1]``) give -1.
    """
    n = _check_n(n_features)
    Wa = np.asarray(W.detach().cpu() if isinstance(W, torch.Tensor) else W, dtype=np.float64)
    if Wa.ndim == 2:
        Wa = Wa[None]
    if Wa.ndim != 3 or Wa.shape[1:] != (n - 1, n):
        raise ValueError(f"W must have shape [N, {n - 1}, {n}] for n_features={n}, got {np.shape(W)}")
    if not np.isfinite(Wa).all():
        raise ValueError("W contains NaN or infinite values")
    norms = np.linalg.norm(Wa, axis=1)  # [N, n]
    on = norms > threshold
    if n == 2:
        opposite = Wa[:, 0, 0] * Wa[:, 0, 1] < 0
        label = np.full(Wa.shape[0], NONE_LABEL)
        label[on[:, 0] & ~on[:, 1]] = 0
        label[~on[:, 0] & on[:, 1]] = 1
        label[on[:, 0] & on[:, 1] & opposite] = 2
        return label
    v = np.cross(Wa[:, 0, :], Wa[:, 1, :])  # null vector of a 2x3 matrix
    v_norm = np.linalg.norm(v, axis=-1)
    # |W_0 x W_1| <= ||W_0|| ||W_1||: compare with the product of the two row norms to detect rank 1
    row = np.linalg.norm(Wa, axis=2)
    full_rank = v_norm > 1e-3 * np.maximum(row[:, 0] * row[:, 1], 1e-300)
    v = v / np.where(full_rank, v_norm, 1.0)[:, None]
    best_cos = np.zeros(Wa.shape[0])
    label = np.full(Wa.shape[0], NONE_LABEL)
    for lab, variants in enumerate(_NULL_3x2):
        for c in variants:
            c = np.asarray(c, dtype=np.float64)
            c = c / np.linalg.norm(c)
            cos = np.abs(v @ c)
            # a single non-zero entry is the dropped feature; an antipodal candidate keeps all three
            kept = c == 0 if np.count_nonzero(c) == 1 else np.ones(3, dtype=bool)
            ok = full_rank & (cos >= align) & np.all(on | ~kept, axis=1) & (cos > best_cos)
            label = np.where(ok, lab, label)
            best_cos = np.where(ok, cos, best_cos)
    return label
