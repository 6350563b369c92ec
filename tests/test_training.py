import logging

import numpy as np
import pytest
import torch

from tms import data, exact, models, optim, rng, training
from tms.data import FeatureSets
from tms.models import ModelKind
from tms.training import Problem, TrainSpec


def _problem(kind=ModelKind.RELU_OUTPUT, N=4, n=6, m=3, density=0.3, decay=0.8, l1=0.0, name="test", **kw):
    keys = torch.tensor([rng.derive_key("train-test", i) for i in range(N)])
    imp = torch.tensor(decay ** np.arange(n), dtype=torch.float32)
    return Problem(kind, n, m, keys, torch.tensor(density), imp, l1=l1, name=name, **kw)


def _spec(**kw):
    base = dict(steps=60, batch_size=32, eval_batch=256, loss_points=5, compile=False)
    base.update(kw)
    return TrainSpec(**base)


# ---- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ModelKind))
@pytest.mark.parametrize("l1", [None, 0.05])
def test_hand_gradients_match_autograd_in_both_layouts(kind, l1):
    N, B, n, m = 5, 64, 6, 3
    keys = torch.tensor([rng.derive_key("g", i) for i in range(N)])
    p = models.init_params(kind, n, m, keys)
    p["b"] = 0.1 * rng.normal(keys, 5, (n,))
    x = data.draw(keys, 0, B, torch.full((N, n), 0.5), FeatureSets.independent(n), kind.signed_inputs)
    imp = torch.rand(N, n, generator=torch.Generator().manual_seed(0))
    l1v = None if l1 is None else torch.linspace(0.0, l1, N)
    ref = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    loss_ref = models.loss_per_instance(kind, ref, x, imp)
    if l1v is not None:
        _, h = models.forward(kind, ref, x)
        loss_ref = loss_ref + l1v * h.abs().sum(-1).mean(-1)
    loss_ref.sum().backward()
    names = kind.param_names
    loss, grads = training.loss_and_grads(kind, [p[k] for k in names], x, imp[:, None, :], l1v)
    torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-5, atol=1e-7)
    for g, k in zip(grads, names):
        torch.testing.assert_close(g, ref[k].grad, rtol=1e-4, atol=1e-7)
    last = [p[k].permute(*range(1, p[k].dim()), 0).contiguous() for k in names]
    loss_t, grads_t = training.loss_and_grads_tiny(kind, last, x.permute(1, 2, 0), imp.t(), l1v)
    torch.testing.assert_close(loss_t, loss_ref.detach(), rtol=1e-5, atol=1e-7)
    for g, k in zip(grads_t, names):
        torch.testing.assert_close(g.permute(g.dim() - 1, *range(g.dim() - 1)), ref[k].grad, rtol=1e-4, atol=1e-7)


# ---- equivalences ---------------------------------------------------------------------------


def test_instance_alone_matches_instance_in_batch_and_chunks():
    prob = _problem(N=6)
    full = training.train(prob, _spec())
    chunked = training.train(prob, _spec(chunk_size=4))  # chunks of 3 + 3 (balanced), padded equal
    alone = training.train(
        Problem(prob.kind, prob.n, prob.m, prob.keys[4:5], prob.density[4:5], prob.importance[4:5], name="x"),
        _spec(),
    )
    np.testing.assert_allclose(full.params["W"], chunked.params["W"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full.params["W"][4], alone.params["W"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full.final_loss[4], alone.final_loss[0], rtol=1e-5)


def test_tiny_layout_matches_instance_first_layout():
    N = 300  # enough instances for the instance-last layout
    prob = _problem(N=N, n=2, m=1, decay=1.0)
    assert training.use_tiny_layout(prob.kind, 2, 1, N)
    big = training.train(prob, _spec())
    assert big.layout == "instance-last"
    few = training.train(
        Problem(prob.kind, 2, 1, prob.keys[:3], prob.density[:3], prob.importance[:3], name="x"), _spec()
    )
    assert few.layout == "instance-first"
    np.testing.assert_allclose(big.params["W"][:3], few.params["W"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(big.params["b"][:3], few.params["b"], rtol=1e-5, atol=1e-6)


def test_reruns_are_bit_identical():
    a = training.train(_problem(), _spec())
    b = training.train(_problem(), _spec())
    assert np.array_equal(a.params["W"], b.params["W"]) and np.array_equal(a.final_loss, b.final_loss)


@pytest.mark.parametrize("kind", [ModelKind.RELU_OUTPUT, ModelKind.COMPUTATION])
def test_compiled_step_matches_eager(kind):
    prob = _problem(kind=kind, N=3, n=5, m=4 if kind is ModelKind.RELU_OUTPUT else 6, l1=0.01)
    eager = training.train(prob, _spec(steps=30))
    compiled = training.train(prob, _spec(steps=30, compile=True))
    assert compiled.compiled and not eager.compiled
    for k in prob.kind.param_names:
        np.testing.assert_allclose(eager.params[k], compiled.params[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind, N, n, m", [  # (300, 3, 2): the instance-last (tiny) layout; (5, 6, 3): instance-first
    (ModelKind.RELU_OUTPUT, 300, 3, 2), (ModelKind.COMPUTATION, 300, 3, 2), (ModelKind.RELU_HIDDEN, 5, 6, 3)])
def test_compiled_evaluation_matches_eager(kind, N, n, m):
    corr = [{"kind": "correlated", "size": 3, "count": 2}]
    sets = FeatureSets.independent(n) if n < 6 else FeatureSets.parse(corr, n)
    prob = _problem(kind=kind, N=N, n=n, m=m, l1=torch.linspace(0, 0.05, N), sets=sets)
    assert training.use_tiny_layout(kind, n, m, N) == (N == 300)
    p = models.init_params(kind, n, m, prob.keys)
    p["b"] = 0.1 * rng.normal(prob.keys, 5, (n,))
    eager = training.evaluate(prob, p, 200, batch=64, compile_=False)  # 4 batches, the last one short
    compiled = training.evaluate(prob, p, 200, batch=64, compile_=True)
    np.testing.assert_allclose(compiled, eager, rtol=2e-5, atol=1e-8)


def test_should_compile_eval_heuristic():
    dev = torch.device("cpu")
    assert training.should_compile_eval(100_000, 16_384, 64, 2, 1, dev)  # a phase diagram
    assert not training.should_compile_eval(350, 16_384, 128, 10, 5, dev)
    assert training.should_compile_eval(1, 10, 10, 2, 1, dev, requested=True)
    assert not training.should_compile_eval(100_000, 16_384, 64, 2, 1, dev, requested=False)


# ---- outputs ----------------------------------------------------------------------------------


def test_records_snapshots_and_loss_history():
    res = training.train(_problem(), _spec(steps=100, snapshots=8, loss_points=10))
    S = len(res.snapshot_steps)
    assert res.snapshot_steps[0] == 0 and res.snapshot_steps[-1] == 100
    assert res.snapshots["W"].shape == (S, 4, 3, 6)
    np.testing.assert_array_equal(res.snapshots["W"][-1], res.params["W"])
    init = models.init_params(ModelKind.RELU_OUTPUT, 6, 3, _problem().keys)["W"].numpy()
    np.testing.assert_allclose(res.snapshots["W"][0], init)
    assert res.loss_history.shape == (len(res.loss_steps), 4)
    assert res.mean_loss.shape == (100,)
    np.testing.assert_allclose(res.mean_loss[res.loss_steps], res.loss_history.mean(1), rtol=1e-5)


def test_log_steps():
    s = training.log_steps(10_000, 50)
    assert s[0] == 0 and s[-1] == 9999 and np.all(np.diff(s) > 0)
    assert 40 <= len(s) <= 52
    e = training.log_steps(100, 10, include_end=True)
    assert e[-1] == 100


# ---- what training achieves -------------------------------------------------------------------


def test_dense_linear_model_learns_exactly_the_top_m_features():
    """Dense data, decaying importance: the linear model is PCA-like (top m features, norm 1)."""
    prob = _problem(kind=ModelKind.LINEAR, N=3, n=8, m=3, density=1.0, decay=0.7)
    spec = _spec(steps=3000, batch_size=256, optimizer=training.optim.OptimizerSpec("adam", lr=3e-3), eval_batch=4096)
    res = training.train(prob, spec)
    norms = np.linalg.norm(res.params["W"], axis=1)  # [N, n]
    assert (norms[:, :3] > 0.9).all(), norms
    assert (norms[:, 3:] < 0.1).all(), norms


# ---- bad input and faults ---------------------------------------------------------------------


def test_divergence_names_experiment_and_instance():
    prob = _problem(name="blowup")
    with pytest.raises(training.TrainingDiverged, match=r"blowup: .*instance 0"):
        training.train(prob, _spec(init_std=1e25, check_every=10))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n=3, m=5), "n_hidden .*m=5.* must not exceed n_features"),
        (dict(density=-0.1), "density"),
        (dict(density=1.5), "density"),
        (dict(m=0), "n_hidden must be >= 1"),
        (dict(n=0), "n_features must be >= 1"),
        (dict(l1=-1.0), "l1"),
    ],
)
def test_bad_problem_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _problem(**kwargs)


def test_empty_importance_is_rejected():
    keys = torch.tensor([1])
    with pytest.raises(ValueError, match="importance is empty"):
        Problem(ModelKind.RELU_OUTPUT, 3, 2, keys, torch.tensor(0.5), torch.tensor([]))


def test_bad_spec_arguments():
    with pytest.raises(ValueError, match="steps"):
        TrainSpec(steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainSpec(batch_size=0)


def test_cuda_request_without_cuda_falls_back_with_warning(caplog):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with caplog.at_level(logging.WARNING, logger="tms.training"):
        dev = training.resolve_device("cuda")
    assert dev.type == "cpu" and "CUDA is not available" in caplog.text
    assert training.resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        training.resolve_device("tpu")


def test_should_compile_heuristic():
    dev = torch.device("cpu")
    assert not training.should_compile(TrainSpec(steps=200, batch_size=64), 5, 5, 2, dev)
    assert training.should_compile(TrainSpec(steps=10_000, batch_size=1024), 20, 400, 30, dev)
    assert training.should_compile(TrainSpec(steps=10, compile=True), 1, 2, 1, dev)
    assert not training.should_compile(TrainSpec(steps=10**6, compile=False), 10**5, 2, 1, dev)


# ---- conditioning on non-empty inputs (train.condition_nonempty) ------------------------------


def _estimates(kind, params, dens, imp, sets, l1, conditioned, batches=64, B=8192):
    """Per-instance mean and standard error (over batches) of the trainer's loss and gradient
    estimates for a fixed model: plain batches, or non-empty batches plus the P0 term."""
    N, n = params["b"].shape
    keys = torch.tensor([rng.derive_key("estimator", i) for i in range(N)])
    pl = [torch.as_tensor(params[k], dtype=torch.float32) for k in kind.param_names]
    dens_t = torch.as_tensor(dens, dtype=torch.float32)
    imp3 = torch.as_tensor(imp, dtype=torch.float32)[:, None, :]
    l1t = torch.as_tensor(l1, dtype=torch.float32)
    p0, _, _ = data.nonempty_tables(dens_t, sets)
    losses, grads = [], []
    for j in range(batches):
        draw = data.draw_nonempty if conditioned else data.draw
        x = draw(keys, j, B, dens_t, sets, kind.signed_inputs)
        loss, g = training.loss_and_grads(kind, pl, x, imp3, l1t)
        if conditioned:
            loss, g = training._add_empty_input(kind, loss, g, pl[-1], imp3, p0.float(), (1 - p0).float(), False)
        losses.append(loss.double().numpy())
        grads.append(np.concatenate([t.double().reshape(N, -1).numpy() for t in g], axis=1))
    L, G = np.array(losses), np.array(grads)
    return L.mean(0), L.std(0, ddof=1) / np.sqrt(batches), G.mean(0), G.std(0, ddof=1) / np.sqrt(batches)


def _exact_gradient(kind, params, dens, imp, sets, l1, h=1e-6):
    """Central differences of tms.exact.exact_loss (float64, accurate to ~1e-12)."""
    names = kind.param_names
    flat = np.concatenate([params[k].reshape(params[k].shape[0], -1) for k in names], axis=1)

    def unflat(f):
        out, o = {}, 0
        for k in names:
            size = int(np.prod(params[k].shape[1:]))
            out[k] = f[:, o:o + size].reshape(params[k].shape)
            o += size
        return out

    g = np.zeros_like(flat)
    for j in range(flat.shape[1]):
        up, down = flat.copy(), flat.copy()
        up[:, j] += h
        down[:, j] -= h
        g[:, j] = (exact.exact_loss(kind, unflat(up), dens, imp, sets, l1)
                   - exact.exact_loss(kind, unflat(down), dens, imp, sets, l1)) / (2 * h)
    return g


@pytest.mark.parametrize("kind, n, m, sets, density", [
    (ModelKind.RELU_OUTPUT, 3, 2, None, 0.05),
    (ModelKind.RELU_OUTPUT, 4, 2, FeatureSets((("anticorrelated", 2), ("correlated", 2))), 0.1),
    (ModelKind.LINEAR, 3, 2, None, 0.1),
    (ModelKind.COMPUTATION, 2, 3, None, 0.1),
    (ModelKind.RELU_HIDDEN, 3, 2, None, 0.1),
])
def test_conditioned_estimator_has_the_plain_expectation_and_less_variance(kind, n, m, sets, density):
    """Loss and gradient of a fixed model: the conditioned estimator (non-empty batches + P0 L(0)) and
    plain sampling agree with each other and with the exact expected loss and its gradient."""
    rs = np.random.default_rng(n * 10 + m)
    sets = sets or FeatureSets.independent(n)
    N = 2
    shapes = models.param_shapes(kind, n, m)
    params = {k: (0.2 if k == "b" else 1.0) * rs.normal(size=(N, *sh)) for k, sh in shapes.items()}
    params = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}  # what the trainer sees
    dens = np.full((N, n), density)
    imp = rs.uniform(0.5, 1.5, (N, n)).astype(np.float32).astype(np.float64)
    l1 = np.array([0.0, 0.02])
    ex = exact.exact_loss(kind, params, dens.astype(np.float32).astype(np.float64), imp, sets, l1)
    eg = _exact_gradient(kind, params, dens.astype(np.float32).astype(np.float64), imp, sets, l1)
    plain = _estimates(kind, params, dens, imp, sets, l1, False)
    cond = _estimates(kind, params, dens, imp, sets, l1, True)
    for mean, se, gmean, gse in (plain, cond):
        assert np.all(np.abs(mean - ex) < 5 * se), (mean, ex, se)
        live = gse > 0  # a gradient that is exactly 0 in every batch (a dead ReLU) must be 0 exactly
        assert np.all(np.abs(gmean - eg)[live] < 5 * gse[live] + 1e-6), np.abs(gmean - eg) / np.maximum(gse, 1e-30)
        assert np.all(np.abs(eg[~live]) < 1e-6)
    # and the point of it: the conditioned estimates vary much less (P0 >= 0.66 here)
    assert np.all(cond[1] < 0.6 * plain[1])
    assert np.median(cond[3][plain[3] > 0] / plain[3][plain[3] > 0]) < 0.6


@pytest.mark.parametrize("sets", [None, FeatureSets((("correlated", 2), ("independent", 2)))])
def test_condition_instance_alone_matches_batch_and_layouts(sets):
    """With all-independent features the instance-last step draws in its own layout; with sets it
    permutes the instance-first draw: either way each instance sees the same data as alone."""
    sets = sets or FeatureSets.independent(4)
    prob = _problem(N=300, n=4, m=2, density=np.linspace(0.01, 0.5, 300).tolist(), sets=sets, l1=0.01)
    spec = _spec(condition_nonempty="on")
    big = training.train(prob, spec)  # instance-last (tiny) layout
    idx = [0, 150, 299]
    alone = training.train(Problem(prob.kind, 4, 2, prob.keys[idx], prob.density[idx], prob.importance[idx],
                                   sets=sets, l1=0.01, name="x"), spec)  # instance-first
    assert big.layout == "instance-last" and alone.layout == "instance-first"
    for k in ("W", "b"):
        np.testing.assert_allclose(big.params[k][idx], alone.params[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(big.final_loss[idx], alone.final_loss, rtol=1e-5)
    # on changes training; the default is off
    assert TrainSpec().condition_nonempty == "off"
    off = training.train(prob, _spec())
    assert not np.allclose(off.params["W"], big.params["W"])


def test_condition_auto_conditions_only_sparse_instances():
    """auto: instances with P0 <= 0.5 train exactly as with off, the sparse ones as with on."""
    dens = [1.0, 0.5, 0.05, 0.01]  # n = 2: P0 = 0, 0.25, 0.90, 0.98
    runs = {mode: training.train(_problem(N=4, n=2, m=1, density=dens), _spec(condition_nonempty=mode))
            for mode in ("off", "on", "auto")}
    for k in ("W", "b"):
        np.testing.assert_allclose(runs["auto"].params[k][:2], runs["off"].params[k][:2], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(runs["auto"].params[k][2:], runs["on"].params[k][2:], rtol=1e-6, atol=1e-7)
    assert not np.allclose(runs["on"].params["W"][:2], runs["off"].params["W"][:2])
    # the evaluation loss is the plain, unconditional estimate whatever training used
    p = {k: torch.from_numpy(v) for k, v in runs["on"].params.items()}
    plain = training.evaluate(_problem(N=4, n=2, m=1, density=dens), p, 256, batch=32, compile_=False)
    np.testing.assert_array_equal(runs["on"].final_loss, plain)


def test_condition_helps_sparse_training():
    """n=2, m=1 at density 0.01 (P0 = 0.98): with the same steps and batch, conditioned training ends
    at a lower exact loss (geometric mean over 64 restarts) and beats plain training on most restarts."""
    keys = torch.tensor([rng.derive_key("help", "a", i) for i in range(64)])
    out = {}
    for mode in ("off", "on"):
        prob = Problem(ModelKind.RELU_OUTPUT, 2, 1, keys, torch.tensor(0.01), torch.tensor([1.0, 1.0]), name="h")
        spec = TrainSpec(steps=300, batch_size=64, optimizer=optim.OptimizerSpec("adam", lr=0.03), eval_batch=1024,
                         compile=False, condition_nonempty=mode)
        out[mode] = exact.exact_loss("relu_output", training.train(prob, spec).params, 0.01, [1.0, 1.0])
    assert np.mean(np.log(out["on"])) < np.mean(np.log(out["off"])) - 0.2
    assert (out["on"] <= out["off"] * 1.0001).mean() > 0.65


@pytest.mark.parametrize("N, n, m, sets", [
    (3, 4, 2, FeatureSets((("anticorrelated", 2), ("correlated", 2)))),  # instance-first
    (300, 2, 1, None),  # instance-last, drawn in that layout
])
def test_condition_compiled_step_matches_eager(N, n, m, sets):
    prob = _problem(N=N, n=n, m=m, density=0.05, sets=sets, l1=0.01)
    eager = training.train(prob, _spec(steps=30, condition_nonempty="on"))
    compiled = training.train(prob, _spec(steps=30, compile=True, condition_nonempty="on"))
    assert compiled.compiled and not eager.compiled
    for k in ("W", "b"):
        np.testing.assert_allclose(eager.params[k], compiled.params[k], rtol=1e-4, atol=1e-6)


def test_condition_bad_values():
    with pytest.raises(ValueError, match="train.condition_nonempty must be off, on or auto, got 'maybe'"):
        TrainSpec(condition_nonempty="maybe")
    assert TrainSpec(condition_nonempty=True).condition_nonempty == "on"  # YAML's bare on
    assert TrainSpec(condition_nonempty=False).condition_nonempty == "off"
    prob = _problem(N=3, n=2, m=1, density=[[0.1, 0.1], [0.0, 0.0], [0.2, 0.0]], name="zeros")
    with pytest.raises(ValueError, match=r"condition_nonempty = 'on': instance 1 of zeros has density 0 for every"):
        training.train(prob, _spec(condition_nonempty="on"))
    res = training.train(prob, _spec(condition_nonempty="auto"))  # auto leaves that instance plain
    assert np.isfinite(res.final_loss).all()


# ---- shared batches (train.shared_batches) ----------------------------------------------------


def _cells_problem(kind=ModelKind.RELU_HIDDEN, C=3, R=4, n=6, m=3, density=(0.5, 0.05, 0.2), l1=0.0, cells=None,
                   **kw):
    """C cells of R restarts: instance keys per restart, one batch key per cell (as tms.experiments builds)."""
    cells = range(C) if cells is None else cells
    keys = torch.tensor([rng.derive_key("shared-test", c, r) for c in cells for r in range(R)])
    bk = torch.tensor([rng.derive_key("shared-test", c, "cell") for c in cells]).repeat_interleave(R)
    dens = torch.tensor([density[c] for c in cells]).repeat_interleave(R)
    imp = torch.tensor(0.85 ** np.arange(n), dtype=torch.float32)
    return Problem(kind, n, m, keys, dens, imp, l1=l1, batch_keys=bk, name="cells", **kw)


def _shared_spec(**kw):
    base = dict(steps=25, batch_size=16, eval_batch=64, loss_points=3, compile=False, shared_batches="on",
                optimizer=optim.OptimizerSpec("adamw", lr=0.01, schedule="cosine"))
    base.update(kw)
    return TrainSpec(**base)


def _reference_shared(prob, spec):
    """Autograd reference: every restart trains alone (tms.models), fed its cell's batch (tms.data.draw or
    draw_nonempty with the cell's batch key), with its own initialisation."""
    kind, n, m, B = prob.kind, prob.n, prob.m, spec.batch_size
    p = models.init_params(kind, n, m, prob.keys, spec.init_std)
    params = [p[k].clone() for k in kind.param_names]
    state = optim.init_state(spec.optimizer, params)
    cond, mask, _, _, p0, w = training.condition_tables(prob, spec.condition_nonempty)
    for t in range(spec.steps):
        x = data.draw(prob.batch_keys, t, B, prob.density, prob.sets, kind.signed_inputs)
        if cond:
            xc = data.draw_nonempty(prob.batch_keys[mask], t, B, prob.density[mask], prob.sets, kind.signed_inputs)
            x[mask] = xc
        ps = {k: v.clone().requires_grad_(True) for k, v in zip(kind.param_names, params)}
        loss = models.loss_per_instance(kind, ps, x, prob.importance)
        _, h = models.forward(kind, ps, x)
        loss = loss + prob.l1 * h.abs().sum(-1).mean(-1)
        if cond:
            fb = ps["b"] if kind is ModelKind.LINEAR else torch.relu(ps["b"])
            loss = w * loss + p0 * (prob.importance * fb * fb).mean(-1)
        loss.sum().backward()
        step = torch.tensor(t)
        lr = spec.optimizer.lr * optim.lr_scale(spec.optimizer.schedule, step, spec.steps)
        optim.apply(spec.optimizer, params, [ps[k].grad for k in kind.param_names], state, step + 1, lr)
    return {k: v.numpy() for k, v in zip(kind.param_names, params)}


@pytest.mark.parametrize("kind", list(ModelKind))
@pytest.mark.parametrize("n, m", [(6, 3), (12, 6)])  # unrolled products; batched products (n*m > 64)
@pytest.mark.parametrize("cond", ["off", "auto"])
def test_shared_batches_equal_per_restart_training_fed_the_cells_batch(kind, n, m, cond):
    """The fused shared-batch step against the autograd reference fed the same batches. auto conditions
    the sparse cell only (P0 = 0.95^n), so both kinds of cell meet in one step."""
    if kind is ModelKind.COMPUTATION:
        n, m = (4, 6) if n == 6 else (9, 8)
    prob = _cells_problem(kind, n=n, m=m, l1=0.01 if kind is ModelKind.RELU_HIDDEN else 0.0)
    res = training.train(prob, _shared_spec(condition_nonempty=cond))
    assert res.shared_batches and res.layout == ("cell-shared" if n * m <= 64 else "cell-shared (batched products)")
    ref = _reference_shared(prob, _shared_spec(condition_nonempty=cond))
    for k in kind.param_names:
        np.testing.assert_allclose(res.params[k], ref[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cond", ["off", "auto"])
def test_shared_batches_with_feature_sets_equal_the_reference(cond):
    sets = FeatureSets((("anticorrelated", 2), ("correlated", 2), ("independent", 2)))
    prob = _cells_problem(ModelKind.RELU_OUTPUT, n=6, m=3, sets=sets)
    res = training.train(prob, _shared_spec(condition_nonempty=cond))
    ref = _reference_shared(prob, _shared_spec(condition_nonempty=cond))
    for k in ("W", "b"):
        np.testing.assert_allclose(res.params[k], ref[k], rtol=1e-4, atol=1e-6)


def test_shared_cell_alone_equals_the_cell_in_a_batch_of_cells_and_chunks():
    prob = _cells_problem(C=3, R=5)
    spec = _shared_spec(snapshots=4, loss_points=6)
    full = training.train(prob, spec)
    # chunks of 2 restarts: every cell is split into units of 2, 2 and 1 (padded), three units a chunk
    chunked = training.train(prob, _shared_spec(snapshots=4, loss_points=6, chunk_size=2))
    alone = training.train(_cells_problem(C=3, R=5, cells=[1]), spec)
    for k in ("W", "b"):
        np.testing.assert_allclose(chunked.params[k], full.params[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(alone.params[k], full.params[k][5:10], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunked.snapshots[k], full.snapshots[k], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(alone.final_loss, full.final_loss[5:10], rtol=1e-5)
    np.testing.assert_allclose(alone.loss_history, full.loss_history[:, 5:10], rtol=1e-5)
    np.testing.assert_allclose(chunked.mean_loss, full.mean_loss, rtol=1e-5)
    # snapshots and loss records are in instance order, as without sharing
    np.testing.assert_array_equal(full.snapshots["W"][-1], full.params["W"])
    init = models.init_params(ModelKind.RELU_HIDDEN, 6, 3, prob.keys)["W"].numpy()
    np.testing.assert_allclose(full.snapshots["W"][0], init)
    np.testing.assert_allclose(full.mean_loss[full.loss_steps], full.loss_history.mean(1), rtol=1e-5)


def test_shared_batches_with_one_restart_per_cell_equal_per_instance_training():
    """Batch key = instance key: each cell's stream is the instance's own, so both formulations see the
    same data and must train the same models (to float rounding)."""
    for kind, n, m in [(ModelKind.RELU_OUTPUT, 5, 2), (ModelKind.COMPUTATION, 3, 4)]:
        prob = _problem(kind=kind, N=5, n=n, m=m, density=[0.3, 0.1, 0.05, 0.5, 0.9], l1=0.01)
        prob.batch_keys = prob.keys
        for cond in ("off", "on"):
            own = training.train(prob, _spec(condition_nonempty=cond))
            shared = training.train(prob, _spec(condition_nonempty=cond, shared_batches="on"))
            assert shared.shared_batches and not own.shared_batches
            for k in kind.param_names:
                np.testing.assert_allclose(shared.params[k], own.params[k], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(shared.final_loss, own.final_loss, rtol=1e-5)


@pytest.mark.parametrize("kind, n, m", [(ModelKind.RELU_HIDDEN, 10, 5), (ModelKind.COMPUTATION, 9, 8)])
def test_shared_compiled_step_matches_eager(kind, n, m):
    prob = _cells_problem(kind, C=2, R=3, n=n, m=m, l1=0.01)
    eager = training.train(prob, _shared_spec(condition_nonempty="auto"))
    compiled = training.train(prob, _shared_spec(condition_nonempty="auto", compile=True))
    assert compiled.compiled and not eager.compiled and compiled.shared_batches
    for k in kind.param_names:
        np.testing.assert_allclose(compiled.params[k], eager.params[k], rtol=1e-4, atol=1e-6)


def test_shared_batches_off_is_the_default_and_ignores_batch_keys():
    assert TrainSpec().shared_batches == "off" and TrainSpec().matmul_precision == "fp32"
    prob = _cells_problem()
    plain = Problem(prob.kind, prob.n, prob.m, prob.keys, prob.density, prob.importance, name="cells")
    off = _shared_spec(shared_batches="off")
    a, b = training.train(prob, off), training.train(plain, off)
    assert not a.shared_batches and a.layout == "instance-first"
    assert np.array_equal(a.params["W"], b.params["W"]) and np.array_equal(a.final_loss, b.final_loss)
    on = training.train(prob, _shared_spec())
    assert not np.allclose(on.params["W"], a.params["W"])  # sharing changes the batches a restart sees


def test_shared_batches_decision_is_logged_and_auto_follows_the_rule(caplog, monkeypatch):
    prob = _cells_problem(C=2, R=40, n=10, m=5, density=(0.1, 0.05))
    with caplog.at_level(logging.INFO, logger="tms.training"):
        training.train(prob, _shared_spec(steps=3, shared_batches="off"))
        assert "cells: every instance draws its own batches (train.shared_batches = off)" in caplog.text
        res = training.train(prob, _shared_spec(steps=3, shared_batches="auto", compile=True))
        assert not res.shared_batches and "would not repay the longer compile" in caplog.text  # too small a job
        monkeypatch.setattr(training, "SHARED_MIN_WORK", 0)
        res = training.train(prob, _shared_spec(steps=3, shared_batches="auto", compile=True))
        assert res.shared_batches and res.layout == "cell-shared"
        assert ("cells: the restarts of each cell share its batches (train.shared_batches = auto: 40 restarts per cell"
                in caplog.text)
        res = training.train(prob, _shared_spec(steps=3, shared_batches="auto"))  # eager: per instance
        assert not res.shared_batches and "shared_batches = auto: the step runs eagerly" in caplog.text
    monkeypatch.undo()
    cpu = torch.device("cpu")
    spec = TrainSpec(steps=6000, batch_size=128, compile=True)  # the default config's privileged basis recipe
    rule = training.use_shared_batches
    assert rule(ModelKind.RELU_HIDDEN, 10, 5, 7000, 7, spec, cpu, True)[0]  # 1000 restarts per cell
    assert not rule(ModelKind.RELU_HIDDEN, 10, 5, 7000, 7, spec, cpu, False)[0]  # eager
    assert not rule(ModelKind.RELU_HIDDEN, 10, 5, 70, 7, spec, cpu, True)[0]  # 10 restarts per cell
    assert not rule(ModelKind.RELU_HIDDEN, 10, 5, 7 * 16, 7, spec, cpu, True)[0]  # too little work
    assert not rule(ModelKind.RELU_OUTPUT, 400, 30, 48, 48, spec, cpu, True)[0]  # one restart per cell
    assert not rule(ModelKind.COMPUTATION, 10, 10, 150, 6, spec, cpu, True)[0]  # n*m = 100: no measured gain
    assert not rule(ModelKind.RELU_OUTPUT, 2, 1, 100_000, 10_000, spec, cpu, True)[0]  # phase diagrams


def test_shared_batches_bad_values_and_mismatched_cells():
    with pytest.raises(ValueError, match="train.shared_batches must be off, on or auto, got 'maybe'"):
        TrainSpec(shared_batches="maybe")
    assert TrainSpec(shared_batches=True).shared_batches == "on"  # YAML's bare on
    with pytest.raises(ValueError, match="train.matmul_precision must be fp32 or bf16, got 'fp16'"):
        TrainSpec(matmul_precision="fp16")
    prob = _cells_problem(C=2, R=3, density=(0.1, 0.2))
    prob.density[4] = 0.3  # one restart of cell 1 with another distribution
    with pytest.raises(ValueError, match=r"shared_batches = 'on': cells: instance 4 shares a batch key with "
                                         r"instance 3 but not its feature densities"):
        training.train(prob, _shared_spec())
    res = training.train(prob, _shared_spec(shared_batches="auto", compile=True))
    assert not res.shared_batches


def test_shared_divergence_names_the_instance():
    prob = _cells_problem(C=2, R=3)
    prob.describe = lambda i: f"restart {i % 3} of cell {i // 3}"
    with pytest.raises(training.TrainingDiverged, match=r"cells: training loss of restart 0 of cell 0"):
        training.train(prob, _shared_spec(init_std=1e25, check_every=5))


# ---- matmul precision ---------------------------------------------------------------------------


def test_bf16_matmuls_train_to_the_same_verdict_and_leave_settings_as_they_were():
    """The dense linear model learns exactly its top m features with bf16 products as with float32, and
    the losses agree within a few parts in a thousand (fp32 weights, accumulation and evaluation)."""
    knob = torch.backends.mkldnn.matmul
    before = knob.fp32_precision
    prob = _problem(kind=ModelKind.LINEAR, N=3, n=8, m=3, density=1.0, decay=0.7)
    out = {}
    for prec in ("fp32", "bf16"):
        spec = _spec(steps=3000, batch_size=256, optimizer=optim.OptimizerSpec("adam", lr=3e-3), eval_batch=4096,
                     matmul_precision=prec)
        out[prec] = training.train(prob, spec)
        assert out[prec].matmul_precision == prec and knob.fp32_precision == before
        norms = np.linalg.norm(out[prec].params["W"], axis=1)
        assert (norms[:, :3] > 0.9).all() and (norms[:, 3:] < 0.1).all(), (prec, norms)
    np.testing.assert_allclose(out["bf16"].final_loss, out["fp32"].final_loss, rtol=5e-3)
    assert not np.array_equal(out["bf16"].params["W"], out["fp32"].params["W"])  # it did change the products


def test_bf16_casting_products_are_float32_results_of_rounded_inputs():
    """The cast form (devices without oneDNN's switch): float32 results of bf16-rounded inputs."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 16, 40, generator=g), torch.randn(3, 40, 5, generator=g)
    out = training._bmm(a, b, True)
    assert out.dtype == torch.float32
    exact = torch.bmm(a.bfloat16().float(), b.bfloat16().float())
    torch.testing.assert_close(out, exact, rtol=1e-2, atol=1e-2)
    assert (out - torch.bmm(a, b)).abs().max() > 0



def test_bf16_products_are_rounded_on_every_cpu():
    """bf16 is never a silent no-op: where oneDNN's switch leaves products in float32 (CPUs without
    native bf16), the step casts instead; either way a bf16 product differs from the float32 one."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 32, 200, generator=g), torch.randn(2, 200, 8, generator=g)
    spec = _spec(matmul_precision="bf16")
    cpu = torch.device("cpu")
    assert training._bf16_cast(spec, cpu) is (not training.cpu_bf16_switch_works())
    with training.matmul_precision("bf16", cpu):
        out = training._bmm(a, b, training._bf16_cast(spec, cpu))
    assert (out - torch.bmm(a, b)).abs().max() > 1e-4
    assert not training._bf16_cast(_spec(), cpu)


def test_config_keys_reach_the_trainer():
    """train.shared_batches / train.matmul_precision from a config: validated, defaulted off/fp32 (the
    default config turns sharing to auto on the privileged basis only), and the privileged basis's 1000
    restarts per sparsity form its 7 cells."""
    from tms import config, experiments

    cfg = config.load(config.REPO_ROOT / "workflow" / "config" / "default.yaml")
    assert config.TRAIN_DEFAULTS["shared_batches"] == "off" and config.TRAIN_DEFAULTS["matmul_precision"] == "fp32"
    assert all(config.experiment(cfg, name)["train"]["matmul_precision"] == "fp32" for name in cfg["experiments"])
    assert {name for name in cfg["experiments"]
            if config.experiment(cfg, name)["train"]["shared_batches"] != "off"} == {"privileged_basis"}
    exp = config.experiment(cfg, "privileged_basis")
    prob, spec, cells = experiments.build("privileged_basis", exp, 0)
    assert (spec.shared_batches, spec.matmul_precision) == ("auto", "fp32")
    assert [len(c) for c in training.cells_of(prob)] == [1000] * 7
    cfg["experiments"]["privileged_basis"]["train"].update(shared_batches="auto", matmul_precision="bf16")
    config.validate(cfg)
    _, spec, _ = experiments.build("privileged_basis", config.experiment(cfg, "privileged_basis"), 0)
    assert (spec.shared_batches, spec.matmul_precision) == ("auto", "bf16")
    cfg["experiments"]["privileged_basis"]["train"]["matmul_precision"] = "fp16"
    with pytest.raises(config.ConfigError, match="matmul_precision"):
        config.validate(cfg)
