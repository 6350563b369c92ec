import pytest
import torch

from tms import models, rng
from tms.models import ModelKind


def _keys(n=3):
    return torch.tensor([rng.derive_key("m", i) for i in range(n)])


@pytest.mark.parametrize("kind", list(ModelKind))
def test_shapes_and_init(kind):
    p = models.init_params(kind, 6, 3, _keys())
    for name, shape in models.param_shapes(kind, 6, 3).items():
        assert p[name].shape == (3, *shape)
    assert torch.count_nonzero(p["b"]) == 0
    w = p["W1" if kind is ModelKind.COMPUTATION else "W"]
    assert abs(w.std().item() - models.default_init_std(6, 3)) < 0.15


def test_init_is_per_instance():
    """An instance's initial weights do not depend on the other instances."""
    k = _keys(4)
    a = models.init_params(ModelKind.RELU_OUTPUT, 5, 2, k)["W"]
    b = models.init_params(ModelKind.RELU_OUTPUT, 5, 2, k[2:3])["W"]
    assert torch.equal(a[2], b[0])


def test_forward_matches_the_paper_formulas():
    torch.manual_seed(0)
    W = torch.randn(2, 3, 5)
    b = torch.randn(2, 5)
    x = torch.rand(2, 4, 5)
    ref = torch.stack([x[k] @ W[k].T @ W[k] + b[k] for k in range(2)])
    y, h = models.forward(ModelKind.LINEAR, {"W": W, "b": b}, x)
    torch.testing.assert_close(y, ref)
    y, _ = models.forward(ModelKind.RELU_OUTPUT, {"W": W, "b": b}, x)
    torch.testing.assert_close(y, torch.relu(ref))
    y, h = models.forward(ModelKind.RELU_HIDDEN, {"W": W, "b": b}, x)
    hh = torch.relu(torch.einsum("kbi,kji->kbj", x, W))
    torch.testing.assert_close(h, hh)
    torch.testing.assert_close(y, torch.relu(torch.einsum("kbj,kji->kbi", hh, W) + b[:, None]))
    W1, W2 = torch.randn(2, 6, 5), torch.randn(2, 5, 6)
    y, h = models.forward(ModelKind.COMPUTATION, {"W1": W1, "W2": W2, "b": b}, x)
    ref = torch.stack([torch.relu(torch.relu(x[k] @ W1[k].T) @ W2[k].T + b[k]) for k in range(2)])
    torch.testing.assert_close(y, ref)


def test_loss_is_importance_weighted_mean_plus_l1():
    W = torch.zeros(1, 2, 3)
    b = torch.zeros(1, 3)
    x = torch.tensor([[[1.0, 0.0, 0.5]]])
    imp = torch.tensor([[1.0, 2.0, 4.0]])
    loss = models.loss_per_instance(ModelKind.RELU_OUTPUT, {"W": W, "b": b}, x, imp)
    assert loss.item() == pytest.approx((1.0 + 4 * 0.25) / 3)
    # computation target is |x|
    x = torch.tensor([[[-1.0, 0.0, 0.5]]])
    p = {"W1": torch.zeros(1, 2, 3), "W2": torch.zeros(1, 3, 2), "b": b}
    assert models.loss_per_instance(ModelKind.COMPUTATION, p, x, imp).item() == pytest.approx(2.0 / 3)
    # L1 on hidden activations: h = W x with W = I-like
    W = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    x = torch.tensor([[[1.0, -2.0, 0.0]]])
    base = models.loss_per_instance(ModelKind.LINEAR, {"W": W, "b": b}, x, imp)
    with_l1 = models.loss_per_instance(ModelKind.LINEAR, {"W": W, "b": b}, x, imp, l1=0.1)
    assert (with_l1 - base).item() == pytest.approx(0.1 * 3.0)
