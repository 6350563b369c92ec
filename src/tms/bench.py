"""``tms bench``: the trainer against a straightforward baseline, in one run on one machine.

The baseline is written the way the paper's public notebook trains: all instances in one tensor,
autograd, ``torch.optim.AdamW``, and two ``torch.rand`` calls per batch (values and the
zero/non-zero mask). Both train the same model with the same hyperparameters (AdamW with weight
decay 0.01, the shape's learning rate and schedule, its densities and importances, the same initial
weight distribution). Reported per shape, all from one run: model-steps per second (instances x
steps / s, compile excluded; the median of ``rounds`` interleaved timings) of

- ``baseline``: the notebook's way;
- ``tms``: the trainer as every existing result was trained (each instance draws its own batches,
  float32 products);
- ``shared`` (shapes made of cells of restarts): ``train.shared_batches = on``, the restarts of a
  cell share the cell's batches;
- ``bf16``: ``train.matmul_precision = bf16`` on the faster of the two (shapes whose layout has
  matrix products);

then, over several seeds, the mean final loss of each on a common fresh evaluation set, with
Welch's t-tests (tms against the baseline, shared against tms, bf16 against float32): the fast
paths must not change what training achieves.

``precision_check`` (``tms bench --bf16-check``) is the evidence for bf16 where it would be used:
the ``uniform_n400_m30`` experiment's shape (n=400, m=30, batch 64, AdamW 3e-3 cosine) at a dozen of
its density levels, trained with float32 and with bf16 products over several seeds; per level the
final losses and D* are compared with Welch's t-test.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms import metrics, models, optim, rng, training
from tms.models import ModelKind
from tms.training import Problem, TrainSpec

DENSITY = 0.1
PRIVILEGED_DENSITIES = (1.0, 0.35, 0.15, 0.12, 0.07, 0.04, 0.02)  # the default config's privileged_basis


@dataclass(frozen=True)
class Shape:
    key: str  # for --shapes
    name: str
    n: int
    m: int
    instances: int
    batch: int
    timed_steps: int  # steps timed for throughput
    loss_steps: int  # steps trained for the loss comparison
    loss_instances: int  # instances in the loss comparison
    kind: str = "relu_output"
    cells: int = 0  # > 0: the instances are `cells` cells of restarts (keys as tms.experiments derives them)
    densities: tuple[float, ...] = (DENSITY,)  # one per cell (or one for all instances)
    decay: float = 1.0  # importance decay**i
    lr: float = 1e-3
    schedule: str = "constant"


SHAPES = (
    Shape("n20", "n=20, m=5, 7 instances, batch 1024", 20, 5, 7, 1024, 600, 3000, 7),
    Shape("n400", "n=400, m=30, 20 instances, batch 1024", 400, 30, 20, 1024, 60, 300, 20),
    Shape("phase", "n=2, m=1, 100,000 instances, batch 64", 2, 1, 100_000, 64, 150, 2000, 2000),
    # the default config's privileged_basis job (6000 steps there; fewer for the loss comparison, which
    # uses 100 restarts per cell)
    Shape("privileged", "privileged basis: n=10, m=5, ReLU hidden, 7 cells x 1000 restarts, batch 128",
          10, 5, 7000, 128, 60, 1500, 700, kind="relu_hidden", cells=7, densities=PRIVILEGED_DENSITIES,
          decay=0.75, lr=0.01, schedule="cosine"),
)


def _problem(shape: Shape, instances: int, seed: int, device: torch.device) -> Problem:
    kind = ModelKind(shape.kind)
    imp = torch.tensor(shape.decay ** np.arange(shape.n), dtype=torch.float32)
    if not shape.cells:
        keys = rng.derive_keys(seed, f"bench/{shape.n}x{shape.m}", instances, 1)
        return Problem(kind, shape.n, shape.m, keys, torch.tensor(shape.densities[0]), imp, name=f"bench {shape.name}")
    C = shape.cells
    R = instances // C
    exp = f"bench/{shape.key}"
    keys = rng.derive_keys(seed, exp, C, R)
    # as tms.experiments: every restart of a cell is evaluated on (and, shared, trained on) the cell's stream
    cell_keys = torch.tensor([rng.derive_key(seed, exp, c, "eval") for c in range(C)], dtype=torch.int64)
    dens = torch.tensor(shape.densities, dtype=torch.float32).repeat_interleave(R)
    return Problem(kind, shape.n, shape.m, keys, dens, imp, eval_keys=cell_keys.repeat_interleave(R),
                   name=f"bench {shape.name}")


def _densities(shape: Shape, instances: int) -> torch.Tensor:
    if not shape.cells:
        return torch.full((instances,), shape.densities[0])
    return torch.tensor(shape.densities, dtype=torch.float32).repeat_interleave(instances // shape.cells)


def baseline_train(shape: Shape, instances: int, steps: int, seed: int,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Notebook-style training; returns the final parameters (W as [N, m, n])."""
    gen = torch.Generator(device=device).manual_seed(seed)
    std = models.default_init_std(shape.n, shape.m)
    W = torch.nn.Parameter(std * torch.randn(instances, shape.n, shape.m, generator=gen, device=device))
    b = torch.nn.Parameter(torch.zeros(instances, shape.n, device=device))
    opt = torch.optim.AdamW([W, b], lr=shape.lr)
    sched = None
    if shape.schedule == "cosine":  # tms.optim's quarter-cosine to 0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: math.cos(0.5 * math.pi * t / max(steps - 1, 1)))
    prob = _densities(shape, instances).to(device)[:, None]
    imp = (shape.decay ** torch.arange(shape.n, dtype=torch.float32, device=device))
    hidden_relu = shape.kind == "relu_hidden"
    for _ in range(steps):
        feat = torch.rand(shape.batch, instances, shape.n, generator=gen, device=device)
        batch = torch.where(torch.rand(shape.batch, instances, shape.n, generator=gen, device=device) <= prob,
                            feat, torch.zeros((), device=device))
        h = torch.einsum("bif,ifh->bih", batch, W)
        if hidden_relu:
            h = torch.relu(h)
        out = torch.relu(torch.einsum("bih,ifh->bif", h, W) + b)
        loss = (imp * (batch - out) ** 2).mean(dim=(0, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return {"W": W.detach().transpose(1, 2).contiguous(), "b": b.detach()}


def _spec(shape: Shape, steps: int, device: str, shared: str = "off", precision: str = "fp32") -> TrainSpec:
    return TrainSpec(steps=steps, batch_size=shape.batch,
                     optimizer=optim.OptimizerSpec("adamw", lr=shape.lr, schedule=shape.schedule),
                     eval_batch=shape.batch, loss_points=2, compile=True, device=device, check_every=10**9,
                     shared_batches=shared, matmul_precision=precision)


def variants(shape: Shape) -> dict[str, tuple[str, str]]:
    """The trainer's variants measured on ``shape``: name -> (shared_batches, matmul_precision)."""
    out = {"tms": ("off", "fp32")}
    if shape.cells:
        out["shared"] = ("on", "fp32")
    if not training.use_tiny_layout(ModelKind(shape.kind), shape.n, shape.m, shape.instances):
        out["bf16"] = ("on" if shape.cells else "off", "bf16")  # the faster path, with bf16 products
    return out


def _time_baseline(shape: Shape, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    baseline_train(shape, shape.instances, shape.timed_steps, 0, device)
    _sync(device)
    return shape.instances * shape.timed_steps / (time.perf_counter() - t0)


def throughput(shape: Shape, device: torch.device, rounds: int = 3) -> dict[str, object]:
    """Model-steps per second of the baseline and the trainer's variants on ``shape`` (compile and
    warm-up excluded): the median of ``rounds`` rounds, each timing every variant once, in turn."""
    prob = _problem(shape, shape.instances, 0, device)
    vs = variants(shape)
    for shared, prec in vs.values():  # compile + warm up
        training.train(prob, _spec(shape, 3, device.type, shared, prec))
    baseline_train(shape, shape.instances, 3, 0, device)
    runs: dict[str, list[float]] = {k: [] for k in ("baseline", *vs)}
    for _ in range(rounds):
        runs["baseline"].append(_time_baseline(shape, device))
        for name, (shared, prec) in vs.items():
            res = training.train(prob, _spec(shape, shape.timed_steps, device.type, shared, prec))
            runs[name].append(res.model_steps_per_second)
    med = {k: statistics.median(v) for k, v in runs.items()}
    out: dict[str, object] = {**med, "runs": runs, "ratio": med["tms"] / med["baseline"]}
    if "shared" in med:
        out["shared_over_tms"] = med["shared"] / med["tms"]
    if "bf16" in med:
        out["bf16_over_fp32"] = med["bf16"] / med["shared" if shape.cells else "tms"]
    return out


def _welch(a: list[float], b: list[float]) -> float | None:
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    return None if math.isnan(p) else float(p)


def loss_comparison(shape: Shape, seeds: int, device: torch.device) -> dict[str, object]:
    """Mean final loss of the baseline and of each variant over ``seeds`` seeds, on one evaluation stream."""
    vs = variants(shape)
    losses: dict[str, list[float]] = {k: [] for k in ("baseline", *vs)}
    for seed in range(seeds):
        prob = _problem(shape, shape.loss_instances, seed, device)
        for name, (shared, prec) in vs.items():
            res = training.train(prob, _spec(shape, shape.loss_steps, device.type, shared, prec))
            losses[name].append(float(res.final_loss.mean()))
        p = baseline_train(shape, shape.loss_instances, shape.loss_steps, 1000 + seed, device)
        losses["baseline"].append(float(training.evaluate(prob, p, 16_384, batch=min(shape.batch, 4096),
                                                          device=device).mean()))
    out: dict[str, object] = {
        **losses,
        "ratio_of_means": float(np.mean(losses["tms"]) / np.mean(losses["baseline"])),
        "welch_p": _welch(losses["tms"], losses["baseline"]),
    }
    if "shared" in losses:
        out["shared_over_tms"] = float(np.mean(losses["shared"]) / np.mean(losses["tms"]))
        out["welch_p_shared"] = _welch(losses["shared"], losses["tms"])
    if "bf16" in losses:
        ref = losses["shared" if shape.cells else "tms"]
        out["bf16_over_fp32"] = float(np.mean(losses["bf16"]) / np.mean(ref))
        out["welch_p_bf16"] = _welch(losses["bf16"], ref)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2f}"


def _quick(s: Shape) -> Shape:
    inst = min(s.instances, 2000 if not s.cells else 70 * s.cells)
    return Shape(s.key, s.name, s.n, s.m, inst, s.batch, max(5, s.timed_steps // 10), max(20, s.loss_steps // 20),
                 min(s.loss_instances, 200 if not s.cells else 10 * s.cells), s.kind, s.cells, s.densities, s.decay,
                 s.lr, s.schedule)


def select_shapes(keys: str | None) -> tuple[Shape, ...]:
    """The shapes named in a comma-separated list (None: all)."""
    if not keys:
        return SHAPES
    known = {s.key: s for s in SHAPES}
    wanted = [k.strip() for k in keys.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise ValueError(f"tms bench --shapes: unknown {unknown}; known: {', '.join(known)}")
    return tuple(known[k] for k in wanted)


def main(quick: bool = False, seeds: int = 3, out: Path | None = None, device: str = "cpu",
         shapes: str | None = None, rounds: int = 3, bf16_check: bool = False) -> int:
    dev = training.resolve_device(device)
    if bf16_check:
        return _main_precision(quick, max(seeds, 2), out, dev)
    chosen = select_shapes(shapes)
    if quick:
        chosen = tuple(_quick(s) for s in chosen)
        seeds = min(seeds, 2)
        rounds = 1
    print(f"tms bench on {dev} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    print("model-steps/s (median of %d rounds); final loss mean over %d seeds (Welch p)" % (rounds, seeds))
    results = []
    for shape in chosen:
        load0 = os.getloadavg()[0]
        thr = throughput(shape, dev, rounds)
        cmp_ = loss_comparison(shape, seeds, dev)
        load1 = os.getloadavg()[0]
        print(f"\n{shape.name}")
        print(f"  baseline {thr['baseline']:12.0f}   tms {thr['tms']:12.0f} ({thr['ratio']:.1f}x baseline)", end="")
        if "shared" in thr:
            print(f"   shared {thr['shared']:12.0f} ({thr['shared_over_tms']:.2f}x tms)", end="")
        if "bf16" in thr:
            print(f"   bf16 {thr['bf16']:12.0f} ({thr['bf16_over_fp32']:.2f}x fp32)", end="")
        print(f"\n  final loss: tms {np.mean(cmp_['tms']):.5g} / baseline {np.mean(cmp_['baseline']):.5g} "
              f"(ratio {cmp_['ratio_of_means']:.3f}, p={_fmt_p(cmp_['welch_p'])})", end="")
        if "shared" in cmp_:
            print(f"; shared {np.mean(cmp_['shared']):.5g} (/tms {cmp_['shared_over_tms']:.3f}, "
                  f"p={_fmt_p(cmp_['welch_p_shared'])})", end="")
        if "bf16" in cmp_:
            print(f"; bf16 {np.mean(cmp_['bf16']):.5g} (/fp32 {cmp_['bf16_over_fp32']:.4f}, "
                  f"p={_fmt_p(cmp_['welch_p_bf16'])})", end="")
        print(f"\n  load average {load0:.1f} -> {load1:.1f}", flush=True)
        results.append({"shape": shape.__dict__, "model_steps_per_s": thr, "final_loss": cmp_,
                        "load_average": [load0, load1]})
    if out:
        _write(out, dev, quick, {"rounds": rounds, "seeds": seeds, "results": results})
    return 0


def _write(out: Path, dev: torch.device, quick: bool, body: dict) -> None:
    from tms.io import write_json
    from tms.provenance import device_description, package_versions

    write_json(out, {"device": device_description(str(dev)), "threads": torch.get_num_threads(),
                     "packages": package_versions(), "quick": quick, **body})


# --------------------------------------------------------------------------------------------
# bf16 where it would be used: the uniform_n400_m30 shape


def precision_check(seeds: int, device: torch.device, levels: int = 12, steps: int = 4000,
                    quick: bool = False) -> dict[str, object]:
    """Final loss and D* of the ``uniform_n400_m30`` shape (ReLU output, n=400, m=30, I=1, batch 64,
    AdamW 3e-3 cosine) at ``levels`` of its 48 density levels, trained ``seeds`` times with float32 and
    with bf16 products (same seeds, so the same initialisations and batches); Welch's t-test per level."""
    n, m, B = 400, 30, 64
    all_levels = np.geomspace(1.0, 0.001, 48)
    pick = np.unique(np.round(np.linspace(0, 47, levels)).astype(int))
    dens = torch.tensor(all_levels[pick], dtype=torch.float32)
    if quick:
        dens, steps, n, m = dens[:3], 50, 40, 6
    res: dict[str, dict[str, list[list[float]]]] = {p: {"loss": [], "dstar": []} for p in ("fp32", "bf16")}
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in range(seeds):
        keys = rng.derive_keys(seed, "bench/uniform_n400_m30", len(dens), 1)
        prob = Problem(ModelKind.RELU_OUTPUT, n, m, keys, dens, torch.tensor(1.0), name="bench uniform_n400_m30")
        for prec in ("fp32", "bf16"):
            spec = TrainSpec(steps=steps, batch_size=B,
                             optimizer=optim.OptimizerSpec("adamw", lr=3e-3, schedule="cosine"), eval_batch=16_384,
                             loss_points=2, compile=True, device=device.type, matmul_precision=prec)
            r = training.train(prob, spec)
            res[prec]["loss"].append(r.final_loss.tolist())
            res[prec]["dstar"].append(metrics.dstar(r.params["W"]).tolist())
            times[prec].append(r.model_steps_per_second)
    per_level = []
    for j, d in enumerate(dens.tolist()):
        row = {"density": d}
        for what in ("loss", "dstar"):
            a = [s[j] for s in res["fp32"][what]]
            b = [s[j] for s in res["bf16"][what]]
            row[what] = {"fp32_mean": float(np.mean(a)), "bf16_mean": float(np.mean(b)),
                         "fp32_sd": float(np.std(a, ddof=1)), "bf16_sd": float(np.std(b, ddof=1)),
                         "welch_p": _welch(a, b)}
        per_level.append(row)
    return {"n": n, "m": m, "batch": B, "steps": steps, "seeds": seeds, "levels": per_level, "runs": res,
            "model_steps_per_s": {k: statistics.median(v) for k, v in times.items()}}


def _main_precision(quick: bool, seeds: int, out: Path | None, dev: torch.device) -> int:
    load0 = os.getloadavg()[0]
    print(f"tms bench --bf16-check on {dev} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"load average {load0:.1f}")
    r = precision_check(seeds, dev, quick=quick)
    print(f"uniform_n400_m30 shape (n={r['n']}, m={r['m']}, batch {r['batch']}, {r['steps']} steps), "
          f"{seeds} seeds: final loss and D*, fp32 vs bf16 products")
    print(f"{'1-S':>8s} {'loss fp32':>11s} {'loss bf16':>11s} {'p':>5s} {'D* fp32':>8s} {'D* bf16':>8s} {'p':>5s}")
    for row in r["levels"]:
        lo, ds = row["loss"], row["dstar"]
        print(f"{row['density']:8.4f} {lo['fp32_mean']:11.5g} {lo['bf16_mean']:11.5g} {_fmt_p(lo['welch_p']):>5s} "
              f"{ds['fp32_mean']:8.4f} {ds['bf16_mean']:8.4f} {_fmt_p(ds['welch_p']):>5s}")
    ps = [row["loss"]["welch_p"] for row in r["levels"] if row["loss"]["welch_p"] is not None]
    print(f"smallest loss p {min(ps) if ps else float('nan'):.3f} over {len(ps)} levels; model-steps/s "
          f"fp32 {r['model_steps_per_s']['fp32']:.0f}, bf16 {r['model_steps_per_s']['bf16']:.0f}; "
          f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    if out:
        _write(out, dev, quick, {"precision_check": r, "load_average": [load0, os.getloadavg()[0]]})
    return 0
