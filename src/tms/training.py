"""The vectorised trainer: every instance of an experiment trains as one fused tensor program.

One training step (drawing the batch from the counter-based generator, the forward pass, a
hand-derived backward pass and the optimiser update) is a single function compiled with
``torch.compile``; the loop around it makes no host-device synchronisation except a NaN/inf check
every ``check_every`` steps. Instances never interact: the loss is a sum of per-instance losses,
each instance has its own random stream, so results do not depend on which instances share a
chunk, and chunking bounds memory at any scale.

For models with very few features and hidden dimensions (the phase diagrams: n=2, m=1 or n=3, m=2)
batched matrix products waste almost all their work, so a second formulation puts the instance
axis last and unrolls the products into broadcast multiply-adds; both compute the same function
and are tested against the autograd reference in :mod:`tms.models`.

Sparse inputs waste most of a batch on all-zero examples. With ``condition_nonempty`` the step draws
only non-empty examples (:func:`tms.data.sample_nonempty`, exact) and adds the all-zero input's loss
analytically: ``E[L] = P0 L(0) + (1 - P0) E[L | non-empty]``, where ``L(0) = mean_i I_i f(b_i)^2``
(``f`` = ReLU, or identity for the linear model) is known in closed form. Expected loss and gradient
are unchanged; their variance drops by about ``1 - P0``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from tms import data as data_mod
from tms import models, optim, rng
from tms.data import FeatureSets
from tms.models import ModelKind

log = logging.getLogger("tms.training")


class TrainingDiverged(RuntimeError):
    """Raised when a loss becomes NaN or infinite; the message names the experiment and instance."""


@dataclass(frozen=True)
class TrainSpec:
    """How to train (shared by every instance of an experiment)."""

    steps: int = 10_000
    batch_size: int = 1024
    optimizer: optim.OptimizerSpec = field(default_factory=optim.OptimizerSpec)
    init_std: float | None = None
    eval_batch: int = 16_384
    snapshots: int = 0
    loss_points: int = 100
    chunk_size: int | None = None
    max_chunk_mb: int = 512
    device: str = "auto"
    compile: bool | str = "auto"  # True, False, or "auto": compile unless eager is cheaper overall
    layout: str = "auto"  # "auto", "instance-first" (batched matmuls) or "instance-last" (unrolled)
    check_every: int = 1000
    # "off", "on" (every instance) or "auto" (instances with P0 > AUTO_CONDITION_P0); see the module docstring
    condition_nonempty: bool | str = "off"
    # "off" (every instance draws its own batches), "on" (the restarts of a cell share the cell's batches) or
    # "auto" (shared where it is measured to be faster: use_shared_batches); see "Shared batches" below
    shared_batches: bool | str = "off"
    # "fp32", or "bf16": matrix products take bf16 inputs (fp32 weights, accumulation and outputs)
    matmul_precision: str = "fp32"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.layout not in ("auto", "instance-first", "instance-last"):
            raise ValueError(f"layout must be auto, instance-first or instance-last, got {self.layout!r}")
        cond = self.condition_nonempty
        if isinstance(cond, bool):  # YAML reads a bare on/off as a boolean
            object.__setattr__(self, "condition_nonempty", "on" if cond else "off")
        elif cond not in ("off", "on", "auto"):
            raise ValueError(f"train.condition_nonempty must be off, on or auto, got {cond!r}")
        shared = self.shared_batches
        if isinstance(shared, bool):
            object.__setattr__(self, "shared_batches", "on" if shared else "off")
        elif shared not in ("off", "on", "auto"):
            raise ValueError(f"train.shared_batches must be off, on or auto, got {shared!r}")
        if self.matmul_precision not in ("fp32", "bf16"):
            raise ValueError(f"train.matmul_precision must be fp32 or bf16, got {self.matmul_precision!r}")


@dataclass
class Problem:
    """What to train: N independent instances of one model kind and size."""

    kind: ModelKind
    n: int
    m: int
    keys: torch.Tensor  # [N] int64
    density: torch.Tensor  # [N, n] probability that a feature (set) is non-zero, 1 - S
    importance: torch.Tensor  # [N, n]
    sets: FeatureSets | None = None
    l1: torch.Tensor | float = 0.0  # [N] L1 penalty on hidden activations, per instance
    eval_keys: torch.Tensor | None = None  # [N] keys of the evaluation stream (default: keys)
    # [N] keys of the training stream a cell's restarts share under train.shared_batches (default: eval_keys;
    # training uses counters 0..steps-1 and evaluation EVAL_COUNTER.., so the two streams never meet)
    batch_keys: torch.Tensor | None = None
    name: str = "experiment"
    describe: Callable[[int], str] | None = None  # instance index -> words, for error messages

    def __post_init__(self) -> None:
        self.kind = ModelKind(self.kind)
        if self.n < 1:
            raise ValueError(f"n_features must be >= 1, got {self.n}")
        if self.m < 1:
            raise ValueError(f"n_hidden must be >= 1, got {self.m}")
        if self.m > self.n and self.kind is not ModelKind.COMPUTATION:
            raise ValueError(f"n_hidden (m={self.m}) must not exceed n_features (n={self.n})")
        if self.sets is None:
            self.sets = FeatureSets.independent(self.n)
        if self.sets.n_features != self.n:
            raise ValueError(f"feature sets cover {self.sets.n_features} features, n_features is {self.n}")
        N = self.keys.shape[0]
        if N < 1:
            raise ValueError("a problem needs at least one instance")
        self.density = _per_feature(self.density, N, self.n, "density")
        self.importance = _per_feature(self.importance, N, self.n, "importance")
        if ((self.density < 0) | (self.density > 1)).any():
            raise ValueError("density (1 - sparsity) must lie in [0, 1]")
        if (self.importance < 0).any():
            raise ValueError("importance must be >= 0")
        l1 = torch.as_tensor(self.l1, dtype=torch.float32).reshape(-1)
        if l1.numel() not in (1, N):
            raise ValueError(f"l1 has {l1.numel()} values for {N} instances")
        if not torch.isfinite(l1).all() or (l1 < 0).any():
            raise ValueError("l1 must be finite and >= 0")
        self.l1 = l1.expand(N).contiguous().clone()
        if self.eval_keys is None:
            self.eval_keys = self.keys
        elif self.eval_keys.shape != self.keys.shape:
            raise ValueError(f"eval_keys has shape {tuple(self.eval_keys.shape)}, keys {tuple(self.keys.shape)}")
        if self.batch_keys is None:
            self.batch_keys = self.eval_keys
        elif self.batch_keys.shape != self.keys.shape:
            raise ValueError(f"batch_keys has shape {tuple(self.batch_keys.shape)}, keys {tuple(self.keys.shape)}")

    @property
    def n_instances(self) -> int:
        return int(self.keys.shape[0])

    def label(self, i: int) -> str:
        return self.describe(i) if self.describe else f"instance {i}"


def _per_feature(v: torch.Tensor | float, N: int, n: int, what: str) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32)
    if t.numel() == 0:
        raise ValueError(f"{what} is empty")
    if t.dim() <= 1 and t.numel() in (1, N) and not (t.numel() == n and N != n):
        t = t.reshape(-1, 1) if t.numel() == N else t.reshape(1, 1)
    try:
        t = t.expand(N, n) if t.dim() == 2 else t.reshape(1, n).expand(N, n)
    except RuntimeError as err:
        raise ValueError(f"{what} of shape {tuple(t.shape)} does not fit {N} instances x {n} features") from err
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return t.contiguous().clone()


@dataclass
class TrainResult:
    """Everything a training run produced, as numpy arrays on the host."""

    params: dict[str, np.ndarray]  # final parameters, [N, ...]
    final_loss: np.ndarray  # [N] on a fresh evaluation batch of spec.eval_batch examples
    loss_steps: np.ndarray  # [K] steps at which per-instance training losses were recorded
    loss_history: np.ndarray  # [K, N]
    mean_loss: np.ndarray  # [steps] training loss averaged over instances, every step
    snapshot_steps: np.ndarray  # [S] (0 = initialisation, steps = end)
    snapshots: dict[str, np.ndarray]  # name -> [S, N, ...]
    device: str
    wall_time: float
    compile_time: float
    layout: str
    compiled: bool = True
    shared_batches: bool = False  # whether the restarts of each cell shared its batches
    matmul_precision: str = "fp32"

    @property
    def model_steps_per_second(self) -> float:
        steps = len(self.mean_loss)
        return self.final_loss.shape[0] * steps / max(self.wall_time - self.compile_time, 1e-9)


# --------------------------------------------------------------------------------------------
# Schedules and devices


def log_steps(steps: int, k: int, include_end: bool = False) -> np.ndarray:
    """About ``k`` distinct, log-spaced step indices in [0, steps) (or [0, steps] with the end)."""
    top = steps if include_end else steps - 1
    if k <= 0 or top < 0:
        return np.zeros(0, dtype=np.int64)
    pts = np.unique(np.round(np.geomspace(1, top + 1, num=max(k, 2))).astype(np.int64) - 1)
    pts = np.unique(np.concatenate([[0], pts, [top]]))
    return pts[(pts >= 0) & (pts <= top)]


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA if it is present and usable, else CPU. ``cuda`` without a usable GPU falls
    back to CPU with a warning rather than failing the job (a SLURM job may land on such a node)."""
    if requested not in ("auto", "cpu", "cuda") and not requested.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        try:
            dev = torch.device("cuda" if requested == "auto" else requested)
            torch.ones(1, device=dev).add_(1).item()
            return dev
        except Exception as err:  # a broken driver or a busy/disabled device
            log.warning("CUDA is present but not usable (%s); training on CPU", err)
            return torch.device("cpu")
    if requested != "auto":
        log.warning("device %r requested but CUDA is not available; training on CPU", requested)
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Loss and hand-derived gradients, instance axis first (batched matrix products)


def loss_and_grads(
    kind: ModelKind, params: list[torch.Tensor], x: torch.Tensor, imp: torch.Tensor,
    l1: torch.Tensor | None = None, bf16_cast: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-instance loss ``[N]`` and gradients of its sum, for ``x [N, B, n]``, ``imp [N, 1, n]``
    and an optional per-instance L1 coefficient ``l1 [N]`` on the hidden activations.

    The backward pass is written out by hand (it is short for these models) so the compiler sees
    one plain tensor program with no autograd machinery. ``bf16_cast``: the products take bf16
    inputs and return float32 (see :func:`_bmm`).
    """
    if bf16_cast:
        def bmm(a, b):
            return _bmm(a, b, True)
    else:
        bmm = torch.bmm
    B, n = x.shape[1], x.shape[2]
    c = 2.0 / (B * n)
    if kind is ModelKind.COMPUTATION:
        W1, W2, b = params
        a = bmm(x, W1.transpose(1, 2))
        h = torch.relu(a)
        z = bmm(h, W2.transpose(1, 2)) + b[:, None, :]
        y = torch.relu(z)
        r = y - x.abs()
        loss = (imp * r * r).mean(dim=(1, 2))
        e = torch.where(z > 0, (c * imp) * r, 0.0)
        gh = bmm(e, W2)
        if l1 is not None:
            loss = loss + l1 * h.sum(-1).mean(-1)
            gh = gh + (l1 / B)[:, None, None] * (h > 0).to(h.dtype)
        ga = torch.where(a > 0, gh, 0.0)
        return loss, [bmm(ga.transpose(1, 2), x), bmm(e.transpose(1, 2), h), e.sum(1)]
    W, b = params
    a = bmm(x, W.transpose(1, 2))
    h = torch.relu(a) if kind is ModelKind.RELU_HIDDEN else a
    z = bmm(h, W) + b[:, None, :]
    y = z if kind is ModelKind.LINEAR else torch.relu(z)
    r = y - x
    loss = (imp * r * r).mean(dim=(1, 2))
    e = (c * imp) * r
    if kind is not ModelKind.LINEAR:
        e = torch.where(z > 0, e, 0.0)
    gh = bmm(e, W.transpose(1, 2))
    if l1 is not None:
        loss = loss + l1 * h.abs().sum(-1).mean(-1)
        gh = gh + (l1 / B)[:, None, None] * torch.sign(h)
    if kind is ModelKind.RELU_HIDDEN:
        gh = torch.where(a > 0, gh, 0.0)
    gW = bmm(h.transpose(1, 2), e) + bmm(gh.transpose(1, 2), x)
    return loss, [gW, e.sum(1)]


# --------------------------------------------------------------------------------------------
# The same, instance axis last with unrolled products (tiny n and m, many instances)


def loss_and_grads_tiny(
    kind: ModelKind, params: list[torch.Tensor], x: torch.Tensor, imp: torch.Tensor,
    l1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """As :func:`loss_and_grads` for instance-last tensors: ``x [B, n, N]``, ``imp [n, N]``, ``l1 [N]``,
    W ``[m, n, N]`` (W1 ``[m, n, N]``, W2 ``[n, m, N]``), b ``[n, N]``."""
    B, n = x.shape[0], x.shape[1]
    c = 2.0 / (B * n)
    xs = [x[:, i] for i in range(n)]  # each [B, N]
    if kind is ModelKind.COMPUTATION:
        W1, W2, b = params
        m = W1.shape[0]
        a = [sum(xs[i] * W1[j, i] for i in range(n)) for j in range(m)]
        h = [torch.relu(aj) for aj in a]
        loss = 0.0
        gW2_rows, gb, gh = [], [], [0.0] * m
        for i in range(n):
            z = sum(h[j] * W2[i, j] for j in range(m)) + b[i]
            r = torch.relu(z) - xs[i].abs()
            loss = loss + (imp[i] * r * r).sum(0)
            e = torch.where(z > 0, (c * imp[i]) * r, 0.0)
            gb.append(e.sum(0))
            gW2_rows.append(torch.stack([(e * h[j]).sum(0) for j in range(m)]))
            gh = [gh[j] + e * W2[i, j] for j in range(m)]
        loss = loss / (B * n)
        if l1 is not None:
            loss = loss + l1 * sum(hj.sum(0) for hj in h) / B
            gh = [gh[j] + (l1 / B) * (h[j] > 0).to(x.dtype) for j in range(m)]
        ga = [torch.where(a[j] > 0, gh[j], 0.0) for j in range(m)]
        gW1 = torch.stack([torch.stack([(ga[j] * xs[i]).sum(0) for i in range(n)]) for j in range(m)])
        return loss, [gW1, torch.stack(gW2_rows), torch.stack(gb)]
    W, b = params
    m = W.shape[0]
    a = [sum(xs[i] * W[j, i] for i in range(n)) for j in range(m)]
    h = [torch.relu(aj) for aj in a] if kind is ModelKind.RELU_HIDDEN else a
    loss = 0.0
    es, gb = [], []
    for i in range(n):
        z = sum(h[j] * W[j, i] for j in range(m)) + b[i]
        y = z if kind is ModelKind.LINEAR else torch.relu(z)
        r = y - xs[i]
        loss = loss + (imp[i] * r * r).sum(0)
        e = (c * imp[i]) * r
        if kind is not ModelKind.LINEAR:
            e = torch.where(z > 0, e, 0.0)
        es.append(e)
        gb.append(e.sum(0))
    loss = loss / (B * n)
    gh = [sum(es[i] * W[j, i] for i in range(n)) for j in range(m)]
    if l1 is not None:
        loss = loss + l1 * sum(hj.abs().sum(0) for hj in h) / B
        gh = [gh[j] + (l1 / B) * torch.sign(h[j]) for j in range(m)]
    if kind is ModelKind.RELU_HIDDEN:
        gh = [torch.where(a[j] > 0, gh[j], 0.0) for j in range(m)]
    gW = torch.stack(
        [torch.stack([(h[j] * es[i] + gh[j] * xs[i]).sum(0) for i in range(n)]) for j in range(m)]
    )
    return loss, [gW, torch.stack(gb)]


def use_tiny_layout(kind: ModelKind, n: int, m: int, n_instances: int) -> bool:
    """Instance-last unrolled products pay off when the matrices are a handful of numbers."""
    return n * m <= 16 and n <= 8 and n_instances >= 256


# --------------------------------------------------------------------------------------------
# Conditioning on non-empty inputs

#: ``condition_nonempty: auto`` conditions the instances whose all-zero probability P0 exceeds this.
#: The conditioned estimate's variance is about (1 - P0) times the plain one's (as if the batch were
#: 1 / (1 - P0) times larger); the compiled step costs 0.7x (instance-last layout, n = 2, 3) to 1.25x
#: (instance-first, n = 5, 6) the plain one (measured on CPU). Below P0 = 0.5 the gain is under the
#: 2x batch equivalent and the plain sampler, which every existing result uses, is kept.
AUTO_CONDITION_P0 = 0.5


def empty_input_loss(kind: ModelKind, b: torch.Tensor, imp: torch.Tensor,
                     tiny: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of the all-zero input, ``mean_i I_i f(b_i)^2`` (f = ReLU, or the identity for the linear
    model: every model's hidden layer is 0 there and the target is 0), and its gradient in b.

    Instance-first: ``b [N, n]``, ``imp [N, 1, n]``; instance-last (``tiny``): ``b [n, N]``, ``imp [n, N]``.
    """
    fb = b if kind is ModelKind.LINEAR else torch.relu(b)
    if tiny:
        n = b.shape[0]
        return (imp * fb * fb).sum(0) / n, (2.0 / n) * imp * fb
    n = b.shape[-1]
    imp2 = imp[:, 0, :]
    return (imp2 * fb * fb).mean(-1), (2.0 / n) * imp2 * fb


def _add_empty_input(kind: ModelKind, loss: torch.Tensor, grads: list[torch.Tensor], b: torch.Tensor,
                     imp: torch.Tensor, p0: torch.Tensor, w: torch.Tensor, tiny: bool
                     ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``P0 L(0) + (1 - P0) L_batch`` and its gradient, from a batch drawn conditioned on non-empty
    inputs (``w = 1 - P0``; for an unconditioned instance ``P0 = 0, w = 1`` leaves it unchanged)."""
    l0, g0 = empty_input_loss(kind, b, imp, tiny)
    if tiny:  # instance axis last
        grads = [g * w for g in grads]
        grads[-1] = grads[-1] + p0 * g0
    else:
        grads = [g * w.view(-1, *([1] * (g.dim() - 1))) for g in grads]
        grads[-1] = grads[-1] + p0[:, None] * g0
    return w * loss + p0 * l0, grads


def condition_tables(problem: "Problem", mode: str
                     ) -> tuple[bool, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(any, mask [N], lo [N, n], hi [N, n], p0 [N], w [N])`` for ``condition_nonempty = mode``:
    which instances are conditioned, their first-active-unit thresholds (float32; 2 where not
    conditioned, which leaves their draws plain) and ``P0``, ``1 - P0`` (float32; 0 and 1 where not
    conditioned; ``1 - P0`` is formed in float64)."""
    if mode not in ("off", "on", "auto"):
        raise ValueError(f"train.condition_nonempty must be off, on or auto, got {mode!r}")
    N, n = problem.n_instances, problem.n
    if mode == "off":
        two = torch.full((N, n), 2.0)
        return False, torch.zeros(N, dtype=torch.bool), two, two, torch.zeros(N), torch.ones(N)
    p0, lo, hi = data_mod.nonempty_tables(problem.density, problem.sets)
    possible = p0 < 1
    if mode == "on":
        if not bool(possible.all()):
            i = int(torch.nonzero(~possible)[0, 0])
            raise ValueError(
                f"train.condition_nonempty = 'on': {problem.label(i)} of {problem.name} has density 0 for "
                "every feature (set), so a non-empty input is impossible; use 'auto' or 'off'")
        mask = torch.ones(N, dtype=torch.bool)
    else:
        mask = (p0 > AUTO_CONDITION_P0) & possible
    lo = torch.where(mask[:, None], lo, torch.full_like(lo, 2.0))
    hi = torch.where(mask[:, None], hi, torch.full_like(hi, 2.0))
    p0_eff = torch.where(mask, p0, torch.zeros_like(p0))
    return bool(mask.any()), mask, lo.float(), hi.float(), p0_eff.float(), (1.0 - p0_eff).float()


# --------------------------------------------------------------------------------------------
# The compiled step


_STEP_CACHE: dict[tuple, Callable] = {}
STREAM_BLOCK = 256

# Every compiled step shares one code object, so one process that trains many shapes (tests, the
# benchmark, a notebook) recompiles it once per shape; dynamo's default limit of 8 would turn the
# ninth shape into a hard error under fullgraph=True.
for _name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
    if hasattr(torch._dynamo.config, _name):
        setattr(torch._dynamo.config, _name, max(getattr(torch._dynamo.config, _name), 256))


def _draw_instance_last(tiny: bool, sets: FeatureSets) -> bool:
    """Whether the conditioned step draws in the instance-last layout (its tables are then [1, n, N])."""
    return tiny and sets.all_independent


def _build_step(kind: ModelKind, sets: FeatureSets, B: int, n: int, tiny: bool, use_l1: bool,
                spec: TrainSpec, compile_: bool, condition: bool = False, bf16_cast: bool = False) -> Callable:
    key = (kind, sets, B, n, tiny, use_l1, spec.optimizer, spec.steps, compile_, condition, bf16_cast)
    if key in _STEP_CACHE:
        return _STEP_CACHE[key]
    signed = kind.signed_inputs
    opt = spec.optimizer
    steps = spec.steps

    def step(params, state, t, sblock, density, inv_density, importance, l1, weights, mean_buf, cond=None):
        # stream keys come precomputed in blocks of STREAM_BLOCK steps: computing them here would
        # repeat their hashing for every element of the batch
        s = sblock.index_select(0, torch.remainder(t, STREAM_BLOCK).view(1)).view(-1)
        u = rng.uniform_from_stream(s, (B, n))
        if condition:
            lo, hi, p0, w, dens_c, inv_c = cond
            # the unit choice takes the stream's elements after the batch, so u (and an
            # unconditioned instance's whole batch) is what the plain step draws
            v = rng.uniform_from_stream(s, (B,), offset=B * n)
            if _draw_instance_last(tiny, sets):
                # element-wise, so these are the same numbers drawn directly in the [B, n, N] layout
                # (tables [1, n, N]): written [N, B, n] and permuted, the compiler vectorises over n
                # instead of N and the step costs ~3x the plain one for n = 2
                x = data_mod.sample_nonempty(u.permute(1, 2, 0), v.t().unsqueeze(1), dens_c, lo, hi,
                                             sets, signed, inv_c).permute(2, 0, 1)
            else:
                x = data_mod.sample_nonempty(u, v.unsqueeze(-1), density, lo, hi, sets, signed, inv_density)
        else:
            x = data_mod.sample(u, density, sets, signed, inv_density)
        if tiny:
            # same draws as the instance-first layout, moved to [B, n, N]: both see the same data
            loss, grads = loss_and_grads_tiny(kind, params, x.permute(1, 2, 0), importance,
                                              l1 if use_l1 else None)
        else:
            loss, grads = loss_and_grads(kind, params, x, importance, l1 if use_l1 else None, bf16_cast)
        if condition:
            loss, grads = _add_empty_input(kind, loss, grads, params[-1], importance, p0, w, tiny)
        mean_buf.index_add_(0, t.view(1), (loss * weights).sum().view(1).to(mean_buf.dtype))
        lr = opt.lr * optim.lr_scale(opt.schedule, t, steps)
        t.add_(1)
        optim.apply(opt, params, grads, state, t, lr)
        return loss

    fn = torch.compile(step, fullgraph=True, dynamic=False) if compile_ else step
    _STEP_CACHE[key] = fn
    return fn


# --------------------------------------------------------------------------------------------
# Shared batches: the restarts of a cell train on the cell's batches
#
# With ``shared_batches`` every restart of a cell (the instances with one ``batch_key``) trains on the
# same examples at each step: the cell's stream, a hash of (batch key, step, element). Each restart keeps
# its own initialisation and is otherwise an independent model, so a cell trains exactly as it would
# alone; what changes against ``off`` is which random examples a restart sees (common random numbers
# across restarts, as restart selection already uses for evaluation). Drawing one batch per cell instead
# of one per restart removes most of the random-number work, and the products with the shared batch
# become one GEMM per cell over all its restarts ([m*R, n] x [n, B]). Tensors put the restart axis
# before the batch axis, which is last: W [G, m, R, n] (W1 [G, m, R, n], W2 [G, n, R, m]), b and
# importance [G, n, R], x [G, n, B], activations [G, m, R, B], for G cells of R restarts.

#: Above this n*m the per-restart products run as batched matmuls over (cell, restart) instead of
#: unrolled multiply-adds (whose compiled kernel grows, and compiles slower, with n*m).
SHARED_UNROLL_MAX = 64


def _bmm(a: torch.Tensor, b: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """``torch.bmm``, or with ``bf16`` inputs and a float32 result where no global switch does it (CUDA,
    and CPUs on which oneDNN's float32-precision switch leaves products in float32: see
    :func:`cpu_bf16_switch_works`)."""
    if bf16:
        return torch.bmm(a.to(torch.bfloat16), b.to(torch.bfloat16)).to(torch.float32)
    return torch.bmm(a, b)


def loss_and_grads_shared(
    kind: ModelKind, params: list[torch.Tensor], x: torch.Tensor, imp: torch.Tensor,
    l1: torch.Tensor | None = None, unrolled: bool = True, bf16_cast: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-instance loss ``[G, R]`` and gradients of its sum for G cells of R restarts that share each
    cell's batch ``x [G, n, B]``; ``imp [G, n, R]``, ``l1 [G, R]``, parameters in the shared layout
    (see the section comment). The same function as :func:`loss_and_grads` applied to every restart
    with its cell's batch.

    The two products with the shared batch (the hidden pre-activations and the input term of the
    first-layer gradient) are one GEMM per cell. The per-restart products (output, hidden gradient,
    output-layer gradient) are unrolled into multiply-adds vectorised along the batch (``unrolled``,
    small n*m) or run as matmuls batched over (cell, restart).
    """
    G, n, B = x.shape
    c = 2.0 / (B * n)
    comp = kind is ModelKind.COMPUTATION
    if comp:
        Wa, Wo, b = params  # W1 [G, m, R, n], W2 [G, n, R, m]
    else:
        Wa, b = params
        Wo = Wa
    m, R = Wa.shape[1], Wa.shape[2]
    a = _bmm(Wa.reshape(G, m * R, n), x, bf16_cast).view(G, m, R, B)
    h = torch.relu(a) if kind in (ModelKind.RELU_HIDDEN, ModelKind.COMPUTATION) else a
    tgt = x.abs() if comp else x

    def w_out(i: int, j: int) -> torch.Tensor:  # the weight from hidden j to output i, [G, R, 1]
        return (Wo[:, i, :, j] if comp else Wo[:, j, :, i]).unsqueeze(-1)

    if unrolled:
        hs = [h[:, j] for j in range(m)]  # [G, R, B]
        loss = 0.0
        es, gbs = [], []
        for i in range(n):
            z = sum(hs[j] * w_out(i, j) for j in range(m)) + b[:, i, :, None]
            y = z if kind is ModelKind.LINEAR else torch.relu(z)
            r = y - tgt[:, i, None, :]
            loss = loss + (imp[:, i, :, None] * r * r).sum(-1)
            e = (c * imp[:, i, :, None]) * r
            if kind is not ModelKind.LINEAR:
                e = torch.where(z > 0, e, 0.0)
            es.append(e)
            gbs.append(e.sum(-1))
        loss = loss / (B * n)
        gh = torch.stack([sum(es[i] * w_out(i, j) for i in range(n)) for j in range(m)], 1)
        if comp:  # dL/dW2[i, j] = sum_b e_i h_j, [G, n, R, m]
            g_out = torch.stack([torch.stack([(es[i] * hs[j]).sum(-1) for j in range(m)], -1) for i in range(n)], 1)
        else:  # dL/dW[j, i] through the output, [G, m, R, n]
            g_out = torch.stack([torch.stack([(hs[j] * es[i]).sum(-1) for i in range(n)], -1) for j in range(m)], 1)
        gb = torch.stack(gbs, 1)
    else:
        if comp:
            z = torch.einsum("gjrb,girj->girb", h, Wo)
        else:
            z = torch.einsum("gjrb,gjri->girb", h, Wo)
        z = z + b[..., None]
        y = z if kind is ModelKind.LINEAR else torch.relu(z)
        r = y - tgt[:, :, None, :]
        loss = (imp[..., None] * r * r).sum((1, 3)) / (B * n)
        e = (c * imp[..., None]) * r
        if kind is not ModelKind.LINEAR:
            e = torch.where(z > 0, e, 0.0)
        if comp:
            gh = torch.einsum("girb,girj->gjrb", e, Wo)
            g_out = torch.einsum("girb,gjrb->girj", e, h)
        else:
            gh = torch.einsum("girb,gjri->gjrb", e, Wo)
            g_out = torch.einsum("gjrb,girb->gjri", h, e)
        gb = e.sum(-1)
    if l1 is not None:
        lb = (l1 / B)[:, None, :, None]
        if comp:  # h >= 0
            loss = loss + l1 * h.sum((1, 3)) / B
            gh = gh + lb * (h > 0).to(h.dtype)
        else:
            loss = loss + l1 * h.abs().sum((1, 3)) / B
            gh = gh + lb * torch.sign(h)
    if kind in (ModelKind.RELU_HIDDEN, ModelKind.COMPUTATION):
        gh = torch.where(a > 0, gh, 0.0)
    g_in = _bmm(gh.reshape(G, m * R, B), x.transpose(1, 2), bf16_cast).view(G, m, R, n)
    if comp:
        return loss, [g_in, g_out, gb]
    return loss, [g_in + g_out, gb]


def _add_empty_input_shared(kind: ModelKind, loss: torch.Tensor, grads: list[torch.Tensor], b: torch.Tensor,
                            imp: torch.Tensor, p0: torch.Tensor, w: torch.Tensor
                            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`_add_empty_input` in the shared layout (``b``, ``imp`` [G, n, R]; ``p0``, ``w`` [G], per cell)."""
    n = b.shape[1]
    fb = b if kind is ModelKind.LINEAR else torch.relu(b)
    l0 = (imp * fb * fb).sum(1) / n
    g0 = (2.0 / n) * imp * fb
    G = b.shape[0]
    grads = [g * w.view(G, *([1] * (g.dim() - 1))) for g in grads]
    grads[-1] = grads[-1] + p0.view(G, 1, 1) * g0
    return w.view(G, 1) * loss + p0.view(G, 1) * l0, grads


def _build_shared_step(kind: ModelKind, B: int, n: int, K: int, use_l1: bool, spec: TrainSpec, compile_: bool,
                       condition: bool, unrolled: bool, bf16_cast: bool) -> Callable:
    key = ("shared", kind, B, n, K, use_l1, spec.optimizer, spec.steps, compile_, condition, unrolled, bf16_cast)
    if key in _STEP_CACHE:
        return _STEP_CACHE[key]
    opt = spec.optimizer
    steps = spec.steps

    def step(params, state, t, xblock, importance, l1, weights, mean_buf, cond=None):
        # the cells' batches come drawn in blocks of K steps (_draw_shared_block): drawn here, the compiler
        # would fuse the draw into every restart's loop and repeat it R times
        x = xblock.index_select(0, torch.remainder(t, K).view(1))[0]
        loss, grads = loss_and_grads_shared(kind, params, x, importance, l1 if use_l1 else None, unrolled, bf16_cast)
        if condition:
            p0, w = cond
            loss, grads = _add_empty_input_shared(kind, loss, grads, params[-1], importance, p0, w)
        mean_buf.index_add_(0, t.view(1), (loss * weights).sum().view(1).to(mean_buf.dtype))
        lr = opt.lr * optim.lr_scale(opt.schedule, t, steps)
        t.add_(1)
        optim.apply(opt, params, grads, state, t, lr)
        return loss

    fn = torch.compile(step, fullgraph=True, dynamic=False) if compile_ else step
    _STEP_CACHE[key] = fn
    return fn


def _draw_shared_block(gkeys: torch.Tensor, start: int, K: int, B: int, density: torch.Tensor, inv: torch.Tensor,
                       sets: FeatureSets, signed: bool, cond: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The batches of steps ``start .. start+K-1`` of cells ``gkeys [G]``, ``[K, G, n, B]``: the examples
    :func:`tms.data.draw` (or :func:`tms.data.draw_nonempty`, for conditioned cells) gives the cell's
    batch key at those counters. ``density``, ``inv`` [G, 1, n]; ``cond``: (lo, hi) [G, 1, n] or None."""
    n = sets.n_features
    G = gkeys.shape[0]
    s = rng.stream_keys(gkeys, torch.arange(start, start + K, device=gkeys.device)).reshape(-1)  # [K*G]
    u = rng.uniform_from_stream(s, (B, n)).view(K, G, B, n)
    if cond is None:
        x = data_mod.sample(u, density[None], sets, signed, inv[None])
    else:
        lo, hi = cond
        v = rng.uniform_from_stream(s, (B,), offset=B * n).view(K, G, B, 1)
        x = data_mod.sample_nonempty(u, v, density[None], lo[None], hi[None], sets, signed, inv[None])
    return x.transpose(2, 3).contiguous()


# --------------------------------------------------------------------------------------------
# Driver


# Calibration of should_compile (2-core CPU): compiling a step costs ~10 s cold; an eager step costs
# about EAGER_STEP_S of Python/dispatch overhead plus EAGER_ELEMENT_S per batch element, and the
# compiled step is several times cheaper per element.
COMPILE_COST_S = 10.0
EAGER_STEP_S = 1.5e-3
EAGER_ELEMENT_S = 2.0e-8


def should_compile(spec: TrainSpec, n_instances: int, n: int, m: int, device: torch.device) -> bool:
    """Whether compiling the step pays for itself (``spec.compile == "auto"``)."""
    if spec.compile != "auto":
        return bool(spec.compile)
    if device.type == "cuda":
        return True
    elements = n_instances * spec.batch_size * (n + m)
    eager = spec.steps * (EAGER_STEP_S + elements * EAGER_ELEMENT_S)
    return eager > 2 * COMPILE_COST_S


def _chunks(N: int, chunk: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(N / chunk))
    size = math.ceil(N / count)
    return [(s, min(N, s + size)) for s in range(0, N, size)]


def auto_chunk_size(problem: Problem, spec: TrainSpec) -> int:
    """Instances per chunk so the step's working set stays under ``spec.max_chunk_mb``."""
    if spec.chunk_size:
        return int(spec.chunk_size)
    n, m, B = problem.n, problem.m, spec.batch_size
    per_instance = 4 * (B * (10 * n + 8 * m) + 12 * n * m + 8 * n)
    if spec.condition_nonempty != "off":  # per-example densities and the unit choice
        per_instance += 4 * B * (6 * n + 2)
    return max(1, int(spec.max_chunk_mb * 2**20 // per_instance))


class _Progress:
    """A tqdm bar on a terminal; plain log lines (every ~10%) in a job log."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.done, self.desc = total, 0, desc
        self.next_log = total // 10
        self.bar = None
        self.t0 = time.perf_counter()
        if sys.stderr.isatty() and os.environ.get("TMS_NO_PROGRESS") is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", mininterval=0.5, leave=False)

    def update(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.done >= self.next_log and self.total >= 10:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            log.info("%s: %d/%d steps (%.0f steps/s)", self.desc, self.done, self.total, rate)
            self.next_log += max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_EVAL_CACHE: dict[tuple, Callable] = {}


def _eval_step(kind: ModelKind, sets: FeatureSets, b: int, n: int, tiny: bool, use_l1: bool) -> Callable:
    """The compiled loss of one evaluation batch: drawing, forward pass and loss fused (the
    gradient half of the shared loss function is dead code here and compiled away)."""
    key = (kind, sets, b, n, tiny, use_l1)
    if key not in _EVAL_CACHE:
        signed = kind.signed_inputs

        def loss_fn(params, s, dens, inv_dens, imp, l1):
            x = data_mod.sample(rng.uniform_from_stream(s, (b, n)), dens, sets, signed, inv_dens)
            if tiny:
                return loss_and_grads_tiny(kind, params, x.permute(1, 2, 0), imp, l1 if use_l1 else None)[0]
            return loss_and_grads(kind, params, x, imp, l1 if use_l1 else None)[0]

        _EVAL_CACHE[key] = torch.compile(loss_fn, fullgraph=True, dynamic=False)
    return _EVAL_CACHE[key]


def should_compile_eval(n_instances: int, examples: int, batch: int, n: int, m: int, device: torch.device,
                        requested: bool | str = "auto") -> bool:
    """Whether compiling the evaluation pays for itself (the eager draw costs most of it)."""
    if requested != "auto":
        return bool(requested)
    if device.type == "cuda":
        return True
    batches = math.ceil(examples / batch)
    eager = batches * (EAGER_STEP_S + n_instances * batch * (n + m) * EAGER_ELEMENT_S)
    return eager > 2 * COMPILE_COST_S


def evaluate(problem: Problem, params: dict[str, torch.Tensor], examples: int, batch: int = 1024,
             device: torch.device | None = None, compile_: bool | str = "auto") -> np.ndarray:
    """Loss of every instance on ``examples`` fresh examples (a stream no training step uses).

    Instances that share an evaluation key (the restarts of one cell) are scored on the same
    examples, so selecting the lowest loss compares models, not samples. It always draws plain
    (unconditioned) examples, whatever ``condition_nonempty`` training used, so its numbers are the
    unconditional loss and stay comparable between runs. Large evaluations (the
    phase diagrams' 100,000 models) run as one compiled kernel per batch; the draws are the same.
    """
    device = device or params[next(iter(params))].device
    keys = problem.eval_keys.to(device)
    dens = problem.density.to(device)
    imp = problem.importance.to(device)[:, None, :]
    N, n, m, kind = problem.n_instances, problem.n, problem.m, problem.kind
    total = torch.zeros(N, dtype=torch.float64, device=device)
    compiled = should_compile_eval(N, examples, batch, n, m, device, compile_)
    if compiled:
        tiny = use_tiny_layout(kind, n, m, N)
        use_l1 = bool((problem.l1 > 0).any())
        if tiny:
            plist = [params[k].permute(*range(1, params[k].dim()), 0).contiguous() for k in kind.param_names]
            imp_arg = imp[:, 0, :].t().contiguous()
        else:
            plist = [params[k].contiguous() for k in kind.param_names]
            imp_arg = imp.contiguous()
        dens3 = dens.view(N, 1, -1).contiguous()
        inv3 = torch.reciprocal(dens3)
        l1 = problem.l1.to(device)
    done, j = 0, 0
    with torch.no_grad():
        while done < examples:
            b = min(batch, examples - done)
            if compiled:
                s = rng.stream_keys(keys, rng.EVAL_COUNTER + j)
                loss = _eval_step(kind, problem.sets, b, n, tiny, use_l1)(plist, s, dens3, inv3, imp_arg, l1)
            else:
                x = data_mod.draw(keys, rng.EVAL_COUNTER + j, b, dens, problem.sets, kind.signed_inputs)
                loss = _loss_with_l1(problem, params, x, imp)
            total += loss.double() * b
            done += b
            j += 1
    return (total / examples).cpu().numpy()


def _loss_with_l1(problem: Problem, params: dict[str, torch.Tensor], x: torch.Tensor,
                  imp: torch.Tensor) -> torch.Tensor:
    loss = models.loss_per_instance(problem.kind, params, x, imp)
    if (problem.l1 > 0).any():
        _, h = models.forward(problem.kind, params, x)
        loss = loss + problem.l1.to(x.device) * h.abs().sum(-1).mean(-1)
    return loss


def train(problem: Problem, spec: TrainSpec) -> TrainResult:
    """Train every instance of ``problem`` and evaluate it on a fresh batch."""
    device = resolve_device(spec.device)
    N, n, m, B = problem.n_instances, problem.n, problem.m, spec.batch_size
    kind = problem.kind
    shared, why = shared_batches_decision(problem, spec, device)
    log.info("%s: %s", problem.name, why)
    if shared:
        return _train_shared(problem, spec, device)
    tiny = use_tiny_layout(kind, n, m, N) if spec.layout == "auto" else spec.layout == "instance-last"
    if spec.matmul_precision != "fp32":
        log.info("%s: matmul_precision %s%s", problem.name, spec.matmul_precision,
                 " has no effect in the instance-last layout (no matrix products)" if tiny else "")
    chunk = auto_chunk_size(problem, spec)
    spans = _chunks(N, chunk)
    # pad every chunk to the same size so one compiled step serves them all
    width = max(e - s for s, e in spans)
    loss_at = log_steps(spec.steps, spec.loss_points)
    snap_at = log_steps(spec.steps, spec.snapshots, include_end=True) if spec.snapshots else np.zeros(0, np.int64)
    loss_slot = {int(s): i for i, s in enumerate(loss_at)}
    snap_slot = {int(s): i for i, s in enumerate(snap_at)}
    names = kind.param_names

    final: dict[str, list[np.ndarray]] = {k: [] for k in names}
    snaps: dict[str, list[np.ndarray]] = {k: [] for k in names}
    history: list[np.ndarray] = []
    mean_loss = torch.zeros(spec.steps, dtype=torch.float64, device=device)
    use_l1 = bool((problem.l1 > 0).any())
    compiled = should_compile(spec, N, n, m, device)
    condition, _, clo, chi, cp0, cw = condition_tables(problem, spec.condition_nonempty)
    step_fn = _build_step(kind, problem.sets, B, n, tiny, use_l1, spec, compiled, condition,
                          _bf16_cast(spec, device))
    progress = _Progress(spec.steps * len(spans), problem.name)
    t_start = time.perf_counter()
    compile_time = 0.0
    precision = contextlib.ExitStack()  # training only: the evaluation below is float32
    try:
        precision.enter_context(matmul_precision(spec.matmul_precision, device))
        for s, e in spans:
            idx = torch.arange(s, e)
            if e - s < width:  # pad with copies of the last instance, dropped afterwards
                idx = torch.cat([idx, idx[-1:].expand(width - (e - s))])
            keys = problem.keys[idx].to(device)
            dens = problem.density[idx].to(device)[:, None, :]
            inv_dens = torch.reciprocal(dens)
            imp = problem.importance[idx].to(device)
            l1 = problem.l1[idx].to(device)
            weights = torch.zeros(width, device=device)
            weights[: e - s] = 1.0 / N
            extra = ()
            if condition:
                if _draw_instance_last(tiny, problem.sets):
                    tabs = [t.t().contiguous()[None] for t in (clo[idx], chi[idx], dens[:, 0, :], inv_dens[:, 0, :])]
                else:
                    tabs = [clo[idx][:, None, :], chi[idx][:, None, :], dens, inv_dens]
                lo_c, hi_c, dens_c, inv_c = (t.to(device) for t in tabs)
                extra = ((lo_c, hi_c, cp0[idx].to(device), cw[idx].to(device), dens_c, inv_c),)
            p0 = models.init_params(kind, n, m, keys, spec.init_std)
            if tiny:
                params = [p0[k].permute(*range(1, p0[k].dim()), 0).contiguous().clone() for k in names]
                imp_arg = imp.t().contiguous()
            else:
                params = [p0[k].contiguous().clone() for k in names]
                imp_arg = imp[:, None, :].contiguous()
            state = optim.init_state(spec.optimizer, params)
            t = torch.zeros((), dtype=torch.int64, device=device)
            sblock = torch.empty(STREAM_BLOCK, width, dtype=torch.int32, device=device)
            hist = torch.zeros(len(loss_at), width, dtype=torch.float32, device=device)
            snap = {k: torch.zeros(len(snap_at), *params[j].shape, device=device) for j, k in enumerate(names)}
            for i in range(spec.steps):
                if i % STREAM_BLOCK == 0:
                    counters = torch.arange(i, i + STREAM_BLOCK, device=device)
                    sblock.copy_(rng.stream_keys(keys, counters))
                if i in snap_slot:
                    for j, k in enumerate(names):
                        snap[k][snap_slot[i]].copy_(params[j])
                if i == 0:
                    t0 = time.perf_counter()
                    loss = step_fn(params, state, t, sblock, dens, inv_dens, imp_arg, l1, weights, mean_loss, *extra)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    compile_time += time.perf_counter() - t0
                else:
                    loss = step_fn(params, state, t, sblock, dens, inv_dens, imp_arg, l1, weights, mean_loss, *extra)
                if i in loss_slot:
                    hist[loss_slot[i]].copy_(loss)
                if (i + 1) % spec.check_every == 0 or i + 1 == spec.steps:
                    _check_finite(loss[: e - s], problem, s, i)
                    progress.update(min(spec.check_every, (i % spec.check_every) + 1))
            if spec.steps in snap_slot:
                for j, k in enumerate(names):
                    snap[k][snap_slot[spec.steps]].copy_(params[j])
            for j, k in enumerate(names):
                p = params[j]
                if tiny:
                    p = p.permute(p.dim() - 1, *range(p.dim() - 1))
                    sn = snap[k].permute(0, snap[k].dim() - 1, *range(1, snap[k].dim() - 1))
                else:
                    sn = snap[k]
                final[k].append(p[: e - s].detach().cpu().numpy().copy())
                snaps[k].append(sn[:, : e - s].detach().cpu().numpy().copy())
            history.append(hist[:, : e - s].cpu().numpy())
    finally:
        precision.close()
        progress.close()
    params_np = {k: np.concatenate(v, axis=0) for k, v in final.items()}
    final_loss = _final_loss(problem, spec, params_np, B, device)
    return TrainResult(
        params=params_np,
        final_loss=final_loss,
        loss_steps=loss_at,
        loss_history=np.concatenate(history, axis=1),
        mean_loss=mean_loss.cpu().numpy(),
        snapshot_steps=snap_at,
        snapshots={k: np.concatenate(v, axis=1) for k, v in snaps.items()},
        device=str(device),
        wall_time=time.perf_counter() - t_start,
        compile_time=compile_time,
        layout="instance-last" if tiny else "instance-first",
        compiled=compiled,
        matmul_precision=spec.matmul_precision,
    )


def _final_loss(problem: Problem, spec: TrainSpec, params: dict[str, np.ndarray], batch: int,
                device: torch.device) -> np.ndarray:
    """Every instance's loss on its evaluation stream after training; a non-finite one is divergence."""
    eval_params = {k: torch.from_numpy(v).to(device) for k, v in params.items()}
    final_loss = evaluate(problem, eval_params, spec.eval_batch, batch=min(batch, 4096), device=device,
                          compile_=spec.compile)
    bad = ~np.isfinite(final_loss)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TrainingDiverged(f"{problem.name}: {problem.label(i)} has a non-finite evaluation loss")
    return final_loss


def _check_finite(loss: torch.Tensor, problem: Problem, offset: int, step: int) -> None:
    finite = torch.isfinite(loss)
    if not bool(finite.all()):
        i = offset + int(torch.nonzero(~finite)[0, 0])
        raise TrainingDiverged(
            f"{problem.name}: training loss of {problem.label(i)} became {float(loss[i - offset])} "
            f"by step {step + 1}; lower the learning rate or check the config"
        )


# --------------------------------------------------------------------------------------------
# Matrix-product precision


@functools.lru_cache(maxsize=None)
def cpu_bf16_switch_works() -> bool:
    """Whether oneDNN's float32-precision switch really gives CPU matrix products bf16 inputs here: tried
    once on a small ``bmm``. On CPUs without native bf16 (no AVX512-BF16 or AMX) torch leaves the
    products in float32 under the switch, so bf16 there must cast (:func:`_bmm`) or it is a silent no-op."""
    mkl = getattr(torch.backends.mkldnn, "matmul", None)
    if getattr(mkl, "fp32_precision", None) is None or not torch.backends.mkldnn.is_available():
        return False
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 16, 64, generator=g), torch.randn(2, 64, 16, generator=g)
    exact = torch.bmm(a, b)
    prev = mkl.fp32_precision
    try:
        mkl.fp32_precision = "bf16"
        rounded = torch.bmm(a, b)
    finally:
        mkl.fp32_precision = prev
    return not torch.equal(rounded, exact)


@contextlib.contextmanager
def matmul_precision(precision: str, device: torch.device):
    """Within the block, ``bf16`` on a CPU whose oneDNN honours it: float32 matrix products take bf16
    inputs (float32 accumulation and result; parameters, optimiser state and everything element-wise
    stay float32). Elsewhere (``fp32``, CUDA, CPUs without native bf16) it leaves torch's settings
    untouched: there the products cast their inputs themselves (:func:`_bf16_cast`)."""
    if not _bf16_switch(precision, device):
        if precision == "bf16" and device.type == "cpu":
            log.warning("this CPU has no native bf16 support: bf16 matrix products are emulated by casting "
                        "(several times slower than float32; bf16 pays on GPUs and CPUs with AVX512-BF16/AMX)")
        yield
        return
    prev = torch.backends.mkldnn.matmul.fp32_precision
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = prev


def _bf16_switch(precision: str, device: torch.device) -> bool:
    """Whether bf16 products come from oneDNN's switch (:func:`matmul_precision`) here."""
    return precision == "bf16" and device.type == "cpu" and cpu_bf16_switch_works()


def _bf16_cast(spec: TrainSpec, device: torch.device) -> bool:
    """Whether the step's products cast to bf16 themselves (no switch that does it here)."""
    return spec.matmul_precision == "bf16" and not _bf16_switch(spec.matmul_precision, device)


# --------------------------------------------------------------------------------------------
# Shared batches: which instances form a cell, when sharing pays, and the driver

# Calibration of use_shared_batches (2-core CPU, one thread, model-steps/s of train() shared against
# per-instance, interleaved; docs/measurements/shared-batches.md): 1000 restarts per cell (the privileged
# basis) 3.3x, 128: 1.9x, 16-32: 1.6-1.8x, 8-10: 0.9-1.1x (n = 5-10, m = 2-5, compiled). The shared step
# compiles ~20 s longer (unrolled products), so the job must be large enough for the gain to pay for it:
# at ~3e8 element-updates/s and a 1.5x gain, 2e10 element-updates save ~20 s.
SHARED_MIN_RESTARTS = 16
SHARED_MIN_WORK = 2e10


def cells_of(problem: Problem) -> list[np.ndarray]:
    """The instances of each cell (equal ``batch_keys``), cells in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(problem.batch_keys.tolist()):
        groups.setdefault(k, []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in groups.values()]


def _cells_share_a_distribution(problem: Problem, cells: list[np.ndarray]) -> str | None:
    """None, or why the instances of some cell cannot share batches (they differ in density)."""
    first = np.empty(problem.n_instances, dtype=np.int64)
    for idx in cells:
        first[idx] = idx[0]
    differ = (problem.density != problem.density[torch.from_numpy(first)]).any(1)
    if bool(differ.any()):
        i = int(torch.nonzero(differ)[0, 0])
        return (f"{problem.label(i)} shares a batch key with {problem.label(int(first[i]))} but not its feature "
                "densities, so they cannot train on the same batches")
    return None


def use_shared_batches(kind: ModelKind, n: int, m: int, n_instances: int, n_cells: int, spec: TrainSpec,
                       device: torch.device, compiled: bool) -> tuple[bool, str]:
    """``shared_batches: auto``: whether sharing each cell's batches among its restarts is faster
    overall, and why (a phrase for the job log). Measured on the 2-core CPU (see the calibration
    above): with many restarts per cell the shared step is several times cheaper (one batch per cell
    instead of one per restart, the batch products as GEMMs); with fewer than ~16 it is not, and the
    longer compile must be repaid by a large enough job."""
    restarts = n_instances / n_cells
    work = float(spec.steps) * n_instances * spec.batch_size * (n + m)
    if not compiled:
        return False, "the step runs eagerly"
    if restarts < SHARED_MIN_RESTARTS:
        return False, f"{restarts:g} restarts per cell (< {SHARED_MIN_RESTARTS})"
    if n * m > SHARED_UNROLL_MAX:
        return False, f"n*m = {n * m} (> {SHARED_UNROLL_MAX}): no measured gain"
    if work < SHARED_MIN_WORK:
        return False, f"{work:.2g} element-updates (< {SHARED_MIN_WORK:.0e}) would not repay the longer compile"
    return True, f"{restarts:g} restarts per cell, {work:.2g} element-updates"


def shared_batches_decision(problem: Problem, spec: TrainSpec, device: torch.device) -> tuple[bool, str]:
    """Whether the restarts of each cell share its batches, and a line for the job log saying why."""
    mode = spec.shared_batches
    if mode == "off":
        return False, "every instance draws its own batches (train.shared_batches = off)"
    cells = cells_of(problem)
    bad = _cells_share_a_distribution(problem, cells)
    if bad is not None:
        if mode == "on":
            raise ValueError(f"train.shared_batches = 'on': {problem.name}: {bad}")
        return False, f"every instance draws its own batches (train.shared_batches = auto: {bad})"
    if mode == "on":
        return True, (f"the restarts of each cell share its batches (train.shared_batches = on; "
                      f"{len(cells)} cells, {problem.n_instances} instances)")
    N, n, m = problem.n_instances, problem.n, problem.m
    compiled = should_compile(spec, N, n, m, device)
    ok, reason = use_shared_batches(problem.kind, n, m, N, len(cells), spec, device, compiled)
    if ok:
        return True, (f"the restarts of each cell share its batches (train.shared_batches = auto: {reason}; "
                      f"{len(cells)} cells, {N} instances)")
    return False, f"every instance draws its own batches (train.shared_batches = auto: {reason})"


#: Memory for a chunk's block of pre-drawn batches (and the draw's temporaries), bytes
SHARED_BLOCK_BYTES = 64 * 2**20


def _shared_units(problem: Problem, spec: TrainSpec) -> tuple[list[np.ndarray], int, int]:
    """Units (restarts of one cell trained together), their padded width R and units per chunk G."""
    n, m, B = problem.n, problem.m, spec.batch_size
    per_instance = 4 * (B * (6 * n + 6 * m) + 12 * n * m + 8 * n)
    cap = int(spec.chunk_size) if spec.chunk_size else max(1, int(spec.max_chunk_mb * 2**20 // per_instance))
    units: list[np.ndarray] = []
    for idx in cells_of(problem):
        q = math.ceil(len(idx) / cap)
        size = math.ceil(len(idx) / q)
        units += [idx[s:s + size] for s in range(0, len(idx), size)]
    R = max(len(u) for u in units)
    return units, R, max(1, cap // R)


def _train_shared(problem: Problem, spec: TrainSpec, device: torch.device) -> TrainResult:
    """:func:`train` with shared batches: chunks of G units of R restarts (padded with copies of a unit's
    last restart, and of the last unit, that carry no weight and are dropped)."""
    N, n, m, B = problem.n_instances, problem.n, problem.m, spec.batch_size
    kind = problem.kind
    names = kind.param_names
    units, R, per_chunk = _shared_units(problem, spec)
    spans = _chunks(len(units), per_chunk)
    G = max(e - s for s, e in spans)
    K = int(max(1, min(STREAM_BLOCK, SHARED_BLOCK_BYTES // (16 * G * n * B))))
    unrolled = n * m <= SHARED_UNROLL_MAX
    loss_at = log_steps(spec.steps, spec.loss_points)
    snap_at = log_steps(spec.steps, spec.snapshots, include_end=True) if spec.snapshots else np.zeros(0, np.int64)
    loss_slot = {int(s): i for i, s in enumerate(loss_at)}
    snap_slot = {int(s): i for i, s in enumerate(snap_at)}
    shapes = models.param_shapes(kind, n, m)
    final = {k: np.zeros((N, *shapes[k]), dtype=np.float32) for k in names}
    snaps = {k: np.zeros((len(snap_at), N, *shapes[k]), dtype=np.float32) for k in names}
    history = np.zeros((len(loss_at), N), dtype=np.float32)
    mean_loss = torch.zeros(spec.steps, dtype=torch.float64, device=device)
    use_l1 = bool((problem.l1 > 0).any())
    compiled = should_compile(spec, N, n, m, device)
    condition, _, clo, chi, cp0, cw = condition_tables(problem, spec.condition_nonempty)
    step_fn = _build_shared_step(kind, B, n, K, use_l1, spec, compiled, condition, unrolled, _bf16_cast(spec, device))
    signed = kind.signed_inputs

    def to_shared(p: torch.Tensor) -> torch.Tensor:  # [G*R, d0, ...] -> [G, d0, R, ...]
        return p.reshape(G, R, *p.shape[1:]).transpose(1, 2)

    progress = _Progress(spec.steps * len(spans), problem.name)
    t_start = time.perf_counter()
    compile_time = 0.0
    precision = contextlib.ExitStack()
    try:
        precision.enter_context(matmul_precision(spec.matmul_precision, device))
        for s, e in spans:
            chunk = list(units[s:e]) + [units[e - 1]] * (G - (e - s))  # padded units weigh 0
            idx = np.stack([np.concatenate([u, np.repeat(u[-1:], R - len(u))]) for u in chunk])  # [G, R]
            real = np.stack([np.arange(R) < len(u) for u in chunk])
            real[e - s:] = False
            flat = torch.from_numpy(idx.reshape(-1))
            lead = torch.from_numpy(idx[:, 0])
            gkeys = problem.batch_keys[lead].to(device)
            dens = problem.density[lead].to(device)[:, None, :]
            inv = torch.reciprocal(dens)
            imp = problem.importance[flat].view(G, R, n).transpose(1, 2).contiguous().to(device)
            l1 = problem.l1[flat].view(G, R).to(device)
            weights = torch.from_numpy(real.astype(np.float32) / N).to(device)
            draw_cond, extra = None, ()
            if condition:
                draw_cond = (clo[lead][:, None, :].to(device), chi[lead][:, None, :].to(device))
                extra = ((cp0[lead].to(device), cw[lead].to(device)),)
            p0 = models.init_params(kind, n, m, problem.keys[flat].to(device), spec.init_std)
            params = [to_shared(p0[k]).contiguous().clone() for k in names]
            state = optim.init_state(spec.optimizer, params)
            t = torch.zeros((), dtype=torch.int64, device=device)
            hist = torch.zeros(len(loss_at), G, R, dtype=torch.float32, device=device)
            snap = {k: torch.zeros(len(snap_at), *params[j].shape, device=device) for j, k in enumerate(names)}
            xblock = None
            for i in range(spec.steps):
                if i % K == 0:
                    xblock = _draw_shared_block(gkeys, i, K, B, dens, inv, problem.sets, signed, draw_cond)
                if i in snap_slot:
                    for j, k in enumerate(names):
                        snap[k][snap_slot[i]].copy_(params[j])
                if i == 0:
                    t0 = time.perf_counter()
                    loss = step_fn(params, state, t, xblock, imp, l1, weights, mean_loss, *extra)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    compile_time += time.perf_counter() - t0
                else:
                    loss = step_fn(params, state, t, xblock, imp, l1, weights, mean_loss, *extra)
                if i in loss_slot:
                    hist[loss_slot[i]].copy_(loss)
                if (i + 1) % spec.check_every == 0 or i + 1 == spec.steps:
                    _check_finite_shared(loss, real, idx, problem, i)
                    progress.update(min(spec.check_every, (i % spec.check_every) + 1))
            if spec.steps in snap_slot:
                for j, k in enumerate(names):
                    snap[k][snap_slot[spec.steps]].copy_(params[j])
            keep = real.reshape(-1)
            where = idx.reshape(-1)[keep]
            keep_t = torch.from_numpy(keep).to(device)
            for j, k in enumerate(names):
                p = params[j].transpose(1, 2).reshape(G * R, *shapes[k])
                final[k][where] = p[keep_t].cpu().numpy()
                if len(snap_at):
                    sn = snap[k].transpose(2, 3).reshape(len(snap_at), G * R, *shapes[k])
                    snaps[k][:, where] = sn[:, keep_t].cpu().numpy()
            history[:, where] = hist.reshape(len(loss_at), G * R)[:, keep_t].cpu().numpy()
    finally:
        precision.close()
        progress.close()
    final_loss = _final_loss(problem, spec, final, B, device)
    return TrainResult(
        params=final,
        final_loss=final_loss,
        loss_steps=loss_at,
        loss_history=history,
        mean_loss=mean_loss.cpu().numpy(),
        snapshot_steps=snap_at,
        snapshots=snaps,
        device=str(device),
        wall_time=time.perf_counter() - t_start,
        compile_time=compile_time,
        layout="cell-shared" + ("" if unrolled else " (batched products)"),
        compiled=compiled,
        shared_batches=True,
        matmul_precision=spec.matmul_precision,
    )


def _check_finite_shared(loss: torch.Tensor, real: np.ndarray, idx: np.ndarray, problem: Problem, step: int) -> None:
    finite = torch.isfinite(loss).cpu().numpy() | ~real
    if not finite.all():
        g, r = np.argwhere(~finite)[0]
        i = int(idx[g, r])
        raise TrainingDiverged(
            f"{problem.name}: training loss of {problem.label(i)} became {float(loss[g, r])} "
            f"by step {step + 1}; lower the learning rate or check the config"
        )
