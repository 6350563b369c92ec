"""The claims registry: every quantitative claim of the paper, checked against what was measured.

A claim is registered next to the figure code that measures it::

    @claim("intro_pentagon.dense_orthogonal", figure="intro_pentagon", section="Introduction",
           statement="With dense features the two most important features get orthogonal dimensions...",
           expected="2 features with norm > 0.5, |cos| < 0.1")
    def _(ctx) -> Measurement:
        ...
        return Measurement(measured=..., passed=..., detail="...")

``tms plot <figure>`` evaluates the figure's claims and writes ``results/claims/<figure>.json``;
``tms findings`` merges them into ``results/findings.json``. A claim that does not reproduce is a
finding like any other: its verdict says so and its measured value is reported.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

VERDICTS = ("reproduced", "not reproduced", "inconclusive")

# Paper sections, in the order of the report (keys are used in figure and claim metadata).
SECTIONS: dict[str, str] = {
    "introduction": "Introduction",
    "demonstrating": "Demonstrating Superposition",
    "phase_change": "Superposition as a Phase Change",
    "geometry": "The Geometry of Superposition",
    "learning_dynamics": "Superposition and Learning Dynamics",
    "robustness": "Relationship to Adversarial Robustness",
    "privileged_basis": "Superposition in a Privileged Basis",
    "computation": "Computation in Superposition",
    "strategic": "The Strategic Picture of Superposition",
    "appendix": "Appendix",
}


@dataclass
class Measurement:
    """What a claim function returns."""

    measured: Any  # a number, or a small dict/list of numbers (JSON-serialisable)
    passed: bool | None  # None: could not be decided (inconclusive)
    detail: str = ""  # one or two sentences: how it was measured, what was seen


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    figure: str
    section: str
    statement: str
    expected: str
    tolerance: str
    func: Callable[[Any], Measurement] = field(compare=False, repr=False)


@dataclass
class Finding:
    """One evaluated claim, as stored in ``results/findings.json``."""

    id: str
    figure: str
    section: str
    claim: str
    expected: str
    tolerance: str
    measured: Any
    verdict: str
    detail: str
    experiments: list[str]
    config: str = ""  # which config produced it (file name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


CLAIMS: dict[str, ClaimSpec] = {}


def claim(
    id: str, *, figure: str, section: str, statement: str, expected: str, tolerance: str = ""
) -> Callable[[Callable[[Any], Measurement]], Callable[[Any], Measurement]]:
    """Register a claim function (see the module docstring)."""
    if section not in SECTIONS:
        raise ValueError(f"claim {id}: unknown section {section!r}; expected one of {list(SECTIONS)}")

    def deco(fn: Callable[[Any], Measurement]) -> Callable[[Any], Measurement]:
        if id in CLAIMS:
            raise ValueError(f"claim {id} is registered twice")
        CLAIMS[id] = ClaimSpec(id, figure, section, statement, expected, tolerance, fn)
        return fn

    return deco


def claims_for(figure: str) -> list[ClaimSpec]:
    return [c for c in CLAIMS.values() if c.figure == figure]


def verdict(passed: bool | None) -> str:
    return "inconclusive" if passed is None else ("reproduced" if passed else "not reproduced")


def evaluate(figure: str, ctx: Any, experiments: list[str], config: str = "") -> list[Finding]:
    """Evaluate every claim registered for ``figure``.

    A claim function that raises is recorded as inconclusive with the error, not swallowed
    silently: the report shows it.
    """
    out: list[Finding] = []
    for spec in claims_for(figure):
        try:
            m = spec.func(ctx)
        except Exception as err:  # a broken claim must show up in the report, not kill the build
            m = Measurement(measured=None, passed=None, detail=f"claim could not be evaluated: {err!r}")
        out.append(
            Finding(
                id=spec.id,
                figure=figure,
                section=spec.section,
                claim=spec.statement,
                expected=spec.expected,
                tolerance=spec.tolerance,
                measured=_jsonable(m.measured),
                verdict=verdict(m.passed),
                detail=m.detail,
                experiments=list(experiments),
                config=config,
            )
        )
    return out


def _jsonable(v: Any) -> Any:
    """Numbers as plain floats rounded to 6 significant digits (stable text across runs), NaN as None."""
    try:
        import numpy as np

        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def write(findings: list[Finding], path: Path) -> None:
    from tms.io import atomic_write_text

    atomic_write_text(path, json.dumps([f.to_json() for f in findings], indent=2, sort_keys=True) + "\n")


def read(path: Path) -> list[Finding]:
    """Findings from a claims or findings file; :class:`tms.io.CorruptFileError` if it is damaged."""
    from tms.io import CorruptFileError, read_json

    data = read_json(path)
    try:
        return [Finding(**d) for d in data]
    except TypeError as err:  # not a list of finding records (wrong or missing fields)
        raise CorruptFileError(path, f"not a list of findings: {err}") from err
