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


# ---- conditioning on a non-empty input --------------------------------------------------------

MIXED = FeatureSets((("correlated", 2), ("independent", 2), ("anticorrelated", 3)))
MIXED_DENS = [0.05, 0.9, 0.02, 0.1, 0.3, 0.3, 0.3]  # a set's density is its first feature's


def _draw_nonempty(sets, density, batch=400_000, signed=False, key=5):
    keys = torch.tensor([rng.derive_key(key)])
    dens = torch.as_tensor(density, dtype=torch.float32).reshape(1, -1)
    return data.draw_nonempty(keys, 0, batch, dens, sets, signed)[0].numpy()


def test_nonempty_sampler_statistics():
    p = np.array([0.05, 0.05, 0.02, 0.1, 0.1, 0.1, 0.1])  # marginal densities (anticorrelated: 0.3 / 3)
    p0 = (1 - 0.05) * (1 - 0.02) * (1 - 0.1) * (1 - 0.3)
    x = _draw_nonempty(MIXED, MIXED_DENS)
    active = x != 0
    B = len(x)
    assert active.any(1).all()  # no empty example
    # every event "feature i active" implies a non-empty input: its probability is p_i / (1 - P0)
    want = p / (1 - p0)
    np.testing.assert_allclose(active.mean(0), want, atol=float(4.5 * np.sqrt(want.max() / B)))
    # joint activity of the two independent features, and of an independent feature with the set
    for i, j in [(2, 3), (0, 3)]:
        both = (active[:, i] & active[:, j]).mean()
        w = p[i] * p[j] / (1 - p0)
        assert abs(both - w) < 4.5 * np.sqrt(w / B), (i, j, both, w)
    # the sets' structure is kept: correlated all-or-none, anticorrelated at most one
    assert (active[:, 0] == active[:, 1]).all()
    assert active[:, 4:].sum(1).max() == 1
    # values of active features uniform on [0, 1), including the unit forced on as the first active
    first = np.argmax(active, axis=1)
    forced = x[np.arange(B), first]
    for vals in (x[active], forced):
        assert vals.min() >= 0 and vals.max() < 1
        assert abs(vals.mean() - 0.5) < 0.005 and abs(vals.var() - 1 / 12) < 0.003


def test_nonempty_sampler_signed_values():
    x = _draw_nonempty(FeatureSets.independent(3), 0.01, signed=True)
    vals = x[x != 0]
    assert (x != 0).any(1).all()
    assert vals.min() >= -1 and vals.max() < 1 and abs(vals.mean()) < 0.01 and abs(vals.var() - 1 / 3) < 0.01


def test_nonempty_sampler_draws_are_plain_where_not_conditioned():
    """An instance left unconditioned (condition False) gets exactly the draws of ``sample``."""
    keys = torch.tensor([rng.derive_key(9, i) for i in range(3)])
    n, B = 7, 1000
    dens = torch.tensor(MIXED_DENS).expand(3, n).contiguous()
    p0, lo, hi = data.nonempty_tables(dens, MIXED)
    lo[1], hi[1] = 2.0, 2.0  # how the trainer leaves an instance unconditioned
    s = rng.stream_keys(keys, 4)
    u = rng.uniform_from_stream(s, (B, n))
    v = rng.uniform_from_stream(s, (B,), offset=B * n)
    x = data.sample_nonempty(u, v.unsqueeze(-1), dens[:, None, :], lo.float()[:, None, :], hi.float()[:, None, :], MIXED)
    plain = data.sample(u, dens[:, None, :], MIXED)
    assert torch.equal(x[1], plain[1]) and not torch.equal(x[0], plain[0])
    # the extra uniforms are the stream's elements after the batch
    longer = rng.uniform_from_stream(s, (B * n + B,))
    assert torch.equal(longer[:, : B * n].view(3, B, n), u) and torch.equal(longer[:, B * n:], v)


def test_nonempty_tables():
    dens = torch.tensor([[0.5, 0.0, 0.2], [0.0, 0.0, 0.0], [1e-4, 1e-4, 1e-4]], dtype=torch.float64)
    p0, lo, hi = data.nonempty_tables(dens, FeatureSets.independent(3))
    np.testing.assert_allclose(p0.numpy(), [0.4, 1.0, (1 - 1e-4) ** 3], rtol=1e-15)
    np.testing.assert_allclose(hi[0].numpy(), [0.5 / 0.6, 0.5 / 0.6, 1.0], rtol=1e-15)
    np.testing.assert_allclose(lo[0].numpy(), [0.0, 0.5 / 0.6, 0.5 / 0.6], rtol=1e-15)
    assert torch.isnan(hi[1]).all()  # nothing can be active: conditioning is undefined
    # sparse units lose no digits: P(F = 0) = p / (1 - P0)
    assert float(hi[2, 0]) == pytest.approx(1e-4 / (1 - (1 - 1e-4) ** 3), rel=1e-12)
    # a set's members share their unit's thresholds
    _, lo_s, hi_s = data.nonempty_tables(torch.tensor([MIXED_DENS]), MIXED)
    assert hi_s[0, 0] == hi_s[0, 1] and lo_s[0, 1] == 0 and (hi_s[0, 4:] == 1).all() and (lo_s[0, 4:] == hi_s[0, 3]).all()
    # a density-0 feature after the last possible one is never chosen as the first active
    p0, lo, hi = data.nonempty_tables(torch.tensor([[0.3, 0.0]]), FeatureSets.independent(2))
    assert hi.tolist() == [[1.0, 1.0]] and lo.tolist() == [[0.0, 1.0]]
    x = _draw_nonempty(FeatureSets.independent(2), [0.3, 0.0], batch=20_000)
    assert (x[:, 0] != 0).all() and (x[:, 1] == 0).all()
    with pytest.raises(ValueError, match="density 0 in some instance"):
        _draw_nonempty(FeatureSets.independent(2), [0.0, 0.0], batch=10)


def test_unit_index():
    assert MIXED.unit_index() == [0, 0, 1, 2, 3, 3, 3] and MIXED.unit_leads() == [0, 2, 3, 4]
    assert FeatureSets((("anticorrelated", 1), ("correlated", 1))).unit_index() == [0, 1]
