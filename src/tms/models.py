"""The toy models, each with a leading instance axis so thousands of independent models are one tensor.

Shapes (N instances, n features, m hidden dimensions), following the paper's notation ``h = W x``:

- ``linear``:        ``x' = W^T W x + b``                      W ``[N, m, n]``, b ``[N, n]``
- ``relu_output``:   ``x' = ReLU(W^T W x + b)``                W ``[N, m, n]``, b ``[N, n]``
- ``relu_hidden``:   ``h = ReLU(W x), x' = ReLU(W^T h + b)``   W ``[N, m, n]``, b ``[N, n]``
- ``computation``:   ``h = ReLU(W1 x), y' = ReLU(W2 h + b)``,  target ``|x|`` on signed inputs;
                     W1 ``[N, m, n]``, W2 ``[N, n, m]``, b ``[N, n]``

Column ``W[k, :, i]`` is feature i's direction in instance k. The functions here are the reference
implementation (plain autograd-capable tensor code); :mod:`tms.training` runs a fused, hand-derived
equivalent that is tested against them.
"""

from __future__ import annotations

import math
from enum import Enum

import torch

from tms import rng


class ModelKind(str, Enum):
    LINEAR = "linear"
    RELU_OUTPUT = "relu_output"
    RELU_HIDDEN = "relu_hidden"
    COMPUTATION = "computation"

    @property
    def signed_inputs(self) -> bool:
        """Whether active features are uniform on [-1, 1] (the absolute-value task)."""
        return self is ModelKind.COMPUTATION

    @property
    def param_names(self) -> tuple[str, ...]:
        return ("W1", "W2", "b") if self is ModelKind.COMPUTATION else ("W", "b")


Params = dict[str, torch.Tensor]


def param_shapes(kind: ModelKind, n: int, m: int) -> dict[str, tuple[int, ...]]:
    """Per-instance parameter shapes."""
    if kind is ModelKind.COMPUTATION:
        return {"W1": (m, n), "W2": (n, m), "b": (n,)}
    return {"W": (m, n), "b": (n,)}


def default_init_std(n: int, m: int) -> float:
    """Xavier-normal standard deviation of a single ``m x n`` matrix, sqrt(2 / (n + m)).

    The public notebook applies xavier to the whole ``[N, n, m]`` tensor, which makes the scale
    depend on how many instances are trained together; here it depends on the model alone, so an
    instance trained alone starts where it would in a batch.
    """
    return math.sqrt(2.0 / (n + m))


def init_params(kind: ModelKind, n: int, m: int, keys: torch.Tensor, init_std: float | None = None) -> Params:
    """Deterministic per-instance initialisation: normal weights, zero bias."""
    std = default_init_std(n, m) if init_std is None else float(init_std)
    out: Params = {}
    for j, (name, shape) in enumerate(param_shapes(kind, n, m).items()):
        if name == "b":
            out[name] = torch.zeros((keys.shape[0], *shape), dtype=torch.float32, device=keys.device)
        else:
            out[name] = std * rng.normal(keys, rng.INIT_COUNTER + 2 * j, shape)
    return out


def forward(kind: ModelKind, p: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model output ``[N, B, n]`` and hidden activations ``[N, B, m]`` for inputs ``x [N, B, n]``."""
    if kind is ModelKind.COMPUTATION:
        h = torch.relu(torch.einsum("kbi,kji->kbj", x, p["W1"]))
        z = torch.einsum("kbj,kij->kbi", h, p["W2"]) + p["b"][:, None, :]
        return torch.relu(z), h
    a = torch.einsum("kbi,kji->kbj", x, p["W"])
    h = torch.relu(a) if kind is ModelKind.RELU_HIDDEN else a
    z = torch.einsum("kbj,kji->kbi", h, p["W"]) + p["b"][:, None, :]
    y = z if kind is ModelKind.LINEAR else torch.relu(z)
    return y, h


def target(kind: ModelKind, x: torch.Tensor) -> torch.Tensor:
    """What the model should output: ``x`` itself, or ``|x|`` for the computation model."""
    return x.abs() if kind is ModelKind.COMPUTATION else x


def loss_per_instance(
    kind: ModelKind, p: Params, x: torch.Tensor, importance: torch.Tensor, l1: float = 0.0
) -> torch.Tensor:
    """Importance-weighted MSE, mean over batch and features, plus ``l1 * mean_batch ||h||_1``.

    ``importance`` broadcasts against ``[N, 1, n]``. Returns ``[N]``; the training objective is its
    sum, so instances never interact.
    """
    y, h = forward(kind, p, x)
    imp = importance.view(importance.shape[0], 1, -1)
    loss = (imp * (target(kind, x) - y) ** 2).mean(dim=(1, 2))
    if l1:
        loss = loss + l1 * h.abs().sum(-1).mean(-1)
    return loss
