"""Geometry predicates on constructed weights (tms.geometry)."""

from __future__ import annotations

import numpy as np
import pytest

from tms import geometry as G

from figures.conftest import DENSE, PAIRS, PENTAGON, rot


def test_antipodal_pairs_on_hand_built_weights():
    assert G.antipodal_pairs(PAIRS) == [(0, 1), (2, 3)]
    assert G.antipodal_pairs(rot(40) @ PAIRS) == [(0, 1), (2, 3)]  # rotation-invariant
    W = PAIRS.copy()
    W[:, 1] = rot(30) @ W[:, 1]  # 150 degrees apart: cos -0.87, not antipodal
    assert G.antipodal_pairs(W) == [(2, 3)]
    W = PAIRS * np.array([1, 0.3, 1, 1, 1])  # partner too short to be represented
    assert G.antipodal_pairs(W) == [(2, 3)]
    assert G.antipodal_pairs(PENTAGON) == []


def test_represented_and_superposed():
    assert G.represented(DENSE).tolist() == [0, 1]
    assert G.superposed(DENSE).size == 0
    assert G.superposed(PAIRS).tolist() == [0, 1, 2, 3]


def test_angular_gaps_and_pentagon_deviation():
    assert G.angular_gaps(rot(13) @ PENTAGON) == pytest.approx([72] * 5)
    assert G.gap_deviation(PENTAGON, 5) == pytest.approx(0, abs=1e-9)
    assert G.gap_deviation(PAIRS, 5) == np.inf
    W = PENTAGON.copy()
    W[:, 0] = rot(10) @ W[:, 0]
    assert G.gap_deviation(W, 5) == pytest.approx(10)


def test_plateau_finds_the_longest_run():
    x = np.geomspace(1, 100, 9)  # 0.25 decades apart
    y = np.array([1, 1, 0.99, 0.8, 0.5, 0.51, 0.49, 0.5, 0.3])
    assert G.plateau(x, y, 1.0, 0.03)["decades"] == pytest.approx(0.5)
    half = G.plateau(x, y, 0.5, 0.03)
    assert half["points"] == 4 and half["decades"] == pytest.approx(0.75)
    assert G.plateau(x, y, 0.75, 0.03)["points"] == 0


def test_line_test_needs_a_peak_above_its_flanks():
    rng = np.random.default_rng(0)
    background = rng.uniform(0.1, 1.0, 400)
    assert not G.line_test(background, 0.5)["line"]
    peaked = np.concatenate([background, np.full(30, 0.5)])
    assert G.line_test(peaked, 0.5)["line"]
    smeared = np.concatenate([background, np.linspace(0.48, 0.52, 30)])  # 2x the window width
    assert not G.line_test(smeared, 0.5)["line"]


def test_count_dips():
    assert G.count_dips([5, 5, 6, 9]) == 0
    assert G.count_dips([5, 7, 6, 9]) == 1
    assert G.count_dips([5]) == 0


def test_crossing_finder():
    x = np.array([0.2, 0.3, 0.4, 0.6, 1.0])
    y1 = np.array([3.0, 2.0, 1.0, 0.5, 0.1])
    y2 = np.ones(5)
    assert G.crossing(x, y1, y2) == [pytest.approx(0.4)]
    y1 = np.array([3.0, 2.0, 0.5, 0.5, 0.1])  # crosses between 0.3 and 0.4, log-interpolated
    (c,) = G.crossing(x, y1, y2)
    assert 0.3 < c < 0.4 and c == pytest.approx(np.exp(np.log(0.3) + (2 / 3) * np.log(4 / 3)))
    assert G.crossing(x, y1 + 5, y2) == []
    assert G.crossing(x, np.array([2, np.nan, 0.5, 0.5, 0.1]), y2) == [pytest.approx(0.2 * 2 ** (2 / 3))]


def test_neighbour_span_and_spearman():
    assert G.neighbour_span(PENTAGON) == pytest.approx(144)
    W = PENTAGON.copy()
    W[:, 1], W[:, 4] = rot(10) @ W[:, 1], rot(-10) @ W[:, 4]  # the neighbours of 0 move away
    assert G.neighbour_span(W) == pytest.approx(164)
    assert G.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1)
    assert G.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1)
