"""The robustness run end to end on a tiny config: variants trained as their own Snakemake jobs, every
claim evaluated on each, results/robustness.json labelling each verdict, the report and the archive
carrying the labels."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake

REPO = Path(__file__).resolve().parents[1]


def _tiny(tmp_path: Path) -> Path:
    cfg = {
        "name": "tiny", "seed": 0,
        "experiments": {"tiny": {"model": "relu_output", "n_features": 5, "n_hidden": 2,
                                 "sweep": {"density": [1.0, 0.3, 0.1]},
                                 "train": {"steps": 60, "batch_size": 64, "eval_batch": 256}}},
        "figures": {"dstar_stickiness": {"experiments": ["tiny"]},
                    "nonlinear_compression": {"experiments": [], "options": {"grid": 50, "Z": [3],
                                                                            "eps_points": 3}}},
        "robustness": {"enabled": True, "seeds": [1, 2], "steps_factor": 2},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_robustness_run_labels_every_verdict(tmp_path):
    cfg = _tiny(tmp_path)
    out = run_snakemake("--cores", "2", "--configfile", str(cfg), cwd=tmp_path)
    assert "train_variant" in out.stdout + out.stderr
    for v in ("seed1", "seed2", "steps2x"):
        assert (tmp_path / f"results/variants/{v}/claims/dstar_stickiness.json").exists()
    steps = json.loads((tmp_path / "results/variants/steps2x/tiny/meta.json").read_text())["spec"]["train"]["steps"]
    assert steps == 120
    seed = json.loads((tmp_path / "results/variants/seed1/tiny/meta.json").read_text())["seed"]
    assert seed == 1
    rob = json.loads((tmp_path / "results/robustness.json").read_text())
    findings = json.loads((tmp_path / "results/findings.json").read_text())
    assert set(rob["claims"]) == {f["id"] for f in findings}
    assert rob["summary"]["robust"] + rob["summary"]["fragile"] == len(findings)
    for cid, c in rob["claims"].items():
        assert c["label"] in ("robust", "fragile") and set(c["verdicts"]) == {"build", "seed1", "seed2", "steps2x"}
        assert (c["label"] == "robust") == (len(set(c["verdicts"].values())) == 1)
    # the analytic figure does not depend on training: the same verdict under every variant
    assert all(c["label"] == "robust" for cid, c in rob["claims"].items() if cid.startswith("nonlinear_compression"))
    html = (tmp_path / "report/build/FINDINGS.html").read_text()
    assert "[robust]" in html and "no robustness run" not in html
    with tarfile.open(tmp_path / "report/build/tms-findings-tiny.tar.gz") as tar:
        assert any(m.name.endswith("/robustness.json") for m in tar.getmembers())


@pytest.mark.slow
def test_without_the_overlay_the_report_says_robustness_was_not_checked(tmp_path):
    cfg = _tiny(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["robustness"]["enabled"] = False
    cfg.write_text(yaml.safe_dump(data))
    out = run_snakemake("-n", "--cores", "2", "--configfile", str(cfg), cwd=tmp_path)
    assert "train_variant" not in out.stdout + out.stderr and "robustness" not in out.stdout.split("Job stats:")[1]
