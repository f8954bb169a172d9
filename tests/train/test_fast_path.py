"""SVIStep's fast path (default loss, TraceMeanField_ELBO without Pyro's traces): the same loss,
gradients and parameters as Pyro's standard path, on pyrogen's VAE and on users' own programs; the
standard path, with one warning, where a program does not fit; Pyro's optimizer state kept."""

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.models import VAE
from pyrogen.train import NonFiniteError, SVIStep
from pyrogen.train.steps.fast import MergedOptimizer, mean_field_loss_and_grads

X = torch.rand(12, 6).bernoulli()


class StandardELBO(TraceMeanField_ELBO):
    """The same loss by another type: SVIStep takes Pyro's standard path for it."""


DECODER = torch.nn.Linear(2, 6)
DECODER_START = {k: v.clone() for k, v in DECODER.state_dict().items()}


def net_model(x):
    """A user's function program: a network registered with pyro.module and a plain pyro.param."""
    decoder = pyro.module("decoder", DECODER)
    bias = pyro.param("bias", torch.zeros(6))
    with pyro.plate("data", len(x), subsample_size=len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Bernoulli(logits=decoder(z) + bias).to_event(1), obs=x)


def net_guide(x):
    loc = pyro.param("loc", torch.full((len(x), 2), 0.1))
    scale = pyro.param("scale", torch.full((len(x), 2), 0.8), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def _vae():
    torch.manual_seed(0)
    return VAE(6, 2, (5,), num_data=40)


def _params():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


@pytest.mark.parametrize("program", ["vae", "functions"])
def test_fast_loss_and_gradients_equal_pyros(program):
    pyro.clear_param_store()
    vae = _vae()
    model, guide = (net_model, net_guide) if program == "functions" else (vae.model, vae.guide)
    with torch.no_grad():
        TraceMeanField_ELBO().loss(model, guide, X)  # create the params
    params = [p.unconstrained() for p in pyro.get_param_store().values()]
    assert len(params) == (5 if program == "functions" else 8)
    torch.manual_seed(1)
    expected = TraceMeanField_ELBO().loss_and_grads(model, guide, X)
    grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    torch.manual_seed(1)
    runs = []
    loss = mean_field_loss_and_grads(model, guide, (X,), {}, runs)
    assert loss == pytest.approx(expected, rel=1e-6)
    for p, g in zip(params, grads, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-7)
    found = {id(p) for run in runs for p in run.params.values()}
    assert found == {id(p) for p in params}
    for p in params:
        p.grad = None


@pytest.mark.parametrize("program", ["vae", "functions"])
def test_parameters_after_steps_equal_the_standard_paths(program):
    results = []
    for loss in (None, StandardELBO()):
        pyro.clear_param_store()
        DECODER.load_state_dict(DECODER_START)
        DECODER.zero_grad(set_to_none=True)  # (left by other tests)
        vae = _vae()
        model, guide = (net_model, net_guide) if program == "functions" else (vae.model, vae.guide)
        step = SVIStep(model, guide, loss=loss, lr=0.05, modules=[DECODER])
        torch.manual_seed(2)
        losses = [step(X)["loss"] for _ in range(6)]
        assert step.uses_fast_path == (loss is None)
        results.append((losses, _params(), step.state_dict()["optim"]))
    (fast_losses, fast, fast_optim), (std_losses, std, std_optim) = results
    assert fast_losses == pytest.approx(std_losses, rel=1e-6)
    assert fast.keys() == std.keys()
    for name in std:
        torch.testing.assert_close(fast[name], std[name], rtol=1e-6, atol=1e-7)
    assert fast_optim.keys() == std_optim.keys()  # Pyro's per-parameter optimizer state
    for name in std_optim:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(
                fast_optim[name]["state"][0][key], std_optim[name]["state"][0][key]
            )


def _program(heavy_tailed: bool):
    """A model whose prior of z is a Student-t (no analytic KL to the guide's Normal, so Pyro's
    TraceMeanField_ELBO estimates that term by sampling) while ``switch["heavy"]``."""
    switch = {"heavy": heavy_tailed}

    def model(x):
        with pyro.plate("data", len(x)):
            if switch["heavy"]:
                prior = dist.StudentT(3.0, torch.zeros(2), 1.0)
            else:
                prior = dist.Normal(torch.zeros(2), 1.0)
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x):
        loc = pyro.param("loc", torch.zeros(len(x), 2))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))

    return model, guide, switch


def test_a_program_that_does_not_fit_takes_the_standard_path_with_one_warning():
    pyro.clear_param_store()
    model, guide, _ = _program(heavy_tailed=True)
    step = SVIStep(model, guide, optim=pyro.optim.SGD({"lr": 0.01}))
    with pytest.warns(UserWarning, match="no analytic KL for site 'z'"):
        step(X)
        step(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        step(X)  # said once
    assert not step.uses_fast_path


def test_a_program_that_changes_falls_back_with_the_same_draws():
    pyro.clear_param_store()
    model, guide, switch = _program(heavy_tailed=False)
    step = SVIStep(model, guide, optim=pyro.optim.SGD({"lr": 0.01}))
    step(X)
    step(X)
    assert step.uses_fast_path
    before = _params()
    switch["heavy"] = True
    with pytest.warns(UserWarning, match="no analytic KL"):
        torch.manual_seed(5)
        loss = step(X)["loss"]
    assert not step.uses_fast_path
    pyro.get_param_store().set_state(
        {"params": before, "constraints": pyro.get_param_store().get_state()["constraints"]}
    )
    torch.manual_seed(5)  # the standard path's loss on the same draws
    with torch.no_grad():
        expected = TraceMeanField_ELBO().loss(model, guide, X)
    assert loss == pytest.approx(expected, rel=1e-6)


def test_a_nan_gradient_on_the_fast_path_raises_and_changes_nothing():
    pyro.clear_param_store()
    step = SVIStep(net_model, net_guide)
    step(X)
    step(X)
    assert step.uses_fast_path
    with torch.no_grad():
        pyro.param("bias").unconstrained()[0] = float("nan")
    before = _params()
    with pytest.raises(NonFiniteError):
        step(X)
    after = _params()
    for name, value in before.items():
        assert torch.equal(value.nan_to_num(), after[name].nan_to_num()), name
    assert all(p.unconstrained().grad is None for p in pyro.get_param_store().values())


def test_a_changed_learning_rate_is_used_by_the_merged_optimizer():
    pyro.clear_param_store()
    step = SVIStep(net_model, net_guide, lr=0.1)
    step(X)
    step(X)
    for optimizer in step.optim.optim_objs.values():
        optimizer.param_groups[0]["lr"] = 0.0
    before = _params()
    step(X)
    after = _params()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


def test_a_distribution_refusing_its_parameters_on_the_fast_path_raises_and_changes_nothing():
    def guide(x):
        scale = pyro.param("raw_scale", torch.ones(len(x), 2))  # unconstrained: < 0 is invalid
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), scale).to_event(1))

    pyro.clear_param_store()
    model, _, _ = _program(heavy_tailed=False)
    step = SVIStep(model, guide)
    step(X)
    step(X)
    assert step.uses_fast_path
    with torch.no_grad():
        pyro.param("raw_scale").fill_(-1.0)
    before = _params()
    with pytest.raises(NonFiniteError, match="invalid parameters.*guide site 'z'"):
        step(X)
    for name, value in before.items():
        assert torch.equal(value, _params()[name]), name


def test_a_shadowed_network_on_the_fast_path_is_refused_and_changes_nothing():
    """The fast path finds the ``nn.Parameter``\\ s for which the param store returns other
    tensors itself (no extra messenger): a guide switched to a second network under the first's
    name raises, as on the standard path, and neither network nor the store moves."""
    net1, net2 = torch.nn.Linear(6, 2), torch.nn.Linear(6, 2)

    def guide(x):
        net = pyro.module("enc", guide.net)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(net(x), 1.0).to_event(1))

    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample(
                "x", dist.Bernoulli(logits=z.sum(-1, keepdim=True).expand(-1, 6)).to_event(1), obs=x
            )

    pyro.clear_param_store()
    guide.net = net1
    step = SVIStep(model, guide)
    step(X)
    step(X)
    assert step.uses_fast_path
    guide.net = net2
    before, nets = (
        _params(),
        [{k: v.clone() for k, v in n.state_dict().items()} for n in (net1, net2)],
    )
    with pytest.raises(ValueError, match=r"\['enc\$\$\$bias', 'enc\$\$\$weight'\]"):
        step(X)
    for name, value in before.items():
        assert torch.equal(value, _params()[name]), name
    for net, start in zip((net1, net2), nets, strict=True):
        assert all(torch.equal(v, start[k]) for k, v in net.state_dict().items())
        assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize(
    "optim",
    [
        lambda: pyro.optim.Adam({"lr": 0.01}),
        lambda: pyro.optim.Adam({"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
        lambda: pyro.optim.AdamW({"lr": 0.01}),
        lambda: pyro.optim.NAdam({"lr": 0.01}),
        lambda: pyro.optim.SGD({"lr": 0.01, "momentum": 0.9}),
    ],
)
def test_the_merged_optimizer_step_is_pyros_bit_for_bit(optim):
    """One merged (multi-tensor where torch gives the same floats) step for all parameters =
    Pyro's loop of one-parameter optimizers, exactly."""
    torch.manual_seed(0)
    shapes = [(40, 30), (40,), (7, 40)]
    start = [torch.randn(s) for s in shapes]
    runs = []
    for merged in (False, True):
        pyro.clear_param_store()
        params = [pyro.param(f"p{i}", s.clone()).unconstrained() for i, s in enumerate(start)]
        pyro_optim = optim()
        update = MergedOptimizer(pyro_optim) if merged else pyro_optim
        g = torch.Generator().manual_seed(1)
        for _ in range(8):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            update(params)
        runs.append([p.detach().clone() for p in params])
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
