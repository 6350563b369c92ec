"""Check that ``train.shared_batches: off`` / ``matmul_precision: fp32`` (the defaults) train bit-identically
to another checkout: train a fixed set of small problems (every model kind, both layouts,
condition_nonempty off and auto, eager and compiled) and save every parameter and loss.

    PYTHONPATH=<checkout A>/src python docs/measurements/off_bit_identity.py a.npz
    PYTHONPATH=<checkout B>/src python docs/measurements/off_bit_identity.py b.npz
    python docs/measurements/off_bit_identity.py --compare a.npz b.npz
"""
import sys

import numpy as np
import torch


def run(path: str) -> None:
    from tms import optim, rng, training
    from tms.models import ModelKind
    from tms.training import Problem, TrainSpec

    torch.set_num_threads(1)
    out = {}
    for kind in ModelKind:
        for N, n, m in [(5, 6, 3), (300, 3, 2)]:  # instance-first; instance-last
            if kind is ModelKind.COMPUTATION and N == 5:
                n, m = 4, 6
            for cond in ("off", "auto"):
                for comp in (False, True):
                    keys = torch.tensor([rng.derive_key("golden", i) for i in range(N)])
                    prob = Problem(kind, n, m, keys, torch.linspace(0.02, 0.9, N),
                                   torch.tensor(0.85 ** np.arange(n), dtype=torch.float32),
                                   l1=0.01 if kind is ModelKind.RELU_HIDDEN else 0.0, name="g")
                    spec = TrainSpec(steps=40, batch_size=32, eval_batch=256, loss_points=5, compile=comp,
                                     condition_nonempty=cond,
                                     optimizer=optim.OptimizerSpec("adamw", lr=0.01, schedule="cosine"))
                    r = training.train(prob, spec)
                    tag = f"{kind.value}_{N}_{n}_{m}_{cond}_{comp}"
                    for k, v in r.params.items():
                        out[f"{tag}/{k}"] = v
                    out[f"{tag}/final_loss"] = r.final_loss
                    out[f"{tag}/mean_loss"] = r.mean_loss
    np.savez(path, **out)


def compare(a_path: str, b_path: str) -> int:
    a, b = np.load(a_path), np.load(b_path)
    if sorted(a.files) != sorted(b.files):
        print("different runs")
        return 1
    bad = [k for k in a.files
           if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes()]
    print(f"{len(a.files)} arrays: " + ("bit-identical" if not bad else f"differ: {bad}"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(compare(sys.argv[2], sys.argv[3]) if sys.argv[1] == "--compare" else run(sys.argv[1]))
