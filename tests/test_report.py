"""Tests of tms.report: LaTeX escaping, rendering, the reproducible PDF, and the HTML in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from report_fixtures import FIGURES, LONG_KEY, TRICKY, make_inputs, make_registry_inputs
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
    assert sorted(p.name for p in (built / "figures").glob("*.pdf")) == sorted(f"{f}.pdf" for f in FIGURES)
    for fid in FIGURES:
        assert f"figures/{fid}.pdf" in tex
    found = json.loads(inputs.findings.read_text())
    for f in found:  # every finding in both documents, with its verdict
        assert report.tex_escape(f["id"]).replace(r"\_", "") in tex.replace(r"\_", "").replace(r"\allowbreak{}", "")
        assert f["id"] in html
    # counts are computed: 3 reproduced, 2 not reproduced, 1 inconclusive
    assert "3 reproduced" in tex and "2 not reproduced" in tex and "1 inconclusive" in tex
    assert "3 reproduced" in html and "2 not reproduced" in html
    # sections in paper order, sections without figures listed as such
    assert tex.index(r"\section{Introduction}") < tex.index(r"\section{Superposition as a Phase Change}")
    assert "Sections of the paper without a figure in this build" in tex
    assert r"\section{All claims}" in tex and r"\begin{longtable}" in tex
    # one device for every experiment: said once, not repeated (and wrapped) in every row of the table
    assert "Every experiment was trained on cpu (" in tex and r"\textbf{Device}" not in tex


def test_no_wall_times_in_the_report(built, inputs):
    """Both documents go into the frozen archive, whose SHA-256 a rebuild must reproduce: the timings
    beside the results (timings.json) reach neither."""
    assert (inputs.results / "test_exp" / "timings.json").exists()
    for name in ("FINDINGS.tex", "FINDINGS.html"):
        text = re.sub(r'data:[^"]*', "", (built / name).read_text())  # not the base64 of the images
        for number in ("2718", "31415", "31,415"):
            assert number not in text, (name, number)
        assert "Model-steps/s" not in text and "wall time</dt>" not in text


class _Refs(HTMLParser):
    """Every URL-valued attribute of a page: what it loads (src, link, poster...) and what it links (a href)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if not v:
                continue
            if tag == "a" and k == "href":
                self.links.append(v)
            elif k in ("src", "srcset", "poster", "data", "background", "action", "formaction") or \
                    (tag == "link" and k == "href") or (k == "href" and tag != "a"):
                self.loads.append(v)


def test_html_is_self_contained(built):
    """Nothing the page loads comes from the network: every image, script and style is inline. The only
    http(s) URLs are links a reader may follow (the paper, the references, the repository)."""
    html = (built / "FINDINGS.html").read_text()
    assert html.count('class="figure-img"') == len(FIGURES)
    refs = _Refs()
    refs.feed(html)
    assert refs.loads and all(u.startswith("data:") for u in refs.loads), [u[:60] for u in refs.loads]
    assert "<link" not in html and "@import" not in html and "url(" not in re.sub(r'data:[^"]*', "", html)
    allowed = {report.PAPER_URL, report.REPOSITORY_URL} | {r["url"] for r in report.REFERENCES if r["url"]}
    external = [u for u in refs.links if re.match(r"(https?:)?//", u)]
    assert external and set(external) <= allowed, set(external) - allowed
    text = re.sub(r'data:[^"]*', "", html)
    for url in re.findall(r"https?://[^\s\"<>(){}]+", text):  # no URL string other than those links
        assert url in allowed, url
    for marker in ("data-js-errors", "live-canvas", "claims-table", "ToyModel", "data-expected-figures=\"2\""):
        assert marker in html
    assert html.count("<script>") == 3  # guard, trainer, page script: all inline


def test_every_figure_has_a_csv_download(inputs, tmp_path, monkeypatch):
    """Small tables are embedded; a table too large to embed is linked where it lies beside the page
    (figures/<id>.csv: in the build directory and in the archive)."""
    big = "test_phase"
    figures = tmp_path / "figures_in"
    shutil.copytree(inputs.figures, figures)
    with open(figures / f"{big}.csv", "a") as fh:  # larger than what the page embeds
        fh.write("".join(f"{i},0.5\n" for i in range(report.MAX_INLINE_CSV // 6)))
    out = tmp_path / "out"
    report.build(inputs.findings, figures, inputs.results, out, inputs.config, pdf=False)
    html = (out / "FINDINGS.html").read_text()
    for fid in FIGURES:
        if fid == big:
            assert f'href="figures/{fid}.csv"' in html and "in the archive" in html
            assert (out / "figures" / f"{fid}.csv").read_bytes() == (figures / f"{fid}.csv").read_bytes()
        else:
            assert f'download="{fid}.csv" href="data:text/csv;base64,' in html
            assert not (out / "figures" / f"{fid}.csv").exists()


def test_report_structure_like_a_paper_replication(built, inputs):
    """Title block with the repository, results at a glance, coverage, methods with the recipes, figures with
    badges and rebuild commands, discussion, limitations, references, the claims table, provenance, citation."""
    tex = (built / "FINDINGS.tex").read_text()
    html = (built / "FINDINGS.html").read_text()
    order = [r"\section{Results at a glance}", r"\section{Coverage of the paper}", r"\section{Methods}",
             r"\subsection{Training recipes}", r"\section{Introduction}", r"\section{Discussion",
             r"\section{Limitations}", r"\section{References}", r"\section{All claims}", r"\appendix",
             r"\section{How to cite}"]
    assert [tex.index(x) for x in order] == sorted(tex.index(x) for x in order)
    for doc in (tex, html):
        assert "github.com/tms-replication/tms" in doc.replace(r"\allowbreak{}", "")
        assert "transformer-circuits.pub/2022/toy" in doc.replace(r"\allowbreak{}", "")
        assert "the tutorial" in doc and "the slide deck" in doc and "ECD" in doc  # sources defined once
    for fid in FIGURES:  # a rebuild command per figure, in both documents
        assert f"snakemake --cores all figures/{fid}.pdf" in html
        assert f"figures/{fid}.pdf" in tex.replace(r"\allowbreak{}", "").replace("-{}-", "--")
    assert r"\badge{vfail}{1/3 reproduced}" in tex and r"\badge{vfail}{2/3 reproduced}" in tex
    assert "1/3 reproduced" in html and "2/3 reproduced" in html
    # the recipe table comes from the config, defaults filled in
    assert "test\\_exp" in tex.replace(r"\allowbreak{}", "") and "AdamW" in tex and "AdamW" in html
    # verdict first, the readable sentence, then measured, needed and margin of the deciding bar
    start = tex.index(r"\item \verdict{vfail}{Not reproduced}")
    bullet = tex[start:tex.index(r"\item", start + 5)]
    assert bullet.index(r"\emph{The paper:}") < bullet.index("Measured on the selected instances") < \
        bullet.index("Measured: agreement away from boundaries") < bullet.index("Expected:")
    assert "0.8995; needed" in tex and r"\ensuremath{\geq} 0.9" in tex and "(near miss)" in tex
    # the discussion groups the failures: a near miss and one missing by more than half its threshold
    disc = tex[tex.index(r"\section{Discussion"):tex.index(r"\section{Limitations}")]
    assert "Near misses (1)" in disc and "Missed by more than half the threshold (1)" in disc
    assert "BibTeX" in tex and r"@misc\{" in tex and "@misc{" in html and "sha256sum -c MANIFEST.sha256" in html


def test_summary_table_is_one_row_per_claim(built, inputs):
    """The claims table: id, figure and page, verdict, measured vs needed; no dump of every measured value."""
    tex = (built / "FINDINGS.tex").read_text()
    table = tex[tex.index(r"\section{All claims}"):tex.index(r"\appendix")]
    rows = [ln for ln in table.splitlines() if re.match(r"^\d+ & ", ln)]
    assert len(rows) == len(json.loads(inputs.findings.read_text()))
    assert all(r"\pageref*{fig:" in r and r.rstrip().endswith(r"\\") for r in rows)
    assert "1.12" not in table  # the full measured values are in the appendix, not the table
    assert LONG_KEY.split("_")[0] in tex[tex.index(r"\appendix"):]


def test_explanation_of_a_finding_is_shown(inputs, tmp_path, monkeypatch):
    """A finding that carries an authored ``explanation`` shows it under its claim and in the discussion."""
    from tms import findings as findings_mod

    real = findings_mod.read

    def read(path):
        out = real(path)
        for f in out:
            if f.verdict == "not reproduced":
                f.explanation = "Data-starved at this budget: $10\\times$ fewer samples than NB."
        return out

    monkeypatch.setattr(findings_mod, "read", read)
    report.build(inputs.findings, inputs.figures, inputs.results, tmp_path, inputs.config, pdf=False)
    tex = (tmp_path / "FINDINGS.tex").read_text()
    html = (tmp_path / "FINDINGS.html").read_text()
    assert tex.count(r"\emph{Why:} Data-starved at this budget: $10\times$") == 4  # 2 claims, body + discussion
    glance = tex[tex.index(r"\section{Results at a glance}"):tex.index(r"\section{Coverage")]
    assert glance.count("Data-starved at this budget") == 2  # the one-line reason of both figures
    assert "2 of them carry an explanation" in tex and "Data-starved" in html and "<mo>&#x000D7;</mo>" in html


def test_html_navigation(built):
    """A figure index with anchors (the glance table), figures that open at full size, back to the top."""
    html = (built / "FINDINGS.html").read_text()
    glance = html[html.index('id="glance"'):html.index('id="coverage"')]
    for fid in FIGURES:
        assert f'href="#fig-{fid}"' in glance and f'id="fig-{fid}"' in html and f'id="prov-{fid}"' in html
    assert html.count('<a class="zoom"') == len(FIGURES) and 'id="lightbox"' in html
    assert 'class="to-top" href="#top"' in html and '<header id="top">' in html


def test_live_trainer_gets_the_static_figures_colours(built):
    from matplotlib.colors import to_hex

    from tms.figures.draw import importance_colors

    html = (built / "FINDINGS.html").read_text()
    assert f'data-colors="{" ".join(to_hex(c) for c in importance_colors(5))}"' in html
    assert 'id="live-new-seed"' in html


def test_overfull_boxes_are_read_from_the_log():
    log = ("Overfull \\hbox (12.5pt too wide) in alignment at lines 10--20\n []\\T1/lmr/m/n/10 verdict \n"
           "Overfull \\hbox (0.3pt too wide) in paragraph at lines 3--4\n x\n"
           "Underfull \\hbox (badness 10000) in paragraph at lines 5--6\n")
    boxes = report.overfull_boxes(log)
    assert len(boxes) == 1 and boxes[0].startswith("12.5pt too wide in alignment at lines 10--20")


def test_figure_text_size_at_print_size(inputs):
    """The smallest text of a figure at the size the report prints it: the Tf sizes of the PDF, less
    sub- and superscripts (70 %), times the one scale rule."""
    sizes = report.pdf_font_sizes(inputs.figures / "test_phase.pdf")
    assert sizes and min(sizes) >= 6
    assert report.body_text_sizes([7.0, 8.0, 4.9, 5.6]) == [7.0, 8.0]
    assert report.figure_scale(3.0, 3.0) == 1.0  # never scaled up
    assert report.figure_scale(2 * report.TEXT_WIDTH_IN, 1.0) == pytest.approx(0.5)


def test_citation_has_a_real_key_url_version_and_commit():
    info = report.citation_info({"report": {"authors": ["Ada Lovelace"], "version": "1.2.0",
                                            "url": "https://example.org/tms"}}, 1700000000, {"commit": "a" * 40})
    assert info["key"] == "lovelace2023toy" and info["url"] == "https://example.org/tms"
    bib = info["bibtex"]
    assert bib.startswith("@misc{lovelace2023toy,") and "Lovelace, Ada" in bib and "version      = {1.2.0}" in bib
    assert "url          = {https://example.org/tms}" in bib and "aaaaaaaaaaaa" in bib
    team = report.citation_info({}, 1700000000, {})
    assert team["key"] == "tms2023toy" and "{The tms replication team}" in team["bibtex"]
    assert team["url"] == report.REPOSITORY_URL


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
    (tmp_path / "figures" / "old_figure.csv").write_text("x\n")
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
    assert out["sparse"]["info"]["represented"] == 5 and out["sparse"]["info"]["shape"] == "regular pentagon"
    assert out["sparse"]["w"] == out["again"]["w"]  # seeded: the same picture every time
    dense = out["dense"]["info"]  # dense: no superposition
    assert dense["represented"] == 2 and dense["shape"] == "2 orthogonal features" and dense["antipodal"] == 0
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
    assert state["data-trainer-seed"] == "1"
    assert json.loads(state["data-resources"]) == []  # nothing was fetched: every resource is inline

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


# ---------------------------------------------------------------------------------------------
# layout of the PDF: nothing runs into the margin or over the next cell


def _compile(inputs, out: Path, templates: Path | None = None, monkeypatch=None) -> str:
    if templates is not None:
        monkeypatch.setenv("TMS_REPORT_TEMPLATES", str(templates))
    report.build(inputs.findings, inputs.figures, inputs.results, out, inputs.config, pdf=True)
    return (out / "FINDINGS.log").read_text(errors="replace")


@pytest.mark.slow
@needs_latex
def test_pdf_has_no_overfull_boxes(inputs, tmp_path):
    """Long unbreakable measured keys and claim ids (the fixture has them) stay inside their cells."""
    assert report.overfull_boxes(_compile(inputs, tmp_path / "out")) == []


@pytest.mark.slow
@needs_latex
def test_report_of_every_registered_figure_and_claim_has_no_overfull_boxes(tmp_path):
    """The report with every real title, caption and claim text of the registry and the default config's
    recipe table: no line over the margin, no cell over the next (the LaTeX log is the judge)."""
    inputs = make_registry_inputs(tmp_path / "pipeline")
    log = _compile(inputs, tmp_path / "out")
    assert report.overfull_boxes(log) == []
    tex = (tmp_path / "out" / "FINDINGS.tex").read_text()
    assert r"\texttt{\$" not in tex  # every maths segment was typeset, none shown as source


@pytest.mark.slow
@needs_latex
def test_overfull_check_fails_on_an_overprinted_table_cell(inputs, tmp_path, monkeypatch):
    """The check has teeth: an unbreakable word in the claims table's verdict column is reported."""
    templates = tmp_path / "templates"
    shutil.copytree(report.templates_dir(), templates)
    tex = templates / "FINDINGS.tex.j2"
    cell = r"\verdict{v\VAR{r.verdict_class|raw}}{\VAR{r.verdict}}\BLOCK{if r.near_miss}"
    assert cell in tex.read_text()
    tex.write_text(tex.read_text().replace(cell, r"\texttt{" + LONG_KEY.replace("_", "") + "}" + cell))
    boxes = report.overfull_boxes(_compile(inputs, tmp_path / "out", templates, monkeypatch))
    assert boxes and all("agreementwith" in b for b in boxes), boxes


# ---------------------------------------------------------------------------------------------
# the HTML's layout, print and live trainer in headless Chromium


def _fit_at(html: Path, width: int, tmp: Path) -> dict[str, str]:
    """Layout checks of ``html`` in a ``width``-px wide frame (a window cannot be made narrower than
    ~500 px in headless Chromium; a frame can): the page's own attributes, copied out by the harness."""
    harness = tmp / f"harness-{width}.html"
    keys = ["data-scroll-width", "data-viewport-width", "data-claims-fit", "data-claims-width", "data-js-errors"]
    harness.write_text(f"""<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" src="{html.resolve().as_uri()}" width="{width}" height="900" style="border:0"></iframe>
<script>
function poll() {{
  var r = null;
  try {{ r = document.getElementById("f").contentDocument.documentElement; }} catch (e) {{ }}
  if (r && r.getAttribute("data-checks-done") === "1") {{
    {json.dumps(keys)}.forEach(function (k) {{ document.documentElement.setAttribute(k, r.getAttribute(k) || ""); }});
    return;
  }}
  setTimeout(poll, 50);
}}
poll();
</script></body></html>""")
    proc = _chromium(["--allow-file-access-from-files", "--window-size=1280,1000", "--virtual-time-budget=4000",
                      "--dump-dom", harness.resolve().as_uri()], tmp)
    parser = _RootAttrs()
    parser.feed(proc.stdout)
    assert "data-scroll-width" in parser.attrs, f"the frame reported nothing: {proc.stderr[-2000:]}"
    return parser.attrs


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("width", [400, 1024])
def test_html_fits_the_window_without_horizontal_scrolling(built, tmp_path, width):
    state = _fit_at(built / "FINDINGS.html", width, tmp_path)
    assert int(state["data-viewport-width"]) == width
    assert int(state["data-scroll-width"]) <= width, state  # the page does not scroll sideways
    assert state["data-claims-fit"] == "1", state  # nor does the claims table, inside or out
    assert json.loads(state["data-js-errors"]) == []


@pytest.mark.slow
@needs_chromium
def test_width_check_fails_on_a_claims_table_wider_than_the_window(built, tmp_path):
    wide = tmp_path / "wide.html"
    wide.write_text((built / "FINDINGS.html").read_text().replace(
        "</style>", "#claims-table { min-width: 1300px; table-layout: auto; }</style>", 1))
    for width in (400, 1024):
        state = _fit_at(wide, width, tmp_path)
        assert int(state["data-scroll-width"]) > width and state["data-claims-fit"] == "0", state


@pytest.mark.slow
@needs_chromium
def test_printing_the_html_keeps_the_provenance(built, tmp_path):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    pdf = tmp_path / "printed.pdf"
    _chromium(["--no-pdf-header-footer", "--virtual-time-budget=2000", f"--print-to-pdf={pdf}",
               (built / "FINDINGS.html").resolve().as_uri()], tmp_path)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    flat = re.sub(r"\s+", " ", text)
    for fid in FIGURES:
        assert f"snakemake --cores all figures/{fid}.pdf" in flat, fid
    assert "figure config hash" in flat and "Provenance of each figure" in flat
    assert "The pentagon, live" not in flat  # the interactive part is left out of print


def _python_geometry(density: float, decay: float) -> dict:
    """The Python trainer (tms.experiments) on the live widget's setting: n = 5, m = 2, Adam, batch 256."""
    from tms import config as config_mod
    from tms import experiments, geometry

    exp = config_mod.experiment({"experiments": {"live": {
        "model": "relu_output", "n_features": 5, "n_hidden": 2,
        "importance": {"constant": 1.0} if decay == 1 else {"decay": decay},
        "sweep": {"density": [density]}, "restarts": 4,
        "train": {"steps": 3000, "batch_size": 256, "optimizer": "adam", "lr": 0.003, "eval_batch": 65536,
                  "compile": False}}}}, "live")
    problem, spec, _ = experiments.build("live", exp, seed=0, device="cpu")
    result = experiments.train(problem, spec)
    loss = experiments.exact_losses("live", problem, result.params, "auto")
    W = result.params["W"][int(np.argmin(loss if loss is not None else result.final_loss))]
    rep = geometry.represented(W)  # indices
    pairs = geometry.antipodal_pairs(W)
    gaps = geometry.angular_gaps(W, list(rep)) if rep.size >= 2 else np.array([])
    return {"represented": int(rep.size), "antipodal": len(pairs),
            "max_gap_deviation": float(np.max(np.abs(gaps - 360 / max(rep.size, 1)))) if gaps.size else 0.0}


@pytest.mark.slow
@needs_chromium
def test_live_trainer_reaches_the_python_trainers_geometry(tmp_path):
    """The page's trainer and the pipeline's reach the same geometry on the intro setting: a regular
    pentagon at density 0.1 with uniform importance, two antipodal pairs with the tutorial's 0.7^i
    (the static figure's 90 % panel of that sweep)."""
    js = (report.templates_dir() / "live_trainer.js").read_text()
    page = tmp_path / "trainer.html"
    page.write_text(f"""<!DOCTYPE html><html><body><script>{js}</script><script>
var api = window.tmsLiveTrainer, out = {{}};
[["uniform", 0.1, 1], ["tutorial", 0.1, 0.7]].forEach(function (c) {{
  var imp = [0, 1, 2, 3, 4].map(function (i) {{ return Math.pow(c[2], i); }});
  var m = new api.ToyModel({{density: c[1], importance: imp, lr: 0.003, batch: 256, seed: 1}});
  for (var s = 0; s < 3000; s++) m.step();
  out[c[0]] = api.describe(m.columns());
}});
document.documentElement.setAttribute("data-out", JSON.stringify(out));
</script></body></html>""")
    proc = _chromium(["--virtual-time-budget=60000", "--dump-dom", page.resolve().as_uri()], tmp_path)
    parser = _RootAttrs()
    parser.feed(proc.stdout)
    live = json.loads(parser.attrs["data-out"])
    assert live["uniform"]["shape"] == "regular pentagon" and live["uniform"]["represented"] == 5
    assert live["tutorial"]["represented"] == 4 and live["tutorial"]["antipodal"] == 2

    uniform, tutorial = _python_geometry(0.1, 1.0), _python_geometry(0.1, 0.7)
    assert uniform["represented"] == 5 and uniform["max_gap_deviation"] < 12  # regular pentagon
    assert tutorial["represented"] == live["tutorial"]["represented"]
    assert tutorial["antipodal"] == live["tutorial"]["antipodal"]
