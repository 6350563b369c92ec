"""Loading and validating the replication config (``workflow/config/*.yaml``).

Validation has two layers, and both run before any job starts (the Snakefile calls
:func:`validate`): the JSON schema in ``workflow/schemas/config.schema.yaml`` (unknown keys, wrong
types, probabilities outside [0, 1]) and the checks a schema cannot express (m > n, feature sets
that do not add up to n, a figure naming an experiment that does not exist). Every error names
the offending key as a dotted path.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 10_000,
    "batch_size": 1024,
    "optimizer": "adamw",
    "lr": 1e-3,
    "schedule": "constant",
    "eval_batch": 16_384,
    "snapshots": 0,
    "loss_points": 100,
    "max_chunk_mb": 512,
    "condition_nonempty": "off",  # train on non-empty inputs only (tms.training); off keeps every result
    "shared_batches": "off",  # the restarts of a cell share its batches (tms.training); off keeps every result
    "matmul_precision": "fp32",  # bf16: matrix products on bf16 inputs (tms.training); opt-in only
}


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted path of the offending key."""


def schema_path() -> Path:
    """The JSON schema (shipped with the package; the workflow's copy is the same file)."""
    here = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
    return here if here.exists() else REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    validate(cfg)
    return cfg


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def validate(cfg: Any) -> None:
    """Raise :class:`ConfigError` naming the first offending key, or return None."""
    import jsonschema

    schema = yaml.safe_load(schema_path().read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        where = _path(err.absolute_path)
        if err.validator == "additionalProperties":
            raise ConfigError(f"{where}: {err.message}")
        if err.validator == "oneOf":
            # report the most specific sub-error rather than "is not valid under any of the given schemas"
            sub = jsonschema.exceptions.best_match(err.context) if err.context else None
            if sub is not None:
                raise ConfigError(f"{_path(list(err.absolute_path) + list(sub.relative_path))}: {sub.message}")
        raise ConfigError(f"{where}: {err.message}")
    _check_semantics(cfg)


def _check_semantics(cfg: dict[str, Any]) -> None:
    for name, exp in cfg["experiments"].items():
        where = f"experiments.{name}"
        n, m = exp["n_features"], exp["n_hidden"]
        if m > n and exp["model"] != "computation":
            raise ConfigError(f"{where}.n_hidden: m={m} exceeds n_features={n} (m > n is not allowed)")
        imp = exp.get("importance")
        if imp and "values" in imp and len(imp["values"]) != n:
            raise ConfigError(f"{where}.importance.values: {len(imp['values'])} values for n_features={n}")
        if imp and "values" in imp and not any(v > 0 for v in imp["values"]):
            raise ConfigError(f"{where}.importance.values: at least one importance must be > 0")
        sets = exp.get("feature_sets")
        if sets:
            total = sum(s["size"] * s.get("count", 1) for s in sets)
            if total != n:
                raise ConfigError(f"{where}.feature_sets: sizes add up to {total}, but n_features is {n}")
        sweep = exp["sweep"]
        if "density" not in sweep:
            raise ConfigError(f"{where}.sweep.density: required (the density 1 - S of the features)")
        for axis, spec in sweep.items():
            vals = axis_values(spec, f"{where}.sweep.{axis}")
            if axis == "density" and ((vals < 0) | (vals > 1)).any():
                raise ConfigError(f"{where}.sweep.density: values must lie in [0, 1] (density = 1 - sparsity)")
            if axis in ("relative_importance", "perturbed_density_ratio", "l1") and (vals < 0).any():
                raise ConfigError(f"{where}.sweep.{axis}: values must be >= 0")
        if "perturbed_density_ratio" in sweep:
            k = exp.get("perturbed_feature")
            if k is None:
                raise ConfigError(f"{where}.perturbed_feature: required with sweep.perturbed_density_ratio")
            if k >= n:
                raise ConfigError(f"{where}.perturbed_feature: {k} is not a feature index below n_features={n}")
            top = axis_values(sweep["density"], "").max() * axis_values(sweep["perturbed_density_ratio"], "").max()
            if top > 1:
                raise ConfigError(
                    f"{where}.sweep.perturbed_density_ratio: density x ratio reaches {top:.3g} > 1")
        elif "perturbed_feature" in exp:
            raise ConfigError(f"{where}.perturbed_feature: only meaningful with sweep.perturbed_density_ratio")
        if "l1" in sweep and "l1" in exp:
            raise ConfigError(f"{where}.l1: set either l1 or sweep.l1, not both")
    for fig, spec in cfg["figures"].items():
        for i, exp in enumerate(spec["experiments"]):
            if exp not in cfg["experiments"]:
                raise ConfigError(f"figures.{fig}.experiments[{i}]: no experiment named {exp!r}")


def axis_values(spec: Any, where: str = "") -> np.ndarray:
    """Expand a list / ``{geomspace: [a, b, k]}`` / ``{linspace: [a, b, k]}`` into float64 values."""
    if isinstance(spec, dict):
        (kind, (a, b, k)), = spec.items()
        if kind == "geomspace":
            if a <= 0 or b <= 0:
                raise ConfigError(f"{where}: geomspace bounds must be > 0")
            return np.geomspace(a, b, int(k))
        return np.linspace(a, b, int(k))
    return np.asarray(spec, dtype=np.float64)


def experiment(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """An experiment's config with defaults filled in (what ``tms train`` receives)."""
    if name not in cfg["experiments"]:
        raise ConfigError(f"experiments.{name}: no such experiment (have: {sorted(cfg['experiments'])})")
    exp = copy.deepcopy(cfg["experiments"][name])
    exp.setdefault("importance", {"constant": 1.0})
    exp.setdefault("restarts", 1)
    exp["train"] = {**TRAIN_DEFAULTS, **exp.get("train", {})}
    return exp


def importance_vector(spec: dict[str, Any], n: int) -> np.ndarray:
    if "decay" in spec:
        return spec["decay"] ** np.arange(n, dtype=np.float64)
    if "constant" in spec:
        return np.full(n, float(spec["constant"]))
    return np.asarray(spec["values"], dtype=np.float64)
