"""The Snakemake workflow: lint, the DAG, bad input, faults, and the quick config end to end."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run_snakemake

from tms.figures import load_all

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICK = REPO / "workflow" / "config" / "quick.yaml"

# The stable public figure ids: every registered figure is a target `snakemake figures/<id>.pdf`
# (tests/test_where.py checks that the registry and both configs list the same figures).
FIGURE_IDS = set(load_all())


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 1800, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    return run_snakemake(*args, cwd=cwd, timeout=timeout, check=check, env=env)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_lint_is_clean():
    out = snakemake("--lint")
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def _job_counts(text: str) -> dict[str, int]:
    block = text.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


@pytest.mark.parametrize("config", ["default", "quick"])
def test_dry_run_lists_every_figure(config, tmp_path):
    cfg = yaml.safe_load((REPO / "workflow/config" / f"{config}.yaml").read_text())
    missing = FIGURE_IDS - set(cfg["figures"])
    assert not missing, f"{config}.yaml has no entry for figures {sorted(missing)}"
    args = ["-n", "--cores", "2"] + ([] if config == "default" else ["--configfile", str(QUICK)])
    out = snakemake(*args, cwd=tmp_path)
    counts = _job_counts(out.stdout + out.stderr)
    assert counts.get("figure") == len(cfg["figures"])
    assert counts.get("train") == len(cfg["experiments"])
    for rule in ("findings", "report", "freeze", "all"):
        assert counts.get(rule) == 1
    for fid in FIGURE_IDS:
        assert f"figures/{fid}.pdf" in out.stdout + out.stderr


def test_bad_config_fails_before_any_job(tmp_path):
    cfg = yaml.safe_load(QUICK.read_text())
    name = next(iter(cfg["experiments"]))
    cfg["experiments"][name]["n_hidden"] = cfg["experiments"][name]["n_features"] + 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    out = snakemake("--cores", "1", "--configfile", str(bad), cwd=tmp_path, check=False)
    assert out.returncode != 0
    assert f"experiments.{name}.n_hidden" in out.stdout + out.stderr
    assert not (tmp_path / "results").exists()


def _tiny_config(tmp_path: Path, **train) -> Path:
    cfg = {
        "name": "tiny", "seed": 0,
        "experiments": {"tiny": {"model": "relu_output", "n_features": 5, "n_hidden": 2,
                                 "sweep": {"density": [0.1]},
                                 "train": {"steps": 50, "batch_size": 64, "eval_batch": 256, **train}}},
        "figures": {"intro_pentagon": {"experiments": ["tiny"]}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_failing_job_log_names_the_experiment_and_instance(tmp_path):
    cfg = _tiny_config(tmp_path, init_std=1e25)
    out = snakemake("results/tiny/run.npz", "--cores", "1", "--configfile", str(cfg), cwd=tmp_path, check=False)
    assert out.returncode != 0
    log = (tmp_path / "logs/train/tiny.log").read_text()
    assert re.search(r"tiny: .*instance 0 \(cell 0: density=0\.1; restart 0\)", log), log
    assert "Error in rule train" in out.stdout + out.stderr
    assert not (tmp_path / "results/tiny/run.npz").exists()


@pytest.mark.slow
def test_interrupted_training_leaves_nothing_complete_and_is_redone(tmp_path):
    cfg = _tiny_config(tmp_path, steps=200_000, compile=False)
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "results/tiny/run.npz", "--cores", "1",
           "--configfile", str(cfg)]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "TMS_NO_PROGRESS": "1"}
    # SIGINT back to its default in the child: a test run started in the background (`pytest &`
    # in a script) inherits SIGINT ignored, and Snakemake would then never see the Ctrl-C
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "logs/train/tiny.log"
    deadline = time.time() + 180
    while time.time() < deadline and not (log.exists() and "steps/s" in log.read_text()):
        time.sleep(1)
    assert log.exists() and "steps/s" in log.read_text(), "training never started"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    proc.wait(timeout=120)
    assert not (tmp_path / "results/tiny/run.npz").exists()
    assert not (tmp_path / "results/tiny/meta.json").exists()
    # the rerun redoes exactly the interrupted job
    out = snakemake("results/tiny/run.npz", "-n", "--cores", "1", "--configfile", str(cfg), cwd=tmp_path)
    assert _job_counts(out.stdout + out.stderr) == {"train": 1, "total": 1}


@pytest.mark.slow
def test_quick_pipeline_end_to_end_is_reproducible(quick_build, tmp_path):
    """The whole quick config twice from nothing: every output, identical findings, identical PDF."""
    second = tmp_path / "second"
    second.mkdir()
    t0 = time.time()
    snakemake("--cores", "2", "--configfile", str(QUICK), cwd=second, timeout=3600)
    print(f"quick pipeline, second build: {time.time() - t0:.0f} s")
    cfg = yaml.safe_load(QUICK.read_text())
    for work in (quick_build, second):
        for fid in cfg["figures"]:
            for ext in ("pdf", "png", "csv"):
                assert (work / "figures" / f"{fid}.{ext}").stat().st_size > 0
        for exp in cfg["experiments"]:
            assert (work / "results" / exp / "run.npz").exists()
        findings = json.loads((work / "results/findings.json").read_text())
        assert {f["figure"] for f in findings} == set(cfg["figures"]), "every figure registers claims"
        for f in findings:
            assert f["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        for out in ("FINDINGS.tex", "FINDINGS.pdf", "FINDINGS.html"):
            assert (work / "report/build" / out).stat().st_size > 0
        archive = work / "report/frozen/tms-findings-quick.tar.gz"
        verify = subprocess.run([str(BIN / "tms"), "verify", str(archive), "--build", str(work / "results/findings.json")],
                                capture_output=True, text=True, cwd=work)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (quick_build / "results/findings.json").read_bytes() == (second / "results/findings.json").read_bytes()
    assert _sha(quick_build / "report/build/FINDINGS.pdf") == _sha(second / "report/build/FINDINGS.pdf")
    # nothing left to do: a rerun is a no-op
    out = snakemake("-n", "--cores", "2", "--configfile", str(QUICK), cwd=second)
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_quick_build_evaluates_exactly_the_registered_claims(quick_build):
    """Every figure's claims file holds exactly the claims registered for it, each with a verdict."""
    from tms.figures import load_all
    from tms.findings import claims_for

    load_all()
    cfg = yaml.safe_load(QUICK.read_text())
    for fid in cfg["figures"]:
        found = json.loads((quick_build / "results" / "claims" / f"{fid}.json").read_text())
        assert {c["id"] for c in found} == {c.id for c in claims_for(fid)}, fid
        assert all(c["verdict"] in ("reproduced", "not reproduced", "inconclusive") for c in found)
        # quick models are not converged, so any verdict goes; but no claim may have raised
        for c in found:
            assert not c["detail"].startswith("claim could not be evaluated"), (c["id"], c["detail"])
        assert len(pd.read_csv(quick_build / "figures" / f"{fid}.csv")) > 0, fid
        prov = json.loads((quick_build / "results" / "provenance" / f"{fid}.json").read_text())
        assert prov["figure"] == fid and prov["config_hash"] and prov["code"]["commit"]
