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

Margins. A claim states the numeric conditions its verdict rests on as :class:`Bar` s (``value op
threshold``, in the claim's own units). Every finding records them with their signed margins
(positive: the condition holds with that much room) and one **near-miss** rule for all claims
(:data:`NEAR_MISS`): a verdict is a near miss when moving the measured values by 5 % of their
thresholds would flip it. A reproduced claim flips if any one bar fails, so it is near when its
tightest bar is; a claim that is not reproduced flips only if every failing bar passes, so it is near
when all its failing bars are (never when a non-numeric condition failed).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
NEAR_MISS = 0.05  # a verdict is a near miss if moving a value by 5 % of its threshold (scale) flips it
OPS = (">=", ">", "<=", "<")

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


@dataclass(frozen=True)
class Bar:
    """One numeric condition of a claim: ``value op threshold``.

    ``scale`` sets what "5 % of the threshold" means for the near-miss rule; it defaults to
    ``|threshold|`` and must be given where the threshold is 0. ``step`` is the resolution of a
    value that moves in steps (1 for a count): a count at its bar still needs a whole step to flip.
    """

    name: str  # what is compared, in words ("agreement away from boundaries")
    value: float
    op: str  # ">=", ">", "<=" or "<"
    threshold: float
    unit: str = ""
    scale: float | None = None
    step: float = 0.0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"bar {self.name!r}: op must be one of {OPS}, got {self.op!r}")
        if not self.threshold and not self.scale:
            raise ValueError(f"bar {self.name!r}: a threshold of 0 needs a scale for the near-miss rule")

    @property
    def margin(self) -> float:
        """Signed room in the claim's units: positive when the condition holds."""
        v, t = float(self.value), float(self.threshold)
        return v - t if self.op in (">=", ">") else t - v

    @property
    def passed(self) -> bool:
        v, t = float(self.value), float(self.threshold)
        return {">=": v >= t, ">": v > t, "<=": v <= t, "<": v < t}[self.op] if math.isfinite(v) else False

    @property
    def relative_margin(self) -> float:
        """The margin in units of the scale (``|threshold|`` unless given)."""
        scale = self.scale if self.scale else abs(float(self.threshold))
        return self.margin / scale if math.isfinite(self.margin) else -math.inf

    @property
    def distance_to_flip(self) -> float:
        """How far the value must move for this condition to change, in its own units.

        A value that moves in whole steps (a count, a share of N items) needs a whole number of steps:
        the smallest k * step that crosses the threshold (beyond it where the threshold itself still
        counts for the present verdict).
        """
        m = self.margin
        if not math.isfinite(m):
            return math.inf
        if not self.step:
            return abs(m)
        x = abs(m) / self.step
        strict = self.op in (">", "<")
        # passing a non-strict bar (or failing a strict one) means the threshold itself keeps the verdict
        beyond = self.passed != strict
        k = math.floor(x + 1e-9) + 1 if beyond else max(math.ceil(x - 1e-9), 1)
        return k * self.step

    @property
    def near(self) -> bool:
        scale = self.scale if self.scale else abs(float(self.threshold))
        return self.distance_to_flip <= NEAR_MISS * scale

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": _jsonable(float(self.value)), "op": self.op,
                "threshold": _jsonable(float(self.threshold)), "unit": self.unit,
                "margin": _jsonable(self.margin), "relative_margin": _jsonable(self.relative_margin),
                "passed": self.passed, "near": self.near}


def _room(b: Bar) -> float:
    """Distance to flip in units of the bar's scale (how close the bar is to changing)."""
    scale = b.scale if b.scale else abs(float(b.threshold))
    return b.distance_to_flip / scale


def near_miss(passed: bool | None, bars: tuple[Bar, ...], categorical_ok: bool | None = None) -> bool | None:
    """The one near-miss rule (module docstring); None when there is no numeric bar or no verdict.

    ``categorical_ok`` is False when a non-numeric condition of the claim failed: no move of a
    number can then flip the verdict.
    """
    if passed is None or not bars:
        return None
    if passed:
        return any(b.near for b in bars)
    failing = [b for b in bars if not b.passed]
    return categorical_ok is not False and bool(failing) and all(b.near for b in failing)


def binding(passed: bool | None, bars: tuple[Bar, ...]) -> Bar | None:
    """The bar that decides the verdict: the one closest to flipping of a reproduced claim, the worst
    failing one of a claim that is not reproduced."""
    if passed is None or not bars:
        return None
    if passed:
        return min(bars, key=_room)
    return min([b for b in bars if not b.passed] or list(bars), key=lambda b: b.relative_margin)


@dataclass
class Measurement:
    """What a claim function returns."""

    measured: Any  # a number, or a small dict/list of numbers (JSON-serialisable)
    passed: bool | None  # None: could not be decided (inconclusive)
    detail: str = ""  # one or two sentences: how it was measured, what was seen
    bars: tuple[Bar, ...] = ()  # the numeric conditions the verdict rests on (margins, near misses)
    categorical_ok: bool | None = None  # the non-numeric conditions (exact sets, shapes), where there are any


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    figure: str
    section: str
    statement: str
    expected: str
    tolerance: str
    func: Callable[[Any], Measurement] = field(compare=False, repr=False)
    audit: str = ""  # why this criterion reads the paper faithfully; a revised one names its strict reading
    explanation: str = ""  # why the claim does not reproduce, where that is known (shown only then)


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
    audit: str = ""
    explanation: str = ""
    bars: list[dict[str, Any]] = field(default_factory=list)  # Bar.to_json() of each condition
    margin: float | None = None  # signed margin of the binding bar, in the claim's units
    near_miss: bool | None = None  # under the one rule of NEAR_MISS; None without a numeric bar

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


CLAIMS: dict[str, ClaimSpec] = {}
STRICT_SUFFIX = "_strict"  # a criterion's first reading, kept as its own claim when an audit revised it


def claim(
    id: str, *, figure: str, section: str, statement: str, expected: str, tolerance: str = "", audit: str = "",
    explanation: str = "",
) -> Callable[[Callable[[Any], Measurement]], Callable[[Any], Measurement]]:
    """Register a claim function (see the module docstring).

    ``audit`` records the criterion decision (why it is a faithful reading of the paper; a criterion
    revised after review keeps its earlier reading as a separate ``..._strict`` claim and says so here);
    ``explanation`` says why the claim does not reproduce, where that is known: the report shows it
    beside a verdict of "not reproduced".
    """
    if section not in SECTIONS:
        raise ValueError(f"claim {id}: unknown section {section!r}; expected one of {list(SECTIONS)}")
    if id.endswith(STRICT_SUFFIX) and not explanation:
        explanation = (f"The first, stricter reading of this claim, kept visible after the audit revised its "
                       f"criterion (see {id[:-len(STRICT_SUFFIX)]} for the reading that counts and why).")

    def deco(fn: Callable[[Any], Measurement]) -> Callable[[Any], Measurement]:
        if id in CLAIMS:
            raise ValueError(f"claim {id} is registered twice")
        CLAIMS[id] = ClaimSpec(id, figure, section, statement, expected, tolerance, fn, audit, explanation)
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
            bars = tuple(m.bars)
            if m.passed and not all(b.passed for b in bars):
                failing = ", ".join(b.name for b in bars if not b.passed)
                raise ValueError(f"claim {spec.id} is marked reproduced but its bar(s) {failing} fail")
        except Exception as err:  # a broken claim must show up in the report, not kill the build
            m = Measurement(measured=None, passed=None, detail=f"claim could not be evaluated: {err!r}")
            bars = ()
        bind = binding(m.passed, bars)
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
                audit=spec.audit,
                explanation=spec.explanation if verdict(m.passed) == "not reproduced" else "",
                bars=[b.to_json() for b in bars],
                margin=_jsonable(bind.margin) if bind else None,
                near_miss=near_miss(m.passed, bars, m.categorical_ok),
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
