"""The `tms` command's error handling: an operating-system error is one line naming the file (issue #17)."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tms import cli

BIN = Path(sys.executable).parent


def test_os_error_line_names_the_file_and_what_to_do():
    with pytest.raises(OSError) as err:  # a real ENOSPC: /dev/full refuses every write
        with open("/dev/full", "wb") as fh:
            fh.write(b"x" * 65536)
    assert err.value.errno == errno.ENOSPC
    err.value.filename = "results/x/run.npz"
    line = cli.os_error_line(err.value)
    assert line == ("results/x/run.npz: No space left on device (free space on that filesystem and rerun; "
                    "the interrupted output was not kept)")
    assert cli.known_error(err.value) == line


def test_an_unknown_error_keeps_its_traceback():
    assert cli.known_error(KeyError("bug")) is None


def test_an_unwritable_output_is_one_line(tmp_path):
    """`tms findings --out` under a path whose parent is a file: exit 2, one line naming the output."""
    claims = tmp_path / "results" / "claims"
    claims.mkdir(parents=True)
    (claims / "f.json").write_text("[]\n")
    (tmp_path / "blocker").write_text("a file where a directory should be\n")
    out = tmp_path / "blocker" / "findings.json"
    proc = subprocess.run([str(BIN / "tms"), "findings", "--results", str(tmp_path / "results"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].endswith(f"ERROR tms: {tmp_path / 'blocker'}: File exists")  # mkdir of the output's directory


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs: a real full disk (needs root to mount; skipped elsewhere)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_is_one_line_naming_the_file_and_keeps_nothing(tmp_path, full_disk):
    claims = tmp_path / "results" / "claims"
    claims.mkdir(parents=True)
    finding = {"id": "f.c", "figure": "f", "section": "appendix", "claim": "x" * 1000, "expected": "", "tolerance": "",
               "measured": 1.0, "verdict": "reproduced", "detail": "", "experiments": [], "config": "t"}
    (claims / "f.json").write_text(json.dumps([{**finding, "id": f"f.c{i}"} for i in range(200)]))  # ~250 KB
    out = full_disk / "findings.json"
    proc = subprocess.run([str(BIN / "tms"), "findings", "--results", str(tmp_path / "results"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert errors[0].endswith(f"{out}: No space left on device (free space on that filesystem and rerun; the "
                              f"interrupted output was not kept)")
    assert list(full_disk.iterdir()) == []  # no partial output, no stray temporary


def test_library_chatter_stays_out_of_job_logs(caplog):
    """fontTools logs ~130 INFO lines per PDF figure: a figure job's log keeps its warnings and our lines."""
    import logging

    try:
        cli._setup_logging()
        with caplog.at_level(logging.INFO):
            logging.getLogger("fontTools.subset").info("glyf pruned")
            logging.getLogger("fontTools.subset").warning("a real problem")
            logging.getLogger("tms").info("figure written")
        assert [r.getMessage() for r in caplog.records] == ["a real problem", "figure written"]
        cli._setup_logging(verbose=True)  # -v shows everything
        assert logging.getLogger("fontTools.subset").isEnabledFor(logging.DEBUG)
    finally:
        for name in cli.QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
