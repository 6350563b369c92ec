"""Verification by re-running: retrain a seeded sample of an archive's models and compare.

``tms verify ARCHIVE --rerun`` reads the archived, defaults-filled config (``config/resolved.json``),
retrains a sample of every experiment's models from it and compares each retrained model's final
loss and geometry metrics with its row in the archived ``results/<experiment>/metrics.csv``.

Every model's data, initialisation and evaluation stream derive from (seed, experiment, cell,
restart) alone, and a model trained in a small batch equals the same model trained among thousands
to float rounding, so a sample is a faithful check of the full run. The sample is drawn from a
generator seeded by the config's seed and the experiment's name, so two reruns check the same
models: ``fraction`` of each experiment's cells (at least one), and at most ``max_restarts`` restarts
of each sampled cell (the privileged-basis experiment has 1,000 per cell).

What a rerun does **not** do is re-evaluate a claim: most claims are measured across a whole sweep
(a phase map, a plateau of D*), which a sample cannot give. Per claim it reports whether every
experiment the claim reads reproduced on the sample, i.e. whether the claim's inputs reproduced.
A full rebuild compared with ``tms verify ARCHIVE --build results/findings.json`` re-evaluates
every verdict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("tms.rerun")

# A model retrained in a batch of another size goes through the same arithmetic with other BLAS
# blocking, so float rounding differs and grows over thousands of optimiser steps: losses agree to
# ~2e-4 relative (measured: the default archive's asymmetric_motif sample, 8,000 steps); a model that
# lands in another local minimum differs by far more.
RTOL = 1e-3
ATOL = 1e-6
# continuous geometry metrics compared besides the loss (counts such as n_represented are left out:
# a feature norm at the threshold may fall either side of it by rounding alone)
METRICS = ("frobenius_sq",)


@dataclass
class ExperimentRerun:
    """One experiment's sample: which models were retrained and how they compare."""

    name: str
    instances: list[int]
    cells: list[int]
    mismatches: list[str] = field(default_factory=list)
    max_rel: float = 0.0  # largest relative difference of a loss from the archived one
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.mismatches


def sample(name: str, seed: int, cells: int, restarts: int, fraction: float, max_restarts: int) -> np.ndarray:
    """Instance indices (cell-major, sorted) of the models to retrain: a seeded sample of cells, and
    of restarts within each."""
    digest = hashlib.sha256(json.dumps(["rerun", seed, name]).encode()).digest()
    gen = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    k = min(cells, max(1, round(fraction * cells)))
    chosen = np.sort(gen.choice(cells, size=k, replace=False))
    out = []
    for c in chosen:
        r = np.sort(gen.choice(restarts, size=min(restarts, max_restarts), replace=False))
        out.extend(int(c) * restarts + r)
    return np.asarray(out, dtype=np.int64)


def _subproblem(problem: Any, idx: np.ndarray) -> Any:
    """The models ``idx`` of a training problem, as a problem of their own."""
    import torch

    from tms.training import Problem

    t = torch.from_numpy(idx)
    return Problem(kind=problem.kind, n=problem.n, m=problem.m, keys=problem.keys[t], density=problem.density[t],
                   importance=problem.importance[t], sets=problem.sets, l1=problem.l1[t],
                   eval_keys=problem.eval_keys[t], name=problem.name,
                   describe=lambda i: problem.label(int(idx[i])))


def _compare(name: str, idx: np.ndarray, archived: pd.DataFrame, loss: np.ndarray, metrics: dict[str, np.ndarray],
             rtol: float, atol: float) -> list[str]:
    """Differences beyond tolerance between retrained models and their archived rows."""
    rows = archived.set_index("instance").loc[idx]
    out = []
    for j, i in enumerate(idx):
        want, have = float(rows["loss"].iloc[j]), float(loss[j])
        if not np.isclose(have, want, rtol=rtol, atol=atol):
            out.append(f"{name} model {i} (cell {int(rows['cell'].iloc[j])}, restart {int(rows['restart'].iloc[j])}): "
                       f"loss {have:.6g}, archived {want:.6g}")
            continue
        for key in METRICS:
            if key in rows and key in metrics:
                a, b = float(rows[key].iloc[j]), float(metrics[key][j])
                if not np.isclose(b, a, rtol=max(rtol, 1e-2), atol=max(atol, 1e-3)):
                    out.append(f"{name} model {i}: {key} {b:.6g}, archived {a:.6g}")
    return out


def read_members(archive: Path, top: str, names: list[str]) -> dict[str, bytes]:
    """The named members (paths below ``top``) of an archive whose structure verify has checked."""
    want = {f"{top}/{n}": n for n in names}
    out: dict[str, bytes] = {}
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            if member.name in want and member.isfile():
                fh = tar.extractfile(member)
                out[want[member.name]] = fh.read() if fh else b""
    return out


def rerun(archive: Path, top: str, fraction: float = 0.01, max_restarts: int = 10, device: str = "cpu",
          rtol: float = RTOL, atol: float = ATOL) -> tuple[list[ExperimentRerun], list[dict[str, Any]]]:
    """Retrain the sample of every experiment of ``archive`` and compare; also return its findings."""
    from tms import experiments, metrics
    from tms.training import train

    head = read_members(archive, top, ["config/resolved.json", "findings.json"])
    if "config/resolved.json" not in head:
        raise ValueError(f"{archive} has no config/resolved.json: nothing to retrain from")
    cfg = json.loads(head["config/resolved.json"])
    found = json.loads(head.get("findings.json", b"[]"))
    seed = int(cfg["seed"])
    tables = read_members(archive, top, [f"results/{e}/{f}" for e in cfg["experiments"]
                                         for f in ("metrics.csv", "meta.json")])
    out = []
    for name, exp in cfg["experiments"].items():
        t0 = time.perf_counter()
        problem, spec, cells = experiments.build(name, exp, seed, device)
        restarts = int(exp.get("restarts", 1))
        idx = sample(name, seed, len(cells), restarts, fraction, max_restarts)
        res = ExperimentRerun(name, idx.tolist(), sorted({int(i) // restarts for i in idx}))
        table = tables.get(f"results/{name}/metrics.csv")
        if table is None:
            res.mismatches.append(f"{name}: results/{name}/metrics.csv is not in the archive")
            out.append(res)
            continue
        # the full run chose its kernels (compiled or eager, memory layout) from its own size: use
        # the same ones, so the sample differs from it only by the batch it is trained in
        done = json.loads(tables.get(f"results/{name}/meta.json", b"{}")).get("training", {})
        if "compiled" in done and "layout" in done:
            spec = dataclasses.replace(spec, compile=bool(done["compiled"]), layout=str(done["layout"]))
        result = train(_subproblem(problem, idx), spec)
        summary = metrics.instance_summary(problem.kind, result.params)
        archived = pd.read_csv(io.BytesIO(table))
        res.mismatches = _compare(name, idx, archived, result.final_loss,
                                  {k: np.asarray(v) for k, v in summary.items()}, rtol, atol)
        want = archived.set_index("instance").loc[idx, "loss"].to_numpy(dtype=float)
        res.max_rel = float(np.max(np.abs(result.final_loss - want) / np.maximum(np.abs(want), atol)))
        res.seconds = time.perf_counter() - t0
        log.info("rerun %s: %d models of %d cells, %d differ (%.1f s)", name, len(idx), len(res.cells),
                 len(res.mismatches), res.seconds)
        out.append(res)
    return out, found
