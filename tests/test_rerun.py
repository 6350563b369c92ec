"""`tms verify --rerun`: experiments within the budget retrained in full and their figures' claims
re-evaluated, a seeded sample of the others retrained; doctored metrics and verdicts are caught (issue
#17 item 5). The archive is frozen from a real (tiny) training run and a real figure's claims."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import yaml

from report_fixtures import _figure
from tms import cli, experiments, findings, freeze, io as tms_io, provenance, report, rerun
from tms import config as cfg_mod
from tms.figures.base import save

EXP = {"model": "relu_output", "n_features": 5, "n_hidden": 2, "importance": {"decay": 0.9},
       "sweep": {"density": [1.0, 0.3, 0.1, 0.03]}, "restarts": 3,
       "train": {"steps": 60, "batch_size": 64, "eval_batch": 512, "compile": False}}
REAL = "dstar_stickiness"  # a registered figure that reads any density sweep: its claims are really evaluated


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rerun")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        cfg = {"name": "tiny", "seed": 3, "experiments": {"tiny": EXP},
               "figures": {"test_fig": {"experiments": ["tiny"]}, REAL: {"experiments": ["tiny"]}}}
        config = root / "tiny.yaml"
        config.write_text(yaml.safe_dump(cfg))
        results, figures = root / "results", root / "figures"
        experiments.run("tiny", cfg_mod.experiment(cfg, "tiny"), seed=3, out_dir=results / "tiny", config_name="tiny")
        save(_figure("test_fig"), figures / "test_fig")
        tms_io.write_json(results / "provenance" / "test_fig.json", provenance.record(
            config=cfg["figures"]["test_fig"], figure="test_fig", section="introduction", title="t", caption="c"))
        assert cli.main(["plot", REAL, "--config", str(config), "--results", str(results),
                         "--out", str(figures)]) == 0
        findings.write([
            findings.Finding(id="test_fig.trained", figure="test_fig", section="introduction", claim="c",
                             expected="e", tolerance="", measured=1.0, verdict="reproduced", detail="",
                             experiments=["tiny"], config="tiny"),
            findings.Finding(id="test_fig.analytic", figure="test_fig", section="introduction", claim="c",
                             expected="e", tolerance="", measured=1.0, verdict="reproduced", detail="",
                             experiments=[], config="tiny"),
        ] + findings.read(results / "claims" / f"{REAL}.json"), results / "findings.json")
        build = root / "build"
        report.build(results / "findings.json", figures, results, build, config, pdf=False)
        (build / "FINDINGS.pdf").write_bytes(b"%PDF-1.5\n% placeholder\n")
        return freeze.freeze(build, figures, results, config, root / "frozen")


def _real_claims(archive: Path) -> list[dict]:
    with tarfile.open(archive) as tar:
        found = json.loads(tar.extractfile(f"{archive.name.removesuffix('.tar.gz')}/findings.json").read())
    return [f for f in found if f["figure"] == REAL]


def _doctor(archive: Path, out_dir: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of ``archive`` with its files edited by ``edit`` and every internal hash recomputed: the
    manifest cannot tell."""
    with tarfile.open(archive) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    files = {m.name.split("/", 1)[1]: d for m, d in entries if d is not None}
    edit(files)
    files["MANIFEST.sha256"] = freeze.manifest(files)
    digest = hashlib.sha256(files["MANIFEST.sha256"]).hexdigest()
    files["MANIFEST.sha256.sha256"] = f"{digest}  MANIFEST.sha256\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m, d in entries:
            data = files[m.name.split("/", 1)[1]] if d is not None else None
            if data is not None:
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    doctored = out_dir / archive.name
    doctored.write_bytes(gzip.compress(buf.getvalue()))
    return doctored


def test_sample_is_seeded_and_sized():
    a = rerun.sample("x", 0, cells=10_000, restarts=10, fraction=0.01, max_restarts=4)
    assert len(a) == 100 * 4 and (np.diff(a) > 0).all()
    assert (rerun.sample("x", 0, 10_000, 10, 0.01, 4) == a).all()  # the same models every time
    assert not (rerun.sample("y", 0, 10_000, 10, 0.01, 4) == a).all()  # another experiment, another sample
    assert len(rerun.sample("x", 0, cells=3, restarts=1000, fraction=0.01, max_restarts=10)) == 10  # >= 1 cell


def test_training_cost_and_budget():
    assert rerun.training_cost(EXP) == 4 * 3 * 60 * 64 * (5 + 2)  # models x steps x batch x (n + m)
    assert cli.RERUN_FULL_BUDGET == rerun.FULL_BUDGET  # the CLI's default is the module's
    args = cli.build_parser().parse_args(["verify", "a.tar.gz", "--rerun", "--rerun-full-budget", "0"])
    assert args.rerun == 0.01 and args.rerun_full_budget == 0


def test_rerun_reevaluates_the_claims_of_a_cheap_experiment(archive, capsys):
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert freeze.verify(archive, sha256=digest, rerun=0.5) is True
    out = capsys.readouterr().out
    assert "[OK] rerun (50% of each experiment's cells)" in out
    assert "tiny: 12 models of 4 cells retrained in full" in out  # under the budget: every model
    real = _real_claims(archive)
    assert real
    for f in real:
        line = f"claim {f['id']} ({f['verdict']}): verdict re-evaluated: reproduced (same verdict: {f['verdict']})"
        assert line in out
    # a figure this code does not register keeps the inputs' report
    assert ("claim test_fig.trained (reproduced): inputs reproduced in full (verdict not re-evaluated: "
            "figure test_fig is not registered") in out
    assert "claim test_fig.analytic (reproduced): analytic, nothing to retrain" in out
    assert (f"{len(real) + 2} claims: {len(real)} re-evaluated with the same verdict, 1 resting on inputs that "
            "reproduced (verdict not re-evaluated), 1 analytic, 0 failed") in out


def test_rerun_over_the_budget_falls_back_to_the_sample(archive, capsys):
    assert freeze.verify(archive, allow_unverified=True, rerun=0.5, rerun_full_budget=1000) is True
    out = capsys.readouterr().out
    assert "tiny: 6 models of 2 cells retrained," in out  # 2 of 4 cells, all 3 restarts
    f = _real_claims(archive)[0]
    assert (f"claim {f['id']} ({f['verdict']}): inputs reproduced on the sample (verdict not re-evaluated: "
            f"experiment tiny too large to retrain here (3.23e+05 element-updates, over the budget of 1e+03)") in out
    assert "re-evaluated with the same verdict" in out and " 0 re-evaluated" in out


def test_rerun_catches_a_tampered_verdict(archive, tmp_path, capsys):
    """findings.json with one real claim's verdict flipped, every internal hash recomputed."""
    target = _real_claims(archive)[0]
    flipped = "not reproduced" if target["verdict"] == "reproduced" else "reproduced"

    def edit(files: dict[str, bytes]) -> None:
        found = json.loads(files["findings.json"])
        for f in found:
            if f["id"] == target["id"]:
                f["verdict"] = flipped
        files["findings.json"] = json.dumps(found, indent=2, sort_keys=True).encode()

    doctored = _doctor(archive, tmp_path, edit)
    assert freeze.verify(doctored, allow_unverified=True, rerun=0.5) is False
    out = capsys.readouterr().out
    assert "[OK] manifest" in out and "[FAIL] rerun" in out
    assert (f"  - claim {target['id']} ({flipped}): verdict re-evaluated: DIFFERS (archived {flipped}, "
            f"rerun {target['verdict']})") in out
    assert "1 failed" in out


@pytest.mark.parametrize("budget", [None, 0])
def test_rerun_catches_a_doctored_metric(archive, tmp_path, capsys, budget):
    """metrics.csv with one sampled model's loss halved, every internal hash recomputed: the manifest
    cannot tell, the rerun does (in full, or on the sample with a budget of 0), and names the model."""
    idx = rerun.sample("tiny", 3, cells=4, restarts=3, fraction=0.5, max_restarts=10)

    def edit(files: dict[str, bytes]) -> None:
        table = pd.read_csv(io.BytesIO(files["results/tiny/metrics.csv"]))
        table.loc[table.instance == idx[0], "loss"] *= 0.5
        files["results/tiny/metrics.csv"] = table.to_csv(index=False, float_format="%.8g").encode()

    doctored = _doctor(archive, tmp_path, edit)
    assert freeze.verify(doctored, allow_unverified=True, rerun=0.5, rerun_full_budget=budget) is False
    out = capsys.readouterr().out
    assert "[OK] manifest" in out and "[FAIL] rerun" in out
    assert f"tiny model {idx[0]} (cell {idx[0] // 3}, restart {idx[0] % 3}): loss" in out
    if budget == 0:
        assert "claim test_fig.trained (reproduced): NOT reproduced on the sample (tiny)" in out
        # where it was trained and where retrained, so a reader can tell a machine's rounding from the code
        assert "sampled models that differ: trained for the archive tiny on cpu (" in out
        assert "retrained here on cpu (" in out and "torch kernels" in out
    else:
        assert "sampled models that differ" not in out  # retrained in full: the same machine's comparison
    if budget != 0:
        # the verdicts were still re-evaluated, and say so
        assert "claim test_fig.trained (reproduced): NOT reproduced by the rerun (tiny retrained in full)" in out
        f = _real_claims(archive)[0]
        assert (f"claim {f['id']} ({f['verdict']}): NOT reproduced by the rerun (tiny retrained in full); verdict "
                f"re-evaluated: reproduced (same verdict: {f['verdict']})") in out


def test_sample_of_an_experiment_trained_with_shared_batches(tmp_path):
    """An archive whose restarts shared their cell's batches (meta layout 'cell-shared', as the default
    privileged basis, whose config says ``auto``) is resampled with shared batches, not refused and not
    fed per-restart batches (``auto`` decides again from the sample's size, here: off)."""
    def exp(mode: str) -> dict:
        cfg = {"name": "tiny", "seed": 3,
               "experiments": {"tiny": dict(EXP, restarts=4, train=dict(EXP["train"], shared_batches=mode))}}
        return cfg_mod.experiment(cfg, "tiny")

    out = tmp_path / "tiny"
    experiments.run("tiny", exp("on"), seed=3, out_dir=out, config_name="tiny")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["training"]["layout"].startswith("cell-shared")
    archived = pd.read_csv(out / "metrics.csv")
    res = rerun._sampled("tiny", exp("auto"), 3, "cpu", meta, archived, fraction=0.5, max_restarts=2,
                         rtol=rerun.RTOL, atol=rerun.ATOL)
    assert len(res.instances) == 4 and len(res.cells) == 2
    assert res.ok, res.mismatches
    # fed per-restart batches instead, the same models land elsewhere: the check has teeth
    unshared = dict(meta, training=dict(meta["training"], layout="instance-first"))
    off = rerun._sampled("tiny", exp("auto"), 3, "cpu", unshared, archived, fraction=0.5, max_restarts=2,
                         rtol=rerun.RTOL, atol=rerun.ATOL)
    assert not off.ok


def test_judge_claims_reports_a_moved_value_and_a_failed_figure():
    runs = [rerun.ExperimentRerun("a", [0], [0], full=True, cost=1.0)]
    found = [{"id": "f.x", "figure": "f", "verdict": "reproduced", "measured": 1.0, "experiments": ["a"]},
             {"id": "g.y", "figure": "g", "verdict": "reproduced", "measured": 1.0, "experiments": ["a"]}]
    redo = {"f": [{"id": "f.x", "verdict": "reproduced", "measured": 1.5}], "g": "figure g: ValueError('boom')"}
    x, y = rerun.judge_claims(found, runs, redo, full_budget=10.0)
    assert x.ok and x.status == "reproduced" and "measured value differs beyond rtol 1e-06: measured: 1.0 -> 1.5" \
        in x.text
    assert not y.ok and y.text == "verdict re-evaluation FAILED (figure g: ValueError('boom'))"
    # which code re-evaluated them: the archive's own commit, or another (whose claims may have been revised)
    done = rerun.Rerun([], found, [x, y], 10.0, archive_code={"commit": "a" * 40, "dirty": False},
                       code={"commit": "a" * 40, "dirty": False})
    assert done.same_code()
    done.code["dirty"] = True
    assert not done.same_code()


def test_rerun_without_a_config_is_a_clear_failure(tmp_path, capsys):
    path = tmp_path / "bare.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("MANIFEST.sha256", b""), ("findings.json", json.dumps([]).encode())):
            info = tarfile.TarInfo(f"bare/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    assert freeze.verify(path, allow_unverified=True, rerun=0.01) is False
    assert "cannot rerun from this archive" in capsys.readouterr().out
