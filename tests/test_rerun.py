"""`tms verify --rerun`: a seeded sample retrained from the archived config matches the archived metrics,
and a doctored metric is caught (issue #17 item 5). The archive is frozen from a real (tiny) training run."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from report_fixtures import _figure
from tms import experiments, findings, freeze, io as tms_io, provenance, report, rerun
from tms import config as cfg_mod
from tms.figures.base import save

EXP = {"model": "relu_output", "n_features": 5, "n_hidden": 2, "importance": {"decay": 0.9},
       "sweep": {"density": [1.0, 0.3, 0.1, 0.03]}, "restarts": 3,
       "train": {"steps": 60, "batch_size": 64, "eval_batch": 512, "compile": False}}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rerun")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        cfg = {"name": "tiny", "seed": 3, "experiments": {"tiny": EXP},
               "figures": {"test_fig": {"experiments": ["tiny"]}}}
        config = root / "tiny.yaml"
        config.write_text(yaml.safe_dump(cfg))
        results, figures = root / "results", root / "figures"
        experiments.run("tiny", cfg_mod.experiment(cfg, "tiny"), seed=3, out_dir=results / "tiny", config_name="tiny")
        save(_figure("test_fig"), figures / "test_fig")
        tms_io.write_json(results / "provenance" / "test_fig.json", provenance.record(
            config=cfg["figures"]["test_fig"], figure="test_fig", section="introduction", title="t", caption="c"))
        findings.write([
            findings.Finding(id="test_fig.trained", figure="test_fig", section="introduction", claim="c",
                             expected="e", tolerance="", measured=1.0, verdict="reproduced", detail="",
                             experiments=["tiny"], config="tiny"),
            findings.Finding(id="test_fig.analytic", figure="test_fig", section="introduction", claim="c",
                             expected="e", tolerance="", measured=1.0, verdict="reproduced", detail="",
                             experiments=[], config="tiny"),
        ], results / "findings.json")
        build = root / "build"
        report.build(results / "findings.json", figures, results, build, config, pdf=False)
        (build / "FINDINGS.pdf").write_bytes(b"%PDF-1.5\n% placeholder\n")
        return freeze.freeze(build, figures, results, config, root / "frozen")


def test_sample_is_seeded_and_sized():
    a = rerun.sample("x", 0, cells=10_000, restarts=10, fraction=0.01, max_restarts=4)
    assert len(a) == 100 * 4 and (np.diff(a) > 0).all()
    assert (rerun.sample("x", 0, 10_000, 10, 0.01, 4) == a).all()  # the same models every time
    assert not (rerun.sample("y", 0, 10_000, 10, 0.01, 4) == a).all()  # another experiment, another sample
    assert len(rerun.sample("x", 0, cells=3, restarts=1000, fraction=0.01, max_restarts=10)) == 10  # >= 1 cell


def test_rerun_reproduces_the_archived_models(archive, capsys):
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert freeze.verify(archive, sha256=digest, rerun=0.5) is True
    out = capsys.readouterr().out
    assert "[OK] rerun (50% of each experiment's cells)" in out
    assert "tiny: 6 models of 2 cells retrained" in out  # 2 of 4 cells, all 3 restarts
    assert "claim test_fig.trained (reproduced): its experiments reproduced on the sample" in out
    assert "claim test_fig.analytic (reproduced): analytic, nothing to retrain" in out
    assert "2 of 2 claims rest on training that reproduced" in out


def test_rerun_catches_a_doctored_metric(archive, tmp_path, capsys):
    """metrics.csv with one sampled model's loss halved, every internal hash recomputed: the manifest
    cannot tell, the rerun does, and names the model."""
    idx = rerun.sample("tiny", 3, cells=4, restarts=3, fraction=0.5, max_restarts=10)
    with tarfile.open(archive) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    files = {m.name.split("/", 1)[1]: d for m, d in entries if d is not None}
    table = pd.read_csv(io.BytesIO(files["results/tiny/metrics.csv"]))
    table.loc[table.instance == idx[0], "loss"] *= 0.5
    files["results/tiny/metrics.csv"] = table.to_csv(index=False, float_format="%.8g").encode()
    files["MANIFEST.sha256"] = freeze.manifest(files)
    files["MANIFEST.sha256.sha256"] = f"{hashlib.sha256(files['MANIFEST.sha256']).hexdigest()}  MANIFEST.sha256\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m, d in entries:
            data = files[m.name.split("/", 1)[1]] if d is not None else None
            if data is not None:
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    doctored = tmp_path / archive.name
    doctored.write_bytes(gzip.compress(buf.getvalue()))
    assert freeze.verify(doctored, allow_unverified=True, rerun=0.5) is False
    out = capsys.readouterr().out
    assert "[OK] manifest" in out and "[FAIL] rerun" in out
    assert f"tiny model {idx[0]} (cell {idx[0] // 3}, restart {idx[0] % 3}): loss" in out
    assert "claim test_fig.trained (reproduced): NOT reproduced on the sample (tiny)" in out


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
