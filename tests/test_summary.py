"""`tms summary`: the README's figure table from a build, with near misses and robustness labels."""

from __future__ import annotations

import json

import yaml

from tms import findings, summary


def _finding(cid: str, verdict: str, near: bool | None) -> findings.Finding:
    return findings.Finding(id=cid, figure=cid.split(".")[0], section="introduction", claim="c", expected="e",
                            tolerance="", measured=1.0, verdict=verdict, detail="", experiments=[], near_miss=near)


def test_summary_counts_near_misses_and_robust_verdicts(tmp_path):
    fig = "interference_worked_example"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"figures": {fig: {"experiments": []}}}))
    found = [_finding(f"{fig}.a", "reproduced", True), _finding(f"{fig}.b", "not reproduced", False),
             _finding(f"{fig}.c", "reproduced", None)]
    findings.write(found, tmp_path / "findings.json")
    rob = {"claims": {f"{fig}.a": {"label": "fragile"}, f"{fig}.b": {"label": "robust"},
                      f"{fig}.c": {"label": "robust"}}}
    (tmp_path / "robustness.json").write_text(json.dumps(rob))
    (tmp_path / "bench").mkdir()
    args = (tmp_path / "cfg.yaml", tmp_path / "findings.json", tmp_path / "bench")
    rows = summary.figure_rows(*args, tmp_path / "robustness.json")
    assert rows[0]["near_misses"] == 1 and rows[0]["robust"] == 2 and rows[0]["fragile"] == ["a"]
    table = summary.markdown(rows)
    assert "| robust (fragile) |" in table.splitlines()[0]
    assert "2/3 (1 not reproduced); 1 near miss | 2/3 (a) |" in table
    plain = summary.markdown(summary.figure_rows(*args))  # no robustness run: no column
    assert "robust" not in plain.splitlines()[0] and "2/3 (1 not reproduced); 1 near miss |" in plain
