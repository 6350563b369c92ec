from pathlib import Path

import yaml

from tms import findings, summary, timings


def _bench(root: Path, rule: str, job: str, seconds: float, rss: float) -> None:
    path = root / rule / f"{job}.tsv" if job else root / f"{rule}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{seconds}\n")


def test_timings_per_rule_and_markdown(tmp_path):
    _bench(tmp_path, "train", "a", 10.0, 500)
    _bench(tmp_path, "train", "b", 30.0, 900)
    _bench(tmp_path, "findings", "", 1.0, 80)
    df = timings.read_benchmarks(tmp_path)
    assert len(df) == 3
    per = timings.per_rule(df).set_index("rule")
    assert per.loc["train", "jobs"] == 2 and per.loc["train", "total_wall_s"] == 40.0
    assert per.loc["train", "max_rss_mb"] == 900
    assert "| train | 2 | 40.0 | 30.0 | 900 |" in timings.markdown(df)
    assert "| train | b | 30.0 | 900 |" in timings.markdown(df, per_job=True)


def test_summary_rows_count_verdicts_and_times(tmp_path):
    cfg = {"figures": {"intro_pentagon": {"experiments": ["a", "b"]}, "nonlinear_compression": {"experiments": []}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    f = [findings.Finding("intro_pentagon.x", "intro_pentagon", "introduction", "c", "e", "t", 1.0,
                          v, "", ["a"]) for v in ("reproduced", "not reproduced", "reproduced")]
    findings.write(f, tmp_path / "findings.json")
    _bench(tmp_path / "bench", "train", "a", 10.0, 1)
    _bench(tmp_path / "bench", "train", "b", 5.0, 1)
    _bench(tmp_path / "bench", "figure", "intro_pentagon", 3.0, 1)
    rows = summary.figure_rows(tmp_path / "c.yaml", tmp_path / "findings.json", tmp_path / "bench")
    r = {row["id"]: row for row in rows}
    assert r["intro_pentagon"]["reproduced"] == 2 and r["intro_pentagon"]["not_reproduced"] == 1
    assert r["intro_pentagon"]["train_s"] == 15.0 and r["intro_pentagon"]["plot_s"] == 3.0
    md = summary.markdown(rows)
    assert "| `intro_pentagon` | Introduction | `figure` ← `train` ×2 |" in md and "2/3 (1 not reproduced)" in md
    assert "(analytic)" in md
