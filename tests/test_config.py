import copy
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
