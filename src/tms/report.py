"""Render the FINDINGS report from the pipeline's outputs: FINDINGS.tex -> FINDINGS.pdf, and FINDINGS.html.

Everything in the report comes from files the pipeline wrote: ``results/findings.json`` (claims and
verdicts), ``figures/<id>.{pdf,png,csv}``, ``results/provenance/<id>.json``,
``results/<experiment>/meta.json`` and the config. The templates live in ``report/templates/``.

Prose (captions, claim texts, details, the report's own text) is one markup: plain text with ``$...$``
inline TeX maths, typeset in the PDF and MathML in the HTML (:mod:`tms.markup`); every other value is
escaped.

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
import markupsafe
import yaml

from tms import findings as findings_mod
from tms import markup, provenance
from tms.io import atomic_write_bytes, atomic_write_text, read_json

log = logging.getLogger("tms.report")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TITLE = "Toy Models of Superposition: a reproducible replication"
DEFAULT_AUTHORS = ["The tms replication team"]
# PLACEHOLDER, set at release: the public repository of this project. It appears in the report's title
# block, its citation (BibTeX, CITATION.cff's repository-code and url) and the README. A config's
# ``report.url`` overrides it; this is the only place in the code that names it.
REPOSITORY_URL = "https://github.com/tms-replication/tms"
PAPER_URL = "https://transformer-circuits.pub/2022/toy_model/index.html"
PAPER_ARXIV = "https://arxiv.org/abs/2209.10652"
PAPER_AUTHORS = ["Nelson Elhage", "Tristan Hume", "Catherine Olsson", "Nicholas Schiefer", "Tom Henighan",
                 "Shauna Kravec", "Zac Hatfield-Dodds", "Robert Lasenby", "Dawn Drain", "Carol Chen", "Roger Grosse",
                 "Sam McCandlish", "Jared Kaplan", "Dario Amodei", "Martin Wattenberg", "Christopher Olah"]
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


def _math_char(ch: str) -> str | None:
    """A unicode character inside ``$...$`` maths as a LaTeX maths command (None: no mapping)."""
    if ch in _MATH:
        return " " + _MATH[ch] + " " if _MATH[ch].startswith("\\") else _MATH[ch]
    if ch in _SUBSCRIPTS:
        return f"_{{{_SUBSCRIPTS[ch]}}}"
    if ch in _SUPERSCRIPTS:
        return f"^{{{_SUPERSCRIPTS[ch]}}}"
    if ch in "²³¹":
        return "^{" + {"²": "2", "³": "3", "¹": "1"}[ch] + "}"
    out = _tex_char(ch)
    m = re.fullmatch(r"\\ensuremath\{(.*)\}", out)
    return " " + m.group(1) + " " if m else None


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
    env.filters["value"] = lambda v: _tex_breakable_text(format_value(v))
    env.filters["m"] = lambda v: Tex(markup.to_tex("" if v is None else str(v)))  # prose: $...$ maths typeset
    env.filters["plain"] = lambda v: markup.to_plain("" if v is None else str(v))
    env.filters["url"] = _tex_url
    env.filters["verbatim"] = _tex_verbatim
    env.filters["num"] = _thousands
    env.filters["cap1"] = lambda v: str(v)[:1].upper() + str(v)[1:]
    env.filters["section_title"] = lambda k: findings_mod.SECTIONS.get(k, k)
    return env


def _tex_breakable_text(s: Any) -> Tex:
    """Escaped text that may break after ``, . _ / - : =`` (long measured values in narrow columns)."""
    parts = re.split(r"([,._/:=-])", str(s))
    return Tex("".join(tex_escape(p) + (r"\allowbreak{}" if p and p in ",._/:=-" else "") for p in parts))


def _thousands(v: Any) -> str:
    """An integer with thousands separators ("?" when unknown)."""
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else ("?" if v is None else str(v))


def _tex_verbatim(line: Any) -> Tex:
    """One line of code for ``\\texttt``: escaped, indentation and runs of spaces kept, breakable at spaces."""
    text = str(line)
    indent = len(text) - len(text.lstrip(" "))
    words = re.split(r"( +)", text.lstrip(" "))
    out = "~" * indent
    for w in words:
        out += (" " + "~" * (len(w) - 1)) if w.startswith(" ") else tex_escape(w)
    return Tex(out)


def _tex_url(url: Any) -> Tex:
    """A clickable URL in monospace that breaks after ``/ . - _`` (hyperref's \\href; specials escaped)."""
    u = str(url)
    target = u.replace("\\", "/").replace("#", r"\#").replace("%", r"\%").replace("{", "").replace("}", "")
    return Tex(rf"\href{{{target}}}{{\texttt{{{_tex_breakable(u)}}}}}")


def _html_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["value"] = format_value
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    env.filters["m"] = lambda v: markupsafe.Markup(markup.to_html("" if v is None else str(v)))
    env.filters["plain"] = lambda v: markup.to_plain("" if v is None else str(v))
    env.filters["section_title"] = lambda k: findings_mod.SECTIONS.get(k, k)
    env.filters["num"] = _thousands
    env.filters["cap1"] = lambda v: str(v)[:1].upper() + str(v)[1:]
    return env


# ---------------------------------------------------------------------------------------------
# What the report says about its sources (defined once; the claims' texts name them by these words)

REFERENCES: list[dict[str, str]] = [
    {"key": "paper", "name": "the paper", "cite": "Elhage et al. (2022)",
     "text": "N. Elhage, T. Hume, C. Olsson, N. Schiefer, T. Henighan, S. Kravec, Z. Hatfield-Dodds, R. Lasenby, "
             "D. Drain, C. Chen, R. Grosse, S. McCandlish, J. Kaplan, D. Amodei, M. Wattenberg and C. Olah. "
             "Toy Models of Superposition. Transformer Circuits Thread, September 2022 (arXiv:2209.10652). "
             "Its text, not its figures, is the specification of every experiment here.",
     "url": PAPER_URL},
    {"key": "replication", "name": "the replication", "cite": "Roe",
     "text": "Z. Roe. Toy Models of Superposition Replication and Findings (FINDINGS.pdf and notebooks): the intro "
             "pentagon, the $n = 20$, $m = 5$ panels and the one-neuron phase diagrams with 1,000,000 trained "
             "models. This report is modelled on its form.",
     "url": "https://github.com/zroe1/toy_models_of_superposition"},
    {"key": "tutorial", "name": "the tutorial", "cite": "learn-mech-interp",
     "text": "learn-mech-interp, step 01: Toy Models of Superposition. A tutorial page and notebook: the pentagon "
             "swept over sparsity with $I_i = 0.7^i$, a per-feature dimensionality exercise, and an in-browser "
             "live pentagon trainer.",
     "url": "https://github.com/catmcgee/learn-mechanistic-interpretability"},
    {"key": "slides", "name": "the slide deck", "cite": "Thomas",
     "text": "T. Thomas. Toy Models of Superposition (slides summarising the paper), November 2025; source of the "
             "worked interference example (three features in two dimensions).",
     "url": ""},
    {"key": "nb", "name": "NB", "cite": "Anthropic notebook",
     "text": "Anthropic. toy_models.ipynb, the notebook released with the paper (training defaults: AdamW, "
             "lr $10^{-3}$, 10,000 steps of batch 1,024).",
     "url": "https://github.com/anthropics/toy-models-of-superposition"},
    {"key": "arena", "name": "ARENA", "cite": "ARENA",
     "text": "C. McDougall et al. ARENA, [1.5.4] Toy Models of Superposition & SAEs: exercises and solutions "
             "(sparsity grids and recipes where the paper gives none).",
     "url": "https://github.com/callummcdougall/ARENA_3.0"},
    {"key": "ecd", "name": "ECD", "cite": "ecdysis-core",
     "text": "ecdysis-core, tms/check.py: claim-level tests of the paper with negative controls (its line rule for "
             "feature-dimensionality clusters and tolerances are reused here).",
     "url": "https://github.com/djhulme1/ecdysis-core"},
    {"key": "wat", "name": "the phase-change notebook", "cite": "Wattenberg",
     "text": "M. Wattenberg. Exploring_Exact_Toy_Models.ipynb, the notebook the paper links for the closed-form "
             "losses of the phase diagrams.",
     "url": "https://github.com/wattenberg/superposition"},
]

# The paper's figures and claims, which this build attempts, and where a figure of the report comes from
# when it is not one of the paper's (see the report's coverage map).
COVERAGE: list[dict[str, Any]] = [
    {"section": "introduction", "item": "Five features in two dimensions at 0, 80 and 90 % sparsity",
     "figure": "intro_pentagon", "origin": "paper figure; also the tutorial's sweep"},
    {"section": "introduction", "item": "Interference worked example (three features in two dimensions)",
     "figure": "interference_worked_example", "origin": "the slide deck (no figure in the paper)"},
    {"section": "demonstrating", "item": "$W^\\top W$, $b$ and $\\lVert W_i\\rVert$ of linear and ReLU models, "
     "$n = 20$, $m = 5$", "figure": "linear_vs_relu_n20_m5", "origin": "paper figure"},
    {"section": "demonstrating", "item": "The same for the larger model, $n = 80$, $m = 20$",
     "figure": "linear_vs_relu_n80_m20", "origin": "paper figure"},
    {"section": "phase_change", "item": "Phase diagram, 2 features in 1 dimension (trained and theory)",
     "figure": "phase_diagram_2x1", "origin": "paper figure"},
    {"section": "phase_change", "item": "Phase diagram, 3 features in 2 dimensions",
     "figure": "phase_diagram_3x2", "origin": "paper figure"},
    {"section": "phase_change", "item": "Training loss of the mass-trained phase-diagram models",
     "figure": "phase_training_loss", "origin": "the replication (its loss curve; no figure in the paper)"},
    {"section": "geometry", "item": "$D^*$ against $1/(1-S)$: sticky at 1 and 1/2", "figure": "dstar_stickiness",
     "origin": "paper figure"},
    {"section": "geometry", "item": "Feature dimensionality $D_i$ at the fractions of uniform polytopes",
     "figure": "feature_dimensionality", "origin": "paper figure"},
    {"section": "geometry", "item": "Polytopes as low-rank positive semidefinite $W^\\top W$ (an analytic aside)",
     "figure": None, "origin": "not attempted (no measurement to make)"},
    {"section": "geometry", "item": "Non-uniform superposition: one feature of the pentagon perturbed",
     "figure": "pentagon_perturbation", "origin": "paper figure"},
    {"section": "geometry", "item": "Correlated and anticorrelated features", "figure": "correlated_features",
     "origin": "paper figure"},
    {"section": "geometry", "item": "Local almost-orthogonal bases", "figure": "local_orthogonal_bases",
     "origin": "paper figure"},
    {"section": "geometry", "item": "Collapse of correlated features into principal components",
     "figure": "pca_collapse", "origin": "paper figure"},
    {"section": "learning_dynamics", "item": "Discrete jumps of feature dimensionality during training",
     "figure": "energy_level_jumps", "origin": "paper figure"},
    {"section": "learning_dynamics", "item": "Learning as geometric transformations (3-D)",
     "figure": "geometric_transformations", "origin": "paper figure"},
    {"section": "robustness", "item": "Adversarial vulnerability against sparsity and features per dimension",
     "figure": "adversarial_vulnerability", "origin": "paper figure"},
    {"section": "robustness", "item": "Adversarial training reduces superposition", "figure": None,
     "origin": "not attempted (a text claim; no figure)"},
    {"section": "privileged_basis", "item": "ReLU hidden layer: neurons across sparsity (1000 models per sparsity)",
     "figure": "privileged_basis", "origin": "paper figure"},
    {"section": "computation", "item": "$|x|$ of 3 features on 6 neurons", "figure": "abs_value_small",
     "origin": "paper figure"},
    {"section": "computation", "item": "$|x|$ in superposition across sparsity, $n = 100$, $m = 40$",
     "figure": "abs_value_superposition", "origin": "paper figure"},
    {"section": "computation", "item": "The asymmetric superposition motif", "figure": "asymmetric_motif",
     "origin": "paper figure"},
    {"section": "strategic", "item": "An L1 penalty on hidden activations removes superposition",
     "figure": "l1_removes_superposition", "origin": "a text claim of the paper (figure is this report's)"},
    {"section": "appendix", "item": "Nonlinear compression beats linear compression",
     "figure": "nonlinear_compression", "origin": "paper appendix figure"},
    {"section": "appendix", "item": "Compressed-sensing lower bound", "figure": None,
     "origin": "not attempted (theory)"},
    {"section": "appendix", "item": "Closed-form losses (mathematical understanding)", "figure": None,
     "origin": "used as the theory of the phase diagrams, not plotted"},
]

# The report's own text on methods, in the prose markup ($...$ maths; tms.markup), rendered by both templates.
METHODS: dict[str, list[str]] = {
    "models": [
        r"Linear: $x' = W^\top W x + b$, with $W \in \mathbb{R}^{m \times n}$: $n$ features stored in $m < n$ "
        r"dimensions, column $W_i$ the direction of feature $i$.",
        r"ReLU output: $x' = \mathrm{ReLU}(W^\top W x + b)$, the paper's main model.",
        r"ReLU hidden: $h = \mathrm{ReLU}(W x)$, $x' = \mathrm{ReLU}(W^\top h + b)$: the hidden layer is a "
        r"privileged basis (neurons).",
        r"Computation: $h = \mathrm{ReLU}(W_1 x)$, $y' = \mathrm{ReLU}(W_2 h + b)$, trained to compute "
        r"$y = |x|$ from features uniform on $[-1, 1]$ when active.",
    ],
    "data": [
        r"Each feature $x_i$ is 0 with probability $S$ (the sparsity) and uniform on $[0, 1]$ otherwise, "
        r"independently; $1 - S$ is the feature density. Every training step draws a fresh batch.",
        r"The loss is $L = \sum_i I_i (x_i - x'_i)^2$, averaged over the batch, with importances $I_i$ "
        r"(for example $I_i = 0.7^i$: feature 0 is the most important).",
    ],
    "metrics": [
        r"Feature norm $\lVert W_i\rVert$: feature $i$ is represented when $\lVert W_i\rVert > 0.5$ and not "
        r"embedded when $\lVert W_i\rVert < 0.1$.",
        r"Superposition of feature $i$: $\sum_{j \neq i} (\hat W_i \cdot W_j)^2$ with "
        r"$\hat W_i = W_i / \lVert W_i\rVert$; 0 when no other feature shares its direction, "
        r"$\geq 1$ when a unit-norm feature lies on it; superposed when $\geq 0.25$.",
        r"Dimensions per feature: $D^* = m / \lVert W\rVert_F^2$; features per dimension $1/D^*$.",
        r"Feature dimensionality: $D_i = \lVert W_i\rVert^2 / \sum_j (\hat W_i \cdot W_j)^2$. A tight frame "
        r"of $k$ unit vectors in $d$ dimensions has $D_i = d/k$: antipodal pair $1/2$, triangle $2/3$, "
        r"pentagon $2/5$, tetrahedron $3/4$, square antiprism $3/8$.",
        r"Adversarial vulnerability: the mean loss increase under the paper's analytic attack "
        r"$\delta = \lambda\, G_i / \lVert G_i\rVert$ with $G = W^\top W$, $\lambda$ one tenth of the mean "
        r"input norm, the most damaging feature and sign chosen per example; relative vulnerability divides "
        r"it by that of the model without superposition at the same sparsity.",
    ],
    "verdicts": [
        r"Every claim of the paper checked here is registered with the figure that measures it, with a "
        r"numeric threshold and a tolerance stated before any model was trained. A claim is reproduced when "
        r"every condition holds, not reproduced when one fails, inconclusive when the measurement cannot "
        r"decide.",
        r"Each condition is a bar: a measured value $v$ compared with a threshold $t$ ($v \geq t$, $v < t$, ...), "
        r"with a signed margin, positive when it holds. The bar that decides a verdict is shown as measured, "
        r"needed and margin. "
        r"A verdict is a near miss when moving the measured values by 5 % of their thresholds would flip it.",
    ],
}

OPS = {">=": "\u2265", ">": ">", "<=": "\u2264", "<": "<"}
# The notebook's training budget (NB): 10,000 steps of 1,024 examples per model.
NB_SAMPLES = 10_000 * 1024
MIN_TEXT_PT = 7.0  # the smallest text a figure should have at print size
# The one rule for figure sizes in the PDF: the size the figure code drew it at, scaled down (never up) to
# fit the text block and FIGURE_MAX_HEIGHT of the text height. A4 with 2 cm margins (the template's).
TEXT_WIDTH_IN = (210 - 40) / 25.4
TEXT_HEIGHT_IN = (297 - 40) / 25.4
FIGURE_MAX_HEIGHT = 0.62
CSS_PX_PER_IN = 96


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
    number: int = 0  # Figure n of the report
    config_keys: list[str] = field(default_factory=list)
    width_in: float = 0.0  # the size the figure code drew it at (the PDF's page)
    height_in: float = 0.0
    scale: float = 1.0  # the report's one rule (see FIGURE_MAX_HEIGHT)
    min_text_pt: float | None = None  # the smallest text of the figure at print size
    origin: str = ""  # from the coverage map

    @property
    def rebuild(self) -> str:
        return f"snakemake --cores all figures/{self.id}.pdf"

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(r["verdict"] == v for r in self.findings) for v in findings_mod.VERDICTS}

    @property
    def badge(self) -> str:
        """"n/m": claims reproduced of those registered ("no claims" when there are none)."""
        return f"{self.counts['reproduced']}/{len(self.findings)}" if self.findings else "no claims"

    @property
    def badge_class(self) -> str:
        if not self.findings:
            return "unsure"
        if self.counts["reproduced"] == len(self.findings):
            return "ok"
        return "fail" if self.counts["not reproduced"] else "unsure"

    @property
    def reason(self) -> str:
        """One line (markup) for the results at a glance: why a claim failed, or that all held."""
        failed = [r for r in self.findings if r["verdict"] != "reproduced"]
        if not self.findings:
            return "No claims are registered for this figure."
        if not failed:
            near = sum(bool(r["near_miss"]) for r in self.findings)
            head = "The claim reproduced" if len(self.findings) == 1 else f"All {len(self.findings)} claims reproduced"
            return head + (f" ({near} within 5 % of a threshold)." if near else ".")
        # a strict first reading an audit revised says only that it was revised: lead with a reading that counts
        first = next((r for r in failed if not r["id"].endswith(findings_mod.STRICT_SUFFIX)), failed[0])
        more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
        if first["explanation"]:  # the authors' own reason, its first sentence
            return re.split(r"(?<=[.!?])\s", first["explanation"], maxsplit=1)[0] + more
        return f"{first['short_name']}: {first['reason']}{more}"

    @property
    def css_width(self) -> int:
        """Display width in CSS pixels: the figure's print size (96 px per inch), never its pixel count."""
        return max(1, round(self.width_in * self.scale * CSS_PX_PER_IN)) if self.width_in else 720


@dataclass
class Section:
    key: str
    title: str
    figures: list[FigureEntry]
    number: int = 0


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
    url: str = REPOSITORY_URL
    recipes: list[dict[str, Any]] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    discussion: dict[str, Any] = field(default_factory=dict)
    limitations: list[str] = field(default_factory=list)
    references: list[dict[str, str]] = field(default_factory=lambda: list(REFERENCES))
    citation: dict[str, Any] = field(default_factory=dict)
    paper_url: str = PAPER_URL

    @property
    def figures(self) -> list[FigureEntry]:
        return [f for s in self.sections for f in s.figures]

    @property
    def small_figures(self) -> list[FigureEntry]:
        """Figures whose smallest text is under MIN_TEXT_PT at print size."""
        return [f for f in self.figures if f.min_text_pt is not None and f.min_text_pt < MIN_TEXT_PT - 0.05]


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


def binding_bar(f: findings_mod.Finding) -> dict[str, Any] | None:
    """The bar that decides a verdict: the worst failing one of a claim that is not reproduced, else the
    one with the least room (by relative margin)."""
    bars = f.bars or []
    if not bars or f.margin is None:
        return None
    decides = [b for b in bars if not b["passed"]] if f.verdict == "not reproduced" else bars
    return min(decides or bars, key=lambda x: x["relative_margin"] if x["relative_margin"] is not None else -1e300)


def margin_text(f: findings_mod.Finding) -> str:
    """The binding condition of a verdict and its signed margin: "agreement 0.899 >= 0.9 (margin -0.001)"."""
    b = binding_bar(f)
    if b is None:
        return ""
    unit = f" {b['unit']}" if b["unit"] else ""
    return (f"{b['name']}: {format_value(b['value'])} {b['op']} {format_value(b['threshold'])}{unit} "
            f"(margin {b['margin']:+.3g}{unit})")


def _number(v: Any) -> str:
    """A number for prose: 4 significant digits, a real minus sign."""
    return format_value(v).replace("-", "\u2212") if isinstance(v, (int, float)) else format_value(v)


def measure(f: findings_mod.Finding) -> dict[str, str]:
    """"measured X, needed Y, margin Z" of a finding, from its binding bar (or its expectation)."""
    b = binding_bar(f)
    if b is None:
        text = format_value(f.measured, max_items=4)
        if len(text) > 90:
            text = text[:87].rstrip(", ") + "\u2026"
        return {"name": "", "measured": text, "needed": f.expected, "margin": "", "relative": "", "from_bar": ""}
    unit = f" {b['unit']}" if b["unit"] else ""
    rel = b["relative_margin"]
    return {
        "name": b["name"], "measured": f"{_number(b['value'])}{unit}",
        "needed": f"{OPS.get(b['op'], b['op'])} {_number(b['threshold'])}{unit}",
        "margin": f"{'+' if b['margin'] >= 0 else chr(0x2212)}{format_value(abs(b['margin']))}{unit}",
        "relative": "" if rel is None else f"{'+' if rel >= 0 else chr(0x2212)}{abs(rel) * 100:.3g} %",
        "from_bar": "1",
    }


def _explanation(f: findings_mod.Finding) -> str:
    """An authored explanation of a verdict (``explanation`` of a finding, where findings carry one)."""
    return str(getattr(f, "explanation", "") or "").strip()


def _finding_row(f: findings_mod.Finding, index: int) -> dict[str, Any]:
    key = _section_key(f.section)
    m = measure(f)
    tail = f.id.split(".", 1)[-1].replace("_", " ")
    reason = (f"{m['name']}: {m['measured']}, needed {m['needed']}" if m["from_bar"] else
              f"measured {m['measured']}")
    return {
        "index": index, "id": f.id, "figure": f.figure, "section": key,
        "section_title": findings_mod.SECTIONS[key], "claim": f.claim, "expected": f.expected,
        "tolerance": f.tolerance, "measured": f.measured, "measured_text": format_value(f.measured),
        "measured_json": json.dumps(f.measured, sort_keys=True), "verdict": f.verdict,
        "verdict_class": VERDICT_CLASS.get(f.verdict, "unsure"), "detail": f.detail,
        "experiments": list(f.experiments), "config": f.config,
        "margin_text": margin_text(f), "near_miss": bool(f.near_miss), "measure": m,
        "explanation": _explanation(f), "short_name": tail, "reason": reason,
        "relative_margin": (binding_bar(f) or {}).get("relative_margin"),
        "figure_number": 0, "code": "",
    }


def _figure_ids(cfg: dict[str, Any], found: list[findings_mod.Finding], results_dir: Path) -> list[str]:
    """Figures of the report: the config's, those with findings, and (without a config) those with provenance."""
    ids = list(cfg.get("figures", {}))
    ids += [f.figure for f in found]
    if not cfg:
        ids += sorted(p.stem for p in (results_dir / "provenance").glob("*.json"))
    return list(dict.fromkeys(ids))


_MEDIABOX = re.compile(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]")
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_TF = re.compile(rb"/[A-Za-z0-9_.+-]+\s+([\d.]+)\s+Tf")


def pdf_page_size(pdf: Path) -> tuple[float, float]:
    """Width and height (inches) of a figure PDF's first page (0, 0 when it cannot be read)."""
    m = _MEDIABOX.search(pdf.read_bytes())
    if not m:
        return 0.0, 0.0
    x0, y0, x1, y1 = (float(v) for v in m.groups())
    return (x1 - x0) / 72, (y1 - y0) / 72


def pdf_font_sizes(pdf: Path) -> list[float]:
    """Font sizes (pt) set by the content streams of a figure PDF (``/F1 8 Tf``; matplotlib writes text so)."""
    import zlib

    sizes: list[float] = []
    for m in _STREAM.finditer(pdf.read_bytes()):
        data = m.group(1)
        try:
            data = zlib.decompress(data)
        except zlib.error:
            pass
        sizes += [float(s) for s in _TF.findall(data) if float(s) > 0]
    return sizes


def body_text_sizes(sizes: list[float]) -> list[float]:
    """Font sizes less those of sub- and superscripts (matplotlib sets them at 70 % of their text)."""
    distinct = set(sizes)
    return [s for s in sizes if not any(abs(s - 0.7 * t) < 0.02 for t in distinct)] or sizes


def figure_scale(width_in: float, height_in: float) -> float:
    """The report's one rule: natural size, scaled down only to fit the text width and the height cap."""
    if width_in <= 0 or height_in <= 0:
        return 1.0
    return min(1.0, TEXT_WIDTH_IN / width_in, FIGURE_MAX_HEIGHT * TEXT_HEIGHT_IN / height_in)


def _figure_entry(fid: str, figures_dir: Path, registry: dict[str, Any], prov: dict[str, Any] | None,
                  rows: list[dict[str, Any]], cfg: dict[str, Any]) -> FigureEntry:
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
    experiments = list((cfg.get("figures", {}).get(fid) or {}).get("experiments", []) or
                       meta.get("experiments", {}))
    width, height = pdf_page_size(pdf)
    scale = figure_scale(width, height)
    sizes = body_text_sizes(pdf_font_sizes(pdf))
    origin = next((c["origin"] for c in COVERAGE if c["figure"] == fid), "this replication's own figure")
    return FigureEntry(
        id=fid, section=_section_key(section),
        title=spec.title if spec else meta.get("title", fid),
        caption=spec.caption if spec else meta.get("caption", ""),
        module=spec.module if spec else meta.get("module", ""),
        pdf=pdf, png=png, csv=csv_path if csv_path.exists() else None, findings=rows, provenance=prov,
        source=source.get("figure", ""), config_keys=[f"figures.{fid}"] + [f"experiments.{e}" for e in experiments],
        width_in=width, height_in=height, scale=scale,
        min_text_pt=round(min(sizes) * scale, 1) if sizes else None, origin=origin,
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
            "selected_by": tr.get("selected_by", ""), "spec": meta.get("spec", {}),
        })
    return rows


_MODEL_NAMES = {"linear": "linear", "relu_output": "ReLU output", "relu_hidden": "ReLU hidden",
                "computation": "|x| model"}


def _recipes(cfg: dict[str, Any], experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training recipe of every experiment, from the config with defaults filled in (tms.config)."""
    from tms import config as config_mod

    found = {e["name"]: e for e in experiments if e.get("found")}
    rows = []
    for name in cfg.get("experiments", {}) or [e["name"] for e in experiments]:
        try:
            source = cfg if name in cfg.get("experiments", {}) else {"experiments": {name: found[name]["spec"]}}
            exp = config_mod.experiment(source, name)
            cells = config_mod.cell_count(exp)
        except Exception:  # noqa: BLE001 (a config the report cannot resolve: the row says so)
            rows.append({"name": name, "ok": False})
            continue
        tr = exp.get("train", {})
        meta = found.get(name, {})
        selected = meta.get("selected_by") if meta.get("selected_by") in ("exact", "sampled") else \
            str(tr.get("select_by") or "sampled")
        restarts = int(exp.get("restarts", 1))
        rows.append({
            "name": name, "ok": True, "model": _MODEL_NAMES.get(exp.get("model", ""), exp.get("model", "?")),
            "n": exp.get("n_features"), "m": exp.get("n_hidden"), "cells": cells, "restarts": restarts,
            "models": cells * restarts, "steps": tr.get("steps"), "batch": tr.get("batch_size"),
            "optimizer": {"adamw": "AdamW", "adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}.get(
                str(tr.get("optimizer", "")).lower(), str(tr.get("optimizer", "?"))),
            "lr": tr.get("lr"), "schedule": tr.get("schedule", "constant"),
            "selection": "\u2014" if restarts == 1 else selected,
            "samples": int(tr.get("steps") or 0) * int(tr.get("batch_size") or 0),
            "description": exp.get("description", ""),
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


def _discussion(rows: list[dict[str, Any]], robust_known: bool) -> dict[str, Any]:
    """The failures as a set: near misses, the rest by how far they miss, robust vs fragile when known."""
    failed = [r for r in rows if r["verdict"] == "not reproduced"]
    near = [r for r in failed if r["near_miss"]]
    numeric = [r for r in failed if not r["near_miss"] and r["relative_margin"] is not None]
    moderate = sorted([r for r in numeric if r["relative_margin"] >= -0.5], key=lambda r: -r["relative_margin"])
    far = sorted([r for r in numeric if r["relative_margin"] < -0.5], key=lambda r: -r["relative_margin"])
    other = [r for r in failed if not r["near_miss"] and r["relative_margin"] is None]
    groups = [
        {"key": "near", "title": "Near misses",
         "intro": "moving the measured values by 5 % of their thresholds would reproduce them: the threshold, "
                  "fixed before training, decides these, not the models.", "rows": near},
        {"key": "moderate", "title": "Missed by up to half the threshold",
         "intro": "a real shortfall at this budget and reading of the paper; the measured value is on the "
                  "paper's side of no effect.", "rows": moderate},
        {"key": "far", "title": "Missed by more than half the threshold",
         "intro": "the paper's statement does not hold in this build as operationalised here.", "rows": far},
        {"key": "other", "title": "Failed on a non-numeric condition",
         "intro": "an exact set, a shape or an ordering differs from the paper's; no margin applies.",
         "rows": other},
    ]
    out: dict[str, Any] = {
        "failed": len(failed), "groups": [g for g in groups if g["rows"]],
        "inconclusive": [r for r in rows if r["verdict"] == "inconclusive"],
        "near_reproduced": [r for r in rows if r["verdict"] == "reproduced" and r["near_miss"]],
        "explained": sum(bool(r["explanation"]) for r in failed),
    }
    if robust_known:
        out["robust_failures"] = [r for r in failed if r["robustness"] == "robust"]
        out["fragile_failures"] = [r for r in failed if r["robustness"] == "fragile"]
        out["fragile_passes"] = [r for r in rows if r["verdict"] == "reproduced" and r["robustness"] == "fragile"]
    return out


def _limitations(cfg: dict[str, Any], recipes: list[dict[str, Any]], robust_known: bool,
                 config_name: str) -> list[str]:
    """Generated limitations of this build (markup)."""
    out = []
    if config_name not in ("default", "") and cfg:
        out.append(f"This build uses the configuration {config_name!r}, not the replication's default: its "
                   "budgets and grids may be far smaller, and its verdicts say little about the paper.")
    small = [r for r in recipes if r.get("ok") and 0 < r["samples"] < NB_SAMPLES]
    if small:
        names = ", ".join(f"{r['name']} ({r['samples'] / 1e6:.2g}M)" for r in small[:8])
        more = f" and {len(small) - 8} more" if len(small) > 8 else ""
        out.append(f"{len(small)} of {sum(1 for r in recipes if r.get('ok'))} experiments train each model on "
                   f"fewer examples than NB's 10,000 steps of 1,024 (10.2M): {names}{more}. The paper gives no "
                   "recipe; the config states each choice and its pilot runs. A verdict that fails at this budget "
                   "may hold at the paper's.")
    if not robust_known:
        out.append("Every verdict comes from one master seed and one budget: no robustness run was made for this "
                   "build, so a verdict near its threshold may flip under another seed (workflow/config/"
                   "robustness.yaml labels every verdict robust or fragile).")
    out += [
        "The thresholds are this replication's reading of the paper's words (\u2018sticky\u2019, \u2018tend "
        "to\u2019, \u2018orders of magnitude\u2019), fixed before any model was trained and stated with every "
        "claim; another reading can change a verdict, most easily a near miss.",
        "Where the paper selects among restarts (the lowest loss of many, the majority of nine kept models), "
        "this build does the same on the exact expected loss where it can be computed and on a sampled loss "
        "elsewhere (the recipe table says which).",
        "The figures are drawn from the trained models of this build, in one colour scheme for the whole "
        "report (importance: viridis from most to least important; superposition: dark blue 0 to yellow 1), "
        "which is not always the paper's.",
    ]
    skipped = [c["item"] for c in COVERAGE if c["figure"] is None]
    if skipped:
        out.append("Not attempted: " + "; ".join(skipped) + " (see the coverage map).")
    return out


def citation_info(cfg: dict[str, Any], epoch: int, code: dict[str, Any]) -> dict[str, Any]:
    """Who and what to cite: title, authors, version, date, URL, commit, a BibTeX key and entry."""
    report_cfg = cfg.get("report", {}) or {}
    title = str(report_cfg.get("title", DEFAULT_TITLE))
    authors = [str(a) for a in report_cfg.get("authors", DEFAULT_AUTHORS)]
    url = str(report_cfg.get("url") or REPOSITORY_URL)
    date = epoch_date(epoch)
    year = date[:4]
    first = authors[0] if authors else "anonymous"
    words = [w for w in re.findall(r"[A-Za-z]+", first) if w.lower() != "the"]
    person = len(first.split()) >= 2 and not first.lower().startswith("the ")
    family = (first.split()[-1] if person else (words[0] if words else "tms"))
    title_word = next((w for w in re.findall(r"[A-Za-z]+", title) if w.lower() not in ("a", "an", "the", "on", "of")),
                      "report")
    key = re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", family).encode("ascii", "ignore").decode().lower())
    key = f"{key or 'tms'}{year}{title_word.lower()}"
    version = str(report_cfg.get("version", _package_version()))
    commit = str(code.get("commit", "unknown"))
    return {"title": title, "authors": authors, "url": url, "date": date, "year": year, "month": date[5:7],
            "version": version, "commit": commit, "key": key,
            "bibtex": bibtex(key, title, authors, year, date[5:7], version, url, commit),
            "paper_bibtex": PAPER_BIBTEX}


def _bib_author(name: str) -> str:
    parts = name.split()
    if len(parts) < 2 or name.lower().startswith("the "):
        return "{" + name + "}"  # an organisation: braces keep BibTeX from splitting it
    return f"{parts[-1]}, {' '.join(parts[:-1])}"


def bibtex(key: str, title: str, authors: list[str], year: str, month: str, version: str, url: str,
           commit: str) -> str:
    """The replication's BibTeX entry (@misc, with its URL, version and commit)."""
    lines = [f"@misc{{{key},",
             f"  author       = {{{' and '.join(_bib_author(a) for a in authors)}}},",
             f"  title        = {{{{{title}}}}},",
             f"  year         = {{{year}}},",
             f"  month        = {{{int(month)}}},",
             f"  version      = {{{version}}},",
             f"  howpublished = {{\\url{{{url}}}}},",
             f"  url          = {{{url}}},",
             f"  note         = {{Version {version}, commit {commit[:12]}. Replication of Elhage et al., "
             f"Toy Models of Superposition (2022)}}",
             "}"]
    return "\n".join(lines)


PAPER_BIBTEX = "\n".join([
    "@article{elhage2022superposition,",
    "  author  = {" + " and ".join(_bib_author(a) for a in PAPER_AUTHORS) + "},",
    "  title   = {Toy Models of Superposition},",
    "  journal = {Transformer Circuits Thread},",
    "  year    = {2022},",
    f"  url     = {{{PAPER_URL}}},",
    "  note    = {arXiv:2209.10652}",
    "}",
])


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
        entries.append(_figure_entry(fid, figures_dir, registry, prov, [r for r in rows if r["figure"] == fid], cfg))
    entries.sort(key=lambda e: (order[e.section], cfg_order.get(e.id, len(cfg_order)),
                                reg_order.get(e.id, len(reg_order)), e.id))
    for n, e in enumerate(entries, 1):
        e.number = n
        for r in e.findings:
            r["figure_number"] = n
    sections = [Section(k, t, [e for e in entries if e.section == k]) for k, t in findings_mod.SECTIONS.items()]
    missing = [s.title for s in sections if not s.figures and s.key not in ("strategic", "appendix")]
    sections = [s for s in sections if s.figures]
    for n, s in enumerate(sections, 1):
        s.number = n

    counts = {v: sum(r["verdict"] == v for r in rows) for v in findings_mod.VERDICTS}
    counts["total"] = len(rows)
    counts["near_miss"] = sum(r["near_miss"] for r in rows)
    experiments = _experiments(cfg, results_dir, entries)
    report_cfg = cfg.get("report", {}) or {}
    names = sorted(({f.config for f in found} | {(e.provenance or {}).get("config_name", "") for e in entries}) - {""})
    epoch = source_date_epoch()
    config_name = cfg.get("name") or (config_path.stem if config_path else ", ".join(names) or "unknown")
    recipes = _recipes(cfg, experiments)
    code = dict(provenance.code_version())
    ids = {e.id for e in entries}
    coverage = [{**c, "in_build": c["figure"] in ids,
                 "number": next((e.number for e in entries if e.id == c["figure"]), 0)} for c in COVERAGE]
    coverage += [{"section": e.section, "item": e.title, "figure": e.id, "origin": "this replication's own figure",
                  "in_build": True, "number": e.number}
                 for e in entries if e.id not in {c["figure"] for c in COVERAGE}]
    return ReportData(
        title=report_cfg.get("title", DEFAULT_TITLE),
        authors=list(report_cfg.get("authors", DEFAULT_AUTHORS)),
        version=str(report_cfg.get("version", _package_version())),
        config_name=config_name,
        config_hash=provenance.config_hash(cfg) if cfg else "n/a (no config given)",
        config_file=config_path.name if config_path else "",
        date=epoch_date(epoch), epoch=epoch, sections=sections, missing_sections=missing, findings=rows,
        counts=counts, experiments=experiments, code=code,
        code_versions=_code_versions(experiments, entries), packages=_packages(entries, results_dir, experiments),
        robustness=None if robustness is None else {"summary": robustness["summary"],
                                                    "variants": robustness["variants"]},
        url=str(report_cfg.get("url") or REPOSITORY_URL), recipes=recipes, coverage=coverage,
        discussion=_discussion(rows, robustness is not None),
        limitations=_limitations(cfg, recipes, robustness is not None, config_name),
        citation=citation_info(cfg, epoch, code),
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
    return _tex_env().get_template("FINDINGS.tex.j2").render(
        d=data, verdict_class=VERDICT_CLASS, fig_max_height=FIGURE_MAX_HEIGHT, min_text_pt=MIN_TEXT_PT,
        methods=METHODS)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _thumbnail_uri(png: Path, width: int = 240) -> str:
    """A small PNG of a figure for the results at a glance (deterministic: same input, same bytes)."""
    import io

    from PIL import Image

    with Image.open(png) as im:
        im = im.convert("RGBA")
        h = max(1, round(im.height * width / im.width))
        small = im.resize((width, h), Image.LANCZOS) if im.width > width else im
        buf = io.BytesIO()
        small.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _inline_asset(name: str) -> str:
    text = (templates_dir() / name).read_text()
    if "</script" in text.lower() or "</style" in text.lower():  # would end the inline element early
        raise ReportError(f"{name} must not contain a closing </script> or </style> tag")
    return text


def live_colors(n: int = 5) -> list[str]:
    """The static figures' importance colours (``tms.figures.draw.importance_colors``) as hex, for the live trainer."""
    from matplotlib.colors import to_hex

    from tms.figures.draw import importance_colors

    return [to_hex(c) for c in importance_colors(n)]


def render_html(data: ReportData) -> str:
    """FINDINGS.html: one self-contained file (figures, CSS and JavaScript inline; no network).

    CSV tables up to MAX_INLINE_CSV are embedded as downloads; a larger one is linked as
    ``figures/<id>.csv``, where it lies beside FINDINGS.html in the archive and in the build directory.
    """
    images = {f.id: _data_uri(f.png, "image/png") for f in data.figures}
    thumbs = {f.id: _thumbnail_uri(f.png) for f in data.figures}
    tables = {f.id: _data_uri(f.csv, "text/csv") for f in data.figures
              if f.csv is not None and f.csv.stat().st_size <= MAX_INLINE_CSV}
    csv_sizes = {f.id: f.csv.stat().st_size for f in data.figures if f.csv is not None}
    return _html_env().get_template("FINDINGS.html.j2").render(
        d=data, images=images, thumbs=thumbs, tables=tables, csv_sizes=csv_sizes, css=_inline_asset("report.css"),
        report_js=_inline_asset("report.js"), trainer_js=_inline_asset("live_trainer.js"),
        guard_js=_inline_asset("error_guard.js"), live_colors=live_colors(), max_inline_csv=MAX_INLINE_CSV,
        methods=METHODS, min_text_pt=MIN_TEXT_PT,
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
        if log_file.exists():  # kept beside the .tex (not archived): overfull boxes are read from it
            shutil.copy2(log_file, src / log_file.name)
        if proc.returncode != 0 or not (work / tex_path.with_suffix(".pdf").name).exists():
            raise ReportError(f"latexmk failed on {tex_path} (rc {proc.returncode}); full log: "
                              f"{src / log_file.name}\n{_latex_errors(log_file, proc.stdout + proc.stderr)}")
        pdf = tex_path.with_suffix(".pdf")
        atomic_write_bytes(pdf, (work / pdf.name).read_bytes())
    return pdf


# A line may run this far into the margin before the build warns and the tests fail (TeX reports
# overfull boxes from 0.1 pt; under ~2 pt nothing visibly sticks out).
OVERFULL_TOLERANCE_PT = 2.0
_OVERFULL = re.compile(r"^Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\) (.*)$", re.M)


def overfull_boxes(log_text: str, tolerance_pt: float = OVERFULL_TOLERANCE_PT) -> list[str]:
    """Every ``Overfull \\hbox`` of a LaTeX log wider than ``tolerance_pt``, with where it is and what it holds."""
    out = []
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        m = _OVERFULL.match(line)
        if m and float(m.group(1)) > tolerance_pt:
            content = " ".join(lines[i + 1:i + 3]).strip()
            out.append(f"{m.group(1)}pt too wide {m.group(2)}: {content[:160]}")
    return out


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
        log_path = out_dir / "FINDINGS.log"
        for box in overfull_boxes(log_path.read_text(errors="replace")) if log_path.exists() else []:
            log.warning("FINDINGS.tex: overfull box, %s", box)
    for fig in data.small_figures:
        log.warning("figure %s: smallest text %.1f pt at print size (under %g pt)", fig.id, fig.min_text_pt,
                    MIN_TEXT_PT)
    html_path = out_dir / "FINDINGS.html"
    atomic_write_text(html_path, render_html(data))
    log.info("wrote %s", html_path)


def _copy_figures(figures: list[FigureEntry], figures_dir: Path, fig_out: Path) -> None:
    """Copy the figure PDFs the .tex includes next to it, and the CSVs too large to embed in the HTML (it
    links them as ``figures/<id>.csv``, as they lie in the archive); drop stale files of earlier builds.

    Never deletes anything when ``out_dir/figures`` is the pipeline's own figures directory.
    """
    fig_out.mkdir(parents=True, exist_ok=True)
    if fig_out.resolve() == figures_dir.resolve():
        return
    keep = {f.pdf.name for f in figures}
    keep |= {f.csv.name for f in figures if f.csv is not None and f.csv.stat().st_size > MAX_INLINE_CSV}
    for old in [*fig_out.glob("*.pdf"), *fig_out.glob("*.csv")]:
        if old.name not in keep:
            old.unlink()
    for fig in figures:
        shutil.copyfile(fig.pdf, fig_out / fig.pdf.name)
        if fig.csv is not None and fig.csv.name in keep:
            shutil.copyfile(fig.csv, fig_out / fig.csv.name)


def figure_report_meta(figure_id: str) -> dict[str, str]:
    """Title, caption and section of a figure for Snakemake's ``--report`` (``params`` / ``category``)."""
    spec = _registry().get(figure_id)
    if spec is None:
        return {"title": figure_id, "caption": "", "section": "Appendix", "module": ""}
    return {"title": markup.to_plain(spec.title), "caption": markup.to_plain(spec.caption),
            "section": findings_mod.SECTIONS[spec.section],
            "module": spec.module}
