"""Geometry of trained weights: which features are represented, antipodal pairs, angular gaps,
plateaus and lines of values, crossings of curves.

Pure numpy on ``W [m, n]`` (or ``[..., m, n]``), column ``W[:, i]`` is feature ``i``; unit-tested on
constructed weights. The default thresholds were fixed from the paper's wording before any model was
trained:

- a feature is *represented* when ``||W_i|| > 0.5`` (halfway between dropped and learned) and *not
  embedded* ("~0") when ``||W_i|| < 0.1``;
- two features are *orthogonal* when ``|cos| < 0.1`` (within ~6 degrees of 90) and *antipodal*
  when ``cos < -0.9`` (within ~25 degrees of opposite), each the other's most negative partner;
- a feature is *superposed* when ``sum_{j != i} (W_i_hat . W_j)^2 >= 0.25`` (a partner of norm 0.5
  lying on its direction).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tms import metrics

REPRESENTED = metrics.REPRESENTED_NORM  # 0.5
NOT_EMBEDDED = 0.1
ORTHOGONAL_COS = 0.1
ANTIPODAL_COS = -0.9
SUPERPOSED = 0.25
# ECD's line rule: >= 10 features within +-0.005 of a fraction and >= 2x as many as in each
# window of the same width centred 0.0125 away.
LINE_HALF_WIDTH, LINE_FLANK, LINE_MIN_COUNT, LINE_RATIO = 0.005, 0.0125, 10, 2.0


def cosines(W: np.ndarray) -> np.ndarray:
    """``cos(W_i, W_j)`` for ``W [..., m, n]``: ``[..., n, n]`` (0 where a column is zero)."""
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=-2)
    U = W / np.where(norms > 0, norms, 1.0)[..., None, :]
    return np.einsum("...ki,...kj->...ij", U, U)


def represented(W: np.ndarray, threshold: float = REPRESENTED) -> np.ndarray:
    """Indices of the features of ``W [m, n]`` with ``||W_i|| > threshold``."""
    return np.flatnonzero(metrics.feature_norms(W) > threshold)


def antipodal_pairs(W: np.ndarray, threshold: float = REPRESENTED, cos_max: float = ANTIPODAL_COS
                    ) -> list[tuple[int, int]]:
    """Antipodal pairs of ``W [m, n]``: represented features ``i < j`` with ``cos < cos_max`` that
    are each other's most negative partner among the represented features."""
    rep = represented(W, threshold)
    if rep.size < 2:
        return []
    C = cosines(W)[np.ix_(rep, rep)]
    np.fill_diagonal(C, np.inf)
    partner = np.argmin(C, axis=1)
    pairs = []
    for a, b in enumerate(partner):
        if a < b and partner[b] == a and C[a, b] < cos_max:
            pairs.append((int(rep[a]), int(rep[b])))
    return pairs


def superposed(W: np.ndarray, threshold: float = REPRESENTED, level: float = SUPERPOSED) -> np.ndarray:
    """Indices of represented features sharing their direction: superposition >= ``level``."""
    sup = metrics.superposition(W)
    return np.array([i for i in represented(W, threshold) if sup[i] >= level], dtype=int)


def angular_gaps(W: np.ndarray, features: Sequence[int] | None = None) -> np.ndarray:
    """Angles (degrees) between circularly consecutive directions of 2-D features, sorted by angle."""
    idx = np.arange(W.shape[-1]) if features is None else np.asarray(features)
    ang = np.sort(np.mod(np.rad2deg(metrics.angles_2d(W)[idx]), 360.0))
    if ang.size == 0:
        return ang
    return np.diff(np.concatenate([ang, ang[:1] + 360.0]))


def gap_deviation(W: np.ndarray, k: int) -> float:
    """Largest ``|gap - 360/k|`` over the angular gaps of the represented features of a 2-D ``W``
    (infinite unless exactly ``k`` features are represented)."""
    rep = represented(W)
    if rep.size != k:
        return float("inf")
    return float(np.abs(angular_gaps(W, rep) - 360.0 / k).max())


def plateau(x: np.ndarray, y: np.ndarray, value: float, tol: float) -> dict[str, float]:
    """Longest run of consecutive points (``x`` ascending) with ``|y - value| <= tol``.

    Returns its width in decades of ``x`` (``log10(x_last / x_first)``, 0 for a single point), its
    ends and its number of points (all 0 when no point is within ``tol``).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.abs(y - value) <= tol
    best = {"decades": 0.0, "x_from": 0.0, "x_to": 0.0, "points": 0}
    start = None
    for i in range(len(x) + 1):
        if i < len(x) and ok[i]:
            start = i if start is None else start
            continue
        if start is not None:
            lo, hi = x[start], x[i - 1]
            width = float(np.log10(hi / lo))
            if i - start > best["points"] or width > best["decades"]:
                best = {"decades": width, "x_from": float(lo), "x_to": float(hi), "points": i - start}
            start = None
    return best


def line_test(D: np.ndarray, fraction: float, half_width: float = LINE_HALF_WIDTH, flank: float = LINE_FLANK,
              min_count: int = LINE_MIN_COUNT, ratio: float = LINE_RATIO) -> dict[str, Any]:
    """ECD's rule for a "line" of feature dimensionalities at ``fraction``: enough values within
    ``half_width`` of it, and ``ratio`` times as many as in each equal window ``flank`` away."""
    D = np.asarray(D, dtype=float)

    def count(c: float) -> int:
        return int((np.abs(D - c) <= half_width).sum())

    at, below, above = count(fraction), count(fraction - flank), count(fraction + flank)
    is_line = at >= min_count and at >= ratio * below and at >= ratio * above
    return {"count": at, "below": below, "above": above, "line": bool(is_line)}


def count_dips(counts: Sequence[int]) -> int:
    """Largest decrease between neighbouring entries (0 for a non-decreasing sequence)."""
    c = np.asarray(counts)
    return int(max(0, -(np.diff(c).min() if c.size > 1 else 0)))


def crossing(x: np.ndarray, y1: np.ndarray, y2: np.ndarray) -> list[float]:
    """Every ``x`` (log-interpolated) where ``y1 - y2`` changes sign; NaN entries are skipped."""
    x, d = np.asarray(x, dtype=float), np.asarray(y1, dtype=float) - np.asarray(y2, dtype=float)
    ok = np.isfinite(d)
    x, d = x[ok], d[ok]
    out = []
    for i in range(len(x) - 1):
        if d[i] == 0:
            out.append(float(x[i]))
        elif d[i] * d[i + 1] < 0:
            t = d[i] / (d[i] - d[i + 1])
            out.append(float(np.exp(np.log(x[i]) + t * (np.log(x[i + 1]) - np.log(x[i])))))
    return out


def neighbour_span(W: np.ndarray, feature: int = 0) -> float:
    """Angle (degrees) between the two angular neighbours of ``feature`` in a 2-D solution: the room
    the others leave it (144 in a regular pentagon)."""
    ang = np.mod(np.rad2deg(metrics.angles_2d(W)), 360.0)
    others = np.mod(np.delete(ang, feature) - ang[feature], 360.0)
    return float(360.0 - (others.max() - others.min()))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (no ties expected)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def adjacent_on_circle(W: np.ndarray, i: int, j: int) -> bool:
    """Whether no other represented feature lies inside the smaller angle between ``W_i`` and ``W_j``."""
    ang = np.mod(np.rad2deg(metrics.angles_2d(W)), 360.0)
    a, b = ang[i], ang[j]
    width = np.mod(b - a, 360.0)
    lo, span = (a, width) if width <= 180 else (b, 360.0 - width)
    for k in represented(W):
        if k not in (i, j) and 0 < np.mod(ang[k] - lo, 360.0) < span:
            return False
    return True
