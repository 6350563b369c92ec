import re
from pathlib import Path

import pytest
import yaml

from tms import config as cfg_mod
from tms.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _base():
    return {
        "name": "t",
        "seed": 0,
        "experiments": {
            "e": {
                "model": "relu_output",
                "n_features": 5,
                "n_hidden": 2,
                "importance": {"decay": 0.9},
                "sweep": {"density": [1.0, 0.1]},
                "train": {"steps": 10},
            }
        },
        "figures": {"f": {"experiments": ["e"]}},
    }


@pytest.mark.parametrize("name", ["default", "quick"])
def test_shipped_configs_are_valid(name):
    cfg = cfg_mod.load(REPO / "workflow" / "config" / f"{name}.yaml")
    assert cfg["name"] == name


def test_default_and_quick_define_the_same_experiments_and_figures():
    d = yaml.safe_load((REPO / "workflow/config/default.yaml").read_text())
    q = yaml.safe_load((REPO / "workflow/config/quick.yaml").read_text())
    assert set(d["experiments"]) == set(q["experiments"])
    assert set(d["figures"]) == set(q["figures"])


def test_schema_shipped_with_package_is_the_workflow_schema():
    assert cfg_mod.schema_path().read_text() == (REPO / "workflow/schemas/config.schema.yaml").read_text()


def _mutate(path, value=None, delete=False):
    c = _base()
    node = c
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return c


@pytest.mark.parametrize(
    "path,value,message",
    [
        (["experiments", "e", "colour"], "red", r"experiments\.e: Additional properties are not allowed \('colour'"),
        (["experiments", "e", "n_hidden"], "two", r"experiments\.e\.n_hidden: 'two' is not of type 'integer'"),
        (["experiments", "e", "n_hidden"], 6, r"experiments\.e\.n_hidden: m=6 exceeds n_features=5"),
        (["experiments", "e", "sweep", "density"], [1.2], r"experiments\.e\.sweep\.density\[0\]: 1\.2 is greater than the maximum of 1"),
        (["experiments", "e", "sweep", "density"], [-0.1], r"experiments\.e\.sweep\.density\[0\]"),
        (["experiments", "e", "model"], "mlp", r"experiments\.e\.model: 'mlp' is not one of"),
        (["experiments", "e", "train", "lr"], 0, r"experiments\.e\.train\.lr"),
        (["experiments", "e", "train", "optimizer"], "sgd", r"experiments\.e\.train\.optimizer"),
        (["experiments", "e", "importance"], {"values": [1, 2]}, r"experiments\.e\.importance\.values: 2 values for n_features=5"),
        (["experiments", "e", "feature_sets"], [{"kind": "correlated", "size": 2}], r"experiments\.e\.feature_sets: sizes add up to 2"),
        (["figures", "f", "experiments"], ["nope"], r"figures\.f\.experiments\[0\]: no experiment named 'nope'"),
        (["seed"], -1, r"seed: -1 is less than the minimum of 0"),
    ],
)
def test_bad_config_names_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        cfg_mod.validate(_mutate(path, value))


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"experiments\.e: 'sweep' is a required property"):
        cfg_mod.validate(_mutate(["experiments", "e", "sweep"], delete=True))


def test_perturbed_density_needs_feature_and_stays_below_one():
    c = _base()
    c["experiments"]["e"]["sweep"]["perturbed_density_ratio"] = [0.5, 2.0]
    with pytest.raises(ConfigError, match="perturbed_feature: required"):
        cfg_mod.validate(c)
    c["experiments"]["e"]["perturbed_feature"] = 4
    with pytest.raises(ConfigError, match="density x ratio reaches 2 > 1"):
        cfg_mod.validate(c)
    c["experiments"]["e"]["sweep"]["density"] = [0.05]
    cfg_mod.validate(c)
    c["experiments"]["e"]["perturbed_feature"] = 5
    with pytest.raises(ConfigError, match="perturbed_feature: 5 is not a feature index"):
        cfg_mod.validate(c)


def test_axis_values_and_defaults():
    assert list(cfg_mod.axis_values([1, 2])) == [1, 2]
    g = cfg_mod.axis_values({"geomspace": [1, 0.01, 3]})
    assert g == pytest.approx([1, 0.1, 0.01])
    exp = cfg_mod.experiment(_base(), "e")
    assert exp["train"]["steps"] == 10 and exp["train"]["batch_size"] == 1024 and exp["restarts"] == 1
    with pytest.raises(ConfigError, match="no such experiment"):
        cfg_mod.experiment(_base(), "zzz")


def test_load_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cfg_mod.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cfg_mod.load(bad)


# ---------------------------------------------------------------------------------------------
# issue #17: finite numbers, safe names, duplicate keys, the size bound


@pytest.mark.parametrize("path,value,where", [
    (["experiments", "e", "sweep", "density"], [0.5, float("nan")], r"experiments\.e\.sweep\.density\[1\]: nan"),
    (["experiments", "e", "train", "lr"], float("inf"), r"experiments\.e\.train\.lr: inf"),
    (["experiments", "e", "importance"], {"decay": float("-inf")}, r"experiments\.e\.importance\.decay: -inf"),
    (["limits"], {"max_memory_gb": float("inf")}, r"limits\.max_memory_gb: inf"),
])
def test_non_finite_numbers_are_refused(path, value, where):
    with pytest.raises(ConfigError, match=where + " is not a finite number"):
        cfg_mod.validate(_mutate(path, value))


@pytest.mark.parametrize("name", ["a", "phase_2x1_relu", "n20.m5", "x-1", "_private", "0"])
def test_safe_names_are_accepted(name):
    c = _base()
    c["experiments"] = {name: c["experiments"]["e"]}
    c["figures"] = {name: {"experiments": [name]}}
    c["name"] = name
    cfg_mod.validate(c)


@pytest.mark.parametrize("name", ["../x", "..", "a..b", ".hidden", "-rf", "a/b", "a b", "a;b", "$(id)", "", "a\n",
                                  "é"])
@pytest.mark.parametrize("section", ["experiments", "figures", "name"])
def test_unsafe_names_are_refused(name, section):
    c = _base()
    if section == "experiments":
        c["experiments"] = {name: c["experiments"]["e"]}
        c["figures"]["f"]["experiments"] = [name]
        where = rf"experiments\[{re.escape(repr(name))}\]: experiment name"
    elif section == "figures":
        c["figures"] = {name: c["figures"]["f"]}
        where = rf"figures\[{re.escape(repr(name))}\]: figure name"
    else:
        c["name"] = name
        where = "name: config name"
    with pytest.raises(ConfigError, match=where):
        cfg_mod.validate(c)


def test_schema_name_pattern_is_the_validators():
    schema = yaml.safe_load(cfg_mod.schema_path().read_text())
    assert schema["$defs"]["name"]["pattern"] == cfg_mod.NAME_PATTERN


def test_duplicate_keys_are_refused_with_their_line(tmp_path):
    text = (REPO / "workflow/config/quick.yaml").read_text()
    dup = tmp_path / "dup.yaml"
    dup.write_text(text + "seed: 1\n")
    n = len(text.splitlines()) + 1
    with pytest.raises(ConfigError, match=rf"dup\.yaml, line {n}, column 1: duplicate key seed \(first set at line "):
        cfg_mod.load(dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text("a:\n  - {k: 1, j: 2}\n  - {k: 1, k: 2}\n")
    with pytest.raises(ConfigError, match=r"line 3, column 12: duplicate key a\[1\]\.k \(first set at line 3, column 6\)"):
        cfg_mod.read_yaml(nested)


def test_merge_keys_and_aliases_are_not_duplicates(tmp_path):
    ok = tmp_path / "anchors.yaml"
    ok.write_text("base: &b {steps: 10, lr: 0.1}\nx:\n  <<: *b\n  lr: 0.2\ny: *b\n")
    assert cfg_mod.read_yaml(ok) == {"base": {"steps": 10, "lr": 0.1}, "x": {"steps": 10, "lr": 0.2},
                                     "y": {"steps": 10, "lr": 0.1}}
    keys = tmp_path / "keys.yaml"
    keys.write_text("1: a\n'1': b\n")  # an integer and a string key: two different keys
    assert cfg_mod.read_yaml(keys) == {1: "a", "1": "b"}


def test_alias_bombs_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 values
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: its aliases expand to more than 1,000,000 values"):
        cfg_mod.load(bomb)


def test_yaml_error_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\nexperiments:\n  e: [1, 2\nfigures: {}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml, line 4, column \d+: not valid YAML"):
        cfg_mod.load(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="is empty"):
        cfg_mod.load(empty)


def test_size_bound_is_checked_without_building_the_sweep():
    import tracemalloc

    c = _mutate(["experiments", "e", "sweep", "density"], {"geomspace": [1.0, 1e-3, 10**12]})
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"experiments\.e\.sweep\.density: 1,000,000,000,000 cells"):
            cfg_mod.validate(c)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20  # the 8 TB the axis would take is never asked for


def test_size_bound_names_the_key_and_the_estimate():
    c = _mutate(["experiments", "e", "restarts"], 10**9)
    with pytest.raises(ConfigError, match=r"experiments\.e\.restarts: 2 cells x 1,000,000,000 restarts = "
                                          r"2,000,000,000 models exceed the bound of 10,000,000.*limits\.max_instances"):
        cfg_mod.validate(c)
    c = _mutate(["experiments", "e", "sweep"], {"density": [0.1] * 1000, "l1": [0.0] * 2000})
    with pytest.raises(ConfigError, match=r"experiments\.e\.sweep: 2,000,000 cells \(density: 1,000 values x "
                                          r"l1: 2,000 values\).*limits\.max_cells"):
        cfg_mod.validate(c)
    c = _mutate(["experiments", "e", "train", "batch_size"], 10**8)
    with pytest.raises(ConfigError, match=r"experiments\.e: training it needs an estimated 26\.1 GB of memory "
                                          r".*train\.batch_size=100000000.*above the bound of 16 GB.*max_memory_gb"):
        cfg_mod.validate(c)


def test_limits_block_raises_the_bound():
    c = _mutate(["experiments", "e", "restarts"], 10**7)
    with pytest.raises(ConfigError, match="max_instances"):
        cfg_mod.validate(c)
    c["limits"] = {"max_instances": 10**8}
    with pytest.raises(ConfigError, match=r"estimated [\d.]+ GB.*max_memory_gb"):  # the next bound
        cfg_mod.validate(c)
    c["limits"]["max_memory_gb"] = 1000
    cfg_mod.validate(c)
    assert cfg_mod.limits(c) == {"max_cells": 1_000_000, "max_instances": 10**8, "max_memory_gb": 1000}
    with pytest.raises(ConfigError, match=r"limits: Additional properties"):
        cfg_mod.validate({**c, "limits": {"max_gpus": 3}})
    # a single experiment's spec (tms train --spec) was checked by the workflow against its config's limits
    assert cfg_mod.validate(_mutate(["experiments", "e", "restarts"], 10**9), check_size=False) is None


def test_shipped_configs_fit_the_default_bound():
    d = cfg_mod.load(REPO / "workflow/config/default.yaml")
    override = cfg_mod.read_yaml(REPO / "workflow/config/phase_1m.yaml")
    d["experiments"]["phase_2x1_relu"].update(override["experiments"]["phase_2x1_relu"])
    cfg_mod.validate(d)  # the replication's 1,000,000 models pass without raising a limit
    exp = cfg_mod.experiment(d, "phase_2x1_relu")
    assert cfg_mod.cell_count(exp) * exp["restarts"] == 1_000_000
    assert cfg_mod.memory_estimate_mb(exp) < 4000  # measured: 2.3 GB peak (README)


def test_axis_stats_match_the_expanded_axis():
    for spec in ([0.3, 0.1, 0.7], {"geomspace": [1.0, 0.01, 7]}, {"linspace": [0.2, 0.9, 5]},
                 {"geomspace": [0.5, 0.5, 1]}, {"linspace": [3.0, 1.0, 1]}):
        vals = cfg_mod.axis_values(spec)
        k, lo, hi = cfg_mod.axis_stats(spec)
        assert (k, lo, hi) == (len(vals), pytest.approx(vals.min()), pytest.approx(vals.max()))


def test_memory_estimate_uses_the_trainers_chunk_formula():
    from tms import experiments
    from tms.training import auto_chunk_size

    for n, m, batch in ((5, 2, 256), (400, 30, 64), (2, 1, 4096)):
        exp = cfg_mod.experiment(_mutate(["experiments", "e", "n_features"], n), "e")
        exp.update(n_hidden=m, importance={"constant": 1.0})
        exp["train"].update(batch_size=batch, max_chunk_mb=16)
        problem, spec, _ = experiments.build("e", exp, seed=0, device="cpu")
        assert auto_chunk_size(problem, spec) == max(1, 16 * 2**20 // cfg_mod.model_step_bytes(n, m, batch))


def test_resolved_config_is_written_only_when_it_changes(tmp_path):
    import os

    path = tmp_path / "results" / "config.resolved.yaml"
    c = _base()
    del c["name"]
    assert cfg_mod.write_resolved(c, path, "default", ["a.yaml", "b.yaml"]) is True
    text = path.read_text()
    assert text.startswith("# The merged config of this build") and "a.yaml + b.yaml" in text.splitlines()[0]
    assert yaml.safe_load(text) == {**c, "name": "default"}
    os.utime(path, (1, 1))
    assert cfg_mod.write_resolved(c, path, "default", ["a.yaml", "b.yaml"]) is False
    assert path.stat().st_mtime == 1  # unchanged content, unchanged mtime: nothing downstream reruns
    reordered = dict(reversed(list(c.items())))  # the same config, keys in another order
    assert cfg_mod.write_resolved(reordered, path, "default", ["a.yaml", "b.yaml"]) is False
    assert path.stat().st_mtime == 1
    c["seed"] = 5
    assert cfg_mod.write_resolved(c, path, "default", ["a.yaml", "b.yaml"]) is True
    assert yaml.safe_load(path.read_text())["seed"] == 5
