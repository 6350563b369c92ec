"""Experiments: a config entry -> instances -> training -> results on disk, and loading them back.

An experiment's *cells* are the cartesian product of its sweep axes (density, relative importance
of the last feature, density ratio of a perturbed feature, L1 penalty). Each cell is trained
``restarts`` times from different seeds; every model is one instance (cell-major:
``instance = cell * restarts + restart``) and the lowest evaluation loss of each cell is its
*selected* model. All models are kept, so figures can be restyled, and sub-optimal solutions
studied, without retraining.

``results/<experiment>/`` holds:

- ``run.npz``: final parameters of every instance (``W``/``b`` or ``W1``/``W2``/``b``), per-instance
  ``density``, ``importance``, ``l1``, ``final_loss``, ``cell``, ``restart``, ``selected``; the
  training-loss records (``loss_steps``, ``loss_history``, ``mean_loss``) and weight snapshots
  (``snapshot_steps``, ``snap_<param>``);
- ``cells.csv``: one row per cell (its axis values and selected instance);
- ``metrics.csv``: one row per instance (cell, restart, axis values, loss, selected, geometry metrics);
- ``meta.json``: the experiment config, provenance (config hash, code version, packages, device)
  and training statistics; nothing in it depends on how long the run took, so a rebuild writes the
  same bytes (the frozen archive holds it);
- ``timings.json``: wall time of the job and of training, compile time and model-steps per second
  (they differ between runs; not archived).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tms import config as config_mod
from tms import io, optim, provenance, rng
from tms.data import FeatureSets
from tms.models import ModelKind
from tms.training import Problem, TrainResult, TrainSpec, train

log = logging.getLogger("tms.experiments")

AXES = ("density", "relative_importance", "perturbed_density_ratio", "l1")


def cells_table(exp: dict[str, Any]) -> pd.DataFrame:
    """One row per cell: the cartesian product of the sweep axes, in config order."""
    names = list(exp["sweep"].keys())
    values = [config_mod.axis_values(exp["sweep"][a]) for a in names]
    rows = list(itertools.product(*values))
    df = pd.DataFrame(rows, columns=names)
    df.insert(0, "cell", np.arange(len(df)))
    return df


def build(name: str, exp: dict[str, Any], seed: int, device: str = "auto") -> tuple[Problem, TrainSpec, pd.DataFrame]:
    """The training problem, spec and cell table of experiment ``name`` (config with defaults)."""
    kind = ModelKind(exp["model"])
    n, m = int(exp["n_features"]), int(exp["n_hidden"])
    R = int(exp.get("restarts", 1))
    cells = cells_table(exp)
    C = len(cells)
    base_imp = config_mod.importance_vector(exp.get("importance", {"constant": 1.0}), n)

    density = np.repeat(cells["density"].to_numpy()[:, None], n, axis=1)
    if "perturbed_density_ratio" in cells:
        k = int(exp["perturbed_feature"])
        density[:, k] = density[:, k] * cells["perturbed_density_ratio"].to_numpy()
    importance = np.repeat(base_imp[None, :], C, axis=0)
    if "relative_importance" in cells:
        importance[:, -1] = base_imp[-1] * cells["relative_importance"].to_numpy()
    l1 = cells["l1"].to_numpy() if "l1" in cells else np.full(C, float(exp.get("l1", 0.0)))

    keys = rng.derive_keys(seed, name, C, R)
    # every restart of a cell is evaluated on the cell's own stream (common random numbers)
    eval_keys = torch.tensor([rng.derive_key(seed, name, c, "eval") for c in range(C)], dtype=torch.int64)
    axis_cols = [c for c in cells.columns if c != "cell"]

    def describe(i: int) -> str:
        c, r = divmod(i, R)
        vals = ", ".join(f"{a}={cells.at[c, a]:.4g}" for a in axis_cols)
        return f"instance {i} (cell {c}: {vals}; restart {r})"

    problem = Problem(
        kind=kind,
        n=n,
        m=m,
        keys=keys,
        density=torch.from_numpy(np.repeat(density, R, axis=0)).float(),
        importance=torch.from_numpy(np.repeat(importance, R, axis=0)).float(),
        sets=FeatureSets.parse(exp.get("feature_sets"), n),
        l1=torch.from_numpy(np.repeat(l1, R)).float(),
        eval_keys=eval_keys.repeat_interleave(R),
        name=name,
        describe=describe,
    )
    t = exp["train"]
    spec = TrainSpec(
        steps=int(t["steps"]),
        batch_size=int(t["batch_size"]),
        optimizer=optim.OptimizerSpec(
            name=t["optimizer"], lr=float(t["lr"]), weight_decay=t.get("weight_decay"), schedule=t["schedule"]
        ),
        init_std=t.get("init_std"),
        eval_batch=int(t["eval_batch"]),
        snapshots=int(t["snapshots"]),
        loss_points=int(t["loss_points"]),
        chunk_size=t.get("chunk_size"),
        max_chunk_mb=int(t["max_chunk_mb"]),
        device=device,
        compile=t.get("compile", "auto"),
        condition_nonempty=t.get("condition_nonempty", "off"),
        shared_batches=t.get("shared_batches", "off"),
        matmul_precision=t.get("matmul_precision", "fp32"),
    )
    return problem, spec, cells


EXACT_BUDGET_S = 60.0  # auto: exact selection when its estimated cost stays below this


def _exact_cost_s(kind: ModelKind, n: int, models: int) -> float:
    """Rough cost of tms.exact for ``models`` models (measured on the 2-core reference machine)."""
    if kind in (ModelKind.LINEAR, ModelKind.RELU_OUTPUT):
        return models * {1: 1e-5, 2: 1e-5, 3: 5e-5, 4: 5e-4, 5: 3e-3, 6: 2e-2}.get(n, float("inf"))
    return models * 1.0  # nested ReLUs: a loop over models, up to ~1 s each


def exact_losses(name: str, problem: Problem, params: dict[str, Any], mode: str) -> np.ndarray | None:
    """The exact expected loss of every trained model (tms.exact), or None where ``mode`` (the experiment's
    ``train.select_by``) asks for the sampled loss or ``auto`` finds the models outside exact's domain."""
    from tms import exact

    if mode == "sampled":
        return None
    flat = problem.kind in (ModelKind.LINEAR, ModelKind.RELU_OUTPUT)
    limit = exact.MAX_FEATURES if flat else exact.MAX_FEATURES_NESTED
    cost = _exact_cost_s(problem.kind, problem.n, problem.n_instances)
    if problem.n > limit or (mode == "auto" and cost > EXACT_BUDGET_S):
        if mode == "exact":
            raise config_mod.ConfigError(
                f"experiments.{name}.train.select_by: exact needs n_features <= {limit} for {problem.kind.value} "
                f"models (tms.exact), this experiment has {problem.n}")
        log.info("%s: restarts selected on the sampled loss (exact loss: n = %d, ~%.0f s estimated)", name,
                 problem.n, cost)
        return None
    t0 = time.perf_counter()
    l1 = problem.l1.cpu() if torch.is_tensor(problem.l1) else problem.l1
    out = np.asarray(exact.exact_loss(problem.kind, dict(params), problem.density.cpu(), problem.importance.cpu(),
                                      problem.sets, l1), dtype=np.float64)
    log.info("%s: exact expected loss of %d models in %.1f s; restarts selected on it", name, problem.n_instances,
             time.perf_counter() - t0)
    return out


def select(final_loss: np.ndarray, cells: int, restarts: int) -> np.ndarray:
    """Index of the lowest-loss instance of every cell."""
    per_cell = final_loss.reshape(cells, restarts)
    return np.arange(cells) * restarts + np.argmin(per_cell, axis=1)


def run(name: str, exp: dict[str, Any], seed: int, out_dir: str | Path, device: str = "auto",
        config_name: str = "") -> "RunData":
    """Train experiment ``name`` and write its results (atomically) to ``out_dir``."""
    from tms import metrics  # heavy-ish; only needed here

    t0 = time.perf_counter()
    problem, spec, cells = build(name, exp, seed, device)
    result: TrainResult = train(problem, spec)
    R = int(exp.get("restarts", 1))
    C = len(cells)
    exact_loss = exact_losses(name, problem, result.params, exp["train"].get("select_by", "sampled"))
    # the loss restarts are selected on, and every cell's reported loss: exact where it can be had
    loss = result.final_loss if exact_loss is None else exact_loss
    best = select(loss, C, R)
    selected = np.zeros(problem.n_instances, dtype=bool)
    selected[best] = True
    cell_of = np.repeat(np.arange(C), R)

    arrays: dict[str, np.ndarray] = {k: v.astype(np.float32) for k, v in result.params.items()}
    arrays.update(
        density=problem.density.numpy(),
        importance=problem.importance.numpy(),
        l1=problem.l1.numpy(),
        final_loss=result.final_loss,
        **({} if exact_loss is None else {"exact_loss": exact_loss}),
        cell=cell_of,
        restart=np.tile(np.arange(R), C),
        selected=selected,
        best=best,
        loss_steps=result.loss_steps,
        loss_history=result.loss_history,
        mean_loss=result.mean_loss,
        snapshot_steps=result.snapshot_steps,
    )
    for k, v in result.snapshots.items():
        if v.size:
            arrays[f"snap_{k}"] = v.astype(np.float32)

    summary = metrics.instance_summary(problem.kind, result.params)
    inst = pd.DataFrame({"instance": np.arange(problem.n_instances), "cell": cell_of,
                         "restart": arrays["restart"]})
    for col in cells.columns:
        if col != "cell":
            inst[col] = np.repeat(cells[col].to_numpy(), R)
    inst["loss"] = result.final_loss
    if exact_loss is not None:
        inst["exact_loss"] = exact_loss
    inst["selected"] = selected
    for k, v in summary.items():
        inst[k] = v
    cells = cells.copy()
    cells["selected_instance"] = best
    cells["loss"] = result.final_loss[best]
    if exact_loss is not None:
        cells["exact_loss"] = exact_loss[best]

    out = Path(out_dir)
    meta = {
        "experiment": name,
        "config_name": config_name,
        "seed": seed,
        "spec": exp,
        "provenance": provenance.record(config={"seed": seed, "experiment": exp}, device=result.device),
        "training": {
            "instances": problem.n_instances,
            "cells": C,
            "restarts": R,
            "layout": result.layout,
            "compiled": result.compiled,
            "selected_by": "sampled" if exact_loss is None else "exact",
        },
    }
    timings = {
        "experiment": name,
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "train_wall_time_s": round(result.wall_time, 3),
        "compile_time_s": round(result.compile_time, 3),
        "model_steps_per_second": round(result.model_steps_per_second, 1),
    }
    # run.npz last: it is the rule's declared output, so it appears only when everything else has
    io.write_json(out / "timings.json", timings)
    io.write_json(out / "meta.json", meta)
    io.atomic_write_text(out / "cells.csv", cells.to_csv(index=False, float_format="%.8g"))
    io.atomic_write_text(out / "metrics.csv", inst.to_csv(index=False, float_format="%.8g"))
    io.save_npz(out / "run.npz", arrays)
    return RunData(out, exp, cells, inst, arrays, meta)


@dataclass
class RunData:
    """One experiment's results, loaded from ``results/<experiment>/``."""

    path: Path
    spec: dict[str, Any]
    cells: pd.DataFrame
    instances: pd.DataFrame
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    FILES = ("run.npz", "meta.json", "cells.csv", "metrics.csv")

    @classmethod
    def load(cls, path: str | Path) -> "RunData":
        """Read ``results/<experiment>/``; a missing file raises FileNotFoundError, a damaged or
        inconsistent one :class:`tms.io.CorruptFileError`, each naming the file and how to rebuild it."""
        path = Path(path)
        for name in cls.FILES:
            if not (path / name).exists():
                raise FileNotFoundError(f"{path / name} does not exist: train the experiment first "
                                        f"(snakemake {path / 'run.npz'})")
        meta = io.read_json(path / "meta.json")
        if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict) or "experiment" not in meta:
            raise io.CorruptFileError(path / "meta.json", "no experiment spec in it")
        arrays = io.load_npz(path / "run.npz")
        for key in ("best", "final_loss"):
            if key not in arrays:
                raise io.CorruptFileError(path / "run.npz", f"array {key!r} missing")
        cells = io.read_csv(path / "cells.csv", ("cell",))
        instances = io.read_csv(path / "metrics.csv", ("instance", "cell", "loss"))
        # the four files are written by one job: row counts that disagree mean one was damaged or
        # replaced by a file of another run
        if len(cells) != len(arrays["best"]):
            raise io.CorruptFileError(path / "cells.csv",
                                      f"{len(cells)} rows, but run.npz holds {len(arrays['best'])} cells")
        if len(instances) != len(arrays["final_loss"]):
            raise io.CorruptFileError(path / "metrics.csv",
                                      f"{len(instances)} rows, but run.npz holds {len(arrays['final_loss'])} models")
        return cls(path, meta["spec"], cells, instances, arrays, meta)

    @classmethod
    def from_arrays(cls, name: str, spec: dict[str, Any], cells: pd.DataFrame, arrays: dict[str, np.ndarray],
                    instances: pd.DataFrame | None = None, meta: dict[str, Any] | None = None) -> "RunData":
        """Results held in memory (tests, analyses of constructed weights): ``spec`` is the experiment's
        config, ``cells`` one row per cell (a ``cell`` column and the sweep axes), ``arrays`` what
        ``run.npz`` would hold."""
        return cls(Path("."), dict(spec), cells, pd.DataFrame() if instances is None else instances, dict(arrays),
                   {"experiment": name, **(meta or {})})

    @property
    def name(self) -> str:
        return str(self.meta["experiment"])

    @property
    def kind(self) -> ModelKind:
        return ModelKind(self.spec["model"])

    @property
    def restarts(self) -> int:
        return int(self.spec.get("restarts", 1))

    @property
    def loss(self) -> np.ndarray:
        """Per model, the loss its cell's restarts were selected on: the exact expected loss where the run
        has it (``train.select_by``), else the loss on ``eval_batch`` fresh examples."""
        return self.arrays["exact_loss"] if "exact_loss" in self.arrays else self.arrays["final_loss"]

    @property
    def best(self) -> np.ndarray:
        """Selected (lowest-loss) instance of every cell."""
        return self.arrays["best"]

    def params(self, instances: np.ndarray | list[int] | int | None = None) -> dict[str, np.ndarray]:
        """Final parameters of the given instances (default: the selected model of every cell)."""
        idx = self.best if instances is None else instances
        return {k: self.arrays[k][idx] for k in self.kind.param_names}

    def cell(self, **axis_values: float) -> int:
        """The cell whose axis values are nearest (in log space for positive axes) to those given."""
        dist = np.zeros(len(self.cells))
        for axis, value in axis_values.items():
            if axis not in self.cells:
                raise KeyError(f"{self.name} has no sweep axis {axis!r} (axes: {list(self.cells.columns[1:])})")
            col = self.cells[axis].to_numpy(dtype=float)
            if value > 0 and (col > 0).all():
                dist += (np.log(col) - np.log(value)) ** 2
            else:
                dist += (col - value) ** 2
        return int(np.argmin(dist))

    def instances_of(self, cell: int) -> np.ndarray:
        """All instances (restarts) of a cell."""
        R = self.restarts
        return np.arange(cell * R, (cell + 1) * R)

    def snapshots(self, name: str) -> np.ndarray:
        """Weight snapshots ``[S, N, ...]`` of parameter ``name`` (steps in ``arrays['snapshot_steps']``)."""
        key = f"snap_{name}"
        if key not in self.arrays:
            raise KeyError(f"{self.name} kept no snapshots; set train.snapshots in its config")
        return self.arrays[key]


def load_config_experiment(config_path: str | Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(whole config, experiment config with defaults) from a config file."""
    cfg = config_mod.load(config_path)
    return cfg, config_mod.experiment(cfg, name)
