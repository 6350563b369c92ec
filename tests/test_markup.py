"""The report's prose markup (tms.markup): $...$ maths typeset in LaTeX, MathML in HTML, legacy ASCII maths."""

from __future__ import annotations

import re

import pytest

from tms import findings, markup, report
from tms.figures import load_all


def _prose() -> list[str]:
    """Every caption, title and claim text of the figure registry (what the report renders as prose)."""
    load_all()
    out = []
    for spec in load_all().values():
        out += [spec.title, spec.caption]
    for c in findings.CLAIMS.values():
        out += [c.statement, c.expected, c.tolerance]
    return [s for s in out if s]


# ---------------------------------------------------------------------------------------------
# splitting


@pytest.mark.parametrize("text,parts", [
    ("plain", [(False, "plain")]),
    ("a $x^2$ b", [(False, "a "), (True, "x^2"), (False, " b")]),
    ("$W^\\top W$", [(True, "W^\\top W")]),
    ("costs $5 and $10", [(False, "costs $5 and $10")]),  # closing $ followed by a digit: not maths
    ("a $ b $ c", [(False, "a $ b $ c")]),  # spaces inside the delimiters: not maths
    ("\\$x$ and", [(False, "$x$ and")]),  # an escaped dollar is a dollar (and leaves the other alone)
    ("one $ alone", [(False, "one $ alone")]),
    ("$$", [(False, "$$")]),
    ("$a$$b$", [(True, "a"), (True, "b")]),
])
def test_split(text, parts):
    assert [(s.math, s.text) for s in markup.split(text)] == parts


# ---------------------------------------------------------------------------------------------
# LaTeX


def test_text_without_maths_or_ascii_maths_renders_exactly_as_escaped_text():
    for s in ["Five features in two dimensions", "50% of cells & 3 #1 {x} <a> | \\ café", "max_norm_rest: 0.8",
              "tms.figures.x_y", "the paper's claim", "S = 0.99, 1/(1-x)", "100,000 models x 10 restarts",
              "costs $5 and $10"]:
        assert markup.to_tex(s).replace(r"\allowbreak{}", "") == report.tex_escape(s), s
        assert markup.to_plain(s) == s.replace("\\$", "$"), s


def test_maths_passes_through_and_text_around_it_is_escaped():
    out = markup.to_tex("50% of $\\lVert W_i\\rVert^2 \\geq 0.5$ & more_x")
    assert out == r"50\% of $\lVert W_i\rVert^2 \geq 0.5$ \& more\_\allowbreak{}x"


def test_unicode_inside_maths_becomes_commands():
    assert re.sub(r"\s+", " ", markup.to_tex("$x ≥ 1 − ε$")) == r"$x \geq 1 - \epsilon$"


@pytest.mark.parametrize("bad", [r"\input{/etc/passwd}", r"x}{", r"a % b", r"a & b", r"\end{document}",
                                 r"\def\x{1}", r"a \\ b", r"\write18{rm}"])
def test_unsafe_maths_is_shown_as_source_not_compiled(bad):
    assert markup.math_problem(bad) is not None
    tex = markup.to_tex(f"see ${bad}$ here")
    assert tex.startswith(r"see \texttt{\$") and "$" not in tex.replace(r"\$", "")
    html = markup.to_html(f"see ${bad}$ here")
    assert '<code class="tex">' in html and "<math" not in html


@pytest.mark.parametrize("ascii_math,tex", [
    ("W^T W", r"$W^\top W$"),
    ("||W_i|| > 0.5", r"$\lVert W_{i}\rVert$ \textgreater{} 0.5"),
    ("||W||_F^2", r"$\lVert W\rVert_{F}^{2}$"),
    ("I_i = 0.7^i", r"$I_{i}$ = $0.7^{i}$"),
    ("sum_j (W_i_hat . W_j)^2", r"$\sum_j$ ($\hat{W}_{i}$ . $W_{j}$)\textsuperscript{2}"),
    ("D* = m", r"$D^*$ = m"),
    ("1-S >= 0.1", r"$1-S$ \ensuremath{\geq} 0.1"),
    ("72 +- 24 deg", r"72 \ensuremath{\pm} 24\ensuremath{^\circ}"),
    ("cos 0.1 (~6 deg)", r"cos 0.1 (\ensuremath{\approx}6\ensuremath{^\circ})"),
    ("a -> b", r"a \ensuremath{\rightarrow} b"),
    ("'not embedded' = norm", r"`not embedded' = norm"),
    ("lambda ||h||_1", r"\ensuremath{\lambda} $\lVert h\rVert_{1}$"),
    ("W_Clemson", r"$W_{\mathrm{Clemson}}$"),
])
def test_legacy_ascii_maths_is_typeset(ascii_math, tex):
    assert markup.to_tex(ascii_math) == tex
    assert "<math" in markup.to_html(ascii_math) or "\u2265" in markup.to_html(ascii_math) or \
        "\u00b1" in markup.to_html(ascii_math) or "\u2192" in markup.to_html(ascii_math) or \
        "\u2018" in markup.to_html(ascii_math) or "\u2248" in markup.to_html(ascii_math)


def test_legacy_conversion_can_be_turned_off():
    assert markup.to_tex("W_i >= 1", legacy=False) == report.tex_escape("W_i >= 1").replace(r"\_", r"\_\allowbreak{}")


def test_every_registered_caption_and_claim_renders_without_falling_back():
    """Each prose string of the registry becomes valid maths in LaTeX and MathML: no source shown instead."""
    for s in _prose():
        assert r"\texttt{\$" not in markup.to_tex(s), s
        html = markup.to_html(s)
        assert 'class="tex"' not in html, s
        assert "http" not in html, s  # no namespace URL: the page names no URL it does not link
        stripped = re.sub(r"\$[^$]*\$|\\ensuremath\{[^{}]*\}", "", markup.to_tex(s))  # outside maths: escaped
        assert not re.search(r"(?<!\\)[%&#_^]", stripped.replace(r"\textasciicircum{}", "")), s


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_escapes_text_and_converts_maths_to_mathml():
    out = markup.to_html("<b>&</b> $x^2$")
    assert out.startswith("&lt;b&gt;&amp;&lt;/b&gt; <math")
    assert "<msup>" in out and "xmlns" not in out


def test_report_text_converts():
    """The report's own prose (methods, references, coverage) is valid maths throughout."""
    texts = [p for ps in report.METHODS.values() for p in ps]
    texts += [r["text"] for r in report.REFERENCES] + [c["item"] for c in report.COVERAGE]
    for s in texts:
        assert r"\texttt{\$" not in markup.to_tex(s), s
        assert 'class="tex"' not in markup.to_html(s), s
