"""Finding a figure or a claim from its id (tms.where, ``tms where``), and the add-a-figure checklist:
the registry, both configs and the test modules list the same figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tms import where
from tms.figures import load_all
from tms.findings import CLAIMS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _line(location: str) -> str:
    path, line = location.rsplit(":", 1)
    return (REPO / path).read_text().splitlines()[int(line) - 1]


def test_every_claim_id_is_written_literally_where_tms_where_points():
    load_all()
    assert len(CLAIMS) >= 60
    for cid, spec in CLAIMS.items():
        loc = where.literal_location(spec.func.__module__, cid)
        assert loc is not None, f"claim {cid}: its id is not written literally in {spec.func.__module__}"
        assert f'"{cid}"' in _line(where.claim_location(spec))


def test_every_figure_points_at_its_build_function_and_test_module():
    for fid, spec in load_all().items():
        loc = where.figure_location(fid)
        assert _line(loc.code).lstrip().startswith(("def ", "@figure(")), (fid, loc.code)
        assert loc.test and (REPO / loc.test).exists(), f"figure {fid}: no test module mirrors {spec.module}"
        assert loc.analyses, f"figure {fid}: its build function calls no @analysis"
        assert set(loc.claims) == {c for c in CLAIMS if CLAIMS[c].figure == fid}


@pytest.mark.parametrize("config", ["default", "quick"])
def test_registry_and_configs_list_the_same_figures(config):
    cfg = yaml.safe_load((REPO / "workflow/config" / f"{config}.yaml").read_text())
    registered = set(load_all())
    assert set(cfg["figures"]) == registered, (
        f"{config}.yaml lacks {sorted(registered - set(cfg['figures']))}, "
        f"has unregistered {sorted(set(cfg['figures']) - registered)}")


def test_tms_where_prints_code_test_target_and_config_keys():
    out = subprocess.run([str(BIN / "tms"), "where", "dstar_stickiness.sticky_at_one"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "claim    dstar_stickiness.sticky_at_one" in out
    assert "src/tms/figures/storage.py:" in out and "tests/figures/test_storage.py" in out
    assert "snakemake --cores all figures/dstar_stickiness.pdf" in out
    assert "experiments.uniform_n400_m30" in out
    bad = subprocess.run([str(BIN / "tms"), "where", "no_such_figure"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "no figure or claim named 'no_such_figure'" in bad.stderr
