r"""pyrogen.infer.elbo: exact values and pure-PyTorch reference gradients (mutation-test gaps).

*Constant cost.* The model's latent density is the guide's with detached parameters, plus a
per-datum ``pyro.factor(c_i)``: :math:`\log p - \log q \equiv c_i` for every draw, so every
estimator's loss is exactly :math:`-\frac{N}{B} \sum_{i \in \text{batch}} c_i` under a data plate
of size :math:`N` subsampled to :math:`B`.

*Leave-one-out reference.* With the guide's draws :math:`z_{k,i}` recorded, the LOO surrogate is
rebuilt in plain PyTorch: costs :math:`f_{k,i} = \log p(x_i, z_{k,i}) - \log q(z_{k,i})`,
baselines :math:`b_{k,i} = \frac{1}{K-1} \sum_{j \ne k} f_{j,i}` (per datum for local latents,
over whole-batch totals for a global latent), gradient of
:math:`\frac{s}{K} \sum_{k,i} [\log p + \log q\, (f - b)]` with :math:`s = N / B`.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from pyrogen.infer import ELBO, IWAE, STL_ELBO, get_objective

N, B = 10, 4
C = torch.tensor([0.5, -1.25, 2.0, 3.5])
X = torch.tensor([[0.3, -1.0], [1.2, 0.4], [-0.7, 2.0], [0.0, 0.9]])


def _plate():
    return pyro.plate("data", N, subsample=torch.arange(B), dim=-1)


def _const_guide(x):
    loc = pyro.param("loc", torch.tensor([0.1, -0.2, 0.3, 0.4]))
    scale = pyro.param("scale", torch.full((B,), 0.7), constraint=dist.constraints.positive)
    with _plate():
        pyro.sample("z", dist.Normal(loc, scale))


def _const_model(x):
    loc, scale = pyro.param("loc").detach(), pyro.param("scale").detach()
    with _plate():
        pyro.sample("z", dist.Normal(loc, scale))
        pyro.factor("c", C)


CONFIGS = {
    "reparam": dict(estimator="reparam"),
    "analytic": dict(estimator="reparam", kl="analytic"),
    "auto": dict(estimator="auto"),
    "score": dict(estimator="score"),
    "score_k3_vectorized": dict(estimator="score", num_particles=3, vectorize_particles=True),
    "decaying_avg": dict(estimator="score", baseline="decaying_avg"),
    "neural": dict(estimator="score", baseline="neural"),
    "loo": dict(estimator="score", baseline="loo", num_particles=3),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_loss_is_exact_whole_data_estimate_under_subsampling(name):
    """Every estimator: loss, differentiable_loss and loss_and_grads all equal -(N/B) sum c."""
    expected = -(N / B) * float(C.sum())
    elbo = ELBO(**CONFIGS[name])
    poutine.block(_const_guide)(X)
    assert elbo.loss(_const_model, _const_guide, X) == pytest.approx(expected, rel=1e-6)
    value = elbo.differentiable_loss(_const_model, _const_guide, X)
    assert isinstance(value, torch.Tensor) and value.item() == pytest.approx(expected, rel=1e-6)
    assert elbo.loss_and_grads(_const_model, _const_guide, X) == pytest.approx(expected, rel=1e-6)


def test_cli_objectives_loss_is_exact_under_subsampling():
    expected = -(N / B) * float(C.sum())
    poutine.block(_const_guide)(X)
    for name in ("reparam", "score", "stl", "iwae", "dreg"):
        for k in (1, 3):
            loss = get_objective(name, k)
            assert loss.loss(_const_model, _const_guide, X) == pytest.approx(expected, rel=1e-6)


def test_get_objective_configuration():
    for k in (1, 4):
        reparam, score = get_objective("reparam", k), get_objective("score", k)
        assert (reparam.estimator, reparam.kl, reparam.num_particles) == ("reparam", "analytic", k)
        assert (score.estimator, score.baseline, score.num_particles) == (
            "score",
            "decaying_avg",
            k,
        )
        assert reparam.vectorize_particles is score.vectorize_particles is (k > 1)
        stl = get_objective("stl", k)
        assert isinstance(stl, STL_ELBO) and stl.num_particles == k
        assert stl.vectorize_particles is (k > 1)
        for name, estimator in (("iwae", "standard"), ("dreg", "dreg")):
            loss = get_objective(name, k)
            assert isinstance(loss, IWAE) and (loss.estimator, loss.num_particles) == (estimator, k)


def test_elbo_picks_pyro_loss_per_configuration():
    """estimator/kl/baseline select the underlying loss; kwargs reach it."""
    from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

    cases = [
        (dict(estimator="auto"), Trace_ELBO, TraceMeanField_ELBO),
        (dict(estimator="reparam"), Trace_ELBO, TraceMeanField_ELBO),
        (dict(estimator="auto", kl="analytic"), TraceMeanField_ELBO, None),
        (dict(estimator="reparam", kl="analytic"), TraceMeanField_ELBO, None),
        (dict(estimator="score"), TraceGraph_ELBO, None),
    ]
    for kwargs, cls, not_cls in cases:
        inner = ELBO(**kwargs, num_particles=3, max_plate_nesting=2)._elbo
        assert isinstance(inner, cls), kwargs
        assert not_cls is None or not isinstance(inner, not_cls), kwargs
        assert (inner.num_particles, inner.max_plate_nesting) == (3, 2)
    loo = ELBO(estimator="score", baseline="loo", num_particles=3, max_plate_nesting=2)._elbo
    # vectorized TraceGraph_ELBO: Pyro adds the particle plate's dim to max_plate_nesting
    assert isinstance(loo, TraceGraph_ELBO) and loo.vectorize_particles
    assert (loo.num_particles, loo.max_plate_nesting) == (3, 3)


def test_analytic_kl_refuses_a_non_reparameterizable_guide():
    def model():
        pyro.sample("c", dist.Bernoulli(0.3))

    def guide():
        pyro.sample("c", dist.Bernoulli(pyro.param("p", torch.tensor(0.5))))

    with pytest.raises(ValueError, match="'c' .Bernoulli. has no reparameterized sampler"):
        ELBO(estimator="reparam", kl="analytic").differentiable_loss(model, guide)


# ------------------------------------------------------- score estimator: differentiable_loss


def _local_guide(x):
    loc = pyro.param("loc", torch.tensor([0.1, -0.2, 0.3, 0.4]))
    scale = pyro.param("scale", torch.full((B,), 0.7), constraint=dist.constraints.positive)
    with _plate():
        z = pyro.sample("z", dist.Normal(loc + x[:, 0], scale))
    _DRAWS.append(z)


def _local_model(x):
    theta = pyro.param("theta", torch.tensor(0.8))
    with _plate():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(theta * z, 1.0), obs=x[:, 1])


_DRAWS: list = []


def _params(names=("loc", "scale", "theta")):
    return [pyro.param(n).unconstrained() for n in names]


@pytest.mark.parametrize("num_particles", [1, 3])
def test_score_differentiable_loss_matches_loss_and_grads(num_particles):
    """The score estimator's differentiable_loss has Pyro TraceGraph_ELBO's value and gradient."""
    elbo = ELBO(estimator="score", num_particles=num_particles)
    poutine.block(_local_guide)(X)
    poutine.block(_local_model)(X)
    pyro.set_rng_seed(3)
    value = elbo.differentiable_loss(_local_model, _local_guide, X)
    grads = torch.autograd.grad(value, _params())
    pyro.set_rng_seed(3)
    for p in _params():
        p.grad = None
    expected = elbo.loss_and_grads(_local_model, _local_guide, X)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    for g, p in zip(grads, _params(), strict=True):
        torch.testing.assert_close(g, p.grad)
    assert any(g.abs().sum() > 0 for g in grads)


def _loo_reference(x, draws, k, local):
    """Pure-PyTorch leave-one-out surrogate for _local_model/_local_guide at the draws."""
    loc, scale, theta = (pyro.param(n) for n in ("loc", "scale", "theta"))
    z = draws.detach()  # (k, B)
    log_q = dist.Normal(loc + x[:, 0], scale).log_prob(z)
    log_p = dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(theta * z, 1.0).log_prob(x[:, 1])
    cost = (log_p - log_q).detach()
    if not local:
        log_p, log_q, cost = log_p.sum(-1), log_q.sum(-1), cost.sum(-1)
    baseline = (cost.sum(0) - cost) / (k - 1)
    s = N / B
    surrogate = s * (log_p + log_q * (cost - baseline)).sum() / k
    return -s * cost.sum() / k, -surrogate


@pytest.mark.parametrize("k", [2, 3])
def test_leave_one_out_matches_pure_pytorch_reference_per_datum(k):
    """Local latents in a subsampled plate: per-datum baselines, scale N / B, mean over K."""
    elbo = ELBO(estimator="score", baseline="loo", num_particles=k)
    poutine.block(_local_guide)(X)
    poutine.block(_local_model)(X)
    _DRAWS.clear()
    value = elbo.differentiable_loss(_local_model, _local_guide, X)
    draws = _DRAWS[-1]  # (earlier runs guessed max_plate_nesting)
    assert draws.shape == (k, B)
    ref_value, ref_surrogate = _loo_reference(X, draws, k, local=True)
    assert value.item() == pytest.approx(ref_value.item(), rel=1e-6)
    grads = torch.autograd.grad(value, _params())
    for g, r in zip(grads, torch.autograd.grad(ref_surrogate, _params()), strict=True):
        torch.testing.assert_close(g, r)
    # a whole-batch baseline would give another gradient for the local sites
    _, whole = _loo_reference(X, draws, k, local=False)
    assert not torch.allclose(grads[0], torch.autograd.grad(whole, _params(("loc",)))[0])


def _global_guide(x):
    m = pyro.param("m", torch.tensor(0.2))
    s = pyro.param("s", torch.tensor(0.6), constraint=dist.constraints.positive)
    mu = pyro.sample("mu", dist.Normal(m, s))
    _DRAWS.append(mu)


def _global_model(x):
    theta = pyro.param("theta", torch.tensor(0.8))
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x), dim=-1):
        pyro.sample("x", dist.Normal(theta * mu, 1.0), obs=x[:, 1])


def test_leave_one_out_with_a_global_latent_uses_whole_data_costs():
    k = 4
    elbo = ELBO(estimator="score", baseline="loo", num_particles=k)
    poutine.block(_global_guide)(X)
    poutine.block(_global_model)(X)
    _DRAWS.clear()
    value = elbo.differentiable_loss(_global_model, _global_guide, X)
    mu = _DRAWS[-1].detach().reshape(k)
    m, s, theta = (pyro.param(n) for n in ("m", "s", "theta"))
    log_q = dist.Normal(m, s).log_prob(mu)
    log_p = dist.Normal(0.0, 1.0).log_prob(mu) + dist.Normal(theta * mu[:, None], 1.0).log_prob(
        X[:, 1]
    ).sum(-1)
    cost = (log_p - log_q).detach()
    baseline = (cost.sum() - cost) / (k - 1)
    ref = -(log_p + log_q * (cost - baseline)).sum() / k
    assert value.item() == pytest.approx(-cost.mean().item(), rel=1e-6)
    names = ("m", "s", "theta")
    for g, r in zip(
        torch.autograd.grad(value, _params(names)),
        torch.autograd.grad(ref, _params(names)),
        strict=True,
    ):
        torch.testing.assert_close(g, r)


# ------------------------------------------------------------------------- neural baseline


def test_neural_baseline_default_network_and_errors():
    elbo = ELBO(estimator="score", baseline="neural", num_particles=2)
    poutine.block(_local_guide)(X)
    elbo.loss_and_grads(_local_model, _local_guide, X)
    net = elbo.baseline_net
    assert net is not None and net(X).shape == (B,)
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [64, 1]
    assert net.net[0].in_features == X.shape[-1]
    assert any(n.startswith("elbo_nn_baseline") for n in pyro.get_param_store().keys())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    fresh = ELBO(estimator="score", baseline="neural")
    with pytest.raises(ValueError, match="expected a tensor, but got no arguments"):
        fresh.loss(lambda: None, lambda: None)
    with pytest.raises(ValueError, match="expected a tensor, but got list"):
        fresh.loss(_local_model, _local_guide, [1.0])


def test_neural_baseline_casts_integer_inputs():
    def model(x):
        with pyro.plate("d", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide(x):
        m = pyro.param("m", torch.zeros(len(x)))
        with pyro.plate("d", len(x)):
            pyro.sample("z", dist.Normal(m, 1.0))

    elbo = ELBO(estimator="score", baseline="neural")
    elbo.loss_and_grads(model, guide, torch.tensor([[1, 2], [3, 4]]))
    assert next(elbo.baseline_net.parameters()).dtype == torch.get_default_dtype()


def test_neural_baseline_with_a_one_dimensional_input_and_a_user_network():
    """A 1-D first argument is a batch of scalar data: the default network takes one datum
    (in_features 1) and, at a global site, its per-datum values are summed to one baseline; a
    user network in another dtype is fed in its own dtype."""
    x = torch.tensor([0.5, -1.0, 2.0])

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("obs", dist.Normal(mu, 1.0), obs=x.sum())

    def guide(x):
        pyro.sample("mu", dist.Normal(pyro.param("m", torch.tensor(0.0)), 1.0))

    elbo = ELBO(estimator="score", baseline="neural")
    elbo.loss_and_grads(model, guide, x)
    assert elbo.baseline_net.net[0].in_features == 1 and elbo.baseline_net(x).shape == (3,)
    net = torch.nn.Linear(3, 1).double()
    user = ELBO(estimator="score", baseline="neural", baseline_net=net)
    user.loss_and_grads(model, guide, x)
    assert user.baseline_net is net and net.weight.grad is not None
    with pytest.raises(ValueError, match="baseline_net needs baseline='neural'"):
        ELBO(estimator="score", baseline_net=net)
