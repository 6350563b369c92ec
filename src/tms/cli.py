"""The ``tms`` command: every pipeline step also runs by hand.

    tms validate CONFIG                       check a config (schema + semantics)
    tms list CONFIG                           experiments and figures of a config
    tms train EXPERIMENT --config CONFIG      train one experiment -> results/<experiment>/
    tms plot FIGURE --config CONFIG           draw one figure -> figures/<figure>.{pdf,png,csv} + its claims
    tms findings --config CONFIG              merge every figure's claims -> results/findings.json
    tms report                                render FINDINGS.tex/.pdf/.html
    tms freeze                                write the frozen, citable artifact (under report/build/)
    tms cite ARCHIVE                          the top-level CITATION.cff naming a frozen artifact
    tms release [ARCHIVE]                     copy a build's archive to report/release/, cite it, say what to commit
    tms verify ARCHIVE [--build FINDINGS]     check an artifact against its trusted hash and manifest
                                              (and a rebuild against it; --rerun: retrain, re-evaluate)
    tms summary                               the README's figure table from a build
    tms where ID                              where a figure or claim lives (code, test, target, config keys)
    tms robustness --config RESOLVED          every verdict across seed and budget variants: robust or fragile
    tms timings                               wall time and peak memory per rule (benchmark files)
    tms bench                                 trainer benchmark against the notebook-style baseline
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("tms")

# tms.freeze.MAX_UNPACKED_BYTES in MiB (equal by a test; importing tms.freeze here would slow every command)
VERIFY_MAX_UNPACKED_MB = 512.0
# tms.rerun.FULL_BUDGET, for the help text (equal by a test; importing tms.rerun would import torch)
RERUN_FULL_BUDGET = 1e9

# glibc returns every array of 32 MB or more to the OS after use and faults it back in on the next
# step; keeping them mapped is worth 1.3-2.3x on the larger training shapes (see perf notes).
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "1073741824",
}


def _ensure_malloc_env() -> None:
    """Re-exec once with the allocator settings (glibc reads them only at process start)."""
    if os.environ.get("TMS_NO_REEXEC") or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    env = {**os.environ, **MALLOC_ENV, "TMS_NO_REEXEC": "1"}
    os.execve(sys.executable, [sys.executable, "-m", "tms", *sys.argv[1:]], env)


#: Libraries that log every step of their work at INFO (fontTools: ~130 lines per PDF figure, the
#: whole of a figure job's log but one line); their warnings still show, and all of it with -v.
QUIET_LOGGERS = ("fontTools", "matplotlib")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))


def _experiment_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], int, str, str]:
    """(experiment config with defaults, seed, device, config name)."""
    from tms import config as config_mod

    if args.spec:
        exp = json.loads(args.spec)
        seed = args.seed if args.seed is not None else 0
        return exp, seed, args.device or "auto", args.config_name or os.environ.get("TMS_CONFIG_NAME", "")
    if not args.config:
        raise SystemExit("tms train: give --config CONFIG (or --spec JSON --seed S)")
    cfg = config_mod.load(args.config)
    exp = config_mod.experiment(cfg, args.experiment)
    seed = args.seed if args.seed is not None else int(cfg["seed"])
    return exp, seed, args.device or cfg.get("device", "auto"), cfg.get("name", Path(args.config).stem)


def cmd_validate(args: argparse.Namespace) -> int:
    from tms import config as config_mod
    from tms.figures import load_all, validate_options

    cfg = config_mod.load(args.config)
    load_all()
    validate_options(cfg["figures"])
    print(f"{args.config}: OK ({len(cfg['experiments'])} experiments, {len(cfg['figures'])} figures)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from tms import config as config_mod

    cfg = config_mod.load(args.config)
    for name in cfg["experiments"]:
        print(f"experiment {name}")
    for name, spec in cfg["figures"].items():
        print(f"figure {name}: {', '.join(spec['experiments'])}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tms import config as config_mod
    from tms import experiments, io

    _set_threads(args.threads)
    exp, seed, device, cfg_name = _experiment_from_args(args)
    if args.spec:  # a spec from the command line gets the same checks as one from a file, except the
        # size bound: the workflow checked it against the whole config's `limits:`, which a spec lacks
        config_mod.validate({"seed": seed, "experiments": {args.experiment: exp},
                             "figures": {"_": {"experiments": [args.experiment]}}}, check_size=False)
        exp = {**exp, "train": {**config_mod.TRAIN_DEFAULTS, **exp.get("train", {})}}
        exp.setdefault("restarts", 1)
    out = Path(args.out or Path(args.results) / args.experiment)
    t0 = time.perf_counter()
    run = experiments.run(args.experiment, exp, seed, out, device=device, config_name=cfg_name)
    tr = run.meta["training"]
    timing = io.read_json(out / "timings.json")
    log.info("%s: %d instances (%d cells x %d restarts) on %s in %.1f s (compile %.1f s, %.0f model-steps/s)",
             args.experiment, tr["instances"], tr["cells"], tr["restarts"], run.meta["provenance"]["device"],
             time.perf_counter() - t0, timing["compile_time_s"], timing["model_steps_per_second"])
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from tms import config as config_mod
    from tms import findings, io, provenance
    from tms.figures import load_all, plot

    t0 = time.perf_counter()
    registry = load_all()
    if args.figure not in registry:
        raise SystemExit(f"tms plot: unknown figure {args.figure!r}; registered: {', '.join(sorted(registry))}")
    if args.config:
        cfg = config_mod.load(args.config)
        if args.figure not in cfg["figures"]:
            raise SystemExit(f"tms plot: figures.{args.figure} is not in {args.config}")
        fspec = cfg["figures"][args.figure]
        cfg_name = cfg.get("name", Path(args.config).stem)
    else:
        fspec = json.loads(args.figure_spec)
        cfg_name = args.config_name or os.environ.get("TMS_CONFIG_NAME", "")
    spec = registry[args.figure]
    stem = Path(args.out) / args.figure
    found = plot(args.figure, fspec, args.results, args.out, cfg_name)
    findings.write(found, Path(args.results) / "claims" / f"{args.figure}.json")
    runs = {}
    for name in fspec["experiments"]:
        meta = io.read_json(Path(args.results) / name / "meta.json")
        runs[name] = {"config_hash": meta["provenance"]["config_hash"],
                      "device": meta["provenance"].get("device"),
                      "code": meta["provenance"]["code"]}
    from tms.where import claim_location, function_location

    source = {"figure": function_location(spec.build),
              "claims": {c.id: claim_location(c) for c in findings.claims_for(args.figure)}}
    # no wall time in the record: it is archived, and must not differ between two builds (the job's
    # time is in Snakemake's benchmarks/figure/<id>.tsv and in this job's log)
    prov = provenance.record(config=fspec, figure=args.figure, rule="figure", module=spec.module, source=source,
                             section=spec.section, title=spec.title, caption=spec.caption, config_name=cfg_name,
                             experiments=runs)
    io.write_json(Path(args.results) / "provenance" / f"{args.figure}.json", prov)
    verdicts = ", ".join(f"{f.id.split('.')[-1]}: {f.verdict}" for f in found) or "no claims registered"
    log.info("%s written (%.1f s); %s", stem, time.perf_counter() - t0, verdicts)
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from tms import findings

    claims_dir = Path(args.results) / "claims"
    figures = args.figures or sorted(p.stem for p in claims_dir.glob("*.json"))
    merged: list[findings.Finding] = []
    for fig in figures:
        path = claims_dir / f"{fig}.json"
        if not path.exists():
            raise SystemExit(f"tms findings: {path} is missing; build the figure first (snakemake figures/{fig}.pdf)")
        merged.extend(findings.read(path))
    findings.write(merged, Path(args.out))
    counts: dict[str, int] = {}
    for f in merged:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    log.info("%d claims: %s -> %s", len(merged), ", ".join(f"{v} {k}" for k, v in sorted(counts.items())), args.out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tms import report

    report.build(findings_path=Path(args.findings), figures_dir=Path(args.figures), results_dir=Path(args.results),
                 out_dir=Path(args.out), config_path=Path(args.config) if args.config else None,
                 pdf=not args.no_pdf, robustness_path=Path(args.robustness) if args.robustness else None)
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    import yaml

    from tms import findings, io, variants

    cfg = yaml.safe_load(Path(args.config).read_text()) or {}
    base = findings.read(Path(args.findings))
    figures = sorted({f.figure for f in base})
    by_variant, described = {}, {}
    for v in variants.variants(cfg):
        found = []
        for fid in figures:
            path = Path(args.variants) / v.name / "claims" / f"{fid}.json"
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist (build it: snakemake {path})")
            found += findings.read(path)
        by_variant[v.name] = found
        described[v.name] = v.describe(int(cfg.get("seed", 0)))
    out = variants.aggregate(base, by_variant, described)
    io.write_json(Path(args.out), out)
    s = out["summary"]
    log.info("%d claims: %d robust, %d fragile under %s -> %s", s["claims"], s["robust"], s["fragile"],
             ", ".join(described), args.out)
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    from tms import freeze

    path = freeze.freeze(report_dir=Path(args.report), figures_dir=Path(args.figures), results_dir=Path(args.results),
                         config_path=Path(args.config), out_dir=Path(args.out))
    print(path)
    return 0


def cmd_cite(args: argparse.Namespace) -> int:
    from tms import freeze

    if args.bibtex:
        print(freeze.bibtex(Path(args.archive)), end="")
        return 0
    print(freeze.cite(Path(args.archive), Path(args.out)))
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from tms import freeze

    rel = freeze.release(Path(args.archive), dest=Path(args.to), citation_out=Path(args.citation),
                         readme=Path(args.readme) if args.readme else None, allow_dirty=args.allow_dirty)
    print(rel.instructions())
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tms import freeze

    ok = freeze.verify(Path(args.archive), build_findings=Path(args.build) if args.build else None,
                       sha256=args.sha256, citation=Path(args.citation) if args.citation else None,
                       allow_unverified=args.allow_unverified, max_unpacked=int(args.max_unpacked_mb * 2**20),
                       rerun=args.rerun, device=args.device, rerun_full_budget=args.rerun_full_budget)
    return 0 if ok else 1


def _sha256_arg(text: str) -> str:
    text = text.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SHA-256 (64 hexadecimal digits)")
    return text


def cmd_bench(args: argparse.Namespace) -> int:
    from tms import bench

    _set_threads(args.threads)
    return bench.main(quick=args.quick, seeds=args.seeds, out=Path(args.out) if args.out else None, device=args.device,
                      shapes=args.shapes, rounds=args.rounds, bf16_check=args.bf16_check)


def cmd_summary(args: argparse.Namespace) -> int:
    from tms import summary

    rows = summary.figure_rows(Path(args.config), Path(args.findings), Path(args.benchmarks),
                               Path(args.robustness) if args.robustness else None)
    print(summary.markdown(rows), end="")
    return 0


def cmd_where(args: argparse.Namespace) -> int:
    import yaml

    from tms import where

    config = yaml.safe_load(Path(args.config).read_text()) if args.config and Path(args.config).exists() else None
    try:
        print(where.describe(args.id, config), end="")
    except KeyError as err:
        raise SystemExit(f"tms where: {err.args[0]}")
    return 0


def cmd_timings(args: argparse.Namespace) -> int:
    from tms import timings

    df = timings.read_benchmarks(args.dir)
    if df.empty:
        raise SystemExit(f"tms timings: no benchmark files under {args.dir}/ (run the pipeline first)")
    print(timings.markdown(df, per_job=args.jobs), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tms", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check a config file")
    s.add_argument("config")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("list", help="list a config's experiments and figures")
    s.add_argument("config")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("train", help="train one experiment")
    s.add_argument("experiment")
    s.add_argument("--config", help="config file (YAML)")
    s.add_argument("--spec", help="the experiment's config as JSON (instead of --config)")
    s.add_argument("--seed", type=int)
    s.add_argument("--config-name", help="label recorded in provenance, with --spec (default: $TMS_CONFIG_NAME, "
                   "which the workflow sets)")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"])
    s.add_argument("--results", default="results")
    s.add_argument("--out", help="output directory (default: RESULTS/EXPERIMENT)")
    s.add_argument("--threads", type=int)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("plot", help="draw one figure and evaluate its claims")
    s.add_argument("figure")
    s.add_argument("--config", help="config file (YAML)")
    s.add_argument("--figure-spec", help="the figure's config entry as JSON (instead of --config)")
    s.add_argument("--config-name", help="label recorded in provenance, with --figure-spec (default: "
                   "$TMS_CONFIG_NAME, which the workflow sets)")
    s.add_argument("--results", default="results")
    s.add_argument("--out", default="figures")
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("findings", help="merge every figure's claims into one findings file")
    s.add_argument("--results", default="results")
    s.add_argument("--figures", nargs="*", help="figure ids (default: every results/claims/*.json)")
    s.add_argument("--out", default="results/findings.json")
    s.set_defaults(func=cmd_findings)

    s = sub.add_parser("report", help="render the FINDINGS report (TeX -> PDF, and HTML)")
    s.add_argument("--findings", default="results/findings.json")
    s.add_argument("--figures", default="figures")
    s.add_argument("--results", default="results")
    s.add_argument("--config")
    s.add_argument("--out", default="report/build")
    s.add_argument("--no-pdf", action="store_true", help="render the .tex and .html only")
    s.add_argument("--robustness", help="results/robustness.json of a robustness run: robust/fragile labels")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("robustness", help="line up every claim's verdict across seed and budget variants")
    s.add_argument("--findings", default="results/findings.json")
    s.add_argument("--variants", default="results/variants", help="the variants' results (<variant>/claims/)")
    s.add_argument("--config", required=True, help="the (resolved) config naming the variants")
    s.add_argument("--out", default="results/robustness.json")
    s.set_defaults(func=cmd_robustness)

    s = sub.add_parser("freeze", help="write the frozen, citable artifact")
    s.add_argument("--report", default="report/build")
    s.add_argument("--figures", default="figures")
    s.add_argument("--results", default="results")
    s.add_argument("--config", required=True)
    s.add_argument("--out", default="report/build")
    s.set_defaults(func=cmd_freeze)

    s = sub.add_parser("cite", help="write the top-level CITATION.cff naming a frozen artifact and its SHA-256")
    s.add_argument("archive")
    s.add_argument("--out", default="CITATION.cff")
    s.add_argument("--bibtex", action="store_true", help="print the BibTeX entries (replication, paper) instead")
    s.set_defaults(func=cmd_cite)

    s = sub.add_parser("release", help="copy a build's archive into report/release/ (the cited one), rewrite "
                                       "CITATION.cff and the README's release block, and print what to commit")
    s.add_argument("archive", nargs="?", default="report/build/tms-findings-default.tar.gz")
    s.add_argument("--to", default="report/release", help="the release directory (committed)")
    s.add_argument("--citation", default="CITATION.cff")
    s.add_argument("--readme", default="README.md", help="README with a release block to rewrite ('' for none)")
    s.add_argument("--allow-dirty", action="store_true",
                   help="release an archive built from uncommitted changes (no commit rebuilds it)")
    s.set_defaults(func=cmd_release)

    s = sub.add_parser("verify", help="verify a frozen artifact (and a rebuild against it)")
    s.add_argument("archive")
    s.add_argument("--build", help="a freshly built findings.json to compare with the frozen one")
    s.add_argument("--sha256", type=_sha256_arg, help="the archive's trusted SHA-256 (from the paper or release)")
    s.add_argument("--citation", help="a CITATION.cff naming the archive's SHA-256 (default: the repository's)")
    s.add_argument("--allow-unverified", action="store_true",
                   help="exit 0 when everything is consistent but no trusted hash vouches for the archive")
    s.add_argument("--max-unpacked-mb", type=float, default=VERIFY_MAX_UNPACKED_MB,
                   help="refuse an archive that unpacks to more than this (default: %(default)g)")
    s.add_argument("--rerun", nargs="?", type=float, const=0.01, metavar="FRACTION",
                   help="retrain a seeded sample (FRACTION of each experiment's cells, default 0.01, at least one) "
                        "from the archived config and compare it with the archived metrics; experiments "
                        "within --rerun-full-budget are retrained in full instead, and the claims of every "
                        "figure whose experiments all were are re-evaluated and their verdicts compared")
    s.add_argument("--rerun-full-budget", type=float, default=RERUN_FULL_BUDGET, metavar="UPDATES",
                   help="with --rerun: retrain in full every experiment whose estimated training cost (models x "
                        "steps x batch x (n_features + n_hidden)) is at most this; 0 retrains samples only "
                        "(default: %(default)g, about 2-3 minutes for the default config on 2 cores)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="device of --rerun")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("summary", help="the README's figure table (verdicts and wall times) from a build")
    s.add_argument("--config", default="workflow/config/default.yaml")
    s.add_argument("--findings", default="results/findings.json")
    s.add_argument("--benchmarks", default="benchmarks")
    s.add_argument("--robustness", default=None,
                   help="results/robustness.json of a robustness run: a column of robust / fragile verdicts")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("where", help="where a figure or claim lives: code, analysis, test, target, config keys")
    s.add_argument("id", help="a figure id (intro_pentagon) or a claim id (intro_pentagon.dense_orthogonal)")
    s.add_argument("--config", default="workflow/config/default.yaml", help="for the experiments' config keys")
    s.set_defaults(func=cmd_where)

    s = sub.add_parser("timings", help="wall time and peak memory per rule, from Snakemake's benchmark files")
    s.add_argument("--dir", default="benchmarks")
    s.add_argument("--jobs", action="store_true", help="one row per job instead of per rule")
    s.set_defaults(func=cmd_timings)

    s = sub.add_parser("bench", help="trainer benchmark against the notebook-style baseline")
    s.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, not for the README)")
    s.add_argument("--seeds", type=int, default=3)
    s.add_argument("--threads", type=int)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    s.add_argument("--out", help="write the results as JSON here")
    s.add_argument("--shapes", help="comma-separated subset of the shapes: n20, n400, phase, privileged (default: all)")
    s.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per shape (the median is reported)")
    s.add_argument("--bf16-check", action="store_true",
                   help="instead: fp32 vs bf16 products on the uniform_n400_m30 shape, per density level over seeds")
    s.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("train", "bench") and argv is None:
        _ensure_malloc_env()
    _setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # a clear one-line reason in the job log (and a traceback only for bugs)
        line = known_error(err)
        if line is None:
            raise
        log.error("%s", line)
        return 2


def known_error(err: BaseException) -> str | None:
    """The one-line message of an error a user can act on (bad config, damaged or missing file, full
    disk, diverged training); None for anything else, which is a bug and keeps its traceback."""
    from tms.config import ConfigError
    from tms.io import CorruptFileError

    known: tuple[type[BaseException], ...] = (ConfigError, CorruptFileError, FileNotFoundError)
    # only modules already imported can have raised their errors: importing tms.training here
    # would cost `tms validate` the import of torch
    if "tms.training" in sys.modules:
        known += (sys.modules["tms.training"].TrainingDiverged,)
    if "tms.report" in sys.modules:
        known += (sys.modules["tms.report"].ReportError,)
    if isinstance(err, known):
        return str(err)
    if isinstance(err, OSError):
        return os_error_line(err)
    return None


def os_error_line(err: OSError) -> str:
    """``FILE: reason`` for an operating-system error, with what to do about the common ones."""
    import errno

    where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f) or "(no file named)"
    reason = err.strerror or str(err)
    hint = {
        errno.ENOSPC: "free space on that filesystem and rerun; the interrupted output was not kept",
        errno.EDQUOT: "free space within your quota and rerun; the interrupted output was not kept",
        errno.EACCES: "check the permissions of that path",
        errno.EROFS: "the filesystem is read-only; run from a writable directory",
    }.get(err.errno or -1)
    return f"{where}: {reason}" + (f" ({hint})" if hint else "")


if __name__ == "__main__":
    sys.exit(main())
