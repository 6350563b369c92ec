"""SLURM integration tests (issue #8): the pipeline's SLURM profile on a real single-node cluster.

The cluster tests start a private SLURM cluster on this machine with tests/slurm/local_slurm.sh
(slurmctld, slurmd with one fake GPU, slurmdbd + MariaDB so that sacct works as on real clusters,
munge), run workflows through ``snakemake --executor slurm`` with the real profile plus the CI layer
(``--profile workflow/profiles/slurm --profile tests/slurm/profile-ci``), check what SLURM recorded with
sacct, and stop exactly the daemons they started. They need root and Debian's packages, so they are
skipped unless TMS_SLURM_TEST=1 (CI sets it and runs as root):

    tests/slurm/local_slurm.sh install            # once per machine (apt-get; idempotent)
    TMS_SLURM_TEST=1 python -m pytest tests/test_slurm.py

If the cluster is already running (someone ran `local_slurm.sh start`), the tests use it and leave it
running; otherwise they start it and stop it at the end, also when a test fails.

The smoke workflow (tests/slurm/smoke/Snakefile, whose `train` rule has the shape of the pipeline's)
exercises the plugin's fault handling quickly; the tests at the bottom run the real pipeline on the quick
config through SLURM and compare its findings with a local build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_DIR = REPO / "tests" / "slurm"
LOCAL_SLURM = SLURM_DIR / "local_slurm.sh"
MAIN_PROFILE = REPO / "workflow" / "profiles" / "slurm"
CI_PROFILE = SLURM_DIR / "profile-ci"
SMOKE = SLURM_DIR / "smoke" / "Snakefile"

# how the smoke workflow sizes `train` (tests/slurm/smoke/Snakefile): base mem_mb per experiment x attempt
SMOKE_TRAIN_MEM_MB = {"a": 300, "b": 400}
SNAKEMAKE_TIMEOUT = 900  # seconds; a run that hangs (the plugin's known failure mode) fails the test

requires_cluster = pytest.mark.skipif(
    os.environ.get("TMS_SLURM_TEST") != "1",
    reason="starts a private SLURM cluster (root, Debian packages slurm-wlm/slurmdbd/mariadb-server); "
    "set TMS_SLURM_TEST=1 to run (CI does)",
)


# ------------------------------------------------------------------------------------ the profiles


def _load(profile_dir: Path) -> dict:
    return yaml.safe_load((profile_dir / "profile.yaml").read_text())


def test_ci_profile_layers_on_the_main_profile():
    """The CI layer restates only the main profile's site block (same resource names) and test-speed
    settings; everything else it inherits. Guards against the two drifting apart, and against settings
    in the main profile that the plugin would apply to the wrong jobs."""
    main, ci = _load(MAIN_PROFILE), _load(CI_PROFILE)

    assert main["executor"] == "slurm"
    assert int(main["retries"]) >= 1, "a scancel'd or failed job must be retried"
    assert main["slurm-status-command"] == "squeue", "sacct's 'CANCELLED by <uid>' hangs plugin 2.8.0"
    assert str(main["slurm-logdir"]).startswith("logs/slurm")
    train = main["set-resources"]["train"]
    assert train["gpu"] == 1 and "cpus_per_gpu" in train and "gpu_model" in train
    assert "mem_mb" not in train and "runtime" not in train, "train is sized per experiment by the rule"
    for key in ("gpu", "gpu_model", "gres", "cpus_per_task"):
        assert key not in main["default-resources"], f"{key} in default-resources applies to every job"

    allowed = {"default-resources", "set-resources", "jobs", "latency-wait",
               "slurm-init-seconds-before-status-checks", "slurm-keep-successful-logs"}
    assert set(ci) <= allowed, f"CI profile overrides more than the site block: {set(ci) - allowed}"
    assert set(ci["default-resources"]) == set(main["default-resources"])
    assert set(ci["set-resources"]) == set(main["set-resources"])
    for rule, res in main["set-resources"].items():
        assert set(ci["set-resources"][rule]) == set(res), f"set-resources.{rule} differs in names"


def test_workflow_profile_does_not_override_the_slurm_profile():
    """Snakemake applies the workflow profile profiles/default/ (found next to the Snakefile or in the
    working directory) on top of every --profile, replacing whole top-level keys. So with
    `snakemake --profile workflow/profiles/slurm`, a key that profiles/default also sets, to another
    value, silently replaces the SLURM setting: `default-resources` there drops the account and
    partition of every CPU job, `keep-going: false` stops all training at the first failure."""
    main = _load(MAIN_PROFILE)
    seen = set()
    for d in (REPO / "profiles" / "default", REPO / "workflow" / "profiles" / "default"):
        for name in ("profile.yaml", "config.yaml"):
            f = d / name
            if not f.exists() or f.resolve() in seen:
                continue
            seen.add(f.resolve())
            wf = yaml.safe_load(f.read_text()) or {}
            clash = sorted(k for k in set(wf) & set(main) if wf[k] != main[k])
            assert not clash, (
                f"{f.relative_to(REPO)} sets {clash}; `snakemake --profile workflow/profiles/slurm` also "
                f"loads it (as the workflow profile) and these keys would replace the SLURM profile's. "
                f"Remove them there (Snakemake's defaults are keep-going: false, latency-wait: 5) or give "
                f"them the SLURM profile's values."
            )


# ----------------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def slurm_env():
    """Environment for SLURM clients and Snakemake, with the private cluster running."""
    if os.geteuid() != 0:
        pytest.fail("TMS_SLURM_TEST=1 but not root: the local SLURM cluster needs root")
    env = os.environ.copy()
    conf = subprocess.run([LOCAL_SLURM, "env"], check=True, capture_output=True, text=True).stdout
    env["SLURM_CONF"] = conf.strip().split("=", 1)[1]
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    already = subprocess.run([LOCAL_SLURM, "status"], capture_output=True, text=True).returncode == 0
    if not already:
        for step in ("install", "start"):
            # two fake GPUs: the pipeline's training jobs run two at a time, as the machine's two cores allow
            r = subprocess.run([LOCAL_SLURM, step], capture_output=True, text=True, timeout=900,
                               env={**os.environ, "LOCAL_SLURM_GPUS": os.environ.get("LOCAL_SLURM_GPUS", "2")})
            if r.returncode != 0:
                # `start` stops whatever it started when it fails
                pytest.fail(f"local_slurm.sh {step} failed:\n{r.stdout}\n{r.stderr}")
    try:
        yield env
    finally:
        if not already:
            r = subprocess.run([LOCAL_SLURM, "stop"], capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"local_slurm.sh stop failed:\n{r.stdout}\n{r.stderr}"


def _snakemake_cmd(workdir: Path, *args: str, profiles=(MAIN_PROFILE, CI_PROFILE)) -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SMOKE), "--directory", str(workdir)]
    for p in profiles:
        cmd += ["--profile", str(p)]
    return cmd + list(args)


def run_smoke(env, workdir: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(_snakemake_cmd(workdir, *args, **kw), cwd=workdir, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=SNAKEMAKE_TIMEOUT)


_SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")
_LOGPATH = re.compile(r"rule_(?P<rule>[^/]+)/(?:(?P<wc>.+)/)?\d+\.log$")


def submitted(output: str) -> list[dict]:
    """SLURM jobs of a Snakemake run, in submission order: id, rule, wildcards, SLURM log path."""
    jobs = []
    for jobid, log in _SUBMITTED.findall(output):
        m = _LOGPATH.search(log)
        assert m, log
        jobs.append({"id": jobid, "rule": m["rule"], "wildcards": m["wc"] or "", "log": Path(log)})
    return jobs


SACCT_FIELDS = ("JobIDRaw", "State", "Partition", "Account", "ReqMem", "AllocTRES", "Comment")


def sacct(env, ids) -> dict[str, dict]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(SACCT_FIELDS)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line]
    return {r["JobIDRaw"]: r for r in rows}


def _tail(text: str, n: int = 80) -> str:
    return "\n".join(text.splitlines()[-n:])


@pytest.mark.slow
@requires_cluster
def test_smoke_workflow_on_slurm(slurm_env, tmp_path):
    """prepare -> train (a, b: GPU jobs) -> summarize, through the executor plugin."""
    t0 = time.monotonic()
    r = run_smoke(slurm_env, tmp_path)
    assert r.returncode == 0, _tail(r.stdout)
    print(f"smoke workflow: {time.monotonic() - t0:.1f} s")

    jobs = submitted(r.stdout)
    assert sorted(j["rule"] for j in jobs) == ["prepare", "summarize", "train", "train"]
    acct = sacct(slurm_env, [j["id"] for j in jobs])
    for j in jobs:
        row = acct[j["id"]]
        assert row["State"] == "COMPLETED", row
        assert row["Account"] == "default", row
        if j["rule"] == "train":
            exp = j["wildcards"]
            assert "gres/gpu=1" in row["AllocTRES"], row
            assert row["Partition"] == "gpu", row
            assert row["ReqMem"] == f"{SMOKE_TRAIN_MEM_MB[exp]}M", row  # sized per experiment
            assert row["Comment"] == f"rule_train_wildcards_{exp}", row
            run = (tmp_path / "results" / exp / "run.txt").read_text()
            assert f"job={j['id']}" in run, run
            # exactly one of the node's two GPUs; which one depends on what else is running
            assert re.search(r"^CUDA_VISIBLE_DEVICES=[01]$", run, re.M), run
        else:
            assert "gres/gpu" not in row["AllocTRES"], row
            assert row["Partition"] == "debug", row
            assert row["ReqMem"] == "500M", row
    # successful jobs' SLURM logs are not kept (only failed ones are)
    assert not list((tmp_path / "logs" / "slurm").rglob("*.log"))


def _wait_for_running_train_job(env, workdir: Path, experiment: str, timeout: float = 600) -> str:
    """SLURM id of the running `train` job of `experiment` submitted from `workdir`, once its rule
    has started (it writes its log first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T|%Z"], env=env, capture_output=True,
                             text=True).stdout
        for line in out.splitlines():
            jobid, comment, state, wd = line.split("|", 3)
            if (comment == f"rule_train_wildcards_{experiment}" and state == "RUNNING"
                    and Path(wd) == workdir and (workdir / "logs" / "train" / f"{experiment}.log").exists()):
                return jobid
        time.sleep(0.5)
    raise AssertionError(f"no running train job for {experiment} within {timeout} s")


@pytest.mark.slow
@requires_cluster
def test_scancelled_training_job_is_retried(slurm_env, tmp_path):
    """A training job killed by SLURM mid-run (scancel) is resubmitted with attempt 2 (more memory)
    and the workflow completes."""
    proc = subprocess.Popen(
        _snakemake_cmd(tmp_path, "--config", "experiments=[a]", "slow=[a]", "slow_seconds=900"),
        cwd=tmp_path, env=slurm_env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        victim = _wait_for_running_train_job(slurm_env, tmp_path, "a")
        subprocess.run(["scancel", victim], env=slurm_env, check=True)
        output, _ = proc.communicate(timeout=SNAKEMAKE_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, _tail(output)

    train = [j for j in submitted(output) if j["rule"] == "train"]
    assert [j["id"] for j in train][0] == victim and len(train) == 2, train
    acct = sacct(slurm_env, [j["id"] for j in train])
    first, retry = acct[train[0]["id"]], acct[train[1]["id"]]
    assert first["State"].startswith("CANCELLED"), first
    assert retry["State"] == "COMPLETED" and "gres/gpu=1" in retry["AllocTRES"], retry
    assert retry["ReqMem"] == f"{2 * SMOKE_TRAIN_MEM_MB['a']}M", retry  # attempt 2 asks for more
    assert f"job={train[1]['id']}" in (tmp_path / "results" / "a" / "run.txt").read_text()
    # the cancelled job's SLURM log is kept (it failed), the retry's is not
    assert train[0]["log"].exists() and not train[1]["log"].exists()


@pytest.mark.slow
@requires_cluster
def test_failed_job_keeps_its_slurm_log_and_is_reported(slurm_env, tmp_path):
    """A training job that fails: Snakemake names the rule and the experiment, the job's SLURM log is
    kept and holds the error, the other experiment still completes (keep-going)."""
    r = run_smoke(slurm_env, tmp_path, "--config", "experiments=[a,b]", "fail=[b]", "--retries", "0")
    assert r.returncode != 0, _tail(r.stdout)

    train = {j["wildcards"]: j for j in submitted(r.stdout) if j["rule"] == "train"}
    assert set(train) == {"a", "b"}
    acct = sacct(slurm_env, [train["a"]["id"], train["b"]["id"]])
    assert acct[train["b"]["id"]]["State"] == "FAILED", acct
    assert acct[train["a"]["id"]]["State"] == "COMPLETED", acct  # keep-going: a is not lost

    # the report names the rule, the experiment's output and the kept SLURM log
    block = r.stdout[r.stdout.index("Error in rule train:"):][:3000]
    assert "results/b/run.txt" in block, block
    assert str(train["b"]["log"]) in block, block
    log = train["b"]["log"]
    assert log.exists() and "rule_train/b/" in str(log)
    assert "SMOKE-FAILURE-MARKER: experiment b fails on purpose" in log.read_text()
    assert not train["a"]["log"].exists()  # successful job's SLURM log removed


@pytest.mark.slow
@requires_cluster
def test_shipped_profile_runs_unedited(slurm_env, tmp_path):
    """The profile as shipped (site settings all "") works on a cluster whose default partition has
    GPUs: no partition, no account, any GPU model. Two concessions to the test machine: the first status
    check comes sooner, and cpus_per_gpu is capped at the node's CPU count (a 2-core CI machine cannot
    give 4 CPUs per GPU; sbatch would reject the job)."""
    set_resources = _load(MAIN_PROFILE)["set-resources"]
    set_resources["train"]["cpus_per_gpu"] = min(int(set_resources["train"]["cpus_per_gpu"]), os.cpu_count())
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "profile.yaml").write_text(yaml.safe_dump({"set-resources": set_resources}))
    workdir = tmp_path / "run"
    workdir.mkdir()
    r = run_smoke(slurm_env, workdir, "results/a/run.txt", "--slurm-init-seconds-before-status-checks", "2",
                  profiles=(MAIN_PROFILE, layer))
    assert r.returncode == 0, _tail(r.stdout)
    train = [j for j in submitted(r.stdout) if j["rule"] == "train"]
    assert len(train) == 1
    row = sacct(slurm_env, [train[0]["id"]])[train[0]["id"]]
    assert row["State"] == "COMPLETED" and "gres/gpu=1" in row["AllocTRES"], row
    assert row["Partition"] == "debug", row  # the cluster's default partition


# --------------------------------------------------------------------------- phase 2: the pipeline

QUICK = REPO / "workflow" / "config" / "quick.yaml"


@pytest.fixture(scope="module")
def slurm_quick(slurm_env, tmp_path_factory):
    """workflow/config/quick.yaml built end to end through the executor plugin: (workdir, output, jobs)."""
    work = tmp_path_factory.mktemp("slurm_quick")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
           "--profile", str(MAIN_PROFILE), "--profile", str(CI_PROFILE), "--configfile", str(QUICK)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=work, env={**slurm_env, "TMS_NO_PROGRESS": "1"}, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3 * SNAKEMAKE_TIMEOUT)
    print(f"quick pipeline on SLURM: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, _tail(r.stdout, 150)
    return work, r.stdout, submitted(r.stdout)


@pytest.mark.slow
@requires_cluster
def test_quick_pipeline_end_to_end_on_slurm(slurm_quick):
    """Every job of the quick config ran as a SLURM job, and the report and archive were built."""
    work, _, jobs = slurm_quick
    cfg = yaml.safe_load(QUICK.read_text())
    rules = [j["rule"] for j in jobs]
    assert rules.count("train") == len(cfg["experiments"])
    assert rules.count("figure") == len(cfg["figures"])
    for rule in ("findings", "report", "freeze"):
        assert rules.count(rule) == 1, rules
    for out in ("report/build/FINDINGS.pdf", "report/build/FINDINGS.html", "report/build/tms-findings-quick.tar.gz"):
        assert (work / out).stat().st_size > 0, out


@pytest.mark.slow
@requires_cluster
def test_every_train_job_requested_a_gpu_and_completed(slurm_env, slurm_quick):
    """sacct: one COMPLETED job per experiment, in the GPU partition, with a GPU allocated; the other
    rules are CPU jobs without one."""
    _, _, jobs = slurm_quick
    acct = sacct(slurm_env, [j["id"] for j in jobs])
    cfg = yaml.safe_load(QUICK.read_text())
    trained = set()
    for j in jobs:
        row = acct[j["id"]]
        assert row["State"] == "COMPLETED", (j, row)
        if j["rule"] == "train":
            trained.add(j["wildcards"])
            assert "gres/gpu=1" in row["AllocTRES"] and row["Partition"] == "gpu", (j, row)
            assert row["Comment"] == f"rule_train_wildcards_{j['wildcards']}", row
        else:
            assert "gres/gpu" not in row["AllocTRES"] and row["Partition"] == "debug", (j, row)
    assert trained == set(cfg["experiments"])


@pytest.mark.slow
@requires_cluster
def test_slurm_findings_match_local_run(slurm_quick, quick_build):
    """The findings of the SLURM build equal those of a local `snakemake --cores 2` build."""
    import json

    from tms.freeze import compare_findings

    work, _, _ = slurm_quick
    local = json.loads((quick_build / "results" / "findings.json").read_text())
    remote = json.loads((work / "results" / "findings.json").read_text())
    check = compare_findings(local, remote)
    assert check.ok, "\n".join(check.problems)
    assert [f["verdict"] for f in local] == [f["verdict"] for f in remote]
