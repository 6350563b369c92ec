"""Verdicts under other seeds and a larger budget: is each verdict robust or fragile?

The robustness run (``workflow/config/robustness.yaml`` on top of a build's config) retrains every
experiment under *variants* of the build: other master seeds, and the training steps multiplied by a
factor. Each variant's figures and claims are evaluated exactly as the build's own, under
``results/variants/<variant>/``. :func:`aggregate` lines the verdicts up per claim: a claim is
**robust** when every variant gives the build's verdict, **fragile** when any variant flips it (an
inconclusive verdict counts as a different verdict).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

from tms import findings as findings_mod

DEFAULTS = {"seeds": [1, 2], "steps_factor": 2}


@dataclass(frozen=True)
class Variant:
    name: str  # "seed1", "steps2x": the directory under results/variants/
    seed: int | None = None  # a master seed replacing the build's
    steps_factor: float | None = None  # training steps multiplied by this

    def describe(self, base_seed: int) -> str:
        if self.seed is not None:
            return f"master seed {self.seed} instead of {base_seed}"
        return f"{self.steps_factor:g}x the training steps"


def variants(config: Mapping[str, Any]) -> list[Variant]:
    """The variants a config asks for (``robustness: {seeds: [...], steps_factor: k}``)."""
    spec = {**DEFAULTS, **(config.get("robustness") or {})}
    base = int(config.get("seed", 0))
    out = []
    for s in spec["seeds"]:
        if int(s) == base:
            raise ValueError(f"robustness.seeds: {s} is the build's own seed; a variant must differ")
        out.append(Variant(f"seed{int(s)}", seed=int(s)))
    factor = spec["steps_factor"]
    if factor:
        if float(factor) <= 1:
            raise ValueError(f"robustness.steps_factor: must be > 1 (a larger budget), got {factor}")
        out.append(Variant(f"steps{float(factor):g}x", steps_factor=float(factor)))
    return out


def variant_experiment(exp: Mapping[str, Any], variant: Variant) -> dict[str, Any]:
    """An experiment's spec (defaults filled in) under a variant: only the budget changes here; the
    seed is passed to the trainer separately."""
    out = copy.deepcopy(dict(exp))
    if variant.steps_factor:
        out["train"]["steps"] = int(round(out["train"]["steps"] * variant.steps_factor))
    return out


def variant_seed(config: Mapping[str, Any], variant: Variant) -> int:
    return int(config.get("seed", 0)) if variant.seed is None else variant.seed


def aggregate(base: list[findings_mod.Finding], by_variant: Mapping[str, list[findings_mod.Finding]],
              described: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``results/robustness.json``: per claim the verdict, measured value and margin of the build and of
    every variant, and the label robust / fragile; a summary of both counts."""
    claims: dict[str, Any] = {}
    for f in base:
        row = {"figure": f.figure, "verdicts": {"build": f.verdict}, "measured": {"build": f.measured},
               "margins": {"build": f.margin}}
        for name, found in by_variant.items():
            match = next((g for g in found if g.id == f.id), None)
            row["verdicts"][name] = match.verdict if match else "missing"
            row["measured"][name] = match.measured if match else None
            row["margins"][name] = match.margin if match else None
        flips = sorted(name for name, v in row["verdicts"].items() if v != f.verdict)
        row["label"] = "fragile" if flips else "robust"
        row["flipped_in"] = flips
        claims[f.id] = row
    labels = [r["label"] for r in claims.values()]
    return {
        "variants": dict(described or {name: name for name in by_variant}),
        "summary": {"claims": len(claims), "robust": labels.count("robust"), "fragile": labels.count("fragile"),
                    "fragile_claims": sorted(k for k, r in claims.items() if r["label"] == "fragile")},
        "claims": claims,
    }
