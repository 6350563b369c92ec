"""A build leaves the repository clean: every file the workflow writes is ignored by git, and the
committed, cited archive (report/release/) and CITATION.cff are written by `tms release` only."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake
from tms import freeze

# What a replication writes beside the declared outputs: the archive's sidecar, the LaTeX log and the
# figure PDFs the .tex includes, Snakemake's state, the virtual environment and the editable install.
UNDECLARED = ["report/build/FINDINGS.log", "report/build/figures/intro_pentagon.pdf",
              "report/build/figures/linear_vs_relu_n80_m20.csv", ".snakemake/log/x.log", ".venv/bin/python",
              "src/tms.egg-info/PKG-INFO", "src/tms/__pycache__/report.cpython-311.pyc"]


def _not_ignored(paths: list[str]) -> list[str]:
    """The paths (relative to the repository) that git would show as untracked."""
    proc = subprocess.run(["git", "check-ignore", "--stdin"], cwd=REPO, input="\n".join(paths) + "\n",
                          capture_output=True, text=True)
    ignored = set(proc.stdout.split("\n"))
    return [p for p in paths if p not in ignored]


def _workflow_outputs(tmp_path: Path, configs: list[str]) -> list[str]:
    """Every output, log and benchmark of every job of a dry run (forced), plus what parsing wrote."""
    work = tmp_path / "work"
    work.mkdir()
    args = ["-n", "--forceall", "--cores", "1", "--configfile", *(str(REPO / c) for c in configs)]
    out = run_snakemake(*args, cwd=work, timeout=600).stdout
    paths = []
    for line in out.splitlines():
        m = re.match(r"^\s*(output|log|benchmark):\s*(.+)$", line)
        if m:
            paths += [p.strip() for p in m.group(2).split(",") if p.strip()]
    paths += [p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()]
    return sorted(set(paths))


@pytest.mark.slow
@pytest.mark.parametrize("configs", [["workflow/config/quick.yaml"],
                                     ["workflow/config/quick.yaml", "workflow/config/robustness.yaml"],
                                     ["workflow/config/default.yaml"]])
def test_every_file_a_build_writes_is_ignored_by_git(tmp_path, configs):
    """`make replicate` on a fresh clone leaves `git status` clean: nothing a build writes is tracked or
    untracked-but-visible, and no build writes the released archive or the repository's citation."""
    paths = _workflow_outputs(tmp_path, configs)
    assert any(p.endswith(".tar.gz") for p in paths) and any(p.startswith("figures/") for p in paths)
    archives = [p for p in paths if p.endswith(".tar.gz")]
    assert archives and all(p.startswith("report/build/") for p in archives), archives
    paths += [a + ".sha256" for a in archives] + UNDECLARED
    assert _not_ignored(paths) == []
    assert not [p for p in paths if p.startswith(freeze.RELEASE_DIR) or p == "CITATION.cff"]


def test_the_release_is_tracked_and_named_in_readme_and_citation():
    """The released archive is committed (not ignored), CITATION.cff records its SHA-256, and the README's
    release block names it, its hash and the commit that rebuilds it."""
    archives = sorted((REPO / freeze.RELEASE_DIR).glob("*.tar.gz"))
    assert archives, "no released archive under report/release/"
    rel = [a.relative_to(REPO).as_posix() for a in archives]
    assert _not_ignored(rel + [r + ".sha256" for r in rel] + ["CITATION.cff"]) == rel + [r + ".sha256" for r in rel] + \
        ["CITATION.cff"]
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    digests = {freeze._sha256_file(a) for a in archives}
    assert {i["value"].split(":", 1)[1] for i in cff["identifiers"]} & digests
    readme = (REPO / "README.md").read_text()
    block = readme.split(freeze.README_BEGIN, 1)[1].split(freeze.README_END, 1)[0]
    assert any(d in block for d in digests) and f"git checkout {cff['commit'][:12]}" in block
    assert rel[0] in block and "@misc{" in block


def test_make_release_calls_tms_release():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^release: venv\n\ttms release report/build/tms-findings-default\.tar\.gz$", makefile, re.M)
