"""The figure registry, the context a figure is built from, and the one style all figures share.

A figure module registers a typed analysis, a build function that draws it, and claims that read it::

    @dataclass(frozen=True)
    class PentagonAnalysis:                      # every number the figure draws and its claims need
        table: pd.DataFrame
        ...

    @analysis
    def pentagon_analysis(ctx: FigureContext) -> PentagonAnalysis:
        run = ctx.run("intro_pentagon")          # results/intro_pentagon/, loaded lazily
        ...                                      # computed once per context, however often it is asked for

    @figure("intro_pentagon", section="introduction", title="...", caption="...",
            options={"panels": [1.0, 0.2, 0.1]})  # every option with its default (validated with the config)
    def build(ctx: FigureContext) -> FigureOutput:
        an = pentagon_analysis(ctx)
        ...
        return FigureOutput(fig, an.table)       # matplotlib figure + the numbers it draws

``tms plot <id>`` builds it, writes ``figures/<id>.pdf``, ``.png`` and ``.csv`` (the table), then
evaluates the claims registered for the figure (:mod:`tms.findings`) with the same context, so a
claim reads the analysis the build already computed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tms.findings import SECTIONS  # noqa: E402


@dataclass
class FigureOutput:
    figure: "matplotlib.figure.Figure"
    table: pd.DataFrame


@dataclass(frozen=True)
class FigureSpec:
    id: str
    section: str
    title: str
    caption: str
    build: Callable[["FigureContext"], FigureOutput] = field(compare=False, repr=False)
    module: str = ""
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)  # option -> default


FIGURES: dict[str, FigureSpec] = {}


def figure(id: str, *, section: str, title: str, caption: str,
           options: Mapping[str, Any] | None = None) -> Callable:
    """Register a figure build function under its stable id.

    ``options`` declares every key the figure reads from ``figures.<id>.options`` with its default;
    the default's type is the option's type (:func:`validate_options` checks a config against it).
    """
    if section not in SECTIONS:
        raise ValueError(f"figure {id}: unknown section {section!r}; expected one of {list(SECTIONS)}")

    def deco(fn: Callable[["FigureContext"], FigureOutput]) -> Callable:
        if id in FIGURES:
            raise ValueError(f"figure {id} is registered twice")

        # the whole build runs under the shared style, so text added after the axes exist gets it too
        @functools.wraps(fn)
        def build(ctx: "FigureContext") -> FigureOutput:
            with plt.rc_context(STYLE):
                return fn(ctx)

        FIGURES[id] = FigureSpec(id, section, title, caption, build, fn.__module__, dict(options or {}))
        return build

    return deco


def _option_error(id: str, key: str, value: Any, default: Any) -> str | None:
    """Why ``value`` does not fit an option whose default is ``default`` (None when it fits)."""
    where = f"figures.{id}.options.{key}"

    def fits(v: Any, d: Any) -> bool:
        if d is None:
            return True
        if isinstance(d, bool):
            return isinstance(v, bool)
        if isinstance(d, int):
            return isinstance(v, int) and not isinstance(v, bool)
        if isinstance(d, float):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if isinstance(d, str):
            return isinstance(v, str)
        if isinstance(d, (list, tuple)):
            return isinstance(v, (list, tuple)) and (not d or all(fits(x, d[0]) for x in v))
        return isinstance(v, type(d))

    if fits(value, default):
        return None
    kind = type(default).__name__
    if isinstance(default, (list, tuple)) and default:
        kind = f"list of {type(default[0]).__name__}"
    return f"{where}: expected {kind} (like the default {default!r}), got {value!r}"


def validate_options(figures: Mapping[str, Any]) -> None:
    """Check every ``figures.<id>.options`` of a config against the options the figure declares.

    An unknown figure, an unknown option key or a value of the wrong type raises
    :class:`tms.config.ConfigError` naming the key, before any job starts.
    """
    from tms.config import ConfigError

    for id, spec in figures.items():
        if id not in FIGURES:
            raise ConfigError(f"figures.{id}: no figure registered under this id "
                             f"(registered: {', '.join(sorted(FIGURES))})")
        declared = FIGURES[id].options
        for key, value in ((spec or {}).get("options") or {}).items():
            if key not in declared:
                known = ", ".join(sorted(declared)) or "none"
                raise ConfigError(f"figures.{id}.options.{key}: unknown option (figure {id} declares: {known})")
            err = _option_error(id, key, value, declared[key])
            if err:
                raise ConfigError(err)


T = TypeVar("T")


def analysis(fn: Callable[["FigureContext"], T]) -> Callable[["FigureContext"], T]:
    """Memoise a figure's analysis on its context: computed once, read by the drawing and the claims."""

    @functools.wraps(fn)
    def memo(ctx: "FigureContext") -> T:
        if fn not in ctx._memo:
            ctx._memo[fn] = fn(ctx)
        return ctx._memo[fn]

    memo.__tms_analysis__ = True  # type: ignore[attr-defined]  # found by ``tms where``
    return memo


class FigureContext:
    """Everything a figure (and its claims) may read: its options, its experiments' results.

    ``runs`` gives results already in memory (tests build them with
    :meth:`tms.experiments.RunData.from_arrays`); other experiments load from ``results_dir``.
    """

    def __init__(self, id: str, experiments: list[str], options: Mapping[str, Any] | None = None,
                 results_dir: str | Path = "results", runs: Mapping[str, Any] | None = None) -> None:
        self.id = id
        self.experiments = list(experiments)
        self.options = dict(options or {})
        self.results_dir = Path(results_dir)
        self._memo: dict[Callable, Any] = {}
        self._runs: dict[str, Any] = dict(runs or {})

    @classmethod
    def with_runs(cls, id: str, runs: Mapping[str, Any] | list[Any], **options: Any) -> "FigureContext":
        """A context over results in memory: ``runs`` maps experiment names to results (or is a list of
        results with a ``name``)."""
        if not isinstance(runs, Mapping):
            runs = {r.name: r for r in runs}
        return cls(id, list(runs), options, runs=runs)

    def run(self, name: str):
        """The results of experiment ``name`` (a :class:`tms.experiments.RunData`)."""
        if name not in self.experiments:
            raise KeyError(f"figure {self.id} did not declare experiment {name!r} (declared: {self.experiments})")
        if name not in self._runs:
            from tms.experiments import RunData

            self._runs[name] = RunData.load(self.results_dir / name)
        return self._runs[name]

    def option(self, key: str) -> Any:
        """The value of option ``key`` (from the config, else the default the figure declares)."""
        spec = FIGURES.get(self.id)
        if spec is None or key not in spec.options:
            raise KeyError(f"figure {self.id} reads option {key!r} but does not declare it in @figure(options=...)")
        return self.options.get(key, spec.options[key])


# ---------------------------------------------------------------------------------------------
# One style for every figure

PALETTE = {
    "ink": "#222222",
    "grid": "#dddddd",
    "pos": "#b2182b",  # positive weights (coolwarm-like)
    "neg": "#2166ac",
    "orthogonal": "#1f2a6b",  # no superposition (dark blue in the paper)
    "superposed": "#f2c12e",  # >= 1 superposition (yellow)
    "theory": "#555555",
    "relu": "#d95f02",
    "linear": "#1b9e77",
}
SUPERPOSITION_CMAP = matplotlib.colors.LinearSegmentedColormap.from_list(
    "tms_superposition", [PALETTE["orthogonal"], "#3b7dbf", "#7fc97f", PALETTE["superposed"]]
)

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": PALETTE["ink"],
    "axes.labelcolor": PALETTE["ink"],
    "lines.linewidth": 1.2,
    "image.cmap": "coolwarm",
    "svg.hashsalt": "tms",
    "pdf.fonttype": 42,
}


def new_figure(*args: Any, **kwargs: Any):
    """``plt.subplots`` under the shared style (registered builds run under it already; this serves
    figures drawn outside the registry)."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, **kwargs)


def save(out: FigureOutput, stem: str | Path) -> list[Path]:
    """Write ``<stem>.pdf``, ``.png`` and ``.csv`` atomically, with no timestamps (reproducible bytes)."""
    from tms.io import atomic_path

    stem = Path(stem)
    paths = []
    for ext, kwargs in (
        ("pdf", {"metadata": {"CreationDate": None, "ModDate": None, "Producer": "tms", "Creator": "tms"}}),
        ("png", {"metadata": {"Software": None}}),
    ):
        target = stem.with_suffix(f".{ext}")
        # STYLE's save settings (savefig.dpi, pdf.fonttype, svg.hashsalt) apply when saving, too
        with atomic_path(target) as tmp, plt.rc_context(STYLE):
            out.figure.savefig(tmp, format=ext, bbox_inches="tight", **kwargs)
        paths.append(target)
    target = stem.with_suffix(".csv")
    with atomic_path(target) as tmp:
        out.table.to_csv(tmp, index=False, float_format="%.6g")
    paths.append(target)
    plt.close(out.figure)
    return paths
