"""Provenance of every output: which code, config, packages and device produced it.

Records that are archived hold nothing that differs between two builds of the same commit (no wall
times), so the frozen archive is reproducible; timings are written separately (``timings.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("tms", "torch", "numpy", "scipy", "matplotlib", "jinja2", "pyyaml", "jsonschema", "snakemake",
            "snakemake-executor-plugin-slurm", "pandas", "tqdm")


def config_hash(obj: Any) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of a config fragment."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# Paths under version control that `tms release` writes (relative to the repository root); builds write
# under report/build/ (ignored) and never here.
BUILD_OUTPUTS_IN_GIT = ("report/release", "CITATION.cff")


@lru_cache(maxsize=1)
def code_version(root: str | None = None) -> dict[str, Any]:
    """Git commit of the working tree and whether it had uncommitted changes.

    ``TMS_CODE_VERSION`` (commit) overrides, for builds from an exported tree without ``.git``.
    """
    if os.environ.get("TMS_CODE_VERSION"):
        return {"commit": os.environ["TMS_CODE_VERSION"], "dirty": False, "source": "TMS_CODE_VERSION"}
    cwd = root or str(Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        # the released archive and its CITATION.cff are outputs of `tms release`, not code: a release
        # not yet committed must not mark a rebuild's provenance dirty
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 *(f":(exclude){p}" for p in BUILD_OUTPUTS_IN_GIT)], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return {"commit": commit, "dirty": bool(status.strip()), "source": "git"}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None, "source": "none"}


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str) -> str:
    """The device in words. On CPU also its model and the vector instructions torch's kernels use:
    two CPUs with other ones round differently, which a retrain on another machine can show."""
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    isa = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({cpu_name()}, {platform.machine()}, torch kernels {isa}, {os.cpu_count()} logical cores)"


def record(*, config: Any, device: str | None = None, wall_time: float | None = None, **extra: Any) -> dict[str, Any]:
    """A provenance record for an output produced from ``config``."""
    rec: dict[str, Any] = {
        "config_hash": config_hash(config),
        "code": code_version(),
        "packages": package_versions(),
        "platform": platform.platform(),
    }
    if device is not None:
        rec["device"] = device_description(device)
    if wall_time is not None:
        rec["wall_time_s"] = round(float(wall_time), 3)
    rec.update(extra)
    return rec
