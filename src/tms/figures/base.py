"""The figure registry, the context a figure is built from, and the one style all figures share.

A figure module registers a build function::

    @figure("intro_pentagon", section="introduction", title="...", caption="...")
    def build(ctx: FigureContext) -> FigureOutput:
        run = ctx.run("intro_pentagon")          # results/intro_pentagon/, loaded lazily
        ...
        return FigureOutput(fig, table)          # matplotlib figure + the numbers it draws

``tms plot <id>`` builds it, writes ``figures/<id>.pdf``, ``.png`` and ``.csv`` (the table), then
evaluates the claims registered for the figure (:mod:`tms.findings`) with the same context, so a
claim can reuse what the build computed through ``ctx.cache``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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


FIGURES: dict[str, FigureSpec] = {}


def figure(id: str, *, section: str, title: str, caption: str) -> Callable:
    """Register a figure build function under its stable id."""
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

        FIGURES[id] = FigureSpec(id, section, title, caption, build, fn.__module__)
        return build

    return deco


class FigureContext:
    """Everything a figure (and its claims) may read: its options, its experiments' results."""

    def __init__(self, id: str, experiments: list[str], options: dict[str, Any] | None = None,
                 results_dir: str | Path = "results") -> None:
        self.id = id
        self.experiments = list(experiments)
        self.options = dict(options or {})
        self.results_dir = Path(results_dir)
        self.cache: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}

    def run(self, name: str):
        """The results of experiment ``name`` (a :class:`tms.experiments.RunData`)."""
        if name not in self.experiments:
            raise KeyError(f"figure {self.id} did not declare experiment {name!r} (declared: {self.experiments})")
        if name not in self._runs:
            from tms.experiments import RunData

            self._runs[name] = RunData.load(self.results_dir / name)
        return self._runs[name]

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


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
