"""One markup for the report's prose: plain text with ``$...$`` inline TeX maths.

Captions, claim texts, details and the report's own text are written once and rendered twice:

- **LaTeX** (:func:`to_tex`): text outside ``$...$`` is escaped (:func:`tms.report.tex_escape`), the
  maths is passed through as ``$...$``;
- **HTML** (:func:`to_html`): text outside ``$...$`` is HTML-escaped, the maths becomes inline MathML
  (``latex2mathml``; no script, font or network request).

Delimiters follow pandoc's rule, so prices and lone dollars stay text: an opening ``$`` must be
followed by a non-space, a closing ``$`` preceded by a non-space and not followed by a digit; ``\\$``
is a literal dollar. Maths that could break the LaTeX document (unbalanced braces, ``%``, ``&``,
``#``, ``\\\\``, environments, definitions, file access) or that MathML cannot express is shown as
its source in monospace instead, never compiled: a bad caption cannot stop the build.

Legacy ASCII maths. Strings written before this markup spell maths in ASCII (``W^T W``,
``||W_i||_F^2``, ``I_i = 0.7^i``, ``>=``, ``+-``, ``->``, ``~6 deg``, ``'quoted'``). With
``legacy=True`` (the default for prose) the recognisable forms are typeset; everything else is left as
it was. Text with neither ``$`` nor any such form renders exactly as plain escaped text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

# ---------------------------------------------------------------------------------------------
# Splitting text and maths


@dataclass(frozen=True)
class Segment:
    math: bool
    text: str  # the TeX source of a maths segment (without the dollars), else plain text


_DOLLAR = re.compile(r"(?<!\\)\$")


def split(s: str) -> list[Segment]:
    """``s`` as text and maths segments (pandoc's ``tex_math_dollars`` rule; ``\\$`` is a dollar)."""
    s = str(s)
    out: list[Segment] = []
    text: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] == "$":
            text.append("$")
            i += 2
            continue
        if ch == "$" and i + 1 < len(s) and not s[i + 1].isspace() and s[i + 1] != "$":
            j = _closing(s, i + 1)
            if j is not None:
                if text:
                    out.append(Segment(False, "".join(text)))
                    text = []
                out.append(Segment(True, s[i + 1:j]))
                i = j + 1
                continue
        text.append(ch)
        i += 1
    if text:
        out.append(Segment(False, "".join(text)))
    return out


def _closing(s: str, start: int) -> int | None:
    """Index of the ``$`` closing the maths that starts at ``start``, or None."""
    for m in _DOLLAR.finditer(s, start):
        j = m.start()
        if j > start and not s[j - 1].isspace() and not (j + 1 < len(s) and s[j + 1].isdigit()):
            return j
    return None


def has_math(s: str) -> bool:
    return any(seg.math for seg in split(s))


# ---------------------------------------------------------------------------------------------
# Legacy ASCII maths -> segments

_IDX = r"(?:[A-Za-z0-9]{1,12})"
_LEGACY = re.compile(
    r"(?P<norm>\|\|(?P<norm_in>[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]{1,12})?)\|\|(?:_(?P<norm_sub>[A-Za-z0-9]))?"
    r"(?:\^(?P<norm_sup>\d))?)"
    r"|(?P<hat>(?<![\w.])(?<!\|\|)(?P<hat_base>[A-Za-z])_(?P<hat_idx>" + _IDX + r")_hat(?![\w]))"
    r"|(?P<gram>(?<![\w.])(?<!\|\|)(?P<gram_a>[A-Z])\^T(?: ?(?P<gram_b>[A-Z])(?![\w]))?(?![\w]))"
    r"|(?P<sum>(?<![\w.])(?<!\|\|)sum_(?P<sum_idx>\{[^{}$]{1,20}\}|[a-z])(?![\w]))"
    r"|(?P<sub>(?<![\w.])(?<!\|\|)(?P<sub_base>[A-Za-z])_(?P<sub_idx>" + _IDX + r")(?:\^(?P<sub_sup>\d|[a-z]))?(?![\w]))"
    r"|(?P<pow>(?<![\w.])(?<!\|\|)(?P<pow_base>\d+(?:\.\d+)?|[A-Za-z])\^(?P<pow_exp>-?\d+|[a-z]|\([^()$]{1,12}\))(?![\w]))"
    r"|(?P<star>(?<![\w.*])(?<!\|\|)(?P<star_base>[A-Za-z])\*(?![\w*]))"
    r"|(?P<density>(?<![\w.-])1-S(?![\w]))"
)
_OPERATORS = [  # (ascii, unicode) applied to text outside maths; longest first
    ("<->", "\u2194"), (">=", "\u2265"), ("<=", "\u2264"), ("!=", "\u2260"), ("+-", "\u00b1"), ("->", "\u2192"),
]
_APPROX = re.compile(r"(?<![\w~])~(?=\d)")
_DEG = re.compile(r"(?<=\d) ?deg\b")
_QUOTE = re.compile(r"(?<![\w'])'(?=[^\s'])([^'\n]{1,80}?)(?<=[^\s])'(?![\w])")
_POWER_AFTER_PAREN = re.compile(r"([)\]])\^([23])(?![\w])")
_SUPERSCRIPT_DIGITS = {"2": "\u00b2", "3": "\u00b3"}
_LAMBDA = re.compile(r"(?<![\w\\])lambda(?![\w])")


def _index(idx: str) -> str:
    """A subscript: a letter or number as is, a word upright."""
    if len(idx) > 1 and not idx.isdigit():
        return rf"\mathrm{{{idx}}}"
    return idx


def _legacy_math(m: re.Match) -> str:
    g = m.groupdict()
    if g["norm"]:
        inner = g["norm_in"]
        if "_" in inner:
            base, idx = inner.split("_", 1)
            inner = f"{base}_{{{_index(idx)}}}"
        tex = rf"\lVert {inner}\rVert"
        if g["norm_sub"]:
            tex += f"_{{{g['norm_sub']}}}"
        if g["norm_sup"]:
            tex += f"^{{{g['norm_sup']}}}"
        return tex
    if g["hat"]:
        return rf"\hat{{{g['hat_base']}}}_{{{_index(g['hat_idx'])}}}"
    if g["gram"]:
        return rf"{g['gram_a']}^\top" + (f" {g['gram_b']}" if g["gram_b"] else "")
    if g["sum"]:
        idx = g["sum_idx"]
        if idx.startswith("{"):
            idx = "{" + _ops_tex(idx[1:-1]) + "}"
        return rf"\sum_{idx}"
    if g["sub"]:
        tex = f"{g['sub_base']}_{{{_index(g['sub_idx'])}}}"
        if g["sub_sup"]:
            tex += f"^{{{g['sub_sup']}}}"
        return tex
    if g["pow"]:
        exp = g["pow_exp"]
        if exp.startswith("("):
            exp = exp[1:-1]
        return f"{g['pow_base']}^{{{_ops_tex(exp)}}}"
    if g["star"]:
        return f"{g['star_base']}^*"
    if g["density"]:
        return "1-S"
    raise AssertionError(m.group(0))  # pragma: no cover


def _ops_tex(s: str) -> str:
    return s.replace("!=", r"\neq ").replace(">=", r"\geq ").replace("<=", r"\leq ")


def _text_legacy(s: str) -> str:
    """Operators, approximations, degrees and quotes of plain text, in unicode."""
    for a, u in _OPERATORS:
        s = s.replace(a, u)
    s = _POWER_AFTER_PAREN.sub(lambda m: m.group(1) + _SUPERSCRIPT_DIGITS[m.group(2)], s)
    s = _APPROX.sub("\u2248", s)
    s = _DEG.sub("\u00b0", s)
    s = _QUOTE.sub("\u2018\\1\u2019", s)
    return _LAMBDA.sub("\u03bb", s)


def legacy_segments(text: str) -> list[Segment]:
    """Plain text with ASCII maths as text and maths segments (see the module docstring)."""
    out: list[Segment] = []
    pos = 0
    for m in _LEGACY.finditer(text):
        if m.start() > pos:
            out.append(Segment(False, _text_legacy(text[pos:m.start()])))
        out.append(Segment(True, _legacy_math(m)))
        pos = m.end()
    if pos < len(text):
        out.append(Segment(False, _text_legacy(text[pos:])))
    return _merge(out)


def _merge(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s in segs:
        if out and out[-1].math == s.math and not s.math:
            out[-1] = Segment(False, out[-1].text + s.text)
        elif s.text:
            out.append(s)
    return out


def segments(s: str, legacy: bool = True) -> list[Segment]:
    """Text and maths segments of a prose string (legacy ASCII maths typeset when ``legacy``)."""
    out: list[Segment] = []
    for seg in split(s):
        if seg.math or not legacy:
            out.append(seg)
        else:
            out += legacy_segments(seg.text)
    return out


# ---------------------------------------------------------------------------------------------
# Checking maths before it reaches LaTeX

_FORBIDDEN = re.compile(
    r"\\(?:input|include|includeonly|write|openout|openin|read|def|edef|gdef|xdef|let|futurelet|catcode|"
    r"csname|endcsname|begin|end|newcommand|renewcommand|providecommand|DeclareMathOperator|immediate|special|"
    r"usepackage|documentclass|jobname|makeatletter|makeatother|verb|url|href|pdf\w*|loop|repeat|expandafter|"
    r"afterassignment|uppercase|lowercase|string|scantokens|detokenize|unexpanded|noexpand|the|count\w*|dimen\w*|"
    r"skip\w*|toks\w*|box\w*|setbox|vbox|hbox|kern|hskip|vskip|hspace|vspace|char|mathchar|(?:math)?code|"
    r"outer|long|global|relax|par|newline|linebreak|displaystyle|fontsize|tiny|huge|Huge|LARGE|Large|large)"
    r"(?![A-Za-z])")


def math_problem(tex: str) -> str | None:
    """Why ``tex`` must not be compiled as inline maths (None when it is fine)."""
    depth = 0
    for i, ch in enumerate(tex):
        if ch in "{}" and i and tex[i - 1] == "\\":
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return "unbalanced braces"
    if depth:
        return "unbalanced braces"
    bare = re.sub(r"\\[{}%&#$_^ ,;:!|]", "", tex)
    for ch in "%&#$~":
        if ch in bare:
            return f"a bare {ch!r}"
    if "\\\\" in tex:
        return "a line break"
    m = _FORBIDDEN.search(tex)
    if m:
        return f"the command {m.group(0)}"
    if tex.rstrip().endswith("\\"):
        return "a trailing backslash"
    return None


# ---------------------------------------------------------------------------------------------
# Rendering


def _math_tex(tex: str) -> str | None:
    """The maths as LaTeX (unicode symbols mapped to commands), or None when it cannot be compiled."""
    from tms.report import _math_char

    if math_problem(tex) is not None:
        return None
    out = []
    for ch in tex:
        if ord(ch) < 128:
            out.append(ch)
            continue
        mapped = _math_char(ch)
        if mapped is None:
            return None
        out.append(mapped)
    body = "".join(out).strip()
    return f"${body}$" if body else None


def to_tex(s: str, legacy: bool = True) -> str:
    """LaTeX for a prose string: text escaped, ``$...$`` maths passed through (or shown as source)."""
    from tms.report import tex_escape

    out = []
    for seg in segments(s, legacy):
        if not seg.math:  # an identifier_with_underscores may break after each underscore (narrow columns)
            out.append(tex_escape(seg.text).replace(r"\_", r"\_\allowbreak{}"))
            continue
        tex = _math_tex(seg.text)
        out.append(tex if tex is not None else r"\texttt{" + tex_escape("$" + seg.text + "$") + "}")
    return "".join(out)


@lru_cache(maxsize=4096)
def mathml(tex: str) -> str | None:
    """Inline MathML for ``tex`` (None when it is unsafe for LaTeX or latex2mathml cannot read it)."""
    if math_problem(tex) is not None:
        return None
    try:
        from latex2mathml.converter import convert
    except ImportError:  # pragma: no cover: a pinned dependency (pyproject.toml)
        return None
    try:
        out = convert(tex)
    except Exception:  # noqa: BLE001 (any parse error of the converter: show the source instead)
        return None
    # HTML5 needs no namespace on <math>; leaving it out keeps the page free of URL strings
    return out.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")


def to_html(s: str, legacy: bool = True) -> str:
    """HTML for a prose string: text escaped, ``$...$`` maths as MathML (or shown as source)."""
    out = []
    for seg in segments(s, legacy):
        if not seg.math:
            out.append(html.escape(seg.text, quote=False))
            continue
        mm = mathml(seg.text)
        out.append(mm if mm is not None else f'<code class="tex">${html.escape(seg.text, quote=False)}$</code>')
    return "".join(out)


def to_plain(s: str, legacy: bool = True) -> str:
    """Plain text (titles, attributes, PDF metadata): maths as its source, legacy forms in unicode."""
    out = []
    for seg in segments(s, legacy):
        out.append(seg.text if not seg.math else _plain_math(seg.text))
    return "".join(out)


_PLAIN_MATH = [(r"\lVert ", "\u2016"), (r"\lVert", "\u2016"), (r"\rVert", "\u2016"), (r"^\top", "\u1d40"), (r"\hat", ""), (r"\sum", "\u03a3"),
               (r"\geq", "\u2265"), (r"\leq", "\u2264"), (r"\neq", "\u2260"), (r"\mathrm", ""), (r"\approx", "\u2248"),
               (r"\cdot", "\u00b7"), (r"\times", "\u00d7"), (r"\pm", "\u00b1")]


def _plain_math(tex: str) -> str:
    for a, b in _PLAIN_MATH:
        tex = tex.replace(a, b)
    return re.sub(r"[{}]", "", tex).replace("\\", "")
