"""Robust or fragile: verdicts lined up across seed and budget variants (tms.variants)."""

from __future__ import annotations

import pytest

from tms import variants
from tms.findings import Finding


def _f(cid: str, verdict: str, measured: float = 1.0) -> Finding:
    return Finding(cid, "fig", "geometry", "c", "e", "t", measured, verdict, "", ["a"], margin=measured - 0.9)


def test_variants_from_config():
    v = variants.variants({"seed": 0, "robustness": {"seeds": [1, 2], "steps_factor": 2}})
    assert [x.name for x in v] == ["seed1", "seed2", "steps2x"]
    assert variants.variant_seed({"seed": 0}, v[0]) == 1 and variants.variant_seed({"seed": 0}, v[2]) == 0
    exp = {"train": {"steps": 1000, "batch_size": 64}}
    assert variants.variant_experiment(exp, v[2])["train"]["steps"] == 2000
    assert exp["train"]["steps"] == 1000  # the build's spec is not touched
    assert variants.variant_experiment(exp, v[0])["train"]["steps"] == 1000


@pytest.mark.parametrize("bad, key", [({"seeds": [0]}, "robustness.seeds"),
                                      ({"steps_factor": 0.5}, "robustness.steps_factor")])
def test_bad_variants_name_the_key(bad, key):
    with pytest.raises(ValueError, match=key):
        variants.variants({"seed": 0, "robustness": bad})


def test_a_claim_is_fragile_when_any_variant_flips_it():
    base = [_f("fig.a", "reproduced", 0.95), _f("fig.b", "not reproduced", 0.85), _f("fig.c", "reproduced")]
    by = {"seed1": [_f("fig.a", "reproduced", 0.97), _f("fig.b", "reproduced", 0.91), _f("fig.c", "reproduced")],
          "steps2x": [_f("fig.a", "reproduced", 0.93), _f("fig.b", "not reproduced", 0.8),
                      _f("fig.c", "inconclusive")]}
    out = variants.aggregate(base, by)
    c = out["claims"]
    assert c["fig.a"]["label"] == "robust" and c["fig.a"]["measured"]["seed1"] == 0.97
    assert c["fig.b"]["label"] == "fragile" and c["fig.b"]["flipped_in"] == ["seed1"]
    assert c["fig.c"]["label"] == "fragile" and c["fig.c"]["flipped_in"] == ["steps2x"]  # inconclusive differs
    assert out["summary"] == {"claims": 3, "robust": 1, "fragile": 2, "fragile_claims": ["fig.b", "fig.c"]}


def test_a_claim_missing_from_a_variant_is_fragile():
    out = variants.aggregate([_f("fig.a", "reproduced")], {"seed1": []})
    assert out["claims"]["fig.a"]["verdicts"]["seed1"] == "missing" and out["claims"]["fig.a"]["label"] == "fragile"
