"""Verification by re-running: retrain an archive's models from its config, compare, re-evaluate claims.

``tms verify ARCHIVE --rerun`` reads the archived, defaults-filled config (``config/resolved.json``)
and retrains from it, with the code installed now:

- **In full**, every experiment whose training is cheap (:func:`training_cost` at most
  ``full_budget`` element-updates, :data:`FULL_BUDGET` by default): it is trained exactly as ``tms
  train`` trains it (:func:`tms.experiments.run`) into a temporary ``results/<experiment>/``, and
  every model's final loss and geometry metrics are compared with its row in the archived
  ``results/<experiment>/metrics.csv``.
- **A seeded sample** of every other experiment: ``fraction`` of its cells (at least one), and at
  most ``max_restarts`` restarts of each sampled cell (the privileged-basis experiment has 1,000 per
  cell), compared with their archived rows. Every model's data, initialisation and evaluation stream
  derive from (seed, experiment, cell, restart) alone, and a model trained in a small batch equals
  the same model trained among thousands to float rounding, so a sample is a faithful check of the
  run. The sample is drawn from a generator seeded by the config's seed and the experiment's name,
  so two reruns check the same models.

Claims. The archive holds no weights (``run.npz``), so a verdict can be re-evaluated only from a full
retrain of every experiment its figure reads. For each such figure the claims are evaluated as ``tms
plot`` evaluates them (:func:`tms.figures.plot`, with the figure's archived config entry) and each
verdict is compared with the archived ``findings.json``: a verdict that differs is a failure; a
measured value beyond :func:`tms.freeze.value_diff`'s tolerance under the same verdict is reported,
not failed (every model was compared already; a summary of a sweep can amplify float rounding).
Claims of a figure that reads a larger experiment are **not** re-evaluated: most are measured across
a whole sweep (a phase map, a plateau of D*), which a sample cannot give. For them the rerun reports
whether every experiment the claim reads reproduced on the sample, i.e. whether the claim's inputs
reproduced; a full rebuild compared with ``tms verify ARCHIVE --build results/findings.json``
re-evaluates those verdicts. Analytic claims (no experiments) are not re-evaluated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import tarfile
import tempfile
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

# Full retrain threshold, in "element-updates" (training_cost: models x steps x batch x (n + m)), per
# experiment. On the released default archive the 13 experiments under 1e9 (5.3e9 in all) retrained
# in 75 s on one thread of the 2-core reference machine beside a running build, and 9 of its 23
# figures (28 claims) had their verdicts re-evaluated: a whole verify --rerun 0.0001 took 2.7 min. The
# next four (|x| in superposition, adversarial, L1, asymmetric motif: 1.0e9-1.2e9) add about a
# minute; D* (3.5e9) and the phase maps and privileged basis (1e10-8e10) would add many more.
FULL_BUDGET = 1e9


@dataclass
class ExperimentRerun:
    """One experiment's rerun (in full or a sample): which models were retrained and how they compare."""

    name: str
    instances: list[int]
    cells: list[int]
    mismatches: list[str] = field(default_factory=list)
    max_rel: float = 0.0  # largest relative difference of a loss from the archived one
    seconds: float = 0.0
    full: bool = False  # retrained in full (every model), not a sample
    cost: float = 0.0  # training_cost of the whole experiment
    trained_on: str = ""  # the device the archive's models were trained on (its meta.json), where recorded

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass
class ClaimRerun:
    """What the rerun says about one archived claim."""

    id: str
    archived: str  # the archived verdict
    # "reproduced" / "differs" (verdict re-evaluated), "inputs" (only its experiments' models compared),
    # "not reproduced" (those models differ), "analytic", "failed" (the figure could not be re-evaluated)
    status: str
    text: str  # the report line after "claim <id> (<archived verdict>): "
    rerun_verdict: str | None = None  # the re-evaluated verdict, where there is one

    @property
    def ok(self) -> bool:
        """False where verify must fail: a differing verdict, a figure that could not be re-evaluated."""
        return self.status not in ("differs", "failed")


@dataclass
class Rerun:
    """A whole rerun: the experiments, the archived findings and what became of each claim."""

    experiments: list[ExperimentRerun]
    findings: list[dict[str, Any]]
    claims: list[ClaimRerun]
    full_budget: float
    seconds: float = 0.0
    archive_code: dict[str, Any] = field(default_factory=dict)  # the code the archive was built with
    code: dict[str, Any] = field(default_factory=dict)  # the code that re-evaluated its claims

    def same_code(self) -> bool:
        """Whether the claims were re-evaluated by the commit that built the archive (no edits on either)."""
        a, b = self.archive_code, self.code
        return bool(a.get("commit")) and a.get("commit") == b.get("commit") and not a.get("dirty") \
            and not b.get("dirty")


def training_cost(exp: dict[str, Any]) -> float:
    """Estimated cost of training experiment ``exp`` (its resolved config) in full, in element-updates:
    models x steps x batch size x (n_features + n_hidden)."""
    from tms import experiments

    models = len(experiments.cells_table(exp)) * int(exp.get("restarts", 1))
    t = exp["train"]
    return float(models) * int(t["steps"]) * int(t["batch_size"]) * (int(exp["n_features"]) + int(exp["n_hidden"]))


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


def _full(name: str, exp: dict[str, Any], seed: int, device: str, config_name: str, out: Path,
          archived: pd.DataFrame, rtol: float, atol: float) -> ExperimentRerun:
    """Retrain a whole experiment as ``tms train`` does, into ``out/<name>/``, and compare every model."""
    from tms import experiments

    t0 = time.perf_counter()
    run = experiments.run(name, exp, seed, out / name, device=device, config_name=config_name)
    inst = run.instances
    idx = inst["instance"].to_numpy(dtype=np.int64)
    res = ExperimentRerun(name, idx.tolist(), sorted(int(c) for c in inst["cell"].unique()), full=True)
    if sorted(archived["instance"]) != idx.tolist():
        res.mismatches.append(f"{name}: the archived metrics.csv has {len(archived)} models, the retrain "
                              f"{len(idx)}")
        res.seconds = time.perf_counter() - t0
        return res
    loss = inst["loss"].to_numpy(dtype=float)
    res.mismatches = _compare(name, idx, archived, loss, {k: inst[k].to_numpy(dtype=float) for k in METRICS
                                                          if k in inst}, rtol, atol)
    want = archived.set_index("instance").loc[idx, "loss"].to_numpy(dtype=float)
    res.max_rel = float(np.max(np.abs(loss - want) / np.maximum(np.abs(want), atol)))
    res.seconds = time.perf_counter() - t0
    return res


def _sampled(name: str, exp: dict[str, Any], seed: int, device: str, meta: dict[str, Any], archived: pd.DataFrame,
             fraction: float, max_restarts: int, rtol: float, atol: float) -> ExperimentRerun:
    """Retrain a seeded sample of an experiment's models and compare them."""
    from tms import experiments, metrics
    from tms.training import train

    t0 = time.perf_counter()
    problem, spec, cells = experiments.build(name, exp, seed, device)
    restarts = int(exp.get("restarts", 1))
    idx = sample(name, seed, len(cells), restarts, fraction, max_restarts)
    res = ExperimentRerun(name, idx.tolist(), sorted({int(i) // restarts for i in idx}))
    # the full run chose its kernels (compiled or eager, memory layout) from its own size: use
    # the same ones, so the sample differs from it only by the batch it is trained in
    done = meta.get("training", {})
    if "compiled" in done and "layout" in done:
        layout = str(done["layout"])
        spec = dataclasses.replace(spec, compile=bool(done["compiled"]))
        if layout.startswith("cell-shared"):
            # its restarts shared their cell's batches: so must the sample's (``auto`` would decide
            # again from the sample's size, and a restart fed its own batches is another model)
            spec = dataclasses.replace(spec, shared_batches="on")
        else:
            spec = dataclasses.replace(spec, layout=layout)
    result = train(_subproblem(problem, idx), spec)
    summary = metrics.instance_summary(problem.kind, result.params)
    res.mismatches = _compare(name, idx, archived, result.final_loss,
                              {k: np.asarray(v) for k, v in summary.items()}, rtol, atol)
    want = archived.set_index("instance").loc[idx, "loss"].to_numpy(dtype=float)
    res.max_rel = float(np.max(np.abs(result.final_loss - want) / np.maximum(np.abs(want), atol)))
    res.seconds = time.perf_counter() - t0
    return res


def judge_claims(found: list[dict[str, Any]], runs: list[ExperimentRerun],
                 reevaluated: dict[str, list[dict[str, Any]] | str], full_budget: float) -> list[ClaimRerun]:
    """Per archived finding, what the rerun says about it.

    ``reevaluated`` maps each figure whose experiments were all retrained in full to its claims as
    evaluated on the retrain (``Finding.to_json()`` dicts), or to the error that kept them from being
    evaluated; a figure missing from it was not re-evaluated.
    """
    from tms.freeze import RTOL as VALUE_RTOL
    from tms.freeze import value_diff

    def verdict_text(old: dict[str, Any], redo: list[dict[str, Any]]) -> tuple[str, str, str] | None:
        """(status, text, rerun verdict) of a re-evaluated claim; None if the rerun did not evaluate it."""
        mine = {g["id"]: g for g in redo}
        fid, archived = str(old["id"]), str(old.get("verdict"))
        if fid not in mine:
            return None
        new = str(mine[fid].get("verdict"))
        if new != archived:
            return "differs", f"verdict re-evaluated: DIFFERS (archived {archived}, rerun {new})", new
        diff = value_diff(old.get("measured"), mine[fid].get("measured"))
        moved = f"; measured value differs beyond rtol {VALUE_RTOL:g}: {diff}" if diff else ""
        return "reproduced", f"verdict re-evaluated: reproduced (same verdict: {new}{moved})", new

    by_name = {r.name: r for r in runs}
    out = []
    for f in found:
        fid, archived = str(f["id"]), str(f.get("verdict"))
        exps = list(f.get("experiments") or [])
        bad = [e for e in exps if e not in by_name or not by_name[e].ok]
        redo = reevaluated.get(str(f.get("figure")))
        if not exps:
            out.append(ClaimRerun(fid, archived, "analytic", "analytic, nothing to retrain"))
            continue
        judged = verdict_text(f, redo) if isinstance(redo, list) else None
        if bad:
            # the models differ already (a failure of its own); what the verdict does is extra information
            if all(e in by_name and not by_name[e].full for e in bad):
                text = f"NOT reproduced on the sample ({', '.join(bad)})"
            else:
                text = "NOT reproduced by the rerun (" + ", ".join(
                    e + (" retrained in full" if e in by_name and by_name[e].full else " on the sample")
                    for e in bad) + ")"
            if judged:
                text += f"; {judged[1]}"
            out.append(ClaimRerun(fid, archived, "not reproduced", text, judged[2] if judged else None))
            continue
        if isinstance(redo, str):
            out.append(ClaimRerun(fid, archived, "failed", f"verdict re-evaluation FAILED ({redo})"))
            continue
        if judged:
            out.append(ClaimRerun(fid, archived, judged[0], judged[1], judged[2]))
            continue
        large = [e for e in exps if not by_name[e].full]
        if large:
            why = "; ".join(f"experiment {e} too large to retrain here ({by_name[e].cost:.3g} element-updates, "
                            f"over the budget of {full_budget:.3g})" for e in large)
        elif redo is None:
            why = f"figure {f.get('figure')} is not registered in this code, or not in the archived config"
        else:
            why = f"claim {fid} is not registered in this code"
        where = "on the sample" if large else "in full"
        out.append(ClaimRerun(fid, archived, "inputs", f"inputs reproduced {where} (verdict not re-evaluated: {why})"))
    return out


def rerun(archive: Path, top: str, fraction: float = 0.01, max_restarts: int = 10, device: str = "cpu",
          rtol: float = RTOL, atol: float = ATOL, full_budget: float = FULL_BUDGET) -> Rerun:
    """Retrain every experiment of ``archive`` (in full within ``full_budget``, else a sample), compare,
    and re-evaluate the claims of every figure whose experiments were all retrained in full."""
    from tms import figures

    t0 = time.perf_counter()
    head = read_members(archive, top, ["config/resolved.json", "findings.json", "provenance.json"])
    if "config/resolved.json" not in head:
        raise ValueError(f"{archive} has no config/resolved.json: nothing to retrain from")
    cfg = json.loads(head["config/resolved.json"])
    found = json.loads(head.get("findings.json", b"[]"))
    seed = int(cfg["seed"])
    config_name = str(cfg.get("name", ""))
    tables = read_members(archive, top, [f"results/{e}/{f}" for e in cfg["experiments"]
                                         for f in ("metrics.csv", "meta.json")])
    runs: list[ExperimentRerun] = []
    reevaluated: dict[str, list[dict[str, Any]] | str] = {}
    with tempfile.TemporaryDirectory(prefix="tms-rerun-") as tmp:
        results = Path(tmp) / "results"
        for name, exp in cfg["experiments"].items():
            cost = training_cost(exp)
            table = tables.get(f"results/{name}/metrics.csv")
            if table is None:
                res = ExperimentRerun(name, [], [], cost=cost)
                res.mismatches.append(f"{name}: results/{name}/metrics.csv is not in the archive")
                runs.append(res)
                continue
            archived = pd.read_csv(io.BytesIO(table))
            if 0 < cost <= full_budget:
                res = _full(name, exp, seed, device, config_name, results, archived, rtol, atol)
            else:
                meta = json.loads(tables.get(f"results/{name}/meta.json", b"{}"))
                res = _sampled(name, exp, seed, device, meta, archived, fraction, max_restarts, rtol, atol)
                res.trained_on = str((meta.get("provenance") or {}).get("device", ""))
            res.cost = cost
            log.info("rerun %s: %d models of %d cells%s, %d differ (%.1f s)", name, len(res.instances),
                     len(res.cells), " (in full)" if res.full else "", len(res.mismatches), res.seconds)
            runs.append(res)
        full = {r.name for r in runs if r.full}
        for fid, fspec in cfg.get("figures", {}).items():
            exps = list(fspec.get("experiments") or [])
            if not exps or not set(exps) <= full:
                continue
            if fid not in figures.load_all():
                continue  # a figure this code does not know: its claims stay at the sample's report
            t1 = time.perf_counter()
            try:
                reevaluated[fid] = [g.to_json() for g in figures.plot(fid, fspec, results, None, config_name)]
            except Exception as err:  # report it per claim; the other figures still count
                reevaluated[fid] = f"figure {fid}: {err!r}"
            log.info("rerun %s: claims re-evaluated (%.1f s)", fid, time.perf_counter() - t1)
    claims = judge_claims(found, runs, reevaluated, full_budget)
    from tms import provenance

    return Rerun(runs, found, claims, full_budget, time.perf_counter() - t0,
                 archive_code=dict(json.loads(head.get("provenance.json", b"{}")).get("code") or {}),
                 code=dict(provenance.code_version()))
