import json

import numpy as np
import pytest

from tms import config as cfg_mod
from tms import experiments
from tms.experiments import RunData


def _exp(**over):
    exp = {
        "model": "relu_output",
        "n_features": 5,
        "n_hidden": 2,
        "importance": {"constant": 1.0},
        "sweep": {"density": [0.5, 0.05], "perturbed_density_ratio": [0.5, 1.0, 2.0]},
        "perturbed_feature": 4,
        "restarts": 3,
        "train": {"steps": 40, "batch_size": 32, "eval_batch": 128, "compile": False},
    }
    exp.update(over)
    return cfg_mod.experiment({"experiments": {"x": exp}}, "x")


def test_cells_are_the_product_of_the_axes():
    cells = experiments.cells_table(_exp())
    assert list(cells.columns) == ["cell", "density", "perturbed_density_ratio"]
    assert len(cells) == 6 and cells.loc[5, "density"] == 0.05 and cells.loc[5, "perturbed_density_ratio"] == 2.0


def test_build_expands_cells_and_restarts():
    prob, spec, cells = experiments.build("x", _exp(), seed=1)
    assert prob.n_instances == 18
    d = prob.density.numpy()
    np.testing.assert_allclose(d[0], [0.5, 0.5, 0.5, 0.5, 0.25])  # cell 0, ratio 0.5
    np.testing.assert_allclose(d[17], [0.05, 0.05, 0.05, 0.05, 0.1])  # cell 5, ratio 2
    assert "cell 5: density=0.05, perturbed_density_ratio=2; restart 2" in prob.label(17)
    assert spec.steps == 40 and spec.batch_size == 32


def test_relative_importance_and_l1_axes():
    exp = _exp(sweep={"density": [0.1], "relative_importance": [0.5, 2.0], "l1": [0.0, 0.1]})
    del exp["perturbed_feature"]
    prob, _, cells = experiments.build("x", exp, seed=0)
    imp = prob.importance.numpy().reshape(4, 3, 5)[:, 0]
    np.testing.assert_allclose(imp[:, -1], [0.5, 0.5, 2.0, 2.0])
    np.testing.assert_allclose(imp[:, :-1], 1.0)
    np.testing.assert_allclose(prob.l1.numpy().reshape(4, 3)[:, 0], [0.0, 0.1, 0.0, 0.1])


def test_select_picks_lowest_loss_per_cell():
    loss = np.array([3.0, 1.0, 2.0, 0.5, 0.7, 0.1])
    assert list(experiments.select(loss, 2, 3)) == [1, 5]


def test_run_writes_results_and_loads_back(tmp_path):
    out = tmp_path / "x"
    run = experiments.run("x", _exp(), seed=0, out_dir=out, config_name="unit")
    for f in ("run.npz", "meta.json", "metrics.csv", "cells.csv"):
        assert (out / f).exists()
    assert not list(out.glob(".*.tmp"))  # no stray temporaries
    loaded = RunData.load(out)
    assert loaded.name == "x" and loaded.restarts == 3
    assert loaded.arrays["W"].shape == (18, 2, 5)
    np.testing.assert_array_equal(loaded.best, run.best)
    assert loaded.instances["selected"].sum() == 6
    sel = loaded.instances[loaded.instances.selected]
    # n = 5: restarts are selected on the exact expected loss
    per_cell_min = loaded.instances.groupby("cell")["exact_loss"].min().to_numpy()
    np.testing.assert_allclose(sel["exact_loss"].to_numpy(), per_cell_min)
    assert loaded.cell(density=0.05, perturbed_density_ratio=1.9) == 5
    assert list(loaded.instances_of(2)) == [6, 7, 8]
    assert loaded.params()["W"].shape == (6, 2, 5)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["provenance"]["config_hash"] and meta["training"]["instances"] == 18
    with pytest.raises(KeyError, match="kept no snapshots"):
        loaded.snapshots("W")


def test_load_missing_results_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="train the experiment first"):
        RunData.load(tmp_path / "nothing")


def test_restarts_of_a_cell_are_evaluated_on_one_stream():
    """Selection compares models on the same examples (common random numbers per cell)."""
    prob, _, _ = experiments.build("x", _exp(), seed=0)
    ek = prob.eval_keys.reshape(6, 3)
    assert (ek == ek[:, :1]).all() and len(set(ek[:, 0].tolist())) == 6
    assert len(set(prob.keys.tolist())) == 18  # training streams stay distinct


# ---------------------------------------------------------------------------------------------
# damaged results (issue #17): the loader names the file and the command that rebuilds it


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "results" / "x"
    experiments.run("x", _exp(sweep={"density": [0.5, 0.05]}, perturbed_feature=None, restarts=2), seed=0,
                    out_dir=out)
    return out


def _damaged(trained, tmp_path, name, damage):
    import shutil

    out = tmp_path / "results" / "x"
    shutil.copytree(trained, out)
    path = out / name
    path.write_bytes(damage(path.read_bytes()))
    return out


@pytest.mark.parametrize("name,damage,reason", [
    ("run.npz", lambda b: b[: len(b) // 2], r"BadZipFile|EOFError"),
    ("run.npz", lambda b: b"", r"EOFError|BadZipFile|ValueError"),
    ("run.npz", lambda b: b[:200] + bytes(x ^ 0xFF for x in b[200:400]) + b[400:], r"BadZipFile|error"),
    ("meta.json", lambda b: b[: len(b) // 2], r"not valid JSON"),
    ("meta.json", lambda b: b"[1, 2]\n", r"no experiment spec"),
    ("metrics.csv", lambda b: b[: len(b) - 7], r"does not end with a complete line"),
    ("metrics.csv", lambda b: b"".join(b.splitlines(keepends=True)[:2]), r"1 rows, but run\.npz holds 4 models"),
    ("cells.csv", lambda b: b"\x00\x01garbage\n", r"column cell missing|not a valid CSV"),
])
def test_damaged_results_name_the_file_and_the_rebuild(trained, tmp_path, name, damage, reason):
    from tms.io import CorruptFileError

    out = _damaged(trained, tmp_path, name, damage)
    with pytest.raises(CorruptFileError, match=reason) as err:
        RunData.load(out)
    msg = str(err.value)
    assert msg.startswith(f"{out / name} is corrupt or truncated")
    assert f"snakemake --cores all --forcerun {out / name}" in msg


def test_a_missing_results_file_is_named(trained, tmp_path):
    import shutil

    out = tmp_path / "x"
    shutil.copytree(trained, out)
    (out / "cells.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{out / 'cells.csv'} does not exist: train the experiment"):
        RunData.load(out)


def test_plot_on_a_damaged_run_fails_with_one_line(trained, tmp_path, caplog):
    """`tms plot` (what the figure job runs) exits 2 with the loader's message, and writes no figure."""
    from tms import cli

    out = _damaged(trained, tmp_path, "run.npz", lambda b: b[:100])
    spec = json.dumps({"experiments": ["x"], "options": {"paper": "x", "tutorial": "x", "uniform": "x"}})
    rc = cli.main(["plot", "intro_pentagon", "--figure-spec", spec, "--results", str(out.parent),
                   "--out", str(tmp_path / "figures")])
    assert rc == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{out / 'run.npz'} is corrupt or truncated (BadZipFile: File is not a zip file). It is a "
                      f"pipeline output: rebuild it, and everything made from it, with `snakemake --cores all "
                      f"--forcerun {out / 'run.npz'}` (plus the --configfile/--profile of your build)"]
    assert not list((tmp_path / "figures").glob("intro_pentagon.*"))


def _small(select_by: str, n: int = 3, m: int = 2, restarts: int = 4) -> dict:
    return cfg_mod.experiment({"seed": 0, "experiments": {"e": {
        "model": "relu_output", "n_features": n, "n_hidden": m, "sweep": {"density": [0.05, 0.5]},
        "restarts": restarts, "train": {"steps": 30, "batch_size": 64, "eval_batch": 256, "select_by": select_by}}},
        "figures": {}}, "e")


def test_small_models_are_selected_on_their_exact_loss(tmp_path):
    from tms import exact

    run = experiments.run("e", _small("auto"), 0, tmp_path / "a")
    a = run.arrays
    assert run.meta["training"]["selected_by"] == "exact"
    expected = exact.exact_loss("relu_output", {"W": a["W"], "b": a["b"]}, a["density"], a["importance"])
    np.testing.assert_allclose(a["exact_loss"], expected, rtol=1e-6)
    assert list(a["best"]) == [int(np.argmin(a["exact_loss"][c * 4:(c + 1) * 4])) + 4 * c for c in range(2)]
    assert "exact_loss" in run.cells and "exact_loss" in run.instances
    sampled = experiments.run("e", _small("sampled"), 0, tmp_path / "b")
    assert sampled.meta["training"]["selected_by"] == "sampled" and "exact_loss" not in sampled.arrays
    np.testing.assert_array_equal(sampled.arrays["W"], a["W"])  # selection changes nothing about training


def test_exact_selection_beyond_the_exact_domain_names_the_key(tmp_path):
    with pytest.raises(cfg_mod.ConfigError, match=r"experiments\.e\.train\.select_by"):
        experiments.run("e", _small("exact", n=8, m=2, restarts=1), 0, tmp_path)
    run = experiments.run("e", _small("auto", n=8, m=2, restarts=1), 0, tmp_path / "auto")
    assert run.meta["training"]["selected_by"] == "sampled"
