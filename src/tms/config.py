"""Loading and validating the replication config (``workflow/config/*.yaml``).

Validation runs before any job starts (the Snakefile calls :func:`read_yaml` on every config file
and :func:`validate` on the merged config), in this order:

1. the YAML itself, read strictly (:func:`read_yaml`): a syntax error or a duplicate key is
   reported with its file and line (plain YAML loaders keep the second of two duplicate keys);
2. every number finite (NaN and infinity pass a schema's range checks, since every comparison
   with NaN is false);
3. experiment, figure and config names safe as file names (:data:`NAME_PATTERN`);
4. the JSON schema in ``workflow/schemas/config.schema.yaml`` (unknown keys, wrong types,
   probabilities outside [0, 1]);
5. the checks a schema cannot express (m > n, feature sets that do not add up to n, a figure
   naming an experiment that does not exist);
6. a size bound (:func:`check_size_bound`): cells, models and estimated memory of every experiment,
   computed arithmetically from the config, before anything is allocated.

Every error names the offending key as a dotted path.
"""

from __future__ import annotations

import copy
import math
import re
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
    "select_by": "auto",  # restart selection on the exact expected loss where tms.exact covers the model
    "shared_batches": "off",  # the restarts of a cell share its batches (tms.training); off keeps every result
    "matmul_precision": "fp32",  # bf16: matrix products on bf16 inputs (tms.training); opt-in only
}


# Experiment, figure and config names become path components (results/<experiment>/,
# figures/<figure>.pdf, report/build/tms-findings-<name>.tar.gz) and Snakemake wildcards: letters,
# digits, '_', '.', '-', not starting with '.' or '-' (no hidden files, no options), and no '..'.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"

# The size bound: what one experiment may ask for before validation refuses it (a typo such as
# `restarts: 1000000000` must fail at once, not as a 480 GB job). The defaults hold every shipped
# config, phase_1m.yaml's 1,000,000 models included, with room to spare; a config that needs more
# raises them in a top-level `limits:` block (see README, "Running on SLURM").
LIMIT_DEFAULTS: dict[str, float] = {
    "max_cells": 1_000_000,  # cells of one experiment (product of its sweep axes)
    "max_instances": 10_000_000,  # models of one experiment (cells x restarts)
    "max_memory_gb": 16,  # estimated peak memory of one training job (memory_estimate_mb)
}


class ConfigError(ValueError):
    """A config problem; the message starts with the dotted path of the offending key."""


def schema_path() -> Path:
    """The JSON schema (shipped with the package; the workflow's copy is the same file)."""
    here = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"
    return here if here.exists() else REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


# ---------------------------------------------------------------------------------------------
# Reading YAML strictly


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file; a syntax error or a duplicate key raises :class:`ConfigError`
    naming the file and line (and, for a duplicate, the dotted key and where it was first set)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from err
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicate_keys(root, path)
        _check_alias_expansion(root, path)
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        what = " ".join(x for x in (err.context, err.problem) if x)
        raise ConfigError(f"{where}: not valid YAML: {what}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err


def _check_duplicate_keys(root: yaml.Node | None, path: Path) -> None:
    """Walk the composed YAML (nodes keep their lines) and refuse a key set twice in one mapping."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, list[Any]]] = [(root, [])] if root is not None else []
    while stack:
        node, where = stack.pop()
        if id(node) in seen_nodes:  # an alias of a node already walked (or a recursive one)
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, str] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may legitimately be overridden
                    continue
                # (tag, text): `1` and `"1"` are different keys, two `lr:` the same one
                key = (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else id(key_node)
                mark = key_node.start_mark
                at = f"line {mark.line + 1}, column {mark.column + 1}"
                if key in first:
                    raise ConfigError(f"{path}, {at}: duplicate key {_path(where + [key_node.value])} (first set at "
                                      f"{first[key]}); a YAML reader would silently keep the second")
                first[key] = at
                stack.append((value_node, where + [key_node.value]))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, where + [i]) for i, item in enumerate(node.value))


MAX_YAML_NODES = 1_000_000


def _check_alias_expansion(root: yaml.Node | None, path: Path) -> None:
    """Refuse a document whose aliases expand to more than :data:`MAX_YAML_NODES` values (a
    "billion laughs" config would make every later walk over it take exponential time)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 0  # a recursive alias counts once
            children = ([v for kv in node.value for v in kv] if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = min(MAX_YAML_NODES + 1, 1 + sum(size(c) for c in children))
        return sizes[id(node)]

    if root is not None and size(root) > MAX_YAML_NODES:
        raise ConfigError(f"{path}: its aliases expand to more than {MAX_YAML_NODES:,} values; write the "
                          f"config out without nested anchors")


def load(path: str | Path) -> dict[str, Any]:
    """Read (strictly) and validate a config file."""
    cfg = read_yaml(path)
    if cfg is None:
        raise ConfigError(f"config file {path} is empty")
    validate(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Validation


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def validate(cfg: Any, *, check_size: bool = True) -> None:
    """Raise :class:`ConfigError` naming the first offending key, or return None.

    ``check_size=False`` skips the size bound: for a single experiment's spec that its caller (the
    workflow) already checked against the whole config's ``limits``.
    """
    import jsonschema

    _check_finite(cfg)
    _check_names(cfg)
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
    if check_size:
        check_size_bound(cfg)


def _check_finite(cfg: Any) -> None:
    """Every number finite: NaN would pass every range check of the schema, infinity most."""
    stack: list[tuple[Any, list[Any]]] = [(cfg, [])]
    while stack:
        node, where = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{_path(where)}: {node} is not a finite number")
        if isinstance(node, dict):
            stack.extend((v, where + [k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, where + [i]) for i, v in enumerate(node))


def check_name(name: Any, where: str, what: str) -> None:
    """Raise unless ``name`` is safe as a file name and a wildcard value (:data:`NAME_PATTERN`, no '..')."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or ".." in name:
        raise ConfigError(f"{where}: {what} name {name!r} is not allowed: it becomes a file name, so use letters, "
                          f"digits, '_', '.' and '-' only, not starting with '.' or '-', and no '..'")


def _check_names(cfg: Any) -> None:
    if not isinstance(cfg, dict):
        return  # the schema reports it
    if "name" in cfg:
        check_name(cfg["name"], "name", "config")
    for section, what in (("experiments", "experiment"), ("figures", "figure")):
        if isinstance(cfg.get(section), dict):
            for name in cfg[section]:
                check_name(name, f"{section}[{name!r}]", what)


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
            _, lo, hi = axis_stats(spec, f"{where}.sweep.{axis}")
            if axis == "density" and (lo < 0 or hi > 1):
                raise ConfigError(f"{where}.sweep.density: values must lie in [0, 1] (density = 1 - sparsity)")
            if axis in ("relative_importance", "perturbed_density_ratio", "l1") and lo < 0:
                raise ConfigError(f"{where}.sweep.{axis}: values must be >= 0")
        if "perturbed_density_ratio" in sweep:
            k = exp.get("perturbed_feature")
            if k is None:
                raise ConfigError(f"{where}.perturbed_feature: required with sweep.perturbed_density_ratio")
            if k >= n:
                raise ConfigError(f"{where}.perturbed_feature: {k} is not a feature index below n_features={n}")
            top = axis_stats(sweep["density"])[2] * axis_stats(sweep["perturbed_density_ratio"])[2]
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


# ---------------------------------------------------------------------------------------------
# The size bound: computed from the config's numbers, never by building the arrays


def limits(cfg: dict[str, Any]) -> dict[str, float]:
    """The size bound in force: :data:`LIMIT_DEFAULTS` with the config's ``limits:`` on top."""
    return {**LIMIT_DEFAULTS, **(cfg.get("limits") or {})}


def axis_stats(spec: Any, where: str = "") -> tuple[int, float, float]:
    """(number of values, smallest, largest) of a sweep axis, without building a generated axis."""
    if isinstance(spec, dict):
        (kind, (a, b, k)), = spec.items()
        if kind == "geomspace" and (a <= 0 or b <= 0):
            raise ConfigError(f"{where}: geomspace bounds must be > 0")
        k = int(k)
        return (k, float(a), float(a)) if k == 1 else (k, float(min(a, b)), float(max(a, b)))
    return len(spec), float(min(spec)), float(max(spec))


def cell_count(exp: dict[str, Any]) -> int:
    """Cells of an experiment: the product of its sweep axes' lengths (exact integer arithmetic)."""
    return math.prod(axis_stats(spec)[0] for spec in exp["sweep"].values())


def model_step_bytes(n: int, m: int, batch: int) -> int:
    """One model's share of a training step's working set: the formula of
    ``tms.training.auto_chunk_size`` (not imported: it would load torch into every validation)."""
    return 4 * (batch * (10 * n + 8 * m) + 12 * n * m + 8 * n)


def memory_estimate_mb(exp: dict[str, Any]) -> float:
    """Estimated peak memory (MB) of one training job of ``exp`` (an experiment with defaults filled in).

    The trainer bounds its working set by chunking (``max_chunk_mb``; a single model larger than that
    is one chunk on its own); on top come the process baseline (torch and compiled kernels) and what
    is kept on the host for every model: parameters (and snapshots), loss records and the per-model
    density and importance tables. The same estimate sizes the ``train`` rule's ``mem_mb`` request.
    """
    t = exp["train"]
    n, m, batch = int(exp["n_features"]), int(exp["n_hidden"]), int(t["batch_size"])
    inst = cell_count(exp) * int(exp.get("restarts", 1))
    per_model_step = model_step_bytes(n, m, batch)
    chunk = (int(t["chunk_size"]) * per_model_step if t.get("chunk_size")
             else max(int(t["max_chunk_mb"]) * 2**20, per_model_step))
    params = 3 * n * m + 2 * n  # the largest model kind's parameter count
    kept = (inst * params * 4 * (1 + max(int(t["snapshots"]), 0)) + inst * 4 * int(t["loss_points"])
            + inst * n * 4 * 2 + int(t["steps"]) * 8)
    # 1500 MB baseline: the Python process with torch and compiled kernels (more on a CUDA host);
    # results are held about three times over while they are assembled and written
    return 1500 + chunk / 2**20 + 3 * kept / 2**20


def check_size_bound(cfg: dict[str, Any]) -> None:
    """Refuse an experiment whose cells, models or estimated memory exceed :func:`limits`.

    Everything is integer arithmetic on the config's numbers, so a sweep of 10^9 points costs nothing
    to refuse. The message names the key, the estimate and the ``limits:`` key that would allow it.
    """
    bound = limits(cfg)
    how = "raise limits.{key} in the config (a top-level `limits:` block) on a machine that can hold it"
    for name in cfg["experiments"]:
        exp = experiment(cfg, name)
        where = f"experiments.{name}"
        counts = {axis: axis_stats(spec)[0] for axis, spec in exp["sweep"].items()}
        cells = math.prod(counts.values())
        if cells > bound["max_cells"]:
            axis = max(counts, key=counts.get)
            key = f"{where}.sweep.{axis}" if counts[axis] > bound["max_cells"] else f"{where}.sweep"
            sizes = " x ".join(f"{a}: {n:,} values" for a, n in counts.items())
            raise ConfigError(f"{key}: {cells:,} cells ({sizes}) exceed the bound of {int(bound['max_cells']):,} "
                              f"cells per experiment; {how.format(key='max_cells')}")
        inst = cells * int(exp["restarts"])
        if inst > bound["max_instances"]:
            raise ConfigError(f"{where}.restarts: {cells:,} cells x {exp['restarts']:,} restarts = {inst:,} models "
                              f"exceed the bound of {int(bound['max_instances']):,} models per experiment; "
                              f"{how.format(key='max_instances')}")
        mb = memory_estimate_mb(exp)
        if mb > bound["max_memory_gb"] * 1024:
            t = exp["train"]
            raise ConfigError(
                f"{where}: training it needs an estimated {mb / 1024:,.1f} GB of memory ({inst:,} models of "
                f"n_features={exp['n_features']}, n_hidden={exp['n_hidden']}, train.batch_size={t['batch_size']}, "
                f"train.steps={t['steps']}, train.snapshots={t['snapshots']}, train.loss_points={t['loss_points']}), "
                f"above the bound of {bound['max_memory_gb']:g} GB; {how.format(key='max_memory_gb')}")


# ---------------------------------------------------------------------------------------------
# Expanding a validated config


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


def resolved_yaml(cfg: dict[str, Any], name: str, sources: list[str]) -> str:
    """The merged config as YAML, with its ``name`` filled in and a header naming its source files."""
    import json

    plain = json.loads(json.dumps(cfg))  # plain dicts and lists (Snakemake may hand OrderedDicts)
    plain.setdefault("name", name)
    header = ("# The merged config of this build, written by the workflow (do not edit): "
              f"{' + '.join(sources) or 'no config file'}, then --config overrides and schema defaults.\n")
    return header + yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=120)


def write_resolved(cfg: dict[str, Any], path: str | Path, name: str, sources: list[str]) -> bool:
    """Write :func:`resolved_yaml` to ``path`` unless it already holds that text, or the same config in
    another key order (a cluster job parses the workflow again, from configs Snakemake hands it in its
    own order). An unchanged file keeps its modification time, so nothing downstream reruns. True if
    it was written."""
    from tms.io import atomic_write_text

    text = resolved_yaml(cfg, name, sources)
    path = Path(path)
    if path.is_file():
        old = path.read_text(encoding="utf-8", errors="replace")
        try:
            same = old == text or yaml.safe_load(old) == yaml.safe_load(text)
        except yaml.YAMLError:  # a damaged file is rewritten
            same = False
        if same:
            return False
    atomic_write_text(path, text)
    return True


def importance_vector(spec: dict[str, Any], n: int) -> np.ndarray:
    if "decay" in spec:
        return spec["decay"] ** np.arange(n, dtype=np.float64)
    if "constant" in spec:
        return np.full(n, float(spec["constant"]))
    return np.asarray(spec["values"], dtype=np.float64)
