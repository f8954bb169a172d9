"""score_function: same densities and values, only the gradient estimator changes."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
from pyro.optim import Adam

from pyrogen.infer import ELBO, ScoreFunctionMessenger, score_function

X = torch.tensor(0.7)


def model():
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(a, 1.0))
    pyro.sample("x", dist.Normal(b, 0.5), obs=X)


def guide():
    m = pyro.param("m", torch.tensor(0.3))
    s_a = pyro.param("s_a", torch.tensor(0.9), constraint=dist.constraints.positive)
    w = pyro.param("w", torch.tensor(0.5))
    s_b = pyro.param("s_b", torch.tensor(0.6), constraint=dist.constraints.positive)
    a = pyro.sample("a", dist.Normal(m, s_a))
    pyro.sample("b", dist.Normal(w * a, s_b))


def _params():
    return {n: pyro.param(n).unconstrained() for n in ("m", "s_a", "w", "s_b")}


def _grads(value):
    params = _params()
    return dict(zip(params, torch.autograd.grad(value, list(params.values())), strict=True))


@pytest.fixture(autouse=True)
def _fresh():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    poutine.block(guide)()


def test_marks_sites_non_reparameterized_and_keeps_log_joint():
    score_tr = poutine.trace(score_function(guide)).get_trace()
    plain_tr = poutine.trace(poutine.replay(guide, trace=score_tr)).get_trace()
    for name in ("a", "b"):
        assert score_tr.nodes[name]["fn"].has_rsample is False
        assert plain_tr.nodes[name]["fn"].has_rsample is True
        assert not score_tr.nodes[name]["value"].requires_grad
    assert torch.equal(score_tr.log_prob_sum(), plain_tr.log_prob_sum())
    model_score = poutine.trace(poutine.replay(model, trace=score_tr)).get_trace()
    model_plain = poutine.trace(poutine.replay(model, trace=plain_tr)).get_trace()
    assert torch.equal(model_score.log_prob_sum(), model_plain.log_prob_sum())
    # the loss value is the same; only its gradient differs
    replayed = poutine.replay(score_function(guide), trace=score_tr)
    plain = poutine.replay(guide, trace=score_tr)
    assert Trace_ELBO().loss(model, replayed) == pytest.approx(Trace_ELBO().loss(model, plain))


def _hand_written(tr, rao_blackwellize):
    """Surrogate -(log p + sum_site log q_site * sg(cost_site)), values fixed from ``tr``."""
    a, b = tr.nodes["a"]["value"].detach(), tr.nodes["b"]["value"].detach()
    p = _params()
    s_a, s_b = p["s_a"].exp(), p["s_b"].exp()
    log_q_a = dist.Normal(p["m"], s_a).log_prob(a)
    log_q_b = dist.Normal(p["w"] * a, s_b).log_prob(b)
    log_p_a = dist.Normal(0.0, 1.0).log_prob(a)
    log_p_b = dist.Normal(a, 1.0).log_prob(b)
    log_p_x = dist.Normal(b, 0.5).log_prob(X)
    total = (log_p_a + log_p_b + log_p_x - log_q_a - log_q_b).detach()
    # TraceGraph: b's cost drops the terms upstream of b (log p(a) - log q(a)).
    cost_b = (log_p_b + log_p_x - log_q_b).detach() if rao_blackwellize else total
    return -(log_p_a + log_p_b + log_p_x + log_q_a * total + log_q_b * cost_b)


@pytest.mark.parametrize("elbo, rb", [(Trace_ELBO(), False), (TraceGraph_ELBO(), True)])
def test_gradient_matches_hand_written_surrogate(elbo, rb):
    # Let the ELBO sample (no replay, so TraceGraph sees b's dependence on a) and record values.
    traced = poutine.trace(score_function(guide))
    for p in _params().values():
        p.grad = None
    elbo.loss_and_grads(model, traced)
    tr = traced.trace
    pyro_grads = {n: p.grad.clone() for n, p in _params().items()}
    hand = _grads(_hand_written(tr, rb))
    for name in hand:
        assert torch.allclose(pyro_grads[name], hand[name], rtol=1e-5, atol=1e-6), name
    # and differs from the reparameterized gradient on the same values
    for p in _params().values():
        p.grad = None
    Trace_ELBO().loss_and_grads(model, poutine.replay(guide, trace=tr))
    assert not torch.allclose(_params()["m"].grad, pyro_grads["m"])


def test_site_selection_and_validation():
    tr = poutine.trace(score_function(guide, sites=["b"])).get_trace()
    assert tr.nodes["a"]["fn"].has_rsample and not tr.nodes["b"]["fn"].has_rsample
    with ScoreFunctionMessenger():
        tr = poutine.trace(guide).get_trace()
    assert not tr.nodes["a"]["fn"].has_rsample
    with pytest.raises(ValueError, match="collection of site names"):
        ScoreFunctionMessenger(sites="a")
    with pytest.raises(ValueError, match="Unknown baseline options"):
        ScoreFunctionMessenger(baseline={"use_avg": True})
    with pytest.raises(ValueError, match="dict"):
        ScoreFunctionMessenger(baseline="decaying_avg")
    with pytest.raises(ValueError, match="callable"):
        score_function(3)


def test_wrapper_preserves_distribution_shape_and_support():
    def g():
        with pyro.plate("p", 3):
            pyro.sample("z", dist.Gamma(2.0, 1.0).expand([2]).to_event(1))

    with pyro.plate("outer", 4, dim=-2):
        tr = poutine.trace(score_function(g)).get_trace()
    fn = tr.nodes["z"]["fn"]
    assert fn.batch_shape == (4, 3) and fn.event_shape == (2,)
    assert fn.support is dist.Gamma(2.0, 1.0).support or fn.support.event_dim == 1
    assert tr.nodes["z"]["value"].shape == (4, 3, 2)


def _vae_pair(num_data=10, dim=3):
    def vmodel(x):
        with pyro.plate("data", num_data, subsample=torch.arange(len(x)), dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).expand([len(x), 2]).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def vguide(x):
        lin = pyro.module("enc", torch.nn.Linear(dim, 2)) if "enc" not in _MOD else _MOD["enc"]
        _MOD["enc"] = lin
        with pyro.plate("data", num_data, subsample=torch.arange(len(x)), dim=-1):
            pyro.sample("z", dist.Normal(lin(x), 1.0).to_event(1))

    return vmodel, vguide


_MOD: dict = {}


@pytest.mark.parametrize("baseline", ["decaying_avg", "neural", "loo"])
@pytest.mark.parametrize("num_particles", [2, 3])
def test_baselines_run_with_varying_batch_size_and_particles(baseline, num_particles):
    _MOD.clear()
    vmodel, vguide = _vae_pair(dim=1)
    loss = ELBO(
        estimator="score",
        baseline=baseline,
        num_particles=num_particles,
        vectorize_particles=True,
    )
    svi = SVI(vmodel, vguide, Adam({"lr": 0.01}), loss)
    x = torch.randn(10, 1)
    for batch in (x[:4], x[4:8], x[8:]):  # sizes 4, 4, 2
        assert torch.isfinite(torch.tensor(svi.step(batch)))
    if baseline == "neural":
        names = set(pyro.get_param_store().keys())
        assert any(n.startswith("elbo_nn_baseline") for n in names), names


def _batch_model(x):
    with pyro.plate("data", 10, subsample=torch.arange(len(x))):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _batch_guide(x):
    loc = pyro.param("loc_b", torch.tensor(0.1))
    with pyro.plate("data", 10, subsample=torch.arange(len(x))):
        pyro.sample("z", dist.Normal(loc + 0.5 * x, 1.0))


def test_decaying_average_stands_still_on_a_batch_of_another_size():
    """Pyro keeps one average per element of the first batch; a smaller batch uses the average's
    mean as a constant baseline and neither updates nor rewrites Pyro's stored average."""
    key = "__baseline_avg_downstream_cost_z"  # where TraceGraph_ELBO keeps the average
    options = {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}
    x, elbo = torch.randn(10), TraceGraph_ELBO()
    poutine.block(_batch_guide)(x)  # create loc_b

    def loc_grad(baseline, batch):
        pyro.set_rng_seed(1)
        loc = pyro.param("loc_b").unconstrained()
        loc.grad = None
        elbo.loss_and_grads(_batch_model, score_function(_batch_guide, baseline=baseline), batch)
        return loc.grad.clone()

    loc_grad(options, x[:4])
    average = pyro.param(key).detach().clone()
    assert average.shape == (4,) and (average != 0).all()
    small = loc_grad(options, x[4:6])
    assert torch.equal(pyro.param(key), average)
    constant = loc_grad({"baseline_value": average.mean().expand(2)}, x[4:6])
    assert torch.allclose(small, constant, rtol=1e-6)
    assert not torch.allclose(small, loc_grad(None, x[4:6]))  # the baseline did matter
    loc_grad(options, x[6:10])  # a full batch again: Pyro updates its average
    assert pyro.param(key).shape == (4,) and not torch.equal(pyro.param(key), average)


@pytest.mark.parametrize("net_dtype", [None, torch.float32, torch.float64])
def test_neural_baseline_runs_in_float64(net_dtype):
    """Float64 data with the default network (built in the data's dtype) or a user network of
    either dtype (fed in its own dtype)."""
    x = torch.randn(5, 2, dtype=torch.float64)

    def dmodel(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def dguide(x):
        loc = pyro.param("loc_d", torch.zeros(2, dtype=x.dtype))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc + x, 1.0).to_event(1))

    net = None if net_dtype is None else torch.nn.Linear(2, 1).to(net_dtype)
    loss = ELBO(estimator="score", baseline="neural", baseline_net=net, num_particles=2)
    svi = SVI(dmodel, dguide, Adam({"lr": 0.01}), loss)
    assert torch.isfinite(torch.tensor(svi.step(x)))
    assert next(loss.baseline_net.parameters()).dtype == (net_dtype or torch.float64)
