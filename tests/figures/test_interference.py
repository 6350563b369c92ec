"""The worked interference example (tms.figures.interference): its numbers, claims and figure."""

from __future__ import annotations

import numpy as np
import pytest

from tms.figures import interference as I
from tms.figures.base import FigureContext
from tms.findings import evaluate

from .conftest import ctx_with, verdicts

FIGURE = "interference_worked_example"


def _ctx(**options) -> FigureContext:
    return ctx_with(FIGURE, {}, **options)  # analytic: no experiments


def test_directions_are_the_slide_decks_vectors():
    W = I.directions(I.ANGLES_DEG)
    s = np.sqrt(3) / 2
    assert np.allclose(W, [[s, -s, 0], [0.5, 0.5, -1]], atol=1e-15)


def test_worked_numbers():
    W = I.directions(I.ANGLES_DEG)
    assert I.projection(W, 0, 1) == pytest.approx(-0.5, abs=1e-12)
    h, out = I.readout(W, np.array(I.ACTIVE))
    assert h == pytest.approx([0.0, 0.9], abs=1e-12)
    assert out == pytest.approx([0.45, 0.45, -0.9], abs=1e-12)
    _, relu = I.readout(W, np.array(I.ACTIVE), relu=True)
    assert relu == pytest.approx([0.45, 0.45, 0.0], abs=1e-12)


def test_one_sparse_relu_is_exact_but_linear_is_not():
    W = I.directions(I.ANGLES_DEG)
    assert I.one_sparse_error(W, relu=True) == pytest.approx(0.0, abs=1e-12)
    assert I.one_sparse_error(W, relu=False) == pytest.approx(0.5, abs=1e-12)  # -0.5 x at x = 1


def test_claims_reproduce_on_the_example():
    found = evaluate(FIGURE, _ctx(), [])
    assert {f.id.split(".")[-1] for f in found} == {"projection", "ambiguity", "recovery", "relu_filters_one_sparse"}
    assert all(f.verdict == "reproduced" for f in found), [(f.id, f.measured) for f in found]
    # exact to rounding: every bar holds with (about) its whole tolerance of 1e-9 to spare, none is near
    assert all(b["passed"] and b["margin"] == pytest.approx(b["threshold"], rel=1e-3)
               for f in found for b in f.bars if b["op"] == "<=")
    assert all(f.near_miss is False for f in found)
    relu = {f.id.split(".")[-1]: f for f in found}["relu_filters_one_sparse"]
    assert [(b["name"], b["op"], b["threshold"]) for b in relu.bars] == [
        ("max |ReLU(W^T W x) - x|", "<=", 1e-9), ("max |W^T W x - x|", ">", 0.1)]
    assert relu.bars[1]["margin"] == pytest.approx(0.4)  # the linear read-out errs by 0.5


def test_claims_fail_on_another_geometry():
    # features at 0, 90 and 225 degrees: projection 0, NC State reads -1.27, recovery 0.9
    found = verdicts(FIGURE, _ctx(angles_deg=[0, 90, 225]))
    assert found["projection"] == "not reproduced"
    full = {f.id.split(".")[-1]: f for f in evaluate(FIGURE, _ctx(angles_deg=[0, 90, 225]), [])}
    assert full["projection"].margin == pytest.approx(1e-9 - 0.5)  # projection 0 against -0.5
    assert full["ambiguity"].bars[0]["name"] == "|NC State read-out + 0.9|" and full["ambiguity"].margin < 0
    assert full["recovery"].margin == pytest.approx(1e-9 - 0.45)  # recovered at 0.9, not 0.45
    assert not any(f.near_miss for f in full.values())
    assert found["ambiguity"] == "not reproduced"
    assert found["recovery"] == "not reproduced"
    # only orthogonal or obtuse pairs: the ReLU read-out of one active feature is still exact
    assert found["relu_filters_one_sparse"] == "reproduced"
    # an acute geometry has positive interference, which a ReLU does not remove
    assert verdicts(FIGURE, _ctx(angles_deg=[0, 30, 60]))["relu_filters_one_sparse"] == "not reproduced"


@pytest.mark.parametrize("angle, verdict", [(95.9, "reproduced"), (95.5, "not reproduced")])
def test_relu_filtering_just_inside_and_just_outside_its_bar(angle, verdict):
    # two features at an obtuse angle: the ReLU read-out stays exact; the linear one errs by |cos angle|,
    # 0.1028 (2.8 % of the 0.1 bar above it) at 95.9 degrees, 0.0958 (4.2 % below) at 95.5
    found = {f.id.split(".")[-1]: f for f in evaluate(FIGURE, _ctx(angles_deg=[0, angle], active=[0.9, 0.9]), [])}
    f = found["relu_filters_one_sparse"]
    assert f.verdict == verdict and f.near_miss is True
    assert f.bars[0]["passed"] and f.margin == pytest.approx(abs(np.cos(np.deg2rad(angle))) - 0.1, rel=1e-5)


def test_analysis_holds_the_numbers_and_checks_the_options():
    an = I.interference_analysis(_ctx())
    assert an.projection == pytest.approx(-0.5, abs=1e-12)
    assert an.two_active["hidden"] == pytest.approx([0.0, 0.9], abs=1e-12)
    assert an.one_sparse_error["relu"] == pytest.approx(0.0, abs=1e-12)
    assert an.one_sparse_error["linear"] == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="options.active needs 3 values"):
        I.interference_analysis(_ctx(active=[0.9, 0.9]))


def test_build_draws_the_numbers_it_reports():
    ctx = _ctx()
    out = I.build(ctx)
    assert out.table is I.interference_analysis(ctx).table  # drawn from the analysis the claims read
    t = out.table.set_index(["quantity", "feature"])["value"]
    assert t[("projection", "Duke on Clemson")] == pytest.approx(-0.5)
    assert t[("two_active.linear_readout", "NC State")] == pytest.approx(-0.9)
    assert t[("two_active.linear_readout", "Clemson")] == pytest.approx(0.45)
    out.figure.clf()
