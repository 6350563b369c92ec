"""Render the FINDINGS report from the pipeline's outputs: FINDINGS.tex -> FINDINGS.pdf, and FINDINGS.html.

Everything in the report comes from files the pipeline wrote: ``results/findings.json`` (claims and
verdicts), ``figures/<id>.{pdf,png,csv}``, ``results/provenance/<id>.json``,
``results/<experiment>/meta.json`` and the config. The templates live in ``report/templates/``.

The PDF is byte-reproducible: it is compiled with ``SOURCE_DATE_EPOCH`` (see :func:`source_date_epoch`)
and ``FORCE_SOURCE_DATE=1`` in a fresh directory, has no trailer ID and no absolute paths. Neither the
PDF nor the HTML holds wall-clock times: they vary between runs, and both documents go into the frozen
archive, whose SHA-256 a rebuild must reproduce (timings are in ``results/<experiment>/timings.json``
and Snakemake's ``benchmarks/``; ``tms timings`` tabulates them).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import yaml

from tms import findings as findings_mod
from tms import provenance
from tms.io import atomic_write_bytes, atomic_write_text, read_json

log = logging.getLogger("tms.report")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TITLE = "Toy Models of Superposition: a reproducible replication"
DEFAULT_AUTHORS = ["The tms replication team"]
# Used only when neither SOURCE_DATE_EPOCH nor a git commit time is available (2022-09-14, the
# paper's publication date): any fixed value keeps the PDF reproducible.
FALLBACK_EPOCH = 1663113600
VERDICT_CLASS = {"reproduced": "ok", "not reproduced": "fail", "inconclusive": "unsure"}
# CSV tables up to this size are offered for download inside the HTML (larger ones are in the archive).
MAX_INLINE_CSV = 256 * 1024


class ReportError(RuntimeError):
    """The report cannot be built (missing input, LaTeX error); the message says what and where."""


def templates_dir() -> Path:
    """``report/templates`` of the repository (``TMS_REPORT_TEMPLATES`` overrides)."""
    return Path(os.environ.get("TMS_REPORT_TEMPLATES", REPO_ROOT / "report" / "templates"))


# ---------------------------------------------------------------------------------------------
# Reproducible dates


def source_date_epoch() -> int:
    """The build date: ``SOURCE_DATE_EPOCH`` if set, else the HEAD commit time, else a fixed date."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        return int(env)
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        return int(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return FALLBACK_EPOCH


def epoch_date(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d")


# ---------------------------------------------------------------------------------------------
# Formatting values and escaping LaTeX


def format_value(v: Any, depth: int = 0, max_items: int = 8) -> str:
    """A compact human-readable rendering of a measured value (number, dict, list, ...)."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "0" if v == 0 else f"{v:.4g}"
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        items = [f"{k}: {format_value(x, depth + 1)}" for k, x in list(v.items())[:max_items]]
        if len(v) > max_items:
            items.append(f"... ({len(v) - max_items} more)")
        body = ", ".join(items)
        return f"{{{body}}}" if depth else body
    if isinstance(v, (list, tuple)):
        xs = [format_value(x, depth + 1) for x in v]
        if len(xs) > max_items:  # long lists: head, ellipsis, last element and the length
            xs = xs[: max_items - 2] + ["...", xs[-1]]
            return f"[{', '.join(xs)}] (n={len(v)})"
        return f"[{', '.join(xs)}]"
    return str(v)


class Tex(str):
    """A string that is already LaTeX (not escaped again by the TeX template environment)."""


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "~": r"\textasciitilde{}", "%": r"\%",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", "`": r"\textasciigrave{}",
    "\n": " ", "\r": " ", "\t": " ",
}
_MATH = {
    "≈": r"\approx", "≥": r"\geq", "≤": r"\leq", "≠": r"\neq", "→": r"\rightarrow", "←": r"\leftarrow",
    "↔": r"\leftrightarrow", "⇒": r"\Rightarrow", "⇔": r"\Leftrightarrow", "↦": r"\mapsto", "×": r"\times",
    "·": r"\cdot", "±": r"\pm", "∓": r"\mp", "‖": r"\|", "∞": r"\infty", "∼": r"\sim", "∝": r"\propto",
    "∈": r"\in", "∉": r"\notin", "∑": r"\sum", "∏": r"\prod", "√": r"\surd", "∂": r"\partial",
    "∇": r"\nabla", "⊥": r"\perp", "°": r"^\circ", "′": r"\prime", "⟨": r"\langle", "⟩": r"\rangle",
    "≪": r"\ll", "≫": r"\gg", "≡": r"\equiv", "∘": r"\circ", "⊗": r"\otimes", "⊙": r"\odot",
    "∀": r"\forall", "∃": r"\exists", "∅": r"\emptyset", "∩": r"\cap", "∪": r"\cup", "⊂": r"\subset",
    "⊆": r"\subseteq", "≳": r"\gtrsim", "≲": r"\lesssim", "−": "-", "ℓ": r"\ell", "ℝ": r"\mathbb{R}",
    "µ": r"\mu", "÷": r"\div", "¬": r"\neg", "∧": r"\wedge", "∨": r"\vee", "∫": r"\int", "≅": r"\cong",
    "⊤": r"\top", "†": r"\dagger", "‡": r"\ddagger", "∆": r"\Delta", "Ω": r"\Omega", "ϵ": r"\epsilon",
    "✓": r"\checkmark", "✗": r"\times", "½": r"\tfrac12", "¼": r"\tfrac14", "¾": r"\tfrac34",
}
_TEXT = {
    "…": r"\ldots{}", "–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "„": ",,",
    "\u00a0": "~", "\u2009": r"\,", "\u202f": r"\,", "\u200b": "", "•": r"\textbullet{}",
    "²": r"\textsuperscript{2}", "³": r"\textsuperscript{3}", "¹": r"\textsuperscript{1}",
    "€": "EUR", "©": r"\textcopyright{}", "§": r"\S{}", "¶": r"\P{}",
}
_GREEK_UPPER = {"Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"}
# Capital Greek letters without a LaTeX command look like Latin ones.
_GREEK_LATIN = {"alpha": "A", "beta": "B", "epsilon": "E", "zeta": "Z", "eta": "H", "iota": "I", "kappa": "K",
                "mu": "M", "nu": "N", "omicron": "O", "rho": "P", "tau": "T", "chi": "X"}
_SUBSCRIPTS = {chr(0x2080 + i): str(i) for i in range(10)}
_SUPERSCRIPTS = {"⁰": "0", "⁴": "4", "⁵": "5", "⁶": "6", "⁷": "7", "⁸": "8", "⁹": "9", "⁻": "-", "⁺": "+",
                 "ⁿ": "n", "ᵀ": "T", "ⁱ": "i"}


def _tex_char(ch: str) -> str:
    """LaTeX for one non-ASCII character that pdflatex with T1/utf8 may not know."""
    if ch in _MATH:
        return rf"\ensuremath{{{_MATH[ch]}}}"
    if ch in _TEXT:
        return _TEXT[ch]
    if ch in _SUBSCRIPTS:
        return rf"\ensuremath{{_{{{_SUBSCRIPTS[ch]}}}}}"
    if ch in _SUPERSCRIPTS:
        return rf"\textsuperscript{{{_SUPERSCRIPTS[ch]}}}"
    name = unicodedata.name(ch, "")
    words = name.split()
    if len(words) == 4 and words[0] == "GREEK" and words[2] == "LETTER":
        letter = words[3].lower().replace("lamda", "lambda")  # Unicode spells it LAMDA
        if words[1] == "SMALL" and letter != "omicron":
            return rf"\ensuremath{{\{letter}}}"
        if words[1] == "CAPITAL" and letter.capitalize() in _GREEK_UPPER:
            return rf"\ensuremath{{\{letter.capitalize()}}}"
        if words[1] == "CAPITAL" and letter in _GREEK_LATIN:
            return _GREEK_LATIN[letter]
        if letter == "omicron":
            return "o"
    if 0xC0 <= ord(ch) <= 0x17F and ch not in "×÷ĸŉſ":  # Latin-1/Extended-A letters: T1 + utf8 has them
        return ch
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and base.isascii() and base.isprintable():
        return tex_escape(base)
    return rf"\texttt{{[U+{ord(ch):04X}]}}"  # visible, never a compile error


def tex_escape(s: Any) -> str:
    """Escape arbitrary text for LaTeX body text (specials, TeX ligatures, unicode)."""
    out: list[str] = []
    text = str(s)
    for i, ch in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ch == "-" and nxt == "-":  # no en/em-dash ligature for "--" (CLI flags, ranges)
            out.append("-{}")
        elif ch in "'," and nxt == ch:  # no '' / ,, quote ligatures
            out.append(ch + "{}")
        elif ch in "!?" and nxt == "`":
            out.append(ch + "{}")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(" ")
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append(_tex_char(ch))
    return re.sub(r" {2,}", " ", "".join(out))


def _tex_finalize(value: Any) -> Any:
    """Every ``\\VAR{...}`` is escaped unless it is already :class:`Tex`."""
    if isinstance(value, Tex):
        return value
    return tex_escape("" if value is None else value)


def _tex_breakable(s: Any) -> Tex:
    """Escape an identifier and allow line breaks after ``.``, ``_``, ``/`` and ``-`` (long ids in tables)."""
    parts = re.split(r"([._/-])", str(s))
    return Tex("".join(tex_escape(p) + (r"\allowbreak{}" if p in "._/-" and p else "") for p in parts))


def _tex_env() -> jinja2.Environment:
    """Jinja2 with LaTeX-safe delimiters: ``\\BLOCK{}``, ``\\VAR{}``, ``\\#{}``; escapes by default."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#", trim_blocks=True, lstrip_blocks=True, autoescape=False,
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined, finalize=_tex_finalize,
    )
    env.filters["id"] = _tex_breakable
    env.filters["raw"] = Tex
    env.filters["value"] = lambda v: tex_escape(format_value(v))
    return env


def _html_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["value"] = format_value
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    return env


# ---------------------------------------------------------------------------------------------
# Collecting the inputs


@dataclass
class FigureEntry:
    id: str
    section: str
    title: str
    caption: str
    module: str
    pdf: Path
    png: Path
    csv: Path | None
    findings: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] | None = None
    source: str = ""  # file:line of the build function (from the figure's provenance)


@dataclass
class Section:
    key: str
    title: str
    figures: list[FigureEntry]


@dataclass
class ReportData:
    title: str
    authors: list[str]
    version: str
    config_name: str
    config_hash: str
    config_file: str
    date: str
    epoch: int
    sections: list[Section]
    missing_sections: list[str]
    findings: list[dict[str, Any]]
    counts: dict[str, int]
    experiments: list[dict[str, Any]]
    code: dict[str, Any]
    code_versions: list[dict[str, Any]]
    packages: list[dict[str, Any]]
    robustness: dict[str, Any] | None = None  # summary and variants of a robustness run (None: not run)

    @property
    def figures(self) -> list[FigureEntry]:
        return [f for s in self.sections for f in s.figures]


def _read_config(config_path: Path | None) -> dict[str, Any]:
    if config_path is None:
        return {}
    if not config_path.exists():
        raise FileNotFoundError(f"config file {config_path} does not exist")
    return yaml.safe_load(config_path.read_text()) or {}


def _registry() -> dict[str, Any]:
    """The figure registry (a figure module that fails to import fails the report, naming it)."""
    from tms.figures import load_all

    return dict(load_all())


def _section_key(name: str) -> str:
    """A SECTIONS key from a key or a section title (findings may carry either)."""
    if name in findings_mod.SECTIONS:
        return name
    for key, title in findings_mod.SECTIONS.items():
        if title.lower() == str(name).lower():
            return key
    return "appendix"


def margin_text(f: findings_mod.Finding) -> str:
    """The binding condition of a verdict and its signed margin: "agreement 0.899 >= 0.9 (margin -0.001)"."""
    bars = f.bars or []
    if not bars or f.margin is None:
        return ""
    decides = [b for b in bars if not b["passed"]] if f.verdict == "not reproduced" else bars
    b = min(decides or bars, key=lambda x: x["relative_margin"] if x["relative_margin"] is not None else -1e300)
    unit = f" {b['unit']}" if b["unit"] else ""
    return (f"{b['name']}: {format_value(b['value'])} {b['op']} {format_value(b['threshold'])}{unit} "
            f"(margin {b['margin']:+.3g}{unit})")


def _finding_row(f: findings_mod.Finding, index: int) -> dict[str, Any]:
    key = _section_key(f.section)
    return {
        "index": index, "id": f.id, "figure": f.figure, "section": key,
        "section_title": findings_mod.SECTIONS[key], "claim": f.claim, "expected": f.expected,
        "tolerance": f.tolerance, "measured": f.measured, "measured_text": format_value(f.measured),
        "measured_json": json.dumps(f.measured, sort_keys=True), "verdict": f.verdict,
        "verdict_class": VERDICT_CLASS.get(f.verdict, "unsure"), "detail": f.detail,
        "experiments": list(f.experiments), "config": f.config,
        "margin_text": margin_text(f), "near_miss": bool(f.near_miss),
    }


def _figure_ids(cfg: dict[str, Any], found: list[findings_mod.Finding], results_dir: Path) -> list[str]:
    """Figures of the report: the config's, those with findings, and (without a config) those with provenance."""
    ids = list(cfg.get("figures", {}))
    ids += [f.figure for f in found]
    if not cfg:
        ids += sorted(p.stem for p in (results_dir / "provenance").glob("*.json"))
    return list(dict.fromkeys(ids))


def _figure_entry(fid: str, figures_dir: Path, registry: dict[str, Any], prov: dict[str, Any] | None,
                  rows: list[dict[str, Any]]) -> FigureEntry:
    pdf, png, csv_path = (figures_dir / f"{fid}.{ext}" for ext in ("pdf", "png", "csv"))
    for p in (pdf, png):
        if not p.exists():
            raise FileNotFoundError(f"figure {fid}: {p} does not exist (build it: snakemake {p})")
    spec = registry.get(fid)
    meta = prov or {}
    section = spec.section if spec else meta.get("section") or (rows[0]["section"] if rows else "appendix")
    source = meta.get("source", {})
    for r in rows:  # where each claim is written, for a reader who wants its code
        r["code"] = source.get("claims", {}).get(r["id"], "")
    return FigureEntry(
        id=fid, section=_section_key(section),
        title=spec.title if spec else meta.get("title", fid),
        caption=spec.caption if spec else meta.get("caption", ""),
        module=spec.module if spec else meta.get("module", ""),
        pdf=pdf, png=png, csv=csv_path if csv_path.exists() else None, findings=rows, provenance=prov,
        source=source.get("figure", ""),
    )


def _experiments(cfg: dict[str, Any], results_dir: Path, figures: list[FigureEntry]) -> list[dict[str, Any]]:
    """One row per experiment: its config hash, seed, size, device and code version (from meta.json)."""
    names = list(cfg.get("experiments", {}))
    if not names:
        for fig in figures:
            names += list((fig.provenance or {}).get("experiments", {}))
        names = list(dict.fromkeys(names)) or sorted(p.parent.name for p in results_dir.glob("*/meta.json"))
    rows = []
    for name in names:
        path = results_dir / name / "meta.json"
        if not path.exists():
            rows.append({"name": name, "found": False})
            continue
        meta = read_json(path)
        prov, tr = meta.get("provenance", {}), meta.get("training", {})
        steps = (meta.get("spec", {}).get("train") or {}).get("steps")
        rows.append({
            "name": name, "found": True, "config_hash": prov.get("config_hash", "?"), "seed": meta.get("seed"),
            "instances": tr.get("instances"), "cells": tr.get("cells"), "restarts": tr.get("restarts"),
            "steps": steps, "device": prov.get("device", "?"), "code": prov.get("code", {}),
        })
    return rows


def _code_versions(experiments: list[dict[str, Any]], figures: list[FigureEntry]) -> list[dict[str, Any]]:
    """Distinct (commit, dirty) pairs and which outputs each produced: mixed versions are shown, not hidden."""
    seen: dict[tuple[str, Any], list[str]] = {}
    for e in experiments:
        if e.get("found"):
            code = e["code"]
            seen.setdefault((code.get("commit", "unknown"), code.get("dirty")), []).append(f"experiment {e['name']}")
    for fig in figures:
        code = (fig.provenance or {}).get("code")
        if code:
            seen.setdefault((code.get("commit", "unknown"), code.get("dirty")), []).append(f"figure {fig.id}")
    return [{"commit": c, "short": c[:12], "dirty": d, "outputs": outs} for (c, d), outs in seen.items()]


def _packages(figures: list[FigureEntry], results_dir: Path, experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Package versions recorded by the jobs (all versions seen, so a mixed environment is visible)."""
    records = [f.provenance.get("packages", {}) for f in figures if f.provenance]
    for e in experiments:
        if e.get("found"):
            meta = read_json(results_dir / e["name"] / "meta.json")
            records.append(meta.get("provenance", {}).get("packages", {}))
    if not records:
        records = [provenance.package_versions()]
    versions: dict[str, list[str]] = {}
    for rec in records:
        for name, ver in rec.items():
            versions.setdefault(name, [])
            if ver not in versions[name]:
                versions[name].append(ver)
    return [{"name": k, "versions": v} for k, v in versions.items()]


def _robustness_labels(rows: list[dict[str, Any]], robustness: dict[str, Any] | None) -> None:
    """Attach each claim's robust / fragile label and its verdict under every variant (in place)."""
    for r in rows:
        c = (robustness or {}).get("claims", {}).get(r["id"])
        r["robustness"] = c["label"] if c else ""
        r["flipped_in"] = list(c["flipped_in"]) if c else []
        r["variant_verdicts"] = {k: v for k, v in c["verdicts"].items() if k != "build"} if c else {}


def collect(findings_path: Path, figures_dir: Path, results_dir: Path, config_path: Path | None,
            robustness_path: Path | None = None) -> ReportData:
    """Read every input of the report; raise FileNotFoundError naming the first missing file."""
    if not findings_path.exists():
        raise FileNotFoundError(f"{findings_path} does not exist (run: tms findings)")
    cfg = _read_config(config_path)
    found = findings_mod.read(findings_path)
    registry = _registry()
    order = {k: i for i, k in enumerate(findings_mod.SECTIONS)}
    rows = sorted((_finding_row(f, i) for i, f in enumerate(found)), key=lambda r: (order[r["section"]], r["index"]))
    robustness = read_json(robustness_path) if robustness_path else None
    _robustness_labels(rows, robustness)

    fig_ids = _figure_ids(cfg, found, results_dir)
    reg_order = {k: i for i, k in enumerate(registry)}
    cfg_order = {k: i for i, k in enumerate(cfg.get("figures", {}))}
    entries = []
    for fid in fig_ids:
        prov_path = results_dir / "provenance" / f"{fid}.json"
        prov = read_json(prov_path) if prov_path.exists() else None
        entries.append(_figure_entry(fid, figures_dir, registry, prov, [r for r in rows if r["figure"] == fid]))
    entries.sort(key=lambda e: (order[e.section], cfg_order.get(e.id, len(cfg_order)),
                                reg_order.get(e.id, len(reg_order)), e.id))
    sections = [Section(k, t, [e for e in entries if e.section == k]) for k, t in findings_mod.SECTIONS.items()]
    missing = [s.title for s in sections if not s.figures and s.key not in ("strategic", "appendix")]
    sections = [s for s in sections if s.figures]

    counts = {v: sum(r["verdict"] == v for r in rows) for v in findings_mod.VERDICTS}
    counts["total"] = len(rows)
    experiments = _experiments(cfg, results_dir, entries)
    report_cfg = cfg.get("report", {}) or {}
    names = sorted(({f.config for f in found} | {(e.provenance or {}).get("config_name", "") for e in entries}) - {""})
    epoch = source_date_epoch()
    return ReportData(
        title=report_cfg.get("title", DEFAULT_TITLE),
        authors=list(report_cfg.get("authors", DEFAULT_AUTHORS)),
        version=str(report_cfg.get("version", _package_version())),
        config_name=cfg.get("name") or (config_path.stem if config_path else ", ".join(names) or "unknown"),
        config_hash=provenance.config_hash(cfg) if cfg else "n/a (no config given)",
        config_file=config_path.name if config_path else "",
        date=epoch_date(epoch), epoch=epoch, sections=sections, missing_sections=missing, findings=rows,
        counts=counts, experiments=experiments, code=dict(provenance.code_version()),
        code_versions=_code_versions(experiments, entries), packages=_packages(entries, results_dir, experiments),
        robustness=None if robustness is None else {"summary": robustness["summary"],
                                                    "variants": robustness["variants"]},
    )


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tms")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# ---------------------------------------------------------------------------------------------
# Rendering


def render_tex(data: ReportData) -> str:
    """FINDINGS.tex (figures referenced as ``figures/<id>.pdf`` relative to the .tex file)."""
    return _tex_env().get_template("FINDINGS.tex.j2").render(d=data, verdict_class=VERDICT_CLASS)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _inline_asset(name: str) -> str:
    text = (templates_dir() / name).read_text()
    if "</script" in text.lower() or "</style" in text.lower():  # would end the inline element early
        raise ReportError(f"{name} must not contain a closing </script> or </style> tag")
    return text


def render_html(data: ReportData) -> str:
    """FINDINGS.html: one self-contained file (figures, CSS and JavaScript inline; no network)."""
    images = {f.id: _data_uri(f.png, "image/png") for f in data.figures}
    tables = {f.id: _data_uri(f.csv, "text/csv") for f in data.figures
              if f.csv is not None and f.csv.stat().st_size <= MAX_INLINE_CSV}
    return _html_env().get_template("FINDINGS.html.j2").render(
        d=data, images=images, tables=tables, css=_inline_asset("report.css"),
        report_js=_inline_asset("report.js"), trainer_js=_inline_asset("live_trainer.js"),
        guard_js=_inline_asset("error_guard.js"),
    )


# ---------------------------------------------------------------------------------------------
# Compiling the PDF


def latex_env(epoch: int) -> dict[str, str]:
    """Environment for a reproducible pdflatex run."""
    return {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "FORCE_SOURCE_DATE": "1", "TZ": "UTC",
            "LC_ALL": "C.UTF-8"}


def compile_pdf(tex_path: Path, epoch: int) -> Path:
    """Compile ``tex_path`` (with its ``figures/``) to a PDF next to it, in a fresh scratch directory.

    A fresh directory means no stale .aux from an earlier build changes the output; the PDF holds no
    path of the scratch directory (empty trailer ID, \\pdfsuppressptexinfo).
    """
    latexmk = shutil.which("latexmk")
    if latexmk is None or shutil.which("pdflatex") is None:
        raise ReportError("latexmk/pdflatex not found: install TeX Live (see report/README.md: apt-get install "
                          "texlive-latex-recommended texlive-fonts-recommended lmodern latexmk), or use --no-pdf")
    src = tex_path.parent
    with tempfile.TemporaryDirectory(prefix="tms-latex-") as tmp:
        work = Path(tmp)
        shutil.copy2(tex_path, work / tex_path.name)
        if (src / "figures").is_dir():
            shutil.copytree(src / "figures", work / "figures")
        cmd = [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", "-quiet",
               tex_path.name]
        proc = subprocess.run(cmd, cwd=work, env=latex_env(epoch), capture_output=True, text=True, timeout=600)
        log_file = work / tex_path.with_suffix(".log").name
        if proc.returncode != 0 or not (work / tex_path.with_suffix(".pdf").name).exists():
            if log_file.exists():
                shutil.copy2(log_file, src / log_file.name)
            raise ReportError(f"latexmk failed on {tex_path} (rc {proc.returncode}); full log: "
                              f"{src / log_file.name}\n{_latex_errors(log_file, proc.stdout + proc.stderr)}")
        pdf = tex_path.with_suffix(".pdf")
        atomic_write_bytes(pdf, (work / pdf.name).read_bytes())
    return pdf


def _latex_errors(log_file: Path, fallback: str) -> str:
    """The error lines of a LaTeX log (``file:line: message`` with -file-line-error) and what follows them."""
    text = log_file.read_text(errors="replace") if log_file.exists() else fallback
    lines = text.splitlines()
    hits = [i for i, ln in enumerate(lines) if re.match(r"^(\./)?[^:\s]+\.tex:\d+:", ln) or ln.startswith("! ")]
    if not hits:
        return "\n".join(lines[-30:])
    return "\n".join("\n".join(lines[i:i + 4]) for i in hits[:5])


# ---------------------------------------------------------------------------------------------
# Entry point


def build(findings_path: Path, figures_dir: Path, results_dir: Path, out_dir: Path, config_path: Path | None,
          pdf: bool = True, robustness_path: Path | None = None) -> None:
    """Write out_dir/FINDINGS.tex (+ out_dir/figures/*.pdf), FINDINGS.pdf (unless pdf=False) and FINDINGS.html.

    ``robustness_path``: results/robustness.json of a robustness run; each verdict is then labelled
    robust or fragile (without it the report says that robustness was not checked)."""
    findings_path, figures_dir, results_dir, out_dir = map(Path, (findings_path, figures_dir, results_dir, out_dir))
    data = collect(findings_path, figures_dir, results_dir, Path(config_path) if config_path else None,
                   Path(robustness_path) if robustness_path else None)
    _copy_figures(data.figures, figures_dir, out_dir / "figures")
    tex_path = out_dir / "FINDINGS.tex"
    atomic_write_text(tex_path, render_tex(data))
    log.info("wrote %s (%d figures, %d findings)", tex_path, len(data.figures), data.counts["total"])
    if pdf:
        log.info("wrote %s", compile_pdf(tex_path, data.epoch))
    html_path = out_dir / "FINDINGS.html"
    atomic_write_text(html_path, render_html(data))
    log.info("wrote %s", html_path)


def _copy_figures(figures: list[FigureEntry], figures_dir: Path, fig_out: Path) -> None:
    """Copy the figure PDFs the .tex includes next to it, and drop stale PDFs of earlier builds.

    Never deletes anything when ``out_dir/figures`` is the pipeline's own figures directory.
    """
    fig_out.mkdir(parents=True, exist_ok=True)
    if fig_out.resolve() == figures_dir.resolve():
        return
    keep = {f.pdf.name for f in figures}
    for old in fig_out.glob("*.pdf"):
        if old.name not in keep:
            old.unlink()
    for fig in figures:
        shutil.copyfile(fig.pdf, fig_out / fig.pdf.name)


def figure_report_meta(figure_id: str) -> dict[str, str]:
    """Title, caption and section of a figure for Snakemake's ``--report`` (``params`` / ``category``)."""
    spec = _registry().get(figure_id)
    if spec is None:
        return {"title": figure_id, "caption": "", "section": "Appendix", "module": ""}
    return {"title": spec.title, "caption": spec.caption, "section": findings_mod.SECTIONS[spec.section],
            "module": spec.module}
