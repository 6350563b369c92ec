"""Tests of the robustness figures' analysis (tms.figures.robustness) on constructed inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tms import rng
from tms.data import FeatureSets
from tms.evaluation import model_losses
from tms.figures import robustness as R

from .conftest import ctx_with, fake_run


# --------------------------------------------------------------------------------------------
# nonlinear compression


@pytest.mark.parametrize("Z", [2, 3, 5])
def test_exact_code_matches_closed_form(Z):
    # exact floor: x quantised to Z mid-cell levels (variance 1/(12 Z^2)), y recovered exactly
    mx, my = R.nonlinear_mse(Z, 0.0, grid=600)
    assert mx == pytest.approx(1 / (12 * Z**2), rel=1e-3)
    assert my == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scheme", ["pick_one", "average"])
def test_linear_codes_are_one_24th(scheme):
    assert R.linear_mse(scheme, grid=600) == pytest.approx(1 / 24, rel=1e-4)


def test_soft_floor_is_continuous_and_exact_outside_ramps():
    u = np.linspace(0, 3, 30001, endpoint=False)
    f = R.soft_floor(u, 3, 0.1)
    assert np.abs(np.diff(f)).max() < 0.02  # no jumps: slope 1/width over steps of 1e-4
    outside = (u % 1) < 0.9
    assert np.array_equal(f[outside], np.floor(u[outside]))


def test_ramps_cost_accuracy_and_units_differ():
    step = sum(R.nonlinear_mse(3, 0.1, 400, "step")) / 2
    value = sum(R.nonlinear_mse(3, 0.1, 400, "value")) / 2
    exact = sum(R.nonlinear_mse(3, 0.0, 400)) / 2
    assert exact < step < value  # value units: ramps 3x wider


def _compression(mse_step: float, mse_value: float) -> R.CompressionAnalysis:
    t = pd.DataFrame({"units": ["step", "value"], "Z": [3, 3], "eps": [0.1, 0.1], "mse": [mse_step, mse_value],
                      "mse_x": [0, 0], "mse_y": [0, 0]})
    return R.CompressionAnalysis(t, {"pick_one": 1 / 24, "average": 1 / 24})


def test_beats_linear_verdicts():
    an = _compression(0.02, 0.05)
    assert R.beats_linear(an, "step").passed is True
    assert R.beats_linear(an, "value").passed is False
    assert R.beats_linear(an, "step", Z=5).passed is None  # not in the table


# --------------------------------------------------------------------------------------------
# adversarial vulnerability


def test_reference_model_keeps_the_top_m_features():
    W, b = R.reference_model(np.array([0.5, 1.0, 0.9, 0.1]), 2, 0.2)
    assert W.shape == (2, 4)
    assert np.allclose(np.abs(W).sum(0), [0, 1, 1, 0])
    assert np.allclose(b, [0.1, 0, 0, 0.1])


def test_features_per_dimension_of_known_geometries():
    dedicated = np.eye(3)
    antipodal = np.array([[1.0, -1.0]])
    t = 2 * np.pi * np.arange(5) / 5
    pentagon = np.stack([np.cos(t), np.sin(t)])
    assert R.features_per_dimension(dedicated) == pytest.approx(1.0)
    assert R.features_per_dimension(antipodal) == pytest.approx(2.0)
    assert R.features_per_dimension(pentagon) == pytest.approx(2.5)
    assert R.features_per_dimension(np.zeros((2, 3))) == 0.0


def test_reference_model_is_its_own_baseline_and_superposition_is_more_vulnerable():
    n, m, dens = 4, 2, 0.3
    imp = np.ones((2, n))
    W_ref, b_ref = R.reference_model(imp[0], m, dens)
    # two antipodal pairs: 2 features per dimension, small negative bias against interference
    W_sup = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])
    b_sup = np.full(n, -0.05)
    x = R.draw_inputs(0, "test", np.array([dens, dens]), n, 4096)
    t = R.vulnerability_table(np.stack([W_ref, W_sup]), np.stack([b_ref, b_sup]), imp, np.array([dens, dens]), x)
    assert t["relative_vulnerability"].iloc[0] == pytest.approx(1.0)
    assert t["features_per_dimension"].tolist() == pytest.approx([1.0, 2.0])
    assert t["relative_vulnerability"].iloc[1] > 1.2


def test_relative_is_nan_without_a_vulnerable_reference():
    assert np.isnan(R.relative(np.array([1.0]), np.array([0.0]))[0])


def _adv_table(rel, fpd):
    return pd.DataFrame({"density": np.geomspace(1, 0.01, len(rel)), "relative_vulnerability": rel,
                         "features_per_dimension": np.asarray(fpd) * 0.9, "inv_dstar": fpd})


def test_rises_3x_verdicts():
    assert R.rises_by(_adv_table([1.0, 1.5, 3.5, 3.2], [1, 1.5, 3.4, 3.3])).passed is True
    assert R.rises_by(_adv_table([1.0, 1.5, 2.5, 2.9], [1, 1.5, 2.4, 2.8])).passed is False


def test_tracks_verdicts():
    fpd = np.array([1.0, 1.2, 2.0, 2.5, 3.0])
    assert R.tracks(_adv_table(fpd * 1.1 + 0.05, fpd)).passed is True
    assert R.tracks(_adv_table(fpd[::-1], fpd)).passed is False
    assert R.tracks(_adv_table([1.0, 2.0], [1.0, 2.0])).passed is None


# --------------------------------------------------------------------------------------------
# L1


def _l1_table(sup, nrep, loss):
    return pd.DataFrame({"l1": [0, 1e-4, 1e-3, 1e-2, 1e-1][: len(sup)], "mean_superposition": sup,
                         "n_represented": nrep, "reconstruction_loss": loss})


def test_l1_verdicts_good():
    t = _l1_table([0.6, 0.4, 0.0, 0.0, 0.0], [12, 9, 4, 2, 0], [1e-3, 1.2e-3, 2e-3, 3e-3, 4e-3])
    assert R.superposition_vanishes(t).passed is True
    m = R.loss_rises(t)
    assert m.passed is True and m.measured["ratio"] == pytest.approx(2.0)


def test_l1_verdicts_bad():
    # superposition only vanishes when everything is dropped: not a removal of superposition
    t = _l1_table([0.6, 0.5, 0.4, 0.3, 0.0], [12, 11, 10, 8, 0], [1e-3, 1.2e-3, 2e-3, 3e-3, 4e-3])
    assert R.superposition_vanishes(t).passed is False
    assert R.loss_rises(t).passed is None
    # no superposition to begin with
    t = _l1_table([0.02, 0.0, 0.0], [5, 5, 3], [1e-3, 1e-3, 2e-3])
    assert R.superposition_vanishes(t).passed is False
    # superposition gone but the loss did not rise
    t = _l1_table([0.6, 0.0, 0.0], [12, 5, 4], [1e-3, 9e-4, 8e-4])
    assert R.loss_rises(t).passed is False


def test_l1_reconstruction_loss_ignores_the_penalty():
    # identity weights reconstruct every input exactly: the loss the figure reports has no L1 term
    W = np.eye(3)[None].astype(np.float32)
    b = np.zeros((1, 3), np.float32)
    loss = model_losses("relu_output", {"W": W, "b": b}, np.ones((1, 3)), rng.derive_keys(0, "t", 1, 1),
                        np.full((1, 3), 0.5), FeatureSets.independent(3), 64)
    assert loss[0] == pytest.approx(0.0, abs=1e-10)


# --------------------------------------------------------------------------------------------
# the figures, built from constructed results


def _seeded(run):
    run.meta["seed"] = 0  # the evaluation streams are keyed by the experiment's seed
    return run


def _texts(fig) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a constrained layout that collapses
        fig.canvas.draw()
    return [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]


def test_l1_figure_builds_from_constructed_results():
    lam = [0.0, 3e-4, 1e-3, 1e-2]
    W = np.stack([np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]) * s for s in (1.0, 1.0, 0.9, 0.8)])
    run = _seeded(fake_run("l1_removes_superposition", "relu_output", {"density": [0.03], "l1": lam}, W))
    ctx = ctx_with("l1_removes_superposition", {"l1_removes_superposition": run}, eval_examples=256)
    out = R.build_l1(ctx)
    t = out.table
    assert t.loc[t["panel"] == "abc", "l1"].tolist() == lam
    assert len(t[t["panel"] == "norms"]) == 4 * 4  # four penalties shown, four features each
    # lambda = 0 is drawn left of the axis break, labelled 0, on each of the three line panels
    assert _texts(out.figure).count("0") >= 3
    out.figure.clf()


def test_penalty_axis_puts_zero_a_gap_left_of_the_smallest_penalty():
    x = R.penalty_axis(np.array([0.0, 1e-4, 1e-2]))
    pos = x(np.array([0.0, 1e-4, 1e-2]))
    assert pos[1:] == pytest.approx([-4.0, -2.0])
    assert pos[0] <= pos[1] - 0.6
    assert R.penalty_axis(np.array([0.0]))(np.array([0.0]))[0] < 0.0  # no positive penalty: still drawable


def test_adversarial_figure_builds_from_constructed_results():
    W = np.stack([np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]),
                  np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])])
    run = _seeded(fake_run("adv", "relu_output", {"density": [1.0, 0.1]}, W))
    ctx = ctx_with("adversarial_vulnerability", {"adv": run}, attack_examples=512)
    out = R.build_adversarial(ctx)
    assert out.table["density"].tolist() == [1.0, 0.1]
    assert out.table["inv_dstar"].tolist() == pytest.approx([1.0, 2.0])
    c = out.figure.axes[2]  # panel (c): axes fitted to the data, not squared by the line y = x
    assert c.get_xlim()[1] == pytest.approx(2.0 * 1.12)
    out.figure.clf()


# --------------------------------------------------------------------------------------------
# end to end: every Figures III target through Snakemake on the quick config


FIGURES_III = {
    "privileged_basis": ["dense_monosemantic", "polysemantic_with_sparsity", "mono_poly_coexist"],
    "abs_value_small": ["relu_pairs"],
    "abs_value_superposition": ["dense_monosemantic", "more_than_half_m", "more_than_m", "mono_poly_coexist",
                                "important_on_monosemantic"],
    "asymmetric_motif": ["found"],
    "adversarial_vulnerability": ["rises_3x", "tracks_features_per_dimension"],
    "l1_removes_superposition": ["superposition_to_zero", "loss_rises"],
    "nonlinear_compression": ["beats_linear", "beats_linear_value_units"],
}
