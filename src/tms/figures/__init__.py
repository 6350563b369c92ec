"""Figure families. :func:`load_all` imports every family module, which registers its figures and
their claims; a module that fails to import fails loudly (a broken figure must not disappear)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from tms.figures.base import (FIGURES, FigureContext, FigureOutput, FigureSpec, analysis, figure,  # noqa: F401
                              save, validate_options)

FAMILIES = (
    "tms.figures.storage",  # intro pentagon, linear vs ReLU, D*, feature dimensionality
    "tms.figures.nonuniform",  # pentagon perturbation, correlated features, local bases, PCA collapse
    "tms.figures.phase",  # phase diagrams (theory and trained), training loss
    "tms.figures.dynamics",  # energy-level jumps, geometric transformations
    "tms.figures.neurons",  # privileged basis, computation in superposition, asymmetric motif
    "tms.figures.robustness",  # adversarial vulnerability, L1, nonlinear compression
    "tms.figures.interference",  # the worked interference example
)


def load_all() -> dict[str, FigureSpec]:
    """Import every family module and return the registry."""
    for mod in FAMILIES:
        importlib.import_module(mod)
    return FIGURES


def plot(figure_id: str, fspec: Mapping[str, Any], results_dir: str | Path, out_dir: str | Path | None = None,
         config_name: str = "") -> list[Any]:
    """What ``tms plot`` does with one figure: build it from the results under ``results_dir`` (saved as
    ``out_dir/<figure_id>.{pdf,png,csv}`` when ``out_dir`` is given, else only drawn), then evaluate its
    claims with the same context; returns the :class:`tms.findings.Finding` s.

    ``fspec`` is the figure's config entry (``experiments`` and ``options``). The build runs even when
    nothing is saved: the claims read the analyses it computes, in the order it computes them.
    """
    import matplotlib.pyplot as plt

    from tms import findings

    registry = load_all()
    if figure_id not in registry:
        raise KeyError(f"unknown figure {figure_id!r}; registered: {', '.join(sorted(registry))}")
    validate_options({figure_id: fspec})
    ctx = FigureContext(figure_id, fspec["experiments"], fspec.get("options"), results_dir)
    out = registry[figure_id].build(ctx)
    if out_dir is None:
        plt.close(out.figure)
    else:
        save(out, Path(out_dir) / figure_id)
    return findings.evaluate(figure_id, ctx, fspec["experiments"], config_name)
