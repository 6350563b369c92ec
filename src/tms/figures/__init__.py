"""Figure families. :func:`load_all` imports every family module, which registers its figures and
their claims; a module that fails to import fails loudly (a broken figure must not disappear)."""

from __future__ import annotations

import importlib

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
