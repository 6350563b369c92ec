"""Shared builders for figure tests: results built in memory from constructed weights, through the
public constructors (:meth:`tms.experiments.RunData.from_arrays`, :meth:`FigureContext.with_runs`)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from tms import metrics
from tms.experiments import RunData
from tms.figures.base import FigureContext
from tms.findings import evaluate


def fake_run(name: str, model: str, sweep: dict, W: np.ndarray, b: np.ndarray | None = None,
             restarts: int = 1, loss: np.ndarray | None = None, extra_arrays: dict | None = None, **spec) -> RunData:
    """Results of experiment ``name`` with instances ``W [N, m, n]`` (cell-major, ``restarts`` each);
    ``extra_arrays`` adds what else ``run.npz`` would hold (loss records, ``snapshot_steps`` and
    ``snap_<param>`` weight snapshots)."""
    N, m, n = W.shape
    cells = pd.DataFrame(list(itertools.product(*sweep.values())), columns=list(sweep))
    cells.insert(0, "cell", np.arange(len(cells)))
    C = len(cells)
    assert C * restarts == N
    loss = np.arange(N, dtype=float) % restarts if loss is None else np.asarray(loss, dtype=float)
    best = np.arange(C) * restarts + np.argmin(loss.reshape(C, restarts), axis=1)
    dens = np.repeat(cells["density"].to_numpy()[:, None], n, axis=1)
    if "perturbed_density_ratio" in cells:
        dens[:, spec.get("perturbed_feature", 0)] *= cells["perturbed_density_ratio"].to_numpy()
    arrays = {"W": W.astype(np.float64), "b": np.zeros((N, n)) if b is None else b, "final_loss": loss, "best": best,
              "density": np.repeat(dens, restarts, axis=0), "importance": np.ones((N, n))}
    full = {"model": model, "n_features": n, "n_hidden": m, "sweep": sweep, "restarts": restarts, **spec}
    return RunData.from_arrays(name, full, cells, {**arrays, **(extra_arrays or {})})


def ctx_with(fid: str, runs: dict[str, RunData], **options) -> FigureContext:
    """A context for figure ``fid`` over results in memory."""
    return FigureContext.with_runs(fid, runs, **options)


def verdicts(fid: str, ctx: FigureContext) -> dict[str, str]:
    """Claim name (without the figure prefix) -> verdict."""
    return {f.id.split(".", 1)[1]: f.verdict for f in evaluate(fid, ctx, ctx.experiments)}


def rot(theta_deg: float) -> np.ndarray:
    t = np.deg2rad(theta_deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


PENTAGON = metrics.polytope("pentagon")  # [2, 5], unit vectors 72 degrees apart
DENSE = np.array([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
PAIRS = np.array([[1.0, -1.0, 0, 0, 0], [0, 0, 1.0, -1.0, 0]])
