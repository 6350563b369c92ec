"""The claims registry: verdicts, margins and the one near-miss rule, on constructed claims."""

from __future__ import annotations

import math

import pytest

from tms import findings
from tms.findings import NEAR_MISS, Bar, Measurement


@pytest.fixture
def registry(monkeypatch):
    """An empty claims registry for the test (the real one is left untouched)."""
    monkeypatch.setattr(findings, "CLAIMS", {})
    return findings.CLAIMS


def _register(value: float, threshold: float = 0.9, op: str = ">=", categorical_ok: bool = True):
    @findings.claim("fig.c", figure="fig", section="geometry", statement="s", expected="e")
    def _(ctx) -> Measurement:
        bar = Bar("agreement", value, op, threshold, "share")
        return Measurement(measured=value, passed=bar.passed and categorical_ok, bars=(bar,))


def test_margin_is_signed_in_the_claims_units():
    assert Bar("x", 0.95, ">=", 0.9).margin == pytest.approx(0.05)
    assert Bar("x", 0.85, ">=", 0.9).margin == pytest.approx(-0.05)
    assert Bar("x", 0.2, "<=", 0.3).margin == pytest.approx(0.1)
    assert Bar("x", 0.4, "<", 0.3).margin == pytest.approx(-0.1)
    assert not Bar("x", math.nan, ">=", 0.9).passed


@pytest.mark.parametrize("value, verdict, near", [
    (0.9 * (1 + NEAR_MISS / 2), "reproduced", True),      # just above the bar
    (0.9 * (1 - NEAR_MISS / 2), "not reproduced", True),  # just below
    (0.9 * (1 + 2 * NEAR_MISS), "reproduced", False),      # clearly above
    (0.9 * (1 - 2 * NEAR_MISS), "not reproduced", False),  # clearly below
])
def test_just_above_and_just_below_the_bar(registry, value, verdict, near):
    _register(value)
    (f,) = findings.evaluate("fig", None, [])
    assert f.verdict == verdict and f.near_miss is near
    assert f.margin == pytest.approx(value - 0.9, rel=1e-5)
    assert f.bars[0]["threshold"] == 0.9 and f.bars[0]["op"] == ">=" and f.bars[0]["passed"] == (verdict == "reproduced")


def test_a_failed_non_numeric_condition_is_never_a_near_miss(registry):
    _register(0.9 * (1 + NEAR_MISS / 2), categorical_ok=False)
    (f,) = findings.evaluate("fig", None, [])
    assert f.verdict == "not reproduced" and f.near_miss is False


def test_a_reproduced_claim_whose_bar_fails_is_reported_as_broken(registry):
    @findings.claim("fig.bad", figure="fig", section="geometry", statement="s", expected="e")
    def _(ctx) -> Measurement:
        return Measurement(measured=1, passed=True, bars=(Bar("x", 0.1, ">=", 0.9),))

    (f,) = findings.evaluate("fig", None, [])
    assert f.verdict == "inconclusive" and "bar(s) x fail" in f.detail


def test_near_miss_over_several_bars():
    tight, roomy = Bar("a", 0.91, ">=", 0.9), Bar("b", 2.0, ">=", 1.0)
    assert findings.near_miss(True, (tight, roomy)) is True  # one near bar can flip a pass
    far_fail, near_fail = Bar("a", 0.5, ">=", 0.9), Bar("b", 0.99, ">=", 1.0)
    assert findings.near_miss(False, (near_fail,)) is True
    assert findings.near_miss(False, (far_fail, near_fail)) is False  # both would have to flip
    assert findings.near_miss(True, ()) is None
    assert findings.binding(False, (far_fail, near_fail)) is far_fail


def test_a_zero_threshold_needs_a_scale():
    with pytest.raises(ValueError, match="needs a scale"):
        Bar("dips", 1, "<=", 0)
    assert Bar("dips", 0.02, "<=", 0, scale=1).near


def test_a_count_flips_only_by_whole_steps():
    assert not Bar("monosemantic", 5, ">=", 5, step=1).near  # at its bar, but 5 % of 5 is no whole neuron
    assert Bar("computed", 41, ">", 40, step=1).near  # 5 % of 40 = 2 features would flip it
    assert not Bar("computed", 21, ">", 40, step=1).near
    assert Bar("computed", 39, ">", 40, step=1).near  # needs 41: two steps, within 2
    assert not Bar("polysemantic", 0, "<", 1, step=1).near
    assert not Bar("collapsed pairs", 1, "<", 1, step=1).near  # failing by a whole step: 1 of 1 away


def test_a_count_at_its_bar_does_not_hide_a_near_bar_of_a_reproduced_claim():
    at_bar, close = Bar("sign changes", 1, ">=", 1, step=1), Bar("crossing", 0.49, "<=", 0.5)
    assert findings.near_miss(True, (at_bar, close)) is True
    assert findings.binding(True, (at_bar, close)) is close


def test_a_failed_categorical_condition_blocks_a_near_miss_even_with_a_near_failing_bar():
    near_fail = Bar("b", 0.99, ">=", 1.0)
    assert findings.near_miss(False, (near_fail,)) is True
    assert findings.near_miss(False, (near_fail,), categorical_ok=False) is False


def test_a_share_moves_by_whole_items_even_off_the_grid():
    # 13/15 against 0.9 misses by 0.033, but one item is 0.067 (7.4% of the bar): not near
    assert not Bar("agreement", 13 / 15, ">=", 0.9, step=1 / 15).near
    # 23/25 passes by 0.02; one item fewer (22/25 = 0.88) fails: 0.04, 4.4% of the bar: near
    assert Bar("agreement", 23 / 25, ">=", 0.9, step=1 / 25).near
    assert Bar("agreement", 23 / 25, ">=", 0.9, step=1 / 25).distance_to_flip == pytest.approx(0.04)


def test_strict_readings_explain_themselves():
    """Every ``*_strict`` claim (a first reading an audit revised) names the reading that counts; its base
    claim is registered, and an authored explanation is kept as written."""
    from tms.figures import load_all

    load_all()  # registers every claim

    strict = [c for c in findings.CLAIMS.values() if c.id.endswith(findings.STRICT_SUFFIX)]
    assert strict
    for c in strict:
        base = c.id[: -len(findings.STRICT_SUFFIX)]
        assert base in findings.CLAIMS, c.id
        assert f"see {base} for the reading that counts" in c.explanation, c.id
    assert "pentagon survives" in findings.CLAIMS["pentagon_perturbation.phase_change_ratio"].explanation
