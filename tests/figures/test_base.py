"""The figure registry: every registered build runs under the shared style."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from tms.figures import base


def test_registered_builds_run_under_the_shared_style(monkeypatch):
    monkeypatch.setattr(base, "FIGURES", {})
    seen = {}

    @base.figure("style_probe", section="introduction", title="t", caption="c")
    def build(ctx):
        seen["font.size"] = plt.rcParams["font.size"]  # what late text (after the axes exist) gets
        return base.FigureOutput(plt.figure(), pd.DataFrame())

    outside = plt.rcParams["font.size"]
    build(base.FigureContext("style_probe", []))
    assert seen["font.size"] == base.STYLE["font.size"] != outside
    assert plt.rcParams["font.size"] == outside  # the style does not leak out of the build
    assert base.FIGURES["style_probe"].build is build
