import math

import pytest
import torch

from tms import optim


@pytest.mark.parametrize(
    "name,torch_cls,kwargs",
    [
        ("adam", torch.optim.Adam, {}),
        ("adam", torch.optim.Adam, {"weight_decay": 0.05}),
        ("adamw", torch.optim.AdamW, {}),
        ("adamw", torch.optim.AdamW, {"weight_decay": 0.1}),
        ("rmsprop", torch.optim.RMSprop, {}),
        ("rmsprop", torch.optim.RMSprop, {"weight_decay": 0.01}),
    ],
)
def test_matches_torch_optim(name, torch_cls, kwargs):
    torch.manual_seed(0)
    p_ref = [torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)]
    p = [t.detach().clone() for t in p_ref]
    opt = torch_cls(p_ref, lr=1e-2, **kwargs)
    spec = optim.OptimizerSpec(name=name, lr=1e-2, weight_decay=kwargs.get("weight_decay"))
    state = optim.init_state(spec, p)
    for step in range(1, 30):
        grads = [torch.randn(3, 4) for _ in p]
        for t, g in zip(p_ref, grads):
            t.grad = g.clone()
        opt.step()
        optim.apply(spec, p, grads, state, torch.tensor(step), torch.tensor(1e-2))
    for a, b in zip(p, p_ref):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


def test_default_weight_decay_follows_torch():
    assert optim.OptimizerSpec("adamw").wd == 0.01
    assert optim.OptimizerSpec("adam").wd == 0.0
    assert optim.OptimizerSpec("rmsprop").wd == 0.0


def test_schedules():
    t = torch.tensor(0)
    assert optim.lr_scale("constant", t, 100).item() == 1.0
    assert optim.lr_scale("linear", torch.tensor(50), 100).item() == pytest.approx(0.5)
    assert optim.lr_scale("cosine", torch.tensor(0), 100).item() == pytest.approx(1.0)
    assert optim.lr_scale("cosine", torch.tensor(99), 100).item() == pytest.approx(0.0, abs=1e-6)
    assert optim.lr_scale("cosine", torch.tensor(33), 100).item() == pytest.approx(math.cos(math.pi / 2 / 99 * 33))


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        optim.OptimizerSpec("sgd")
    with pytest.raises(ValueError, match="schedule"):
        optim.OptimizerSpec(schedule="step")
    with pytest.raises(ValueError, match="lr"):
        optim.OptimizerSpec(lr=-1)
