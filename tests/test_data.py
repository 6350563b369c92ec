import numpy as np
import pytest
import torch

from tms import data, rng
from tms.data import FeatureSets


def _draw(sets, density, batch=200_000, signed=False, key=3):
    keys = torch.tensor([rng.derive_key(key)])
    dens = torch.as_tensor(density, dtype=torch.float32).reshape(1, -1)
    return data.draw(keys, 0, batch, dens, sets, signed)[0].numpy()


@pytest.mark.parametrize("p", [1.0, 0.3, 0.01])
def test_independent_statistics(p):
    x = _draw(FeatureSets.independent(4), p)
    active = x != 0
    assert abs(active.mean() - p) < 4 * np.sqrt(p * (1 - p) / active.size) + 1e-9
    vals = x[active]
    assert vals.min() >= 0 and vals.max() < 1
    assert abs(vals.mean() - 0.5) < 0.01 and abs(vals.var() - 1 / 12) < 0.005
    # features independent: co-activation rate ~ p^2
    if p < 1:
        both = (active[:, 0] & active[:, 1]).mean()
        assert abs(both - p * p) < 5 * np.sqrt(p * p / len(x)) + 1e-4


def test_per_feature_density():
    x = _draw(FeatureSets.independent(3), [0.5, 0.1, 0.02])
    np.testing.assert_allclose((x != 0).mean(0), [0.5, 0.1, 0.02], atol=0.004)


def test_signed_values():
    x = _draw(FeatureSets.independent(2), 0.5, signed=True)
    vals = x[x != 0]
    assert vals.min() >= -1 and vals.max() < 1
    assert abs(vals.mean()) < 0.01 and abs(vals.var() - 1 / 3) < 0.01


def test_correlated_sets_share_activity_but_not_values():
    sets = FeatureSets((("correlated", 3), ("independent", 1)))
    x = _draw(sets, 0.2)
    active = x[:, :3] != 0
    assert (active.all(1) | ~active.any(1)).all()  # all or none of the set
    assert abs(active[:, 0].mean() - 0.2) < 0.005
    vals = x[active[:, 0], :3]
    assert abs(np.corrcoef(vals[:, 0], vals[:, 1])[0, 1]) < 0.02  # magnitudes independent
    assert abs(vals.mean() - 0.5) < 0.01 and abs(vals.var() - 1 / 12) < 0.005
    assert abs((x[:, 3] != 0).mean() - 0.2) < 0.005


def test_anticorrelated_sets_have_exactly_one_active():
    sets = FeatureSets((("anticorrelated", 3),))
    x = _draw(sets, 0.3)
    n_active = (x != 0).sum(1)
    assert n_active.max() == 1
    assert abs((n_active == 1).mean() - 0.3) < 0.005
    np.testing.assert_allclose((x != 0).mean(0), 0.1, atol=0.004)  # marginal (1 - S) / k
    vals = x[x != 0]
    assert abs(vals.mean() - 0.5) < 0.01 and abs(vals.var() - 1 / 12) < 0.005


def test_parse_and_validation():
    sets = FeatureSets.parse([{"kind": "correlated", "size": 2, "count": 3}], 6)
    assert sets.sets == (("correlated", 2),) * 3 and sets.set_index() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="add up to 4, but n_features is 5"):
        FeatureSets.parse([{"kind": "correlated", "size": 2, "count": 2}], 5)
    with pytest.raises(ValueError, match="unknown kind"):
        FeatureSets((("banana", 2),))
    with pytest.raises(ValueError, match="n_features must be >= 1"):
        FeatureSets.independent(0)


def test_expected_value():
    assert data.expected_value(0.3) == pytest.approx(0.15)
    assert data.expected_value(0.3, signed=True) == 0.0
