"""Where a figure or a claim lives: ``tms where <figure-or-claim-id>``.

From any id a reader gets the code (file:line of the build function, of its analysis, of each claim
id as written in the source), the test module, the Snakemake target and the config keys.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

REPO = Path(__file__).resolve().parents[2]


def _relative(path: str | Path) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def function_location(fn: Callable) -> str:
    """``src/tms/...py:line`` of a function (decorators unwrapped)."""
    fn = inspect.unwrap(fn)
    return f"{_relative(inspect.getsourcefile(fn) or '?')}:{fn.__code__.co_firstlineno}"


def literal_location(module: str, text: str) -> str | None:
    """``file:line`` where the string literal ``"text"`` first appears in ``module``'s source."""
    import importlib

    path = inspect.getsourcefile(importlib.import_module(module))
    if path is None:
        return None
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if f'"{text}"' in line:
            return f"{_relative(path)}:{i}"
    return None


def claim_location(spec: Any) -> str:
    """Where a claim's id is written (its registration), else where its function is defined."""
    module = inspect.unwrap(spec.func).__module__
    return literal_location(module, spec.id) or function_location(spec.func)


def test_module(module: str) -> str | None:
    """The test module mirroring a figure module: ``tms.figures.storage`` -> ``tests/figures/test_storage.py``."""
    parts = module.split(".")[1:]  # drop the package name
    path = REPO / "tests" / Path(*parts[:-1]) / f"test_{parts[-1]}.py"
    return _relative(path) if path.exists() else None


@dataclass
class FigureLocation:
    id: str
    section: str
    module: str
    code: str
    analyses: list[str]
    test: str | None
    config_keys: list[str]
    claims: dict[str, str] = field(default_factory=dict)  # claim id -> file:line

    @property
    def target(self) -> str:
        return f"snakemake --cores all figures/{self.id}.pdf"


def _analyses(module: str, build: Callable) -> list[str]:
    """``name file:line`` of the ``@analysis`` functions of ``module`` that a build function calls."""
    import importlib
    import re

    called = set(re.findall(r"\b(\w+)\(", inspect.getsource(inspect.unwrap(build))))
    return [f"{name} {function_location(obj)}" for name, obj in vars(importlib.import_module(module)).items()
            if name in called and getattr(obj, "__tms_analysis__", False)]


def figure_location(fid: str, config: Mapping[str, Any] | None = None) -> FigureLocation:
    """Everything a reader needs to find figure ``fid``."""
    from tms.figures import load_all
    from tms.findings import SECTIONS, claims_for

    registry = load_all()
    if fid not in registry:
        raise KeyError(f"no figure or claim named {fid!r} (figures: {', '.join(sorted(registry))})")
    spec = registry[fid]
    keys = [f"figures.{fid}"]
    if config and fid in config.get("figures", {}):
        keys += [f"experiments.{e}" for e in config["figures"][fid].get("experiments", [])]
    return FigureLocation(fid, SECTIONS.get(spec.section, spec.section), spec.module, function_location(spec.build),
                          _analyses(spec.module, spec.build), test_module(spec.module), keys,
                          {c.id: claim_location(c) for c in claims_for(fid)})


def describe(id: str, config: Mapping[str, Any] | None = None) -> str:
    """The text ``tms where`` prints for a figure id or a claim id."""
    from tms.figures import load_all
    from tms.findings import CLAIMS

    load_all()
    claim_id = id if id in CLAIMS else None
    fid = CLAIMS[id].figure if claim_id else id
    loc = figure_location(fid, config)
    lines = []
    if claim_id:
        lines += [f"claim    {claim_id}", f"  code     {loc.claims[claim_id]}"]
    lines += [f"figure   {loc.id}  ({loc.section})", f"  code     {loc.code}  (module {loc.module})"]
    lines += [f"  analysis {a}" for a in loc.analyses]
    lines += [f"  test     {loc.test or '(no test module found)'}", f"  target   {loc.target}",
              f"  config   {'; '.join(loc.config_keys)}"]
    if not claim_id:
        lines += [f"  claim    {c}  {where}" for c, where in loc.claims.items()]
    return "\n".join(lines) + "\n"
