"""``tms bench``'s plumbing (what it compares and how it reports); its numbers come from real runs
(docs/measurements/), never from a test."""

import json

import numpy as np
import pytest
import torch

from tms import bench, training
from tms.bench import Shape

TINY = Shape("tiny", "tiny cells", 5, 2, 40, 16, 4, 30, 8, kind="relu_hidden", cells=4,
             densities=(1.0, 0.3, 0.1, 0.05), decay=0.8, lr=0.01, schedule="cosine")


def test_select_shapes():
    assert bench.select_shapes(None) == bench.SHAPES
    assert [s.key for s in bench.select_shapes("privileged, n400")] == ["privileged", "n400"]
    with pytest.raises(ValueError, match=r"unknown \['n401'\]; known: n20, n400, phase, privileged"):
        bench.select_shapes("n401")


def test_privileged_shape_is_the_default_configs_job():
    from tms import config

    s = {x.key: x for x in bench.SHAPES}["privileged"]
    exp = config.experiment(config.load(config.REPO_ROOT / "workflow" / "config" / "default.yaml"), "privileged_basis")
    assert (s.kind, s.n, s.m, s.batch) == (exp["model"], exp["n_features"], exp["n_hidden"], exp["train"]["batch_size"])
    assert s.instances == exp["restarts"] * len(exp["sweep"]["density"]) and s.cells == len(exp["sweep"]["density"])
    assert list(s.densities) == exp["sweep"]["density"] and s.decay == exp["importance"]["decay"]
    assert (s.lr, s.schedule) == (exp["train"]["lr"], exp["train"]["schedule"])
    prob = bench._problem(s, 70, 0, torch.device("cpu"))  # cells of restarts, keyed as tms.experiments keys them
    cells = training.cells_of(prob)
    assert [len(c) for c in cells] == [10] * 7 and (prob.batch_keys == prob.eval_keys).all()
    np.testing.assert_allclose(prob.density[::10, 0], s.densities)


def test_variants():
    v = {s.key: bench.variants(s) for s in bench.SHAPES}
    assert v["privileged"] == {"tms": ("off", "fp32"), "shared": ("on", "fp32"), "bf16": ("on", "bf16")}
    assert v["n400"] == {"tms": ("off", "fp32"), "bf16": ("off", "bf16")}
    assert v["phase"] == {"tms": ("off", "fp32")}  # the instance-last layout has no matrix products


def test_baseline_trains_the_shapes_model_and_schedule():
    p = bench.baseline_train(TINY, 8, 200, 0, torch.device("cpu"))
    assert p["W"].shape == (8, 2, 5) and p["b"].shape == (8, 5)
    prob = bench._problem(TINY, 8, 0, torch.device("cpu"))
    from tms import models

    init = models.init_params(prob.kind, 5, 2, prob.keys)
    trained = training.evaluate(prob, p, 2048, batch=256, compile_=False)
    start = training.evaluate(prob, init, 2048, batch=256, compile_=False)
    assert (trained < start).all()


def test_main_reports_every_variant_with_welch_tests(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "SHAPES", (TINY,))
    spec = bench._spec

    def eager(*a, **k):
        return training.TrainSpec(**{**spec(*a, **k).__dict__, "compile": False})

    monkeypatch.setattr(bench, "_spec", eager)
    out = tmp_path / "bench.json"
    assert bench.main(seeds=2, out=out, shapes="tiny", rounds=2) == 0
    text = capsys.readouterr().out
    assert "shared" in text and "bf16" in text and "load average" in text
    r = json.loads(out.read_text())["results"][0]
    thr, loss = r["model_steps_per_s"], r["final_loss"]
    assert set(thr) >= {"baseline", "tms", "shared", "bf16", "ratio", "shared_over_tms", "bf16_over_fp32", "runs"}
    assert all(len(v) == 2 for v in thr["runs"].values())
    for k in ("tms", "shared", "bf16", "baseline"):
        assert len(loss[k]) == 2 and all(np.isfinite(loss[k]))
    for k in ("welch_p", "welch_p_shared", "welch_p_bf16"):
        assert loss[k] is None or 0 <= loss[k] <= 1


def test_precision_check_quick(tmp_path):
    r = bench.precision_check(2, torch.device("cpu"), quick=True)
    assert len(r["levels"]) == 3 and r["seeds"] == 2
    for row in r["levels"]:
        for what in ("loss", "dstar"):
            assert row[what]["welch_p"] is None or 0 <= row[what]["welch_p"] <= 1
        # bf16 products change the numbers, not what training reaches
        assert abs(row["loss"]["bf16_mean"] / row["loss"]["fp32_mean"] - 1) < 0.05
