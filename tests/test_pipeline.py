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
              env: dict | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    return run_snakemake(*args, cwd=cwd, timeout=timeout, check=check, env=env, umask=umask)


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


def _other_locale() -> str:
    """A locale other than the one the first build ran under (only C and C.UTF-8 are sure to exist)."""
    current = os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG") or "C"
    return "C" if current.lower().replace("-", "") == "c.utf8" else "C.UTF-8"


def _member_diff(a: Path, b: Path) -> list[str]:
    """Archive members whose bytes differ between two archives (for the failure message)."""
    import tarfile

    def members(path):
        with tarfile.open(path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

    ma, mb = members(a), members(b)
    return sorted(n for n in set(ma) | set(mb) if ma.get(n) != mb.get(n))


@pytest.mark.slow
def test_quick_pipeline_end_to_end_is_reproducible(quick_build, tmp_path):
    """The whole quick config twice from nothing, the second time under another path (with a space),
    time zone, locale, umask and core count: every output, identical findings, identical PDF, and the
    same archive SHA-256, so a rebuild verifies against the first build's hash."""
    second = tmp_path / "second build, elsewhere"
    second.mkdir()
    env = {"TZ": "Pacific/Kiritimati", "LC_ALL": _other_locale(), "LANG": _other_locale()}
    t0 = time.time()
    snakemake("--cores", "3", "--configfile", str(QUICK), cwd=second, timeout=3600, env=env, umask=0o077)
    print(f"quick pipeline, second build: {time.time() - t0:.0f} s")
    cfg = yaml.safe_load(QUICK.read_text())
    archives = [work / "report/build/tms-findings-quick.tar.gz" for work in (quick_build, second)]
    for work, archive in zip((quick_build, second), archives):
        for fid in cfg["figures"]:
            for ext in ("pdf", "png", "csv"):
                assert (work / "figures" / f"{fid}.{ext}").stat().st_size > 0
        for exp in cfg["experiments"]:
            assert (work / "results" / exp / "run.npz").exists()
            assert json.loads((work / "results" / exp / "timings.json").read_text())["wall_time_s"] > 0
        findings = json.loads((work / "results/findings.json").read_text())
        assert {f["figure"] for f in findings} == set(cfg["figures"]), "every figure registers claims"
        for f in findings:
            assert f["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        for out in ("FINDINGS.tex", "FINDINGS.pdf", "FINDINGS.html"):
            assert (work / "report/build" / out).stat().st_size > 0
        # the first build's hash is the trusted one: the second build must match it
        verify = subprocess.run([str(BIN / "tms"), "verify", str(archive), "--sha256", _sha(archives[0]),
                                 "--build", str(work / "results/findings.json")], capture_output=True, text=True,
                                cwd=work)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "verify: VERIFIED" in verify.stdout
    assert (quick_build / "results/findings.json").read_bytes() == (second / "results/findings.json").read_bytes()
    assert _sha(quick_build / "report/build/FINDINGS.pdf") == _sha(second / "report/build/FINDINGS.pdf")
    assert _sha(archives[0]) == _sha(archives[1]), f"archive members differ: {_member_diff(*archives)}"
    # nothing left to do: a rerun is a no-op
    out = snakemake("-n", "--cores", "2", "--configfile", str(QUICK), cwd=second)
    assert "Nothing to be done" in out.stdout + out.stderr


def _copy_build(src: Path, dst: Path) -> Path:
    """A copy of a build (outputs, their modification times and Snakemake's metadata) to change freely."""
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


def _planned(text: str, rule: str, wildcard: str) -> set[str]:
    """The wildcard values of the jobs of ``rule`` in Snakemake's output (a dry run says "rule", a
    local run "localrule")."""
    jobs = re.findall(rf"^(?:local)?rule {rule}:\n((?:[ \t]+.*\n)+)", text, re.M)
    return {m.group(1) for job in jobs if (m := re.search(rf"wildcards: {wildcard}=(\S+)", job))}


PHASE_1M = REPO / "workflow" / "config" / "phase_1m.yaml"


@pytest.mark.slow
def test_an_override_retrains_only_what_it_changes_and_archives_the_merged_config(quick_build, tmp_path):
    """Issue #14: an override file that renames the config retrains only the experiments whose spec
    it changes (the name is provenance, not a rerun trigger), and the archive holds the merged config."""
    work = _copy_build(quick_build, tmp_path / "work")
    # the documented override, on the quick build: only phase_2x1_relu's spec changes
    out = snakemake("-n", "--cores", "2", "--configfile", str(QUICK), str(PHASE_1M), cwd=work)
    text = out.stdout + out.stderr
    assert _planned(text, "train", "experiment") == {"phase_2x1_relu"}, text[-3000:]
    assert _planned(text, "figure", "figure") == {"phase_diagram_2x1", "phase_training_loss"}
    assert "report/build/tms-findings-phase_1m.tar.gz" in text

    # a small override built for real: one experiment retrained, the archive's config is the merged one
    override = tmp_path / "override.yaml"
    override.write_text("name: quick_override\nexperiments:\n  pentagon_perturbation:\n    train: {steps: 301}\n")
    out = snakemake("--cores", "2", "--configfile", str(QUICK), str(override), cwd=work)
    text = out.stdout + out.stderr
    assert _planned(text, "train", "experiment") == {"pentagon_perturbation"}
    assert _planned(text, "figure", "figure") == {"intro_pentagon", "pentagon_perturbation"}
    import tarfile

    with tarfile.open(work / "report/build/tms-findings-quick_override.tar.gz") as tar:
        names = tar.getnames()
        archived = yaml.safe_load(tar.extractfile("tms-findings-quick_override/config/config.resolved.yaml"))
    quick = yaml.safe_load(QUICK.read_text())
    assert archived["name"] == "quick_override"
    assert set(archived["experiments"]) == set(quick["experiments"])
    assert set(archived["figures"]) == set(quick["figures"])
    assert archived["experiments"]["pentagon_perturbation"]["train"] == {**quick["experiments"][
        "pentagon_perturbation"]["train"], "steps": 301}
    assert sum(n.startswith("tms-findings-quick_override/figures/") for n in names) == 3 * len(quick["figures"])
    # provenance: the retrained experiment ran under the override's name, the others under quick's
    meta = {e: json.loads((work / "results" / e / "meta.json").read_text()) for e in ("pentagon_perturbation",
                                                                                        "intro_pentagon")}
    assert meta["pentagon_perturbation"]["config_name"] == "quick_override"
    assert meta["intro_pentagon"]["config_name"] == "quick"


def test_the_documented_override_resolves_to_the_merged_config(tmp_path):
    """`--configfile default.yaml phase_1m.yaml` (dry run): report and freeze read the merged config,
    not the override file alone."""
    out = snakemake("-n", "-p", "--cores", "2", "--configfile", str(REPO / "workflow/config/default.yaml"),
                    str(PHASE_1M), cwd=tmp_path)
    text = out.stdout + out.stderr
    resolved = yaml.safe_load((tmp_path / "results/config.resolved.yaml").read_text())
    default = yaml.safe_load((REPO / "workflow/config/default.yaml").read_text())
    override = yaml.safe_load(PHASE_1M.read_text())
    assert resolved["name"] == "phase_1m"
    assert set(resolved["experiments"]) == set(default["experiments"]) and len(resolved["experiments"]) == 23
    assert set(resolved["figures"]) == set(default["figures"]) and len(resolved["figures"]) == 22
    relu = resolved["experiments"]["phase_2x1_relu"]
    assert relu["sweep"] == override["experiments"]["phase_2x1_relu"]["sweep"]
    assert relu["train"] == default["experiments"]["phase_2x1_relu"]["train"]  # the rest comes from default
    for name, exp in default["experiments"].items():
        if name != "phase_2x1_relu":
            assert {k: resolved["experiments"][name][k] for k in exp} == exp, name
    assert "--config results/config.resolved.yaml --out report/build" in text  # tms report
    assert re.search(r"tms freeze .*--config results/config\.resolved\.yaml --out report/build", text)
    assert "report/build/tms-findings-phase_1m.tar.gz" in text


@pytest.mark.slow
def test_a_damaged_or_deleted_output_is_rebuilt(quick_build, tmp_path):
    """Issue #17: a deleted PNG is planned again; a truncated run.npz makes the figure job fail with
    one line naming the file and the command that rebuilds it, and that command does."""
    work = _copy_build(quick_build, tmp_path / "work")
    (work / "figures/phase_diagram_2x1.png").unlink()
    out = snakemake("-n", "--cores", "2", "--configfile", str(QUICK), cwd=work)
    assert _planned(out.stdout + out.stderr, "figure", "figure") == {"phase_diagram_2x1"}

    npz = work / "results/pentagon_perturbation/run.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    out = snakemake("--cores", "2", "--configfile", str(QUICK), "--force", "figures/intro_pentagon.pdf", cwd=work,
                    check=False)
    assert out.returncode != 0
    log = (work / "logs/figure/intro_pentagon.log").read_text()
    errors = [ln for ln in log.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "Traceback" not in log, log
    assert "results/pentagon_perturbation/run.npz is corrupt or truncated" in errors[0]
    command = re.search(r"`(snakemake [^`]+)`", errors[0]).group(1)
    assert command == "snakemake --cores all --forcerun results/pentagon_perturbation/run.npz"
    assert not (work / "figures/intro_pentagon.pdf").exists()  # Snakemake removed the failed job's outputs

    # the command the message gives (with this build's config) retrains the experiment and rebuilds
    # everything made from it, the deleted PNG included
    args = command.split()[1:]
    out = snakemake(*[a if a != "all" else "2" for a in args], "--configfile", str(QUICK), cwd=work)
    text = out.stdout + out.stderr
    assert _planned(text, "train", "experiment") == {"pentagon_perturbation"}
    assert _planned(text, "figure", "figure") == {"intro_pentagon", "pentagon_perturbation", "phase_diagram_2x1"}
    from tms.experiments import RunData

    assert RunData.load(work / "results/pentagon_perturbation").arrays["final_loss"].size > 0
    assert (work / "figures/intro_pentagon.pdf").exists() and (work / "figures/phase_diagram_2x1.png").exists()


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
