"""The README's figure table, generated from a build: ``tms summary`` prints it as Markdown.

One row per figure: its id (the Snakemake target), paper section, the rule and config key that build
it, its code and test module, the verdicts of its claims (with their near misses and, after a
robustness run, how many are robust), and the wall time of the jobs that made it on this machine (the
figure job plus the training jobs of its experiments, from Snakemake's benchmark files).
"""

from __future__ import annotations

import json

from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tms import findings as findings_mod
from tms.timings import read_benchmarks


def figure_rows(config_path: Path, findings_path: Path, benchmarks: Path,
                robustness_path: Path | None = None) -> list[dict[str, Any]]:
    from tms.figures import load_all
    from tms.where import function_location, test_module

    cfg = yaml.safe_load(Path(config_path).read_text())
    registry = load_all()
    found = findings_mod.read(findings_path) if Path(findings_path).exists() else []
    bench = read_benchmarks(benchmarks)
    labels: dict[str, str] = {}
    if robustness_path is not None and Path(robustness_path).exists():
        labels = {cid: row["label"] for cid, row in json.loads(Path(robustness_path).read_text())["claims"].items()}
    wall = {(r.rule, r.job): r.wall_s for r in bench.itertuples()}
    rows = []
    for fid, spec in cfg["figures"].items():
        reg = registry.get(fid)
        mine = [f for f in found if f.figure == fid]
        verdicts = Counter(f.verdict for f in mine)
        train_s = sum(wall.get(("train", e), 0.0) for e in spec["experiments"])
        rows.append({
            "id": fid,
            "section": findings_mod.SECTIONS.get(reg.section, reg.section) if reg else "",
            "experiments": spec["experiments"],
            "code": function_location(reg.build) if reg else "",
            "test": (test_module(reg.module) or "") if reg else "",
            "claims": sum(verdicts.values()),
            "reproduced": verdicts.get("reproduced", 0),
            "not_reproduced": verdicts.get("not reproduced", 0),
            "inconclusive": verdicts.get("inconclusive", 0),
            "near_misses": sum(bool(f.near_miss) for f in mine),
            "robust": sum(labels.get(f.id) == "robust" for f in mine) if labels else None,
            "fragile": sorted(f.id.split(".", 1)[1] for f in mine if labels.get(f.id) == "fragile"),
            "train_s": train_s,
            "plot_s": wall.get(("figure", fid), float("nan")),
        })
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    robust = any(r.get("robust") is not None for r in rows)
    head = ("| figure id (target) | paper section | rules | config keys | code | test | claims reproduced "
            + ("| robust (fragile) " if robust else "") + "| training (s) | plotting (s) |\n"
            "| --- | --- | --- | --- | --- | --- | --- | " + ("--- | " if robust else "") + "---: | ---: |\n")
    body = ""
    for r in rows:
        exps = ", ".join(f"`experiments.{e}`" for e in r["experiments"]) or "(analytic)"
        claims = f"{r['reproduced']}/{r['claims']}"
        if r["not_reproduced"]:
            claims += f" ({r['not_reproduced']} not reproduced)"
        if r["inconclusive"]:
            claims += f" ({r['inconclusive']} inconclusive)"
        if r.get("near_misses"):
            claims += f"; {r['near_misses']} near miss" + ("es" if r["near_misses"] > 1 else "")
        rob = ""
        if robust:
            rob = f"{r['robust']}/{r['claims']}" + (f" ({', '.join(r['fragile'])})" if r["fragile"] else "") + " | "
        k = len(r["experiments"])
        rules = "`figure`" + (f" ← `train` ×{k}" if k > 1 else " ← `train`" if k else "")
        code = f"`{r['code'].split('/')[-1]}`" if r.get("code") else ""
        test = f"`{r['test'].split('/')[-1]}`" if r.get("test") else ""
        body += (f"| `{r['id']}` | {r['section']} | {rules} | `figures.{r['id']}`; {exps} | {code} | {test} | "
                 f"{claims} | {rob}{r['train_s']:.0f} | {r['plot_s']:.0f} |\n")
    return head + body
