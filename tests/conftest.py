"""Shared test settings and fixtures.

Torch runs single-threaded (tests run beside other work) and without progress bars. ``quick_build``
is the quick config built once from nothing by Snakemake; the slow tests that need a complete build
(determinism, the SLURM comparison) share it.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TMS_NO_PROGRESS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICK = REPO / "workflow" / "config" / "quick.yaml"


@pytest.fixture
def repo_root() -> str:
    return str(REPO)


def run_snakemake(*args: str, cwd: Path, timeout: int = 3600, check: bool = True,
                  env: dict | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    """``snakemake --snakefile <repo>/Snakefile ARGS`` in ``cwd`` with the project's environment
    (``env`` on top of it, and ``umask`` for the Snakemake process and its jobs)."""
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), *args]
    e = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TMS_NO_PROGRESS": "1", **(env or {})}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e, preexec_fn=preexec)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory) -> Path:
    """Working directory of a complete local build of workflow/config/quick.yaml."""
    work = tmp_path_factory.mktemp("quick_build")
    t0 = time.time()
    run_snakemake("--cores", "2", "--configfile", str(QUICK), cwd=work)
    print(f"\nquick pipeline, local build: {time.time() - t0:.0f} s")
    return work
