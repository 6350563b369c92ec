"""Code provenance: the commit and whether the tree differs from it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tms import provenance


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True,
                   capture_output=True)


def test_dirty_tracks_code_but_not_the_committed_build_outputs(tmp_path):
    code_version = provenance.code_version.__wrapped__  # uncached
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("x = 1\n")
    (tmp_path / "report" / "release").mkdir(parents=True)
    (tmp_path / "report" / "release" / "a.tar.gz").write_bytes(b"old")
    (tmp_path / "CITATION.cff").write_text("cff-version: 1.2.0\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    v = code_version(str(tmp_path))
    assert v["source"] == "git" and len(v["commit"]) == 40 and v["dirty"] is False

    # a release rewrites the released archive and the citation: still clean
    (tmp_path / "report" / "release" / "a.tar.gz").write_bytes(b"new")
    (tmp_path / "CITATION.cff").write_text("cff-version: 1.2.0\ntitle: x\n")
    assert code_version(str(tmp_path))["dirty"] is False
    # so does deleting it before a rebuild
    (tmp_path / "report" / "release" / "a.tar.gz").unlink()
    assert code_version(str(tmp_path))["dirty"] is False
    # an untracked file is not code
    (tmp_path / "notes.txt").write_text("scratch\n")
    assert code_version(str(tmp_path))["dirty"] is False
    # a changed source file is
    (tmp_path / "src" / "model.py").write_text("x = 2\n")
    assert code_version(str(tmp_path))["dirty"] is True


def test_environment_override(monkeypatch):
    monkeypatch.setenv("TMS_CODE_VERSION", "abc123")
    v = provenance.code_version.__wrapped__()
    assert v == {"commit": "abc123", "dirty": False, "source": "TMS_CODE_VERSION"}


def test_cpu_device_names_the_cpu_and_the_kernels_instruction_set():
    """Another CPU's kernels round differently: the record says which CPU and which instructions."""
    import torch

    desc = provenance.device_description("cpu")
    assert desc.startswith("cpu (") and provenance.cpu_name() in desc
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in desc and "logical cores" in desc
