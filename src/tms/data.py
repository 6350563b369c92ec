"""Synthetic sparse feature distributions of the paper.

Each feature is zero with probability S_i (its sparsity) and otherwise uniform on [0, 1], or on
[-1, 1] for the absolute-value task. Features come in consecutive *sets*:

- ``independent``: every feature draws its own zero/non-zero decision (the paper's default);
- ``correlated``: one draw decides whether the whole set is zero; magnitudes stay independent;
- ``anticorrelated``: the set is zero with probability S, otherwise exactly one feature of it,
  chosen uniformly, is active (so each feature's marginal density is (1 - S) / k).

A set's density is the density of its first feature. Everything here is written in terms of the
uniform numbers of :mod:`tms.rng`, one per feature and example: an independent feature is active if
``u < p`` and then takes ``u / p``, which is again uniform on [0, 1); an anticorrelated set uses its
first feature's ``u`` both to choose the active feature and, through the fractional part, its value.
One uniform per element is what keeps the sampler cheap enough to fuse into the training step.

:func:`sample_nonempty` draws from the same distribution conditioned on at least one feature (set)
being active, exactly; the trainer uses it with the all-zero input's loss added analytically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from tms import rng

SetKind = Literal["independent", "correlated", "anticorrelated"]
SET_KINDS: tuple[str, ...] = ("independent", "correlated", "anticorrelated")


@dataclass(frozen=True)
class FeatureSets:
    """A partition of the features into consecutive sets: ``((kind, size), ...)``."""

    sets: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if not self.sets:
            raise ValueError("feature sets: at least one set is required")
        for kind, size in self.sets:
            if kind not in SET_KINDS:
                raise ValueError(f"feature sets: unknown kind {kind!r}; expected one of {SET_KINDS}")
            if int(size) < 1:
                raise ValueError(f"feature sets: size must be >= 1, got {size} for a {kind} set")

    @classmethod
    def independent(cls, n: int) -> "FeatureSets":
        """All ``n`` features independent."""
        if n < 1:
            raise ValueError(f"n_features must be >= 1, got {n}")
        return cls((("independent", int(n)),))

    @classmethod
    def parse(cls, spec: Sequence[dict] | None, n: int) -> "FeatureSets":
        """From config: a list of ``{kind, size, count}`` entries (count defaults to 1).

        ``None`` means all independent. The sizes must add up to ``n``.
        """
        if not spec:
            return cls.independent(n)
        sets: list[tuple[str, int]] = []
        for i, entry in enumerate(spec):
            for _ in range(int(entry.get("count", 1))):
                sets.append((str(entry["kind"]), int(entry["size"])))
        out = cls(tuple(sets))
        if out.n_features != n:
            raise ValueError(f"feature_sets: sizes add up to {out.n_features}, but n_features is {n}")
        return out

    @property
    def n_features(self) -> int:
        return sum(size for _, size in self.sets)

    @property
    def all_independent(self) -> bool:
        return all(kind == "independent" or size == 1 for kind, size in self.sets)

    def set_index(self) -> list[int]:
        """For each feature, the index of its set."""
        return [s for s, (_, size) in enumerate(self.sets) for _ in range(size)]

    def unit_index(self) -> list[int]:
        """For each feature, its *activity unit*: an independent feature is its own unit, a correlated
        or anticorrelated set of size > 1 is one unit (one draw decides whether any of it is active)."""
        out, u = [], 0
        for kind, size in self.sets:
            if kind == "independent" or size == 1:
                out.extend(range(u, u + size))
                u += size
            else:
                out.extend([u] * size)
                u += 1
        return out

    def unit_leads(self) -> list[int]:
        """The feature whose density is each unit's probability of being active (its first)."""
        idx = self.unit_index()
        return [idx.index(k) for k in range(max(idx) + 1)]

    def tables(self) -> dict[str, list]:
        """Per-feature lookup tables used by :func:`sample`."""
        lead, pos, size, kind = [], [], [], []
        start = 0
        for k, sz in self.sets:
            for j in range(sz):
                lead.append(start)
                pos.append(j)
                size.append(sz)
                kind.append(SET_KINDS.index(k) if sz > 1 else 0)
            start += sz
        return {"lead": lead, "pos": pos, "size": size, "kind": kind}


def sample(u: torch.Tensor, density: torch.Tensor, sets: FeatureSets, signed: bool = False,
           inv_density: torch.Tensor | None = None) -> torch.Tensor:
    """Turn uniforms ``u`` of shape ``[N, B, n]`` into feature vectors.

    ``density`` (1 - S) broadcasts against ``[N, 1, n]``. ``signed`` maps active values to
    uniform on [-1, 1) (the absolute-value task). ``inv_density`` (``1 / density``, same shape) may
    be passed precomputed: the compiled training step then multiplies instead of dividing for every
    element; the result is bit-identical either way.
    """
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    inv = torch.reciprocal(density) if inv_density is None else inv_density
    if sets.all_independent:
        active = u < density
        value = u * inv
    else:
        t = sets.tables()
        n = u.shape[-1]
        dev = u.device
        lead = torch.tensor(t["lead"], device=dev)
        pos = torch.tensor(t["pos"], device=dev, dtype=u.dtype)
        size = torch.tensor(t["size"], device=dev, dtype=u.dtype)
        kind = torch.tensor(t["kind"], device=dev)
        dens = density.expand(*density.shape[:-1], n) if density.shape[-1] == 1 else density
        inv = inv.expand(*inv.shape[:-1], n) if inv.shape[-1] == 1 else inv
        u_lead = u.index_select(-1, lead)
        p_lead = dens.index_select(-1, lead)
        is_lead = torch.arange(n, device=dev) == lead
        active = u_lead < p_lead
        frac_lead = u_lead * inv.index_select(-1, lead)
        # independent and correlated: the leader's u/p is its value; other members use their own u
        value_corr = torch.where(is_lead, frac_lead, u)
        # anticorrelated: v in [0, k) chooses the member (integer part) and its value (fraction)
        v = frac_lead * size
        chosen = torch.floor(v)
        value_anti = torch.where(chosen == pos, v - chosen, zero)
        value = torch.where(kind == 2, value_anti, value_corr)
        is_indep = kind == 0
        active = torch.where(is_indep, u < dens, active)
        value = torch.where(is_indep, u * inv, value)
        active = active & ((kind != 2) | (chosen == pos))
    if signed:
        value = 2.0 * value - 1.0
    return torch.where(active, value, zero)


def draw(
    keys: torch.Tensor,
    counter: int | torch.Tensor,
    batch: int,
    density: torch.Tensor,
    sets: FeatureSets,
    signed: bool = False,
) -> torch.Tensor:
    """A batch ``[N, batch, n]`` for instances ``keys`` from stream ``counter``."""
    n = sets.n_features
    u = rng.uniform(keys, int(counter), (batch, n))
    return sample(u, density.view(density.shape[0], 1, -1), sets, signed)


def expected_value(density: float, signed: bool = False) -> float:
    """E[x_i] for a feature of the given density (the optimal bias of an unrepresented feature)."""
    return 0.0 if signed else density / 2.0


# --------------------------------------------------------------------------------------------
# conditioning on a non-empty input


def nonempty_tables(density: torch.Tensor, sets: FeatureSets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(P0 [N], lo [N, n], hi [N, n])`` (float64) for :func:`sample_nonempty`.

    ``P0`` is the probability that no unit is active. Given that at least one is, the first active
    unit F has ``P(F <= k) = C_k = (1 - prod_{j <= k} (1 - p_j)) / (1 - P0)``, computed with
    ``log1p``/``expm1`` so that sparse units (P0 near 1) lose no digits, and exactly 1 from the last
    unit that can be active on (so F never lands on a unit of density 0). Per feature of unit k:
    ``lo = C_{k-1}`` (0 for the first unit) and ``hi = C_k``, so F = k iff ``lo <= v < hi`` and F > k
    iff ``v >= hi``. Instances with P0 = 1 (nothing can ever be active) get NaN; callers must not
    condition them.
    """
    dens = density.to(torch.float64).reshape(density.shape[0], -1)
    dens = dens.expand(-1, sets.n_features) if dens.shape[1] == 1 else dens
    p = dens[:, sets.unit_leads()]  # [N, U]
    logq = torch.cumsum(torch.log1p(-p), dim=1)
    p0 = torch.exp(logq[:, -1])
    thr = torch.expm1(logq) / torch.expm1(logq[:, -1:])
    last = torch.where(p > 0, torch.arange(p.shape[1]), -1).max(dim=1).values  # last unit that can be on
    thr = torch.where(torch.arange(p.shape[1]) >= last[:, None], torch.ones_like(thr), thr)
    thr = torch.where((p0 < 1)[:, None], thr, torch.full_like(thr, float("nan")))
    prev = torch.cat([torch.zeros_like(thr[:, :1]), thr[:, :-1]], dim=1)
    unit = torch.tensor(sets.unit_index())
    return p0, prev[:, unit], thr[:, unit]


def sample_nonempty(u: torch.Tensor, v: torch.Tensor, density: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                    sets: FeatureSets, signed: bool = False, inv_density: torch.Tensor | None = None) -> torch.Tensor:
    """Feature vectors ``[N, B, n]`` conditioned on at least one active unit, exactly.

    ``u [N, B, n]`` as for :func:`sample`; ``v [N, B, 1]`` one more uniform per example chooses the
    first active unit F (``lo``, ``hi`` ``[N, 1, n]`` from :func:`nonempty_tables`). Units before F are
    inactive, F is active (its value is its own ``u``, uniform), and later units are drawn as usual:
    this is :func:`sample` with the density of every unit before F set to 0 and of F to 1. Only
    element-wise operations, so the compiled step fuses them with the draw; with all-independent
    sets any layout whose shapes broadcast works (the trainer's instance-last one). An instance whose
    ``lo = hi >= 1`` is left unconditioned: it gets exactly the draws of :func:`sample`.
    """
    vv = v
    at = (vv >= lo) & (vv < hi)
    zero = torch.zeros((), dtype=u.dtype, device=u.device)
    inv = torch.reciprocal(density) if inv_density is None else inv_density
    if sets.all_independent:
        # written out rather than through sample(): the compiler fuses this ~10x better (measured)
        on = at | ((u < density) & (vv < lo))
        value = torch.where(at, u, u * inv)
        if signed:
            value = 2.0 * value - 1.0
        return torch.where(on, value, zero)
    before = vv >= hi
    one = torch.ones((), dtype=u.dtype, device=u.device)
    dens_eff = torch.where(before, zero, torch.where(at, one, density))
    inv_eff = torch.where(before, zero, torch.where(at, one, inv))
    return sample(u, dens_eff, sets, signed, inv_eff)


def draw_nonempty(
    keys: torch.Tensor,
    counter: int | torch.Tensor,
    batch: int,
    density: torch.Tensor,
    sets: FeatureSets,
    signed: bool = False,
) -> torch.Tensor:
    """A batch ``[N, batch, n]`` conditioned on a non-empty input, from the same stream as :func:`draw`
    (the same ``u``; the unit choice uses the stream's elements after the batch)."""
    n = sets.n_features
    p0, lo, hi = nonempty_tables(density, sets)
    if bool((p0 >= 1).any()):
        raise ValueError("density: every feature (set) has density 0 in some instance; a non-empty input is impossible")
    s = rng.stream_keys(keys, int(counter))
    u = rng.uniform_from_stream(s, (batch, n))
    v = rng.uniform_from_stream(s, (batch,), offset=batch * n)
    dens = density.view(density.shape[0], 1, -1).to(torch.float32)
    return sample_nonempty(u, v.unsqueeze(-1), dens, lo.float()[:, None, :], hi.float()[:, None, :], sets, signed)
