"""Figure families. Importing this package registers every figure (and its claims).

Each family module is imported by :func:`load_all`; a family that is not written yet simply
registers nothing.
"""

from __future__ import annotations

import importlib

from tms.figures.base import FIGURES, FigureContext, FigureOutput, FigureSpec, figure, save  # noqa: F401

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
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise
    return FIGURES
