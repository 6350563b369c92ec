"""D* per sparsity level of the uniform n=400, m=30 run against the same run with twice the steps (the
robustness run's steps2x variant): issue 12 asks that doubling the steps move D* by < 0.01 at every level.

    python docs/measurements/dstar_convergence.py results/uniform_n400_m30 results/variants/steps2x/uniform_n400_m30
"""

from __future__ import annotations

import sys

import numpy as np

from tms import metrics
from tms.experiments import RunData


def dstar_by_level(path: str) -> tuple[np.ndarray, np.ndarray]:
    run = RunData.load(path)
    W = run.params()["W"]
    return np.asarray(run.cells["density"], dtype=float), metrics.dstar(W)


def main(base: str, doubled: str) -> None:
    d0, a = dstar_by_level(base)
    d1, b = dstar_by_level(doubled)
    assert np.allclose(d0, d1), "the two runs have different sparsity levels"
    diff = np.abs(a - b)
    print("| 1-S | 1/(1-S) | D* | D* at 2x steps | difference |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for s, x, y, d in zip(d0, a, b, diff):
        print(f"| {s:.4g} | {1 / s:.3g} | {x:.4f} | {y:.4f} | {d:.4f} |")
    print(f"\nlargest difference {diff.max():.4f} at 1-S = {d0[diff.argmax()]:.4g}; levels within 0.01: "
          f"{int((diff < 0.01).sum())} of {len(diff)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
