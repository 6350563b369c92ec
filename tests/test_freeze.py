"""Tests of tms.freeze: the deterministic archive, its manifest, CITATION.cff, and ``tms verify``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from report_fixtures import FIGURES, make_inputs
from tms import cli, freeze, report

EPOCH = "1700000000"


@pytest.fixture(autouse=True)
def _fixed_date(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """(inputs, report dir, archive): a report rendered without TeX, with a placeholder PDF."""
    root = tmp_path_factory.mktemp("freeze")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        inputs = make_inputs(root / "pipeline")
        build = root / "build"
        report.build(inputs.findings, inputs.figures, inputs.results, build, inputs.config, pdf=False)
        (build / "FINDINGS.pdf").write_bytes(b"%PDF-1.5\n% placeholder: the PDF is compiled in the slow tests\n")
        archive = freeze.freeze(build, inputs.figures, inputs.results, inputs.config, root / "frozen")
    return inputs, build, archive


def _members(archive: Path) -> dict[str, bytes]:
    return freeze.read_archive(archive)


def _repack(archive: Path, out: Path, edit) -> Path:
    """A copy of ``archive`` with its members passed through ``edit(name, data) -> data | None``."""
    src = tarfile.open(archive, "r:gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if data is not None:
                data = edit(m.name.split("/", 1)[1], data)
                if data is None:
                    continue
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    out.write_bytes(gzip.compress(buf.getvalue()))
    return out


# ---------------------------------------------------------------------------------------------
# the archive


def test_archive_contents(frozen):
    inputs, _, archive = frozen
    assert archive.name == "tms-findings-testcfg.tar.gz"
    files = _members(archive)
    expected = {"FINDINGS.pdf", "FINDINGS.html", "FINDINGS.tex", "findings.json", "environment.txt",
                "provenance.json", "CITATION.cff", "MANIFEST.sha256", "MANIFEST.sha256.sha256", "config/testcfg.yaml",
                "config/resolved.json",
                "results/test_exp/meta.json", "results/test_exp/metrics.csv", "results/test_exp/cells.csv"}
    for fid in FIGURES:
        expected |= {f"figures/{fid}.{ext}" for ext in ("pdf", "png", "csv")} | {f"results/provenance/{fid}.json"}
    assert set(files) == expected
    assert not any(name.endswith(".npz") for name in files)  # weights are left out
    # every member is in the manifest with its hash
    lines = dict(reversed(line.split("  ")) for line in files["MANIFEST.sha256"].decode().splitlines())
    assert set(lines) == expected - {"MANIFEST.sha256", "MANIFEST.sha256.sha256"}
    assert all(hashlib.sha256(files[n]).hexdigest() == h for n, h in lines.items())
    # the manifest's own hash, in sha256sum -c format
    assert files["MANIFEST.sha256.sha256"].decode() == \
        f"{hashlib.sha256(files['MANIFEST.sha256']).hexdigest()}  MANIFEST.sha256\n"
    # the resolved config has the training defaults filled in
    resolved = json.loads(files["config/resolved.json"])
    assert resolved["experiments"]["test_exp"]["train"]["batch_size"] > 0
    assert "jinja2==" in files["environment.txt"].decode().lower()
    # the TeX source and the figures it includes sit side by side: the archive rebuilds the PDF
    assert b"figures/test_pentagon.pdf" in files["FINDINGS.tex"]
    sidecar = archive.with_name(archive.name + ".sha256").read_text()
    assert sidecar == f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n"


def test_archive_metadata_is_fixed(frozen):
    _, _, archive = frozen
    raw = archive.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    assert [m.name for m in members if m.isfile()] == sorted(m.name for m in members if m.isfile())
    assert all(m.mtime == int(EPOCH) and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert all(m.name.startswith("tms-findings-testcfg") for m in members)


def test_freeze_is_deterministic(frozen, tmp_path):
    inputs, build, archive = frozen
    again = freeze.freeze(build, inputs.figures, inputs.results, inputs.config, tmp_path / "elsewhere")
    assert again.read_bytes() == archive.read_bytes()


def test_citation_cff(frozen):
    cff = yaml.safe_load(_members(frozen[2])["CITATION.cff"])
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "dataset"
    assert cff["title"].startswith("Test report: 50% of W_i")  # unicode and specials survive YAML
    assert cff["authors"] == [{"given-names": "Ada", "family-names": "Lovelace"}, {"name": "The Test Team"}]
    assert cff["date-released"] == "2023-11-14"  # from SOURCE_DATE_EPOCH
    ref = cff["references"][0]
    assert ref["title"] == "Toy Models of Superposition" and ref["year"] == 2022
    assert ref["authors"][0] == {"given-names": "Nelson", "family-names": "Elhage"} and len(ref["authors"]) == 16
    # the replication itself is the preferred citation, findable by its repository, version and commit
    assert cff["url"] == cff["repository-code"] == report.REPOSITORY_URL and cff["version"] == "0.1.0"
    pref = cff["preferred-citation"]
    assert pref["type"] == "report" and pref["title"] == cff["title"] and pref["authors"] == cff["authors"]
    assert pref["repository-code"] == report.REPOSITORY_URL and pref["commit"] == cff["commit"]
    assert pref["year"] == 2023 and "BibTeX key lovelace2023test" in pref["notes"]
    text = _members(frozen[2])["CITATION.cff"].decode()
    assert "# doi:" in text  # left for the user to fill when the archive is deposited


def test_citation_url_from_the_config(frozen, tmp_path):
    cfg = yaml.safe_load(frozen[0].config.read_text())
    cfg["report"]["url"] = "https://example.org/our/tms"
    cff = yaml.safe_load(freeze.citation(cfg, int(EPOCH), {"commit": "c" * 40}))
    assert cff["url"] == cff["repository-code"] == cff["preferred-citation"]["url"] == "https://example.org/our/tms"


@pytest.mark.skipif(shutil.which("cffconvert") is None, reason="cffconvert not installed (optional check)")
def test_citation_cff_is_valid_by_cffconvert(frozen, tmp_path):
    path = tmp_path / "CITATION.cff"
    freeze.cite(frozen[2], path)
    subprocess.run(["cffconvert", "--validate", "-i", str(path)], check=True, capture_output=True)


def test_missing_report_file_is_an_error(frozen, tmp_path):
    inputs, build, _ = frozen
    partial = tmp_path / "build"
    shutil.copytree(build, partial)
    (partial / "FINDINGS.pdf").unlink()
    with pytest.raises(FileNotFoundError, match="FINDINGS.pdf"):
        freeze.freeze(partial, inputs.figures, inputs.results, inputs.config, tmp_path / "frozen")


# ---------------------------------------------------------------------------------------------
# verify: the trusted hash


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _citation(tmp_path: Path, entries: dict[str, str]) -> Path:
    """A CITATION.cff recording ``{archive name: sha256}`` the way ``tms cite`` writes it."""
    path = tmp_path / "CITATION.cff"
    path.write_text(yaml.safe_dump({"cff-version": "1.2.0", "title": "t", "identifiers": [
        {"type": "other", "value": f"sha256:{h}", "description": f"SHA-256 of the frozen artifact {name}"}
        for name, h in entries.items()]}))
    return path


def test_verify_with_a_trusted_hash(frozen, tmp_path, capsys):
    archive = frozen[2]
    assert freeze.verify(archive, sha256=_digest(archive)) is True
    out = capsys.readouterr().out
    assert "verify: VERIFIED" in out and "equals the one given with --sha256" in out and "[OK] manifest" in out
    assert freeze.verify(archive, citation=_citation(tmp_path, {archive.name: _digest(archive)})) is True
    assert "is the one" in capsys.readouterr().out


def test_without_a_trusted_hash_verify_is_unverified_and_fails(frozen, tmp_path, capsys):
    archive = frozen[2]
    assert freeze.verify(archive, citation=_citation(tmp_path, {"another.tar.gz": "0" * 64})) is False
    out = capsys.readouterr().out
    assert "[UNVERIFIED] archive hash" in out and "records no SHA-256 for tms-findings-testcfg.tar.gz" in out
    assert "verify: UNVERIFIED" in out and "verify: VERIFIED" not in out
    assert freeze.verify(archive, allow_unverified=True, citation=tmp_path / "none.cff") is True
    assert "accepted: --allow-unverified" in capsys.readouterr().out


def test_cli_verify_exit_codes(frozen, tmp_path):
    archive = str(frozen[2])
    assert cli.main(["verify", archive, "--sha256", _digest(frozen[2])]) == 0
    assert cli.main(["verify", archive, "--citation", str(tmp_path / "none.cff")]) == 1  # unverified
    assert cli.main(["verify", archive, "--citation", str(tmp_path / "none.cff"), "--allow-unverified"]) == 0
    assert cli.main(["verify", archive, "--sha256", "f" * 64]) == 1
    changed = _rebuild(frozen, tmp_path, lambda found: found[0].update(measured=0.5))
    assert cli.main(["verify", archive, "--sha256", _digest(frozen[2]), "--build", str(changed)]) == 1


def test_the_committed_artifact_verifies_against_the_repository_citation(capsys):
    """The repository's released archive and CITATION.cff: VERIFIED with no option at all."""
    repo = Path(__file__).resolve().parents[1]
    archives = sorted((repo / freeze.RELEASE_DIR).glob("*.tar.gz"))
    assert archives
    assert freeze.verify(archives[0]) is True
    assert "verify: VERIFIED" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# verify: tampering (issue #17), each archive built here as a real tar.gz


def _entries(archive: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(archive) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def _write(entries, out: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for m, data in entries:
            if data is not None:
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
    out.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return out


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def _forge_findings(entries) -> list:
    """findings.json with a verdict flipped, and the manifest (and its own hash) recomputed to match."""
    files = {m.name.split("/", 1)[1]: d for m, d in entries if d is not None}
    found = json.loads(files["findings.json"])
    found[0]["verdict"] = "reproduced" if found[0]["verdict"] != "reproduced" else "not reproduced"
    files["findings.json"] = json.dumps(found).encode()
    files["MANIFEST.sha256"] = freeze.manifest(files)
    digest = hashlib.sha256(files["MANIFEST.sha256"]).hexdigest()
    files["MANIFEST.sha256.sha256"] = f"{digest}  MANIFEST.sha256\n".encode()
    return [(m, files[m.name.split("/", 1)[1]] if d is not None else None) for m, d in entries]


def test_a_consistent_forgery_fails_against_the_trusted_hash(frozen, tmp_path, capsys):
    """Forged findings.json, every internal hash recomputed, no .sha256 beside it: only the trusted
    hash can tell, and does; without one the result is UNVERIFIED, a failure."""
    archive = frozen[2]
    forged = _write(_forge_findings(_entries(archive)), tmp_path / archive.name)
    assert freeze.verify(forged, citation=tmp_path / "none.cff") is False
    out = capsys.readouterr().out
    assert "[OK] manifest" in out and "verify: UNVERIFIED" in out
    assert freeze.verify(forged, citation=_citation(tmp_path, {archive.name: _digest(archive)})) is False
    out = capsys.readouterr().out
    assert f"differs from the one {tmp_path / 'CITATION.cff'} records for {archive.name}" in out
    assert freeze.verify(forged, sha256=_digest(archive)) is False
    assert "differs from the one given with --sha256" in capsys.readouterr().out


def test_a_second_top_level_directory_fails(frozen, tmp_path, capsys):
    evil = _file("zz-evil/findings.json", b"[]\n")  # tar xzf hands the user this file too
    bad = _write(_entries(frozen[2]) + [evil], tmp_path / "two-tops.tar.gz")
    assert freeze.verify(bad, sha256=_digest(bad)) is False  # even with its own hash "trusted"
    out = capsys.readouterr().out
    assert "[FAIL] structure" in out
    assert "2 top-level entries (tms-findings-testcfg (directory), zz-evil (directory))" in out


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "chardev"])
def test_links_and_special_members_fail(frozen, tmp_path, capsys, kind):
    info = tarfile.TarInfo("tms-findings-testcfg/figures/passwd")
    info.type, info.linkname = {"symlink": (tarfile.SYMTYPE, "/etc/passwd"),
                                "hardlink": (tarfile.LNKTYPE, "tms-findings-testcfg/findings.json"),
                                "fifo": (tarfile.FIFOTYPE, ""), "chardev": (tarfile.CHRTYPE, "")}[kind]
    bad = _write(_entries(frozen[2]) + [(info, None)], tmp_path / f"{kind}.tar.gz")
    assert freeze.verify(bad, sha256=_digest(bad)) is False
    out = capsys.readouterr().out
    expected = {"symlink": "figures/passwd: a symbolic link to '/etc/passwd'",
                "hardlink": "figures/passwd: a hard link to 'tms-findings-testcfg/findings.json'",
                "fifo": "figures/passwd: a FIFO", "chardev": "figures/passwd: a device file"}[kind]
    assert expected in out


def test_a_duplicate_path_fails(frozen, tmp_path, capsys):
    """A second findings.json after the first: tar xzf unpacks the last one."""
    bad = _write(_entries(frozen[2]) + [_file("tms-findings-testcfg/findings.json", b"[]\n")], tmp_path / "dup.tar.gz")
    assert freeze.verify(bad, sha256=_digest(bad)) is False
    assert "duplicate path tms-findings-testcfg/findings.json" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["/etc/cron.d/evil", "tms-findings-testcfg/../../evil"])
def test_unsafe_paths_fail(frozen, tmp_path, capsys, name):
    bad = _write(_entries(frozen[2]) + [_file(name, b"x\n")], tmp_path / "unsafe.tar.gz")
    assert freeze.verify(bad, sha256=_digest(bad)) is False
    assert f"unsafe path {name!r}" in capsys.readouterr().out


def test_a_changed_manifest_is_named_as_such(frozen, tmp_path, capsys):
    """A flipped hex digit in the manifest's CITATION.cff line: the manifest is to blame, not CITATION.cff."""
    def flip(name, data):
        if name == "MANIFEST.sha256":
            i = data.index(b"  CITATION.cff") - 5
            return data[:i] + (b"0" if data[i:i + 1] != b"0" else b"1") + data[i + 1:]
        return data

    bad = _repack(frozen[2], tmp_path / "manifest.tar.gz", flip)
    assert freeze.verify(bad, allow_unverified=True) is False
    out = capsys.readouterr().out
    assert "changed: MANIFEST.sha256: it does not match the hash recorded in MANIFEST.sha256.sha256" in out
    assert "changed: CITATION.cff (SHA-256 differs from the manifest) [by the altered manifest's line" in out
    assert "  - changed: CITATION.cff (SHA-256 differs from the manifest)\n" not in out


def test_a_changed_manifest_checksum_is_named_as_such(frozen, tmp_path, capsys):
    def flip(name, data):
        return (b"0" * 64 + data[64:]) if name == "MANIFEST.sha256.sha256" else data

    bad = _repack(frozen[2], tmp_path / "sum.tar.gz", flip)
    assert freeze.verify(bad, allow_unverified=True) is False
    assert "changed: MANIFEST.sha256.sha256 (it does not match MANIFEST.sha256, every line of which matches" \
        in capsys.readouterr().out


def test_the_unpacked_size_is_capped(frozen, tmp_path, capsys):
    big = _write(_entries(frozen[2]) + [_file("tms-findings-testcfg/zeros.bin", bytes(4 * 2**20))],
                 tmp_path / "big.tar.gz")
    assert freeze.verify(big, sha256=_digest(big), max_unpacked=2**20) is False
    out = capsys.readouterr().out
    assert "zeros.bin is 4.0 MiB, which takes the unpacked size over the cap of 1 MiB (stopped reading" in out
    assert cli.main(["verify", str(big), "--sha256", _digest(big), "--max-unpacked-mb", "1"]) == 1


def test_members_are_hashed_while_streaming(frozen, tmp_path):
    """A 256 MiB member is hashed in 1 MiB pieces: verify's memory stays far below the member's size."""
    import tracemalloc

    class Zeros(io.RawIOBase):  # a 256 MiB member that is never held in memory while writing it either
        def __init__(self, n):
            self.left = n

        def readable(self):
            return True

        def readinto(self, b):
            k = min(len(b), self.left)
            b[:k] = bytes(k)
            self.left -= k
            return k

    size = 256 * 2**20
    path = tmp_path / "huge.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for m, data in _entries(frozen[2]):
            tar.addfile(m, io.BytesIO(data) if data is not None else None)
        info = tarfile.TarInfo("tms-findings-testcfg/zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size), buffer_size=2**20))
    tracemalloc.start()
    try:
        scan = freeze.scan_archive(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert scan.hashes["zeros.bin"] == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 16 * 2**20


def test_a_damaged_sidecar_fails(frozen, tmp_path, capsys):
    archive = tmp_path / frozen[2].name
    shutil.copyfile(frozen[2], archive)
    archive.with_name(archive.name + ".sha256").write_text(f"{'0' * 64}  {archive.name}\n")
    assert freeze.verify(archive, sha256=_digest(archive)) is False
    assert "differs from tms-findings-testcfg.tar.gz.sha256" in capsys.readouterr().out


def test_verify_cap_default_is_the_clis():
    assert cli.VERIFY_MAX_UNPACKED_MB * 2**20 == freeze.MAX_UNPACKED_BYTES


# ---------------------------------------------------------------------------------------------
# verify: the manifest (these archives are consistent apart from the change each test makes)


def test_verify_names_a_file_with_one_changed_byte(frozen, tmp_path, capsys):
    def flip(name, data):
        if name == "figures/test_phase.png":
            return data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return data

    bad = _repack(frozen[2], tmp_path / "tampered.tar.gz", flip)
    assert freeze.verify(bad, allow_unverified=True) is False
    out = capsys.readouterr().out
    assert "changed: figures/test_phase.png (SHA-256 differs from the manifest)\n" in out
    assert "test_pentagon.png" not in out  # only the changed file is named
    assert "MANIFEST" not in out.split("[FAIL] manifest")[1].split("files listed")[0]  # the manifest is not blamed


def test_verify_names_missing_and_extra_files(frozen, tmp_path, capsys):
    def drop(name, data):
        return None if name == "results/test_exp/cells.csv" else data

    bad = _repack(frozen[2], tmp_path / "dropped.tar.gz", drop)
    assert freeze.verify(bad, allow_unverified=True) is False
    assert "missing: results/test_exp/cells.csv" in capsys.readouterr().out

    buf = io.BytesIO()  # rename a member: one file missing, one extra
    with tarfile.open(frozen[2]) as tin, tarfile.open(fileobj=buf, mode="w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("/environment.txt"):
                m.name = m.name.replace("environment.txt", "env-renamed.txt")
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    renamed = tmp_path / "renamed.tar.gz"
    renamed.write_bytes(gzip.compress(buf.getvalue()))
    assert freeze.verify(renamed, allow_unverified=True) is False
    out = capsys.readouterr().out
    assert "missing: environment.txt" in out and "extra: env-renamed.txt" in out


def test_verify_rejects_a_non_archive(tmp_path, capsys):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar file")
    assert freeze.verify(junk, allow_unverified=True) is False
    assert "not a readable" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# verify: a rebuild's findings against the frozen ones


def _rebuild(frozen, tmp_path, edit) -> Path:
    found = json.loads(frozen[0].findings.read_text())
    edit(found)
    path = tmp_path / "findings.json"
    path.write_text(json.dumps(found))
    return path


def test_verify_identical_rebuild(frozen, tmp_path, capsys):
    assert freeze.verify(frozen[2], build_findings=_rebuild(frozen, tmp_path, lambda f: None),
                         sha256=_digest(frozen[2])) is True
    assert "6 frozen findings compared" in capsys.readouterr().out


def test_verify_names_a_changed_finding(frozen, tmp_path, capsys):
    def change(found):
        for f in found:
            if f["id"] == "test_pentagon.norms":
                f["measured"]["norms"][1] *= 1.01

    assert freeze.verify(frozen[2], build_findings=_rebuild(frozen, tmp_path, change)) is False
    out = capsys.readouterr().out
    assert "finding test_pentagon.norms: measured['norms'][1]" in out
    assert "test_pentagon.pentagon:" not in out


def test_verify_tolerates_tiny_float_noise(frozen, tmp_path):
    def nudge(found):
        for f in found:
            if isinstance(f["measured"], float):
                f["measured"] *= 1 + 1e-9

    assert freeze.verify(frozen[2], build_findings=_rebuild(frozen, tmp_path, nudge), sha256=_digest(frozen[2])) is True


def test_verify_reports_verdict_missing_and_new_findings(frozen, tmp_path, capsys):
    def edit(found):
        found[0]["verdict"] = "not reproduced"
        del found[-1]
        found.append({**found[1], "id": "test_phase.brand_new"})

    assert freeze.verify(frozen[2], build_findings=_rebuild(frozen, tmp_path, edit)) is False
    out = capsys.readouterr().out
    assert "verdict 'reproduced' -> 'not reproduced'" in out
    assert "test_phase.flag: missing from the rebuild" in out
    assert "test_phase.brand_new: new in the rebuild" in out


@pytest.mark.parametrize("a,b,same", [
    (1.0, 1.0 + 1e-9, True), (1.0, 1.001, False), (0.0, 1e-12, True), ({"a": [1, 2]}, {"a": [1, 2.0]}, True),
    ({"a": 1}, {"b": 1}, False), ([1, 2], [1, 2, 3], False), ("x", "x", True), ("x", "y", False),
    (None, None, True), (None, 0.0, False), (True, 1, False), ([0.5, {"k": "v"}], [0.5, {"k": "v"}], True),
])
def test_value_diff(a, b, same):
    assert (freeze.value_diff(a, b) is None) is same


# ---------------------------------------------------------------------------------------------
# the archive rebuilds its own PDF (needs TeX Live)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk not installed (CI installs TeX Live)")
def test_archive_tex_source_rebuilds_the_same_pdf(tmp_path):
    inputs = make_inputs(tmp_path / "pipeline")
    build = tmp_path / "build"
    report.build(inputs.findings, inputs.figures, inputs.results, build, inputs.config, pdf=True)
    archive = freeze.freeze(build, inputs.figures, inputs.results, inputs.config, tmp_path / "frozen")
    out = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    src = out / "tms-findings-testcfg"
    frozen_pdf = (src / "FINDINGS.pdf").read_bytes()
    (src / "FINDINGS.pdf").unlink()
    env = report.latex_env(int(EPOCH))
    subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-quiet", "FINDINGS.tex"],
                   cwd=src, env=env, check=True, capture_output=True, timeout=300)
    assert (src / "FINDINGS.pdf").read_bytes() == frozen_pdf == (build / "FINDINGS.pdf").read_bytes()


def test_top_level_citation_names_the_archive(frozen, tmp_path):
    inputs, _, archive = frozen
    out = freeze.write_citation(inputs.config, tmp_path / "CITATION.cff", archive=archive)
    cff = yaml.safe_load(out.read_text())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert cff["identifiers"] == [{"type": "other", "value": f"sha256:{digest}",
                                   "description": f"SHA-256 of the frozen artifact {archive.name}"}]
    assert "identifiers" not in yaml.safe_load(_members(archive)["CITATION.cff"])


def test_cite_takes_commit_date_and_config_from_the_archive(frozen, tmp_path, monkeypatch):
    _, _, archive = frozen
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")  # a later build date must not leak in
    monkeypatch.setenv("TMS_CODE_VERSION", "not-the-archive-commit")
    cff = yaml.safe_load(freeze.cite(archive, tmp_path / "CITATION.cff").read_text())
    inner = yaml.safe_load(_members(archive)["CITATION.cff"])
    assert cff["commit"] == inner["commit"] != "not-the-archive-commit"
    assert cff["date-released"] == inner["date-released"]
    assert cff["identifiers"][0]["value"] == f"sha256:{hashlib.sha256(archive.read_bytes()).hexdigest()}"
    config_keyword = [k for k in inner["keywords"] if k.startswith("config:")]
    assert config_keyword and [k for k in cff["keywords"] if k.startswith("config:")] == config_keyword


def test_cite_rejects_a_missing_or_foreign_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="no frozen artifact"):
        freeze.cite(tmp_path / "none.tar.gz", tmp_path / "CITATION.cff")
    foreign = tmp_path / "foreign.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        data = b"hello"
        info = tarfile.TarInfo("x/readme.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="not a frozen artifact"):
        freeze.cite(foreign, tmp_path / "CITATION.cff")
    assert not (tmp_path / "CITATION.cff").exists()


# ---------------------------------------------------------------------------------------------
# release: only an explicit command writes the committed, cited archive


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n\n{freeze.README_BEGIN}\nold\n{freeze.README_END}\n\nafter\n")
    return readme


def _with_dirty_flag(archive: Path, out: Path, dirty: bool) -> Path:
    """A consistent archive (manifests and sidecar rewritten) whose provenance records ``dirty``."""
    files = freeze.read_archive(archive)
    prov = json.loads(files["provenance.json"])
    prov["code"]["dirty"] = dirty
    files["provenance.json"] = (json.dumps(prov, indent=2, sort_keys=True) + "\n").encode()
    files.pop(freeze.MANIFEST), files.pop(freeze.MANIFEST_SUM)
    files[freeze.MANIFEST] = freeze.manifest(files)
    files[freeze.MANIFEST_SUM] = f"{hashlib.sha256(files[freeze.MANIFEST]).hexdigest()}  {freeze.MANIFEST}\n".encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(freeze.tar_gz(files, "tms-findings-testcfg", int(EPOCH)))
    out.with_name(out.name + ".sha256").write_text(f"{_digest(out)}  {out.name}\n")
    return out


def test_release_copies_the_archive_cites_it_and_names_the_commit(frozen, tmp_path, monkeypatch):
    archive = _with_dirty_flag(frozen[2], tmp_path / "build" / frozen[2].name, dirty=False)
    monkeypatch.setenv("TMS_CODE_VERSION", "a-later-commit")  # the release names the archive's commit, not HEAD's
    readme = _readme(tmp_path)
    rel = freeze.release(archive, dest=tmp_path / "release", citation_out=tmp_path / "CITATION.cff", readme=readme)
    digest = _digest(archive)
    assert rel.archive.read_bytes() == archive.read_bytes() and rel.sha256 == digest
    assert rel.sidecar.read_text() == f"{digest}  {archive.name}\n"
    cff = yaml.safe_load(rel.citation.read_text())
    inner = yaml.safe_load(_members(archive)["CITATION.cff"])
    assert cff["identifiers"][0]["value"] == f"sha256:{digest}" and cff["commit"] == inner["commit"] == rel.commit
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert digest in text and f"git checkout {rel.commit[:12]}" in text and "@misc{lovelace2023test," in text
    assert rel.command == "make replicate" and f"{rel.commit[:12]} && make replicate`" in text  # no robustness run
    assert freeze.verify(rel.archive, citation=rel.citation) is True  # the released copy verifies against it
    out = rel.instructions(repo=tmp_path)
    assert "git add release/tms-findings-testcfg.tar.gz release/tms-findings-testcfg.tar.gz.sha256 CITATION.cff" in out
    assert f"built from commit {rel.commit}" in out


def test_rebuild_command_follows_the_robustness_run():
    """An archive with the robustness run's labels is rebuilt by the build with the robustness overlay."""
    assert freeze.rebuild_command({"findings.json": b"[]"}) == "make replicate"
    assert freeze.rebuild_command({"findings.json": b"[]", "robustness.json": b"{}"}) == "make robustness"
    block = freeze.readme_block("a.tar.gz", "0" * 64, "c" * 40, "2026-12-01", "@misc{x,}", True, "make robustness")
    assert "`git checkout cccccccccccc && make robustness` rebuilds it byte for byte" in block


def test_release_refuses_a_dirty_or_damaged_archive(frozen, tmp_path):
    dirty = _with_dirty_flag(frozen[2], tmp_path / "dirty" / frozen[2].name, dirty=True)
    archive = _with_dirty_flag(frozen[2], tmp_path / "clean" / frozen[2].name, dirty=False)
    with pytest.raises(ValueError, match="uncommitted changes"):
        freeze.release(dirty, dest=tmp_path / "release", citation_out=tmp_path / "CITATION.cff")
    assert not (tmp_path / "release").exists()
    assert freeze.release(dirty, dest=tmp_path / "release", citation_out=tmp_path / "CITATION.cff",
                          allow_dirty=True).archive.exists()

    damaged = tmp_path / "damaged" / archive.name
    damaged.parent.mkdir()
    shutil.copy(archive, damaged)
    damaged.with_name(damaged.name + ".sha256").write_text(f"{'0' * 64}  {damaged.name}\n")
    with pytest.raises(ValueError, match="differs from"):
        freeze.release(damaged, dest=tmp_path / "release2", citation_out=tmp_path / "C2.cff")
    with pytest.raises(FileNotFoundError, match="make replicate"):
        freeze.release(tmp_path / "none.tar.gz", dest=tmp_path / "release3")


def test_cli_release_and_bibtex(frozen, tmp_path, capsys):
    archive = _with_dirty_flag(frozen[2], tmp_path / "build" / frozen[2].name, dirty=False)
    assert cli.main(["release", str(archive), "--to", str(tmp_path / "rel"), "--citation", str(tmp_path / "C.cff"),
                     "--readme", ""]) == 0
    assert "git add" in capsys.readouterr().out
    assert cli.main(["cite", str(archive), "--bibtex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("@misc{lovelace2023test,") and "@article{elhage2022superposition," in out


def test_builds_write_their_archive_under_report_build():
    """The freeze rule and `tms freeze` write under report/build/ (ignored); report/release/ is written by
    `tms release` only, and that is the directory the repository's citation names."""
    repo = Path(__file__).resolve().parents[1]
    rules = (repo / "workflow" / "rules" / "report.smk").read_text()
    freeze_rule = rules[rules.index("rule freeze:"):]
    assert "--out report/build" in freeze_rule and "report/release" not in rules
    assert 'FROZEN_ARCHIVE = f"report/build/' in (repo / "workflow" / "rules" / "common.smk").read_text()
    assert cli.build_parser().parse_args(["freeze", "--config", "x"]).out == "report/build"
    ignored = ["git", "check-ignore", "-q", "report/build/tms-findings-default.tar.gz"]
    assert subprocess.run(ignored, cwd=repo).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", "report/release/x.tar.gz"], cwd=repo).returncode == 1
