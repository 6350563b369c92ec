"""Summaries of Snakemake's ``benchmark:`` files: wall time and peak memory per job and per rule.

``tms timings`` prints a Markdown table for the README; the same numbers go into the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_benchmarks(root: str | Path = "benchmarks") -> pd.DataFrame:
    """One row per job: rule, job (wildcard value), wall seconds, peak RSS (MB), CPU seconds."""
    rows = []
    root = Path(root)
    for path in sorted(root.rglob("*.tsv")):
        rel = path.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        job = rel.stem if len(rel.parts) > 1 else ""
        df = pd.read_csv(path, sep="\t")
        if df.empty:
            continue
        last = df.iloc[-1]
        rows.append({"rule": rule, "job": job, "wall_s": float(last["s"]),
                     "max_rss_mb": float(last["max_rss"]) if last["max_rss"] != "-" else float("nan"),
                     "cpu_s": float(last["cpu_time"]) if "cpu_time" in df else float("nan")})
    return pd.DataFrame(rows, columns=["rule", "job", "wall_s", "max_rss_mb", "cpu_s"])


def per_rule(df: pd.DataFrame) -> pd.DataFrame:
    """Jobs, total and longest wall time, and the largest peak memory, per rule."""
    if df.empty:
        return pd.DataFrame(columns=["rule", "jobs", "total_wall_s", "max_wall_s", "max_rss_mb"])
    g = df.groupby("rule")
    return pd.DataFrame({
        "jobs": g.size(),
        "total_wall_s": g["wall_s"].sum(),
        "max_wall_s": g["wall_s"].max(),
        "max_rss_mb": g["max_rss_mb"].max(),
    }).reset_index()


def markdown(df: pd.DataFrame, per_job: bool = False) -> str:
    """A Markdown table (rules, or every job with ``per_job``)."""
    if per_job:
        head = "| rule | job | wall time (s) | peak memory (MB) |\n| --- | --- | ---: | ---: |\n"
        body = "".join(f"| {r.rule} | {r.job} | {r.wall_s:.1f} | {r.max_rss_mb:.0f} |\n"
                       for r in df.sort_values(["rule", "job"]).itertuples())
        return head + body
    t = per_rule(df)
    head = "| rule | jobs | total wall time (s) | longest job (s) | peak memory (MB) |\n| --- | ---: | ---: | ---: | ---: |\n"
    body = "".join(f"| {r.rule} | {r.jobs} | {r.total_wall_s:.1f} | {r.max_wall_s:.1f} | {r.max_rss_mb:.0f} |\n"
                   for r in t.itertuples())
    return head + body
