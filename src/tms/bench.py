"""``tms bench``: the trainer against a straightforward baseline, in one run on one machine.

The baseline is written the way the paper's public notebook trains: all instances in one tensor,
autograd, ``torch.optim.AdamW``, and two ``torch.rand`` calls per batch (values and the
zero/non-zero mask). Both train the ReLU-output model with the same hyperparameters (AdamW, lr 1e-3,
weight decay 0.01, constant schedule, density 0.1, uniform importance, the same initial weight
distribution). Reported: model-steps per second (instances x steps / s, compile excluded) and the
ratio, for three shapes; then, over several seeds, the mean final loss of both on a common fresh
evaluation set, with Welch's t-test: the fast path must not change what training achieves.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms import models, optim, rng, training
from tms.models import ModelKind
from tms.training import Problem, TrainSpec

DENSITY = 0.1


@dataclass(frozen=True)
class Shape:
    name: str
    n: int
    m: int
    instances: int
    batch: int
    timed_steps: int  # steps timed for throughput
    loss_steps: int  # steps trained for the loss comparison
    loss_instances: int  # instances in the loss comparison


SHAPES = (
    Shape("n=20, m=5, 7 instances, batch 1024", 20, 5, 7, 1024, 600, 3000, 7),
    Shape("n=400, m=30, 20 instances, batch 1024", 400, 30, 20, 1024, 60, 300, 20),
    Shape("n=2, m=1, 100,000 instances, batch 64", 2, 1, 100_000, 64, 150, 2000, 2000),
)


def _problem(shape: Shape, instances: int, seed: int, device: torch.device) -> Problem:
    keys = rng.derive_keys(seed, f"bench/{shape.n}x{shape.m}", instances, 1)
    return Problem(ModelKind.RELU_OUTPUT, shape.n, shape.m, keys, torch.tensor(DENSITY), torch.tensor(1.0),
                   name=f"bench {shape.name}")


def baseline_train(shape: Shape, instances: int, steps: int, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Notebook-style training; returns the final parameters (W as [N, m, n])."""
    gen = torch.Generator(device=device).manual_seed(seed)
    std = models.default_init_std(shape.n, shape.m)
    W = torch.nn.Parameter(std * torch.randn(instances, shape.n, shape.m, generator=gen, device=device))
    b = torch.nn.Parameter(torch.zeros(instances, shape.n, device=device))
    opt = torch.optim.AdamW([W, b], lr=1e-3)
    prob = torch.full((instances, 1), DENSITY, device=device)
    for _ in range(steps):
        feat = torch.rand(shape.batch, instances, shape.n, generator=gen, device=device)
        batch = torch.where(torch.rand(shape.batch, instances, shape.n, generator=gen, device=device) <= prob,
                            feat, torch.zeros((), device=device))
        h = torch.einsum("bif,ifh->bih", batch, W)
        out = torch.relu(torch.einsum("bih,ifh->bif", h, W) + b)
        loss = ((batch - out) ** 2).mean(dim=(0, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"W": W.detach().transpose(1, 2).contiguous(), "b": b.detach()}


def _spec(shape: Shape, steps: int, device: str) -> TrainSpec:
    return TrainSpec(steps=steps, batch_size=shape.batch, optimizer=optim.OptimizerSpec("adamw", lr=1e-3),
                     eval_batch=shape.batch, loss_points=2, compile=True, device=device, check_every=10**9)


def throughput(shape: Shape, device: torch.device) -> dict[str, float]:
    """Model-steps per second of both trainers on ``shape`` (compile and warm-up excluded)."""
    prob = _problem(shape, shape.instances, 0, device)
    training.train(prob, _spec(shape, 3, device.type))  # compile + warm up
    res = training.train(prob, _spec(shape, shape.timed_steps, device.type))
    fast = res.model_steps_per_second
    baseline_train(shape, shape.instances, 3, 0, device)  # warm up
    _sync(device)
    t0 = time.perf_counter()
    baseline_train(shape, shape.instances, shape.timed_steps, 0, device)
    _sync(device)
    base = shape.instances * shape.timed_steps / (time.perf_counter() - t0)
    return {"fast": fast, "baseline": base, "ratio": fast / base}


def loss_comparison(shape: Shape, seeds: int, device: torch.device) -> dict[str, object]:
    """Mean final loss of both trainers over ``seeds`` seeds, on one evaluation stream."""
    fast, base = [], []
    for seed in range(seeds):
        prob = _problem(shape, shape.loss_instances, seed, device)
        res = training.train(prob, _spec(shape, shape.loss_steps, device.type))
        fast.append(float(res.final_loss.mean()))
        p = baseline_train(shape, shape.loss_instances, shape.loss_steps, 1000 + seed, device)
        base.append(float(training.evaluate(prob, p, 16_384, batch=min(shape.batch, 4096), device=device).mean()))
    from scipy import stats

    t = stats.ttest_ind(fast, base, equal_var=False) if seeds > 1 else None
    return {
        "fast": fast,
        "baseline": base,
        "ratio_of_means": float(np.mean(fast) / np.mean(base)),
        "welch_p": None if t is None or math.isnan(t.pvalue) else float(t.pvalue),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(quick: bool = False, seeds: int = 3, out: Path | None = None, device: str = "cpu") -> int:
    dev = training.resolve_device(device)
    shapes = SHAPES
    if quick:
        shapes = tuple(Shape(s.name, s.n, s.m, min(s.instances, 2000), s.batch, max(5, s.timed_steps // 10),
                             max(20, s.loss_steps // 20), min(s.loss_instances, 200)) for s in SHAPES)
        seeds = min(seeds, 2)
    print(f"tms bench on {dev} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    print(f"{'shape':42s} {'baseline':>12s} {'tms':>12s} {'ratio':>7s}   final loss (tms / baseline, Welch p)")
    results = []
    for shape in shapes:
        thr = throughput(shape, dev)
        cmp_ = loss_comparison(shape, seeds, dev)
        p = cmp_["welch_p"]
        print(f"{shape.name:42s} {thr['baseline']:12.0f} {thr['fast']:12.0f} {thr['ratio']:6.1f}x   "
              f"{np.mean(cmp_['fast']):.5g} / {np.mean(cmp_['baseline']):.5g} "
              f"(ratio {cmp_['ratio_of_means']:.3f}, p={'n/a' if p is None else f'{p:.2f}'}, {seeds} seeds)",
              flush=True)
        results.append({"shape": shape.__dict__, "model_steps_per_s": thr, "final_loss": cmp_})
    if out:
        from tms.io import write_json
        from tms.provenance import device_description, package_versions

        write_json(out, {"device": device_description(str(dev)), "threads": torch.get_num_threads(),
                         "packages": package_versions(), "quick": quick, "results": results})
    return 0
