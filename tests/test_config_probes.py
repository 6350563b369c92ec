"""Malformed configs, as a careless or hostile user writes them: each must be refused by `tms validate`
and by `snakemake -n` before anything runs, with the offending key (or file and line) named, nothing
written, and in well under 30 seconds (issue #17).

Every probe is the quick config with one thing broken, so the rest of the file is known to be valid.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from conftest import run_snakemake

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICK_TEXT = (REPO / "workflow" / "config" / "quick.yaml").read_text()
EXP = "intro_pentagon"  # the experiment the probes break (first in quick.yaml; its figure is intro_pentagon)
TIME_BOUND_S = 30


def _edit(fn: Callable[[dict], None]) -> Callable[[], str]:
    """A probe that edits the parsed quick config and writes it back as YAML."""
    def make() -> str:
        cfg = yaml.safe_load(QUICK_TEXT)
        fn(cfg)
        return yaml.safe_dump(cfg, sort_keys=False)
    return make


def _exp(**changes) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg["experiments"][EXP].update(changes)
    return fn


def _train(**changes) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg["experiments"][EXP]["train"].update(changes)
    return fn


def _sweep(**changes) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg["experiments"][EXP]["sweep"].update(changes)
    return fn


def _rename_experiment(new: str) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg["experiments"] = {(new if k == EXP else k): v for k, v in cfg["experiments"].items()}
        for fig in cfg["figures"].values():
            fig["experiments"] = [new if e == EXP else e for e in fig["experiments"]]
    return fn


def _rename_figure(new: str) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg["figures"] = {(new if k == "intro_pentagon" else k): v for k, v in cfg["figures"].items()}
    return fn


def _set(key: str, value) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        cfg[key] = value
    return fn


def _text(fn: Callable[[str], str]) -> Callable[[], str]:
    """A probe written as text (what a YAML dump cannot express: duplicate keys, syntax errors)."""
    return lambda: fn(QUICK_TEXT)


def _duplicate_experiment(text: str) -> str:
    start = text.index(f"  {EXP}:\n")
    end = text.index("  intro_pentagon_tutorial:\n")
    block = text[start:end].replace("n_hidden: 2", "n_hidden: 3")  # a second, different definition
    return text[:end] + block + text[end:]


def _once(old: str, new: str) -> Callable[[str], str]:
    def fn(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)
    return fn


E = re.escape
# (probe id, the config's text, a pattern the error must contain: the key, or the file and line)
PROBES: list[tuple[str, Callable[[], str], str]] = [
    ("nan_density", _edit(_sweep(density=[float("nan")])), E(f"experiments.{EXP}.sweep.density[0]: nan")),
    ("inf_lr", _edit(_train(lr=float("inf"))), E(f"experiments.{EXP}.train.lr: inf")),
    ("path_escape_experiment", _edit(_rename_experiment("../../../escape")), E("experiments['../../../escape']")),
    ("shell_metachar_experiment", _edit(_rename_experiment("x$(touch pwned);`id`")),
     E("experiments['x$(touch pwned);`id`']")),
    ("path_escape_figure", _edit(_rename_figure("../figure")), E("figures['../figure']")),
    ("path_escape_config_name", _edit(_set("name", "../../frozen")), E("name: config name '../../frozen'")),
    ("duplicate_experiment", _text(_duplicate_experiment), rf"line \d+, column \d+: duplicate key experiments\.{EXP} "),
    ("duplicate_train_key", _text(_once("lr: 0.003,", "lr: 0.003, lr: 0.3,")),
     rf"line \d+, column \d+: duplicate key experiments\.{EXP}\.train\.lr "),
    ("yaml_syntax_error", _text(_once("  intro_pentagon:\n", "  intro_pentagon: [unclosed\n")),
     r"line \d+, column \d+: not valid YAML"),
    ("restarts_1e9", _edit(_exp(restarts=1_000_000_000)), E(f"experiments.{EXP}.restarts: ")),
    ("geomspace_1e9_points", _edit(_sweep(density={"geomspace": [1.0, 0.001, 1_000_000_000]})),
     E(f"experiments.{EXP}.sweep.density: 1,000,000,000 cells")),
    ("memory_n1e5_m1e4", _edit(_exp(n_features=100_000, n_hidden=10_000, importance={"constant": 1.0})),
     E(f"experiments.{EXP}: training it needs an estimated")),
    ("m_greater_than_n", _edit(_exp(n_hidden=6)), E(f"experiments.{EXP}.n_hidden: m=6 exceeds")),
    ("unknown_key", _edit(_exp(colour="red")), E(f"experiments.{EXP}: Additional properties are not allowed")),
    ("wrong_type", _edit(_exp(n_hidden="two")), E(f"experiments.{EXP}.n_hidden: 'two' is not of type")),
    ("negative_steps", _edit(_train(steps=-5)), E(f"experiments.{EXP}.train.steps: -5 is less than")),
    ("density_above_1", _edit(_sweep(density=[1.5])), E(f"experiments.{EXP}.sweep.density[0]: 1.5 is greater")),
    ("empty_sweep", _edit(_exp(sweep={})), E(f"experiments.{EXP}.sweep")),
    ("empty_density_list", _edit(_sweep(density=[])), E(f"experiments.{EXP}.sweep.density")),
    ("unknown_figure_experiment", _edit(lambda c: c["figures"]["intro_pentagon"].update(experiments=["nope"])),
     E("figures.intro_pentagon.experiments[0]: no experiment named 'nope'")),
]

# Snakemake parses --configfile itself, before any workflow code runs; for a YAML syntax error its
# own message names neither the file nor the line (hence the README's advice: `tms validate FILE`).
SNAKEMAKE_OWN_MESSAGE = {"yaml_syntax_error": r"Config file is not valid JSON or YAML"}


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _probe_dir(tmp_path: Path, probe: str, make: Callable[[], str]) -> tuple[Path, Path]:
    # a deep working directory: a name like ../../../escape would land inside tmp_path, where we look
    work = tmp_path / "a" / "b" / "c" / "work"
    work.mkdir(parents=True)
    cfg = work / f"{probe}.yaml"
    cfg.write_text(make())
    return work, cfg


def test_there_are_twenty_probes():
    assert len(PROBES) == 20 and len({p[0] for p in PROBES}) == 20


@pytest.mark.parametrize("probe,make,pattern", PROBES, ids=[p[0] for p in PROBES])
def test_tms_validate_rejects(probe, make, pattern, tmp_path):
    import subprocess

    work, cfg = _probe_dir(tmp_path, probe, make)
    before = _listing(tmp_path)
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "tms"), "validate", cfg.name], cwd=work, capture_output=True, text=True,
                          timeout=120)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert re.search(pattern, out), out
    assert "Traceback" not in out, out
    assert _listing(tmp_path) == before
    assert elapsed < TIME_BOUND_S


@pytest.mark.slow
@pytest.mark.parametrize("probe,make,pattern", PROBES, ids=[p[0] for p in PROBES])
def test_snakemake_dry_run_rejects(probe, make, pattern, tmp_path):
    work, cfg = _probe_dir(tmp_path, probe, make)
    before = _listing(tmp_path)
    t0 = time.monotonic()
    proc = run_snakemake("-n", "--cores", "1", "--configfile", cfg.name, cwd=work, check=False, timeout=120)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert re.search(SNAKEMAKE_OWN_MESSAGE.get(probe, pattern), out), out
    # Snakemake's own bookkeeping directory aside, nothing is written, inside or outside the work dir
    after = {p for p in _listing(tmp_path) if not p.startswith("a/b/c/work/.snakemake")}
    assert after == before, sorted(after - before)
    assert elapsed < TIME_BOUND_S
