r"""Gaps found by ``benchmarks/mutate.py`` in :mod:`pyrogen.infer.score`: neural baselines on sites
whose batch shape ends in 1 or has two plates, the wrapper's ``enumerate_support`` default, and a
held decaying average receiving no gradient.

A neural baseline only changes the guide's gradient through its (detached) value, so the guide
parameter's gradient with ``nn_baseline=net`` must equal the gradient with the constant
``baseline_value=net(input)`` on the same draws; the network output must be reshaped to the site's
batch shape exactly as documented (a trailing 1 dropped only when the output has an extra dim).
"""

import contextlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceGraph_ELBO

from pyrogen.infer import score_function


@pytest.fixture(autouse=True)
def _fresh():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


def _program(shape, dims):
    """z ~ N(0, 1), x ~ N(z, 1) inside plates of sizes ``shape`` at ``dims``; guide
    N(loc + x / 2, 1)."""

    def plates():
        stack = contextlib.ExitStack()
        for n, d in zip(shape, dims, strict=True):
            stack.enter_context(pyro.plate(f"p{-d}", n, dim=d))
        return stack

    def model(x):
        with plates():
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc_s", torch.tensor(0.2))
        with plates():
            pyro.sample("z", dist.Normal(loc + x / 2, 1.0))

    return model, guide


def _loc_grad(model, guide, x, baseline):
    pyro.set_rng_seed(1)
    loc = pyro.param("loc_s", torch.tensor(0.2)).unconstrained()
    loc.grad = None
    TraceGraph_ELBO().loss_and_grads(model, score_function(guide, baseline=baseline), x)
    return loc.grad.clone()


@pytest.mark.parametrize(
    "batch_shape, dims, net_input_shape",
    [
        ((4, 1), (-2, -1), (4, 1)),  # a plate at dim -2 only: batch shape (4, 1), output (4, 1)
        ((2, 4), (-2, -1), (2, 4, 1)),  # two plates, Linear(1, 1) output (2, 4, 1)
    ],
    ids=["trailing-one", "two-plates"],
)
def test_neural_baseline_output_takes_the_site_batch_shape(batch_shape, dims, net_input_shape):
    if batch_shape[-1] == 1:  # only the plate at dim -2
        dims, shape = (-2,), (batch_shape[0],)
    else:
        shape = batch_shape
    model, guide = _program(shape, dims)
    x = torch.linspace(-1.0, 2.0, batch_shape[0] * batch_shape[1]).reshape(batch_shape)
    net = torch.nn.Linear(1, 1)
    torch.nn.init.constant_(net.weight, 0.7)
    torch.nn.init.constant_(net.bias, -0.3)
    inp = x.reshape(net_input_shape)
    with_net = _loc_grad(model, guide, x, {"nn_baseline": net, "nn_baseline_input": inp})
    value = net(inp).detach().reshape(batch_shape)
    with_value = _loc_grad(model, guide, x, {"baseline_value": value})
    torch.testing.assert_close(with_net, with_value)
    assert not torch.allclose(with_net, _loc_grad(model, guide, x, None))  # it mattered


def test_wrapped_enumerate_support_expands_by_default_like_torch():
    def guide():
        with pyro.plate("p", 3):
            pyro.sample("c", dist.Bernoulli(0.3))

    fn = poutine.trace(score_function(guide)).get_trace().nodes["c"]["fn"]
    base = dist.Bernoulli(0.3).expand([3])
    assert fn.enumerate_support().shape == base.enumerate_support().shape == (2, 3)
    assert fn.enumerate_support(expand=False).shape == (2, 1)


def test_held_decaying_average_gets_no_gradient():
    """On a batch of another size the stored average is a constant: the baseline loss must not
    backpropagate into Pyro's stored average (an optimizer would then train it)."""
    key = "__baseline_avg_downstream_cost_z"

    def model(x):
        with pyro.plate("data", 10, subsample=torch.arange(len(x))):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        loc = pyro.param("loc_h", torch.tensor(0.1))
        with pyro.plate("data", 10, subsample=torch.arange(len(x))):
            pyro.sample("z", dist.Normal(loc + 0.5 * x, 1.0))

    options = {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}
    x, elbo = torch.randn(6), TraceGraph_ELBO()
    elbo.loss_and_grads(model, score_function(guide, baseline=options), x[:4])
    stored = pyro.get_param_store()._params[key]
    stored.grad = None
    elbo.loss_and_grads(model, score_function(guide, baseline=options), x[4:])
    assert pyro.get_param_store()._params[key] is stored and stored.grad is None
