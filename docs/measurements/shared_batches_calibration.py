"""Calibration of ``train.shared_batches: auto`` (tms.training.use_shared_batches).

Model-steps/s of ``tms.training.train`` (compile excluded) with ``shared_batches`` off and on, for
shapes of the default config and around the rule's threshold, timed in interleaved rounds (median).
Run from the repository root with one thread:

    PYTHONPATH=src python docs/measurements/shared_batches_calibration.py [case ...] > out.txt

Writes ``shared-batches-calibration.json`` here (or $OUT). Absolute rates depend on the machine's load;
the ratio of the two in one round is what the rule uses.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from tms import optim, rng, training
from tms.models import ModelKind
from tms.training import Problem, TrainSpec

torch.set_num_threads(int(os.environ.get("T", "1")))
os.environ.setdefault("TMS_NO_PROGRESS", "1")

# name: (model, n, m, cells, restarts per cell, batch, timed steps)
CASES = {
    "privileged n10 m5 R1000x7 B128": (ModelKind.RELU_HIDDEN, 10, 5, 7, 1000, 128, 40),
    "n10 m5 R128x8 B128": (ModelKind.RELU_HIDDEN, 10, 5, 8, 128, 128, 100),
    "n10 m5 R32x32 B128": (ModelKind.RELU_HIDDEN, 10, 5, 32, 32, 128, 100),
    "n10m5 R16x64": (ModelKind.RELU_HIDDEN, 10, 5, 64, 16, 128, 100),
    "n10m5 R10x100": (ModelKind.RELU_HIDDEN, 10, 5, 100, 10, 128, 100),
    "n10 m5 R8x128 B128": (ModelKind.RELU_HIDDEN, 10, 5, 128, 8, 128, 100),
    "phase2x1 n2 m1 R10x10000 B64": (ModelKind.RELU_OUTPUT, 2, 1, 10000, 10, 64, 60),
    "phase3x2 n3 m2 R10x10000 B64": (ModelKind.RELU_OUTPUT, 3, 2, 10000, 10, 64, 60),
    "phase3x2 R10x1000": (ModelKind.RELU_OUTPUT, 3, 2, 1000, 10, 64, 150),
    "motif comp n10 m10 R25x6 B128": (ModelKind.COMPUTATION, 10, 10, 6, 25, 128, 200),
    "pca n6 m2 R8x14 B256": (ModelKind.RELU_OUTPUT, 6, 2, 14, 8, 256, 200),
    "n6m2 R16x64 B256": (ModelKind.RELU_OUTPUT, 6, 2, 64, 16, 256, 100),
    "pentagon n5 m2 R16x3 B256": (ModelKind.RELU_OUTPUT, 5, 2, 3, 16, 256, 300),
}


def measure(name: str, rounds: int) -> dict:
    kind, n, m, C, R, B, steps = CASES[name]
    keys = rng.derive_keys(0, "calib", C, R)
    cell_keys = torch.tensor([rng.derive_key(0, "calib", c, "eval") for c in range(C)]).repeat_interleave(R)
    dens = torch.from_numpy(np.geomspace(1.0, 0.02, C)).float().repeat_interleave(R)
    prob = Problem(kind, n, m, keys, dens, torch.tensor(0.8 ** np.arange(n), dtype=torch.float32),
                   eval_keys=cell_keys, name=name)

    def spec(mode: str, st: int) -> TrainSpec:
        return TrainSpec(steps=st, batch_size=B, optimizer=optim.OptimizerSpec("adamw", lr=0.01, schedule="cosine"),
                         eval_batch=B, loss_points=2, compile=True, check_every=10**9, shared_batches=mode)

    compile_s = {mode: training.train(prob, spec(mode, 2)).compile_time for mode in ("off", "on")}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            rates[mode].append(training.train(prob, spec(mode, steps)).model_steps_per_second)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"rates": rates, "compile_s": compile_s, "ratio": med["on"] / med["off"], "load_average": os.getloadavg()[0]}


if __name__ == "__main__":
    out = {}
    for name in sys.argv[1:] or list(CASES):
        t0 = time.perf_counter()
        r = out[name] = measure(name, int(os.environ.get("ROUNDS", 3)))
        c = r["compile_s"]
        print(f"{name:32s} ratio {r['ratio']:.2f}  compile off {c['off']:.1f} s, on {c['on']:.1f} s"
              f"  load {r['load_average']:.1f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    path = os.environ.get("OUT", os.path.join(os.path.dirname(__file__), "shared-batches-calibration.json"))
    with open(path, "w") as f:
        json.dump({"threads": torch.get_num_threads(), "torch": torch.__version__, "cases": out}, f, indent=1)
