"""Tests of tms.report: LaTeX escaping, rendering, the reproducible PDF, and the HTML in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from report_fixtures import FIGURES, TRICKY, make_inputs
from tms import report
from tms.figures import base as figures_base

CHROMIUM = Path("/usr/bin/chromium")
NODE = shutil.which("node")
HAS_LATEX = shutil.which("latexmk") is not None and shutil.which("pdflatex") is not None
needs_latex = pytest.mark.skipif(not HAS_LATEX, reason="latexmk/pdflatex not installed (CI installs TeX Live: "
                                 "see report/README.md)")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (CI: apt-get "
                                    "install -y --no-install-recommends chromium)")


@pytest.fixture(autouse=True)
def _fixed_date(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    """A report built without the PDF (the PDF has its own slow tests)."""
    out = tmp_path_factory.mktemp("build")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        report.build(inputs.findings, inputs.figures, inputs.results, out, inputs.config, pdf=False)
    return out


# ---------------------------------------------------------------------------------------------
# escaping and formatting


def test_tex_escape_specials_and_unicode():
    out = report.tex_escape(TRICKY)
    for raw, escaped in [("%", r"\%"), ("_", r"\_"), ("&", r"\&"), ("$", r"\$"), ("#", r"\#"),
                         ("^", r"\textasciicircum{}"), ("~", r"\textasciitilde{}"), ("<", r"\textless{}"),
                         (">", r"\textgreater{}"), ("≈", r"\ensuremath{\approx}"), ("≥", r"\ensuremath{\geq}"),
                         ("→", r"\ensuremath{\rightarrow}"), ("×", r"\ensuremath{\times}"), ("‖", r"\ensuremath{\|}"),
                         ("…", r"\ldots{}"), ("\\", r"\textbackslash{}")]:
        assert escaped in out, raw
    stripped = re.sub(r"\\[a-zA-Z]+|\\[%_&$#{}|,]|\{\}", "", out)  # remove commands and escaped characters
    assert not re.search(r"[%&$#^~<>_]", stripped), stripped
    assert "-{}-" in out  # no en-dash ligature
    assert all(ord(c) < 128 or 0xC0 <= ord(c) <= 0x17F for c in out)  # only what T1/utf8 typesets
    assert report.tex_escape("中") == r"\texttt{[U+4E2D]}"  # unknown characters stay visible, never an error


@pytest.mark.parametrize("value,text", [
    (None, "n/a"), (True, "yes"), (3, "3"), (0.0, "0"), (0.123456, "0.1235"), (1.5e-7, "1.5e-07"),
    ({"a": 1, "b": [0.5, 2]}, "a: 1, b: [0.5, 2]"), (list(range(20)), "[0, 1, 2, 3, 4, 5, ..., 19] (n=20)"),
    ("text", "text"), ({"k": {"x": 1}}, "k: {x: 1}"),
])
def test_format_value(value, text):
    assert report.format_value(value) == text


# ---------------------------------------------------------------------------------------------
# rendering (no TeX needed)


def test_build_writes_tex_html_and_figures(built, inputs):
    tex = (built / "FINDINGS.tex").read_text()
    html = (built / "FINDINGS.html").read_text()
    assert sorted(p.name for p in (built / "figures").iterdir()) == sorted(f"{f}.pdf" for f in FIGURES)
    for fid in FIGURES:
        assert f"figures/{fid}.pdf" in tex
    found = json.loads(inputs.findings.read_text())
    for f in found:  # every finding in both documents, with its verdict
        assert report.tex_escape(f["id"]).replace(r"\_", "") in tex.replace(r"\_", "").replace(r"\allowbreak{}", "")
        assert f["id"] in html
    # counts are computed: 3 reproduced, 1 not reproduced, 1 inconclusive
    assert "3 reproduced" in tex and "1 not reproduced" in tex and "1 inconclusive" in tex
    assert "3 reproduced" in html and "1 not reproduced" in html
    # sections in paper order, sections without figures listed as such
    assert tex.index(r"\section{Introduction}") < tex.index(r"\section{Superposition as a Phase Change}")
    assert "Sections of the paper without a figure in this build" in tex
    assert r"\section{Summary of claims}" in tex and r"\begin{longtable}" in tex


def test_no_wall_times_in_the_report(built, inputs):
    """Both documents go into the frozen archive, whose SHA-256 a rebuild must reproduce: the timings
    beside the results (timings.json) reach neither."""
    assert (inputs.results / "test_exp" / "timings.json").exists()
    for name in ("FINDINGS.tex", "FINDINGS.html"):
        text = re.sub(r'data:[^"]*', "", (built / name).read_text())  # not the base64 of the images
        for number in ("2718", "31415", "31,415"):
            assert number not in text, (name, number)
        assert "Model-steps/s" not in text and "wall time</dt>" not in text


def test_html_is_self_contained(built):
    html = (built / "FINDINGS.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no network resources
    assert "<link" not in html and "@import" not in html
    for marker in ("data-js-errors", "live-canvas", "claims-table", "ToyModel", "data-expected-figures=\"2\""):
        assert marker in html
    assert html.count("<script>") == 3  # guard, trainer, page script: all inline


def test_rendering_is_deterministic(inputs, built, tmp_path):
    report.build(inputs.findings, inputs.figures, inputs.results, tmp_path, inputs.config, pdf=False)
    for name in ("FINDINGS.tex", "FINDINGS.html"):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes(), name


def test_missing_figure_file_is_an_error_naming_it(inputs, tmp_path):
    figs = tmp_path / "figures"
    shutil.copytree(inputs.figures, figs)
    (figs / "test_phase.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_phase\.png"):
        report.build(inputs.findings, figs, inputs.results, tmp_path / "out", inputs.config, pdf=False)


def test_build_into_the_pipeline_directory_keeps_its_figures(inputs, tmp_path):
    """``--out .`` makes out_dir/figures the pipeline's figures directory: nothing may be deleted."""
    shutil.copytree(inputs.figures, tmp_path / "figures")
    before = sorted(p.name for p in (tmp_path / "figures").iterdir())
    report.build(inputs.findings, tmp_path / "figures", inputs.results, tmp_path, inputs.config, pdf=False)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == before


def test_stale_figure_pdfs_are_removed(inputs, tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "old_figure.pdf").write_bytes(b"%PDF stale")
    report.build(inputs.findings, inputs.figures, inputs.results, tmp_path, inputs.config, pdf=False)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(f"{f}.pdf" for f in FIGURES)


def test_registry_title_and_caption_win(inputs, tmp_path, monkeypatch):
    spec = figures_base.FigureSpec("test_phase", "phase_change", "Registered title", "Registered caption 50%.",
                                   lambda ctx: None, "tms.figures.example")
    monkeypatch.setitem(figures_base.FIGURES, "test_phase", spec)
    report.build(inputs.findings, inputs.figures, inputs.results, tmp_path, inputs.config, pdf=False)
    tex = (tmp_path / "FINDINGS.tex").read_text()
    assert "Registered title" in tex and r"Registered caption 50\%." in tex
    assert r"tms.\allowbreak{}figures.\allowbreak{}example" in tex


def test_without_config_uses_provenance(inputs, tmp_path):
    report.build(inputs.findings, inputs.figures, inputs.results, tmp_path, None, pdf=False)
    tex = (tmp_path / "FINDINGS.tex").read_text()
    assert "testcfg" in tex and "Five features in two dimensions" in tex


def test_snakemake_caption_templates_render():
    """workflow/report/*.rst render the way Snakemake renders them (Jinja2, then docutils) without errors."""
    jinja2 = pytest.importorskip("jinja2")
    docutils_core = pytest.importorskip("docutils.core")

    class Params:
        title, caption, section = "W_i and |x| *bold", "1-S ≥ 0.1 & `x` <b>", "Introduction"

    class Wildcards:
        figure = "fig_a"

    class Smk:
        params, wildcards = Params(), Wildcards()
        config = {"name": "quick", "seed": 0, "experiments": {"e": {}}, "figures": {"fig_a": {"experiments": ["e"]}}}

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    root = Path(__file__).resolve().parents[1] / "workflow" / "report"
    for name in ("figure.rst", "findings.rst", "workflow.rst"):
        rst = env.from_string((root / name).read_text()).render(snakemake=Smk, categories={}, files={})
        html = docutils_core.publish_parts(rst, writer="html",
                                           settings_overrides={"report_level": 2, "halt_level": 2})["body"]
        assert "system-message" not in html, name
    assert "W_i and |x| *bold" in docutils_core.publish_parts(
        env.from_string((root / "figure.rst").read_text()).render(snakemake=Smk), writer="html")["body"]


# ---------------------------------------------------------------------------------------------
# the live trainer's core, under node (no browser needed)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_live_trainer_forms_a_pentagon_under_node(tmp_path):
    js = report.templates_dir() / "live_trainer.js"
    script = tmp_path / "run.js"
    script.write_text(f"""
const api = require({json.dumps(str(js))});
function train(density, steps, lr, decay) {{
  const importance = [0, 1, 2, 3, 4].map(i => Math.pow(decay || 1, i));
  const m = new api.ToyModel({{density: density, lr: lr || 3e-3, batch: 256, seed: 1, importance: importance}});
  let loss = 0;
  for (let s = 0; s < steps; s++) loss = m.step();
  return {{loss: loss, finite: m.finite(), info: api.describe(m.columns()), w: Array.from(m.W)}};
}}
console.log(JSON.stringify({{sparse: train(0.05, 1000), again: train(0.05, 1000), dense: train(1, 2000, 0, 0.7),
                            hot: train(0.05, 300, 1.0)}}));
""")
    out = json.loads(subprocess.run([NODE, str(script)], capture_output=True, text=True, check=True,
                                    timeout=60).stdout)
    assert out["sparse"]["info"] == {"represented": 5, "shape": "regular pentagon"}
    assert out["sparse"]["w"] == out["again"]["w"]  # seeded: the same picture every time
    assert out["dense"]["info"] == {"represented": 2, "shape": "2 orthogonal features"}  # dense: no superposition
    assert all(r["finite"] for r in out.values())  # even a huge learning rate does not produce NaN here


# ---------------------------------------------------------------------------------------------
# the PDF (needs TeX Live)


@pytest.mark.slow
@needs_latex
def test_pdf_compiles_and_is_byte_identical(inputs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "deeper" / "b"
    report.build(inputs.findings, inputs.figures, inputs.results, a, inputs.config, pdf=True)
    report.build(inputs.findings, inputs.figures, inputs.results, b, inputs.config, pdf=True)
    pdf = (a / "FINDINGS.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 10_000
    assert pdf == (b / "FINDINGS.pdf").read_bytes()  # different directories, same bytes
    assert str(tmp_path).encode() not in pdf and b"/tmp" not in pdf
    assert b"/CreationDate (D:20231114221320Z)" in pdf  # SOURCE_DATE_EPOCH=1700000000
    assert not list(a.glob("*.aux"))  # compiled in a scratch directory


@pytest.mark.slow
@needs_latex
def test_empty_build_compiles(tmp_path):
    """No figures and no findings yet (the start of a project): still a valid PDF that says so."""
    (tmp_path / "results").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "results" / "findings.json").write_text("[]\n")
    config = tmp_path / "empty.yaml"
    config.write_text("name: empty\nseed: 0\nexperiments: {}\nfigures: {}\n")
    report.build(tmp_path / "results" / "findings.json", tmp_path / "figures", tmp_path / "results",
                 tmp_path / "out", config, pdf=True)
    assert (tmp_path / "out" / "FINDINGS.pdf").read_bytes().startswith(b"%PDF-")
    assert "No claims were evaluated" in (tmp_path / "out" / "FINDINGS.tex").read_text()


@pytest.mark.slow
@needs_latex
def test_latex_error_is_reported_with_the_log(inputs, tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    shutil.copytree(report.templates_dir(), templates)
    tex = templates / "FINDINGS.tex.j2"
    tex.write_text(tex.read_text().replace(r"\maketitle", r"\maketitle\undefinedcommand"))
    monkeypatch.setenv("TMS_REPORT_TEMPLATES", str(templates))
    with pytest.raises(report.ReportError, match="undefinedcommand|Undefined control sequence"):
        report.build(inputs.findings, inputs.figures, inputs.results, tmp_path / "out", inputs.config, pdf=True)
    assert (tmp_path / "out" / "FINDINGS.log").exists()


# ---------------------------------------------------------------------------------------------
# the HTML in headless Chromium


class _RootAttrs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "html" and not self.attrs:
            self.attrs = {k: v or "" for k, v in attrs}


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh profile for every run
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-extensions",
           f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def page_state(html: Path, tmp: Path, budget_ms: int = 12000) -> dict[str, str]:
    """The attributes the page's own checks left on <html> after ``budget_ms`` of virtual time."""
    proc = _chromium([f"--virtual-time-budget={budget_ms}", "--dump-dom", html.resolve().as_uri()], tmp)
    parser = _RootAttrs()
    parser.feed(proc.stdout)
    assert parser.attrs, f"chromium printed no DOM (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return parser.attrs


def page_problems(state: dict[str, str]) -> list[str]:
    """Everything wrong with a rendered report page: JS errors, figures that did not load, checks not run."""
    problems = [f"JavaScript error: {e}" for e in json.loads(state.get("data-js-errors", "[]"))]
    problems += json.loads(state.get("data-figure-problems", '["figure check did not run"]'))
    if state.get("data-checks-done") != "1":
        problems.append("the page's checks did not run")
    return problems


@pytest.mark.slow
@needs_chromium
def test_html_in_chromium_no_errors_figures_and_live_pentagon(built, tmp_path):
    html = built / "FINDINGS.html"
    state = page_state(html, tmp_path)
    assert page_problems(state) == []
    assert state["data-figures-ok"] == f"{len(FIGURES)}/{len(FIGURES)}"
    # the live trainer ran to the end and, at the default sparsity 0.95, formed the pentagon
    assert int(state["data-trainer-steps"]) == 3000
    assert state["data-trainer-represented"] == "5" and state["data-trainer-shape"] == "regular pentagon"
    assert "nan" not in state["data-trainer-loss"].lower()

    shot = tmp_path / "shot.png"
    proc = _chromium(["--hide-scrollbars", "--window-size=1200,1800", "--virtual-time-budget=4000",
                      f"--screenshot={shot}", html.resolve().as_uri()], tmp_path)
    assert shot.exists(), proc.stderr[-2000:]
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (1800, 1200)
    assert img[..., :3].std() > 0.05  # not a blank page
    assert len({tuple(px) for px in (img[::40, ::40, :3] * 255).astype(int).reshape(-1, 3)}) > 20  # text, colour


@pytest.mark.slow
@needs_chromium
def test_chromium_check_fails_on_a_javascript_error(built, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text((built / "FINDINGS.html").read_text().replace(
        "</body>", "<script>document.getElementById('no-such-element').click();</script></body>"))
    problems = page_problems(page_state(bad, tmp_path, budget_ms=1000))
    assert any("JavaScript error" in p for p in problems), problems


@pytest.mark.slow
@needs_chromium
def test_chromium_check_fails_on_a_missing_or_broken_figure(built, tmp_path):
    html = (built / "FINDINGS.html").read_text()
    removed = tmp_path / "removed.html"  # the figure is gone from the page
    removed.write_text(re.sub(r'<img class="figure-img" data-figure="test_phase"[^>]*>', "", html))
    problems = page_problems(page_state(removed, tmp_path, budget_ms=1000))
    assert any("expected 2" in p for p in problems), problems

    broken = tmp_path / "broken.html"  # the figure is there but its image data is not a PNG
    broken.write_text(re.sub(r'(data-figure="test_phase" src="data:image/png;base64,)[^"]{40}', r"\1AAAA", html))
    problems = page_problems(page_state(broken, tmp_path, budget_ms=1000))
    assert any("test_phase" in p for p in problems), problems
