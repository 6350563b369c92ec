"""Optimisers and learning-rate schedules as plain in-place tensor updates.

They follow ``torch.optim.Adam``, ``AdamW`` and ``RMSprop`` (default, non-centred, no momentum)
exactly, but take the step counter as a tensor so that a compiled training step never needs the
host: no Python number changes from one step to the next, nothing is synchronised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

OptimizerName = Literal["adam", "adamw", "rmsprop"]
ScheduleName = Literal["constant", "linear", "cosine"]
OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "rmsprop")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimiser hyperparameters. ``weight_decay=None`` takes torch's default for the optimiser."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float | None = None
    beta1: float = 0.9
    beta2: float = 0.999
    alpha: float = 0.99  # RMSprop smoothing constant
    eps: float | None = None
    schedule: str = "constant"

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown {self.name!r}; expected one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: unknown {self.schedule!r}; expected one of {SCHEDULES}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")

    @property
    def wd(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return 0.01 if self.name == "adamw" else 0.0

    @property
    def epsilon(self) -> float:
        return float(self.eps) if self.eps is not None else 1e-8

    def n_states(self) -> int:
        """Number of state tensors kept per parameter."""
        return 1 if self.name == "rmsprop" else 2


def lr_scale(schedule: str, step: torch.Tensor, steps: int) -> torch.Tensor:
    """Multiplier of the base learning rate at 0-based ``step`` of ``steps``.

    ``linear``: 1 - step/steps; ``cosine``: cos(pi/2 * step/(steps-1)), a quarter-cosine decay to
    zero without warm-up (the public notebook's two schedules).
    """
    t = step.to(torch.float32)
    if schedule == "constant":
        return torch.ones_like(t)
    if schedule == "linear":
        return 1.0 - t / steps
    return torch.cos((0.5 * math.pi / max(steps - 1, 1)) * t)


def init_state(spec: OptimizerSpec, params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Zeroed state tensors: ``[[exp_avg, exp_avg_sq], ...]`` (Adam) or ``[[square_avg], ...]``."""
    return [[torch.zeros_like(p) for _ in range(spec.n_states())] for p in params]


def apply(
    spec: OptimizerSpec,
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: list[list[torch.Tensor]],
    step: torch.Tensor,
    lr: torch.Tensor,
) -> None:
    """One in-place update. ``step`` is the 1-based step count after this update (a tensor)."""
    wd = spec.wd
    eps = spec.epsilon
    if spec.name == "rmsprop":
        a = spec.alpha
        for p, g, (sq,) in zip(params, grads, state):
            if wd:
                g = g + wd * p
            sq.mul_(a).addcmul_(g, g, value=1 - a)
            p.sub_(lr * g / (sq.sqrt() + eps))
        return
    b1, b2 = spec.beta1, spec.beta2
    t = step.to(torch.float32)
    bc1 = 1 - torch.pow(torch.tensor(b1, dtype=torch.float32, device=t.device), t)
    bc2 = 1 - torch.pow(torch.tensor(b2, dtype=torch.float32, device=t.device), t)
    step_size = lr / bc1
    bc2_sqrt = torch.sqrt(bc2)
    for p, g, (m, v) in zip(params, grads, state):
        if spec.name == "adamw":
            if wd:
                p.mul_(1 - lr * wd)
        elif wd:
            g = g + wd * p
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        p.sub_(step_size * m / (v.sqrt() / bc2_sqrt + eps))
