"""Loss of stored models on fresh inputs: the one helper figures use to re-evaluate trained weights.

:func:`tms.training.evaluate` scores models during training on the trainer's own evaluation
stream. Figures re-evaluate stored weights on streams of their own (common random numbers across
restarts, one fixed batch across the snapshots of a run, one stream per cell); each caller keeps
its key, so its numbers do not depend on which helper draws them.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from tms import data as data_mod
from tms import models
from tms.data import FeatureSets

CHUNK = 2**15  # examples drawn and scored at a time (bounds memory for many models)


def _rows(a: np.ndarray, n_models: int, name: str) -> torch.Tensor:
    """``[n]`` (shared by every model) or ``[n_models, n]`` as a float32 tensor ``[n_models, n]``."""
    t = torch.as_tensor(np.asarray(a, dtype=np.float32))
    if t.dim() == 1:
        return t.view(1, -1).expand(n_models, -1)
    if t.dim() != 2 or t.shape[0] != n_models:
        raise ValueError(f"{name}: expected shape [n] or [{n_models}, n], got {tuple(t.shape)}")
    return t


def draw_inputs(keys: torch.Tensor, density: np.ndarray, sets: FeatureSets, examples: int, signed: bool = False,
                counter: int = 0) -> torch.Tensor:
    """Inputs ``[len(keys), examples, n]`` from stream ``counter`` (one draw: what :func:`model_losses`
    uses for a single chunk), for scoring many models on the same examples."""
    return data_mod.draw(keys, counter, examples, _rows(density, keys.shape[0], "density"), sets, signed)


def losses_on(kind: models.ModelKind | str, params: Mapping[str, np.ndarray], importance: np.ndarray,
              x: torch.Tensor) -> np.ndarray:
    """Loss (no L1 term) of every stored model on given inputs ``x`` (``[1 or N, B, n]``): ``[N]`` float64."""
    kind = models.ModelKind(kind)
    p = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in params.items()}
    N = next(iter(p.values())).shape[0]
    imp = _rows(importance, N, "importance")
    with torch.no_grad():
        return models.loss_per_instance(kind, p, x.expand(N, -1, -1), imp).double().numpy()


def model_losses(kind: models.ModelKind | str, params: Mapping[str, np.ndarray], importance: np.ndarray,
                 keys: torch.Tensor, density: np.ndarray, sets: FeatureSets, examples: int,
                 counter: int = 0, chunk: int = CHUNK) -> np.ndarray:
    """Loss (the trainer's convention, no L1 term) of every stored model on ``examples`` fresh inputs.

    ``params`` holds arrays with a leading model axis ``N``. ``keys`` is ``[1]`` (every model sees the
    same inputs: common random numbers) or ``[N]`` (a stream per model); ``density`` is ``[n]`` or
    ``[len(keys), n]``; ``importance`` is ``[n]`` or ``[N, n]``. Chunk ``j`` of the inputs is drawn from
    stream ``counter + j``. Returns ``[N]`` float64.
    """
    N = next(iter(params.values())).shape[0]
    if keys.shape[0] not in (1, N):
        raise ValueError(f"keys: expected 1 or {N} keys (one per model), got {keys.shape[0]}")
    signed = models.ModelKind(kind).signed_inputs
    losses, sizes = [], []
    for j, start in enumerate(range(0, examples, chunk)):
        x = draw_inputs(keys, density, sets, min(chunk, examples - start), signed, counter + j)
        losses.append(losses_on(kind, params, importance, x))
        sizes.append(x.shape[1])
    if len(losses) == 1:  # no reweighting: the one batch's mean, bit for bit
        return losses[0]
    total = np.zeros(N, dtype=np.float64)
    for loss, size in zip(losses, sizes):
        total += loss * size
    return total / examples
