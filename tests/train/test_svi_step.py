"""SVIStep on users' own Pyro programs: NaN/Inf never changes a parameter, gradient hooks run
between backward and update, and a model never trains another model's tensors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints

from pyrogen.models import VAE
from pyrogen.train import NonFiniteError, SVIStep

X = torch.tensor([0.5, -1.0, 2.0])


def model(x):
    w = pyro.param("w", torch.tensor(0.0))
    s = pyro.param("s", torch.tensor(1.0))  # unconstrained: a negative value is invalid
    pyro.factor("sqrt_abs_w", torch.sqrt(torch.abs(w)))  # finite; d/dw = 0 * inf = NaN at w = 0
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, s), obs=x)


def guide(x):
    loc = pyro.param("loc", torch.tensor(0.2))
    scale = pyro.param("scale", torch.tensor(0.9), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


def _store():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


def _set(name, value):
    with torch.no_grad():
        pyro.param(name).unconstrained().fill_(value)


def _step(**kwargs):
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO(), optim=pyro.optim.SGD({"lr": 0.1}))
    step.setup(X)
    _set("w", 1.0)  # a finite gradient unless a test sets w = 0
    return step


def _assert_unchanged(before):
    after = _store()
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value) or (value.isnan() & after[name].isnan()).all(), name
    assert all(p.unconstrained().grad is None for p in pyro.get_param_store().values())


def test_a_finite_step_updates_every_parameter():
    step = _step()
    before = _store()
    out = step(X)
    assert math.isfinite(out["loss"])
    assert all(not torch.equal(_store()[n], v) for n, v in before.items())


def test_nan_parameter_refused_by_validation_names_the_site_and_changes_nothing():
    step = _step()
    _set("loc", math.nan)
    before = _store()
    with pytest.raises(NonFiniteError, match=r"invalid parameters.*non-finite: guide site 'z'"):
        step(X)
    _assert_unchanged(before)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_nan_loss_without_validation_names_the_sites_and_changes_nothing():
    step = _step()
    _set("loc", math.nan)
    before = _store()
    with pyro.validation_enabled(False):
        with pytest.raises(NonFiniteError, match=r"the loss is nan; non-finite: guide site 'z'"):
            step(X)
    _assert_unchanged(before)


def test_invalid_distribution_parameter_names_the_site_and_changes_nothing():
    step = _step()
    _set("s", -1.0)  # a negative Normal scale: finite, but log-density NaN
    before = _store()
    with pytest.raises(NonFiniteError, match=r"invalid parameters.*non-finite: model site 'x'"):
        step(X)
    _assert_unchanged(before)


def test_nan_gradient_only_names_the_parameter_and_changes_nothing():
    step = _step()
    _set("w", 0.0)
    before = _store()
    with pytest.raises(NonFiniteError, match=r"non-finite gradient of parameter\(s\) \['w'\]"):
        step(X)
    _assert_unchanged(before)


def test_other_errors_of_the_program_are_not_called_non_finite():
    def broken(x):
        raise ValueError("the program's own error")

    with pytest.raises(ValueError, match="the program's own error"):
        SVIStep(model, broken)(X)


def test_gradient_hooks_run_between_backward_and_update():
    step = _step()
    seen = []

    def hook(params):
        store = pyro.get_param_store()
        seen.append([store.param_name(p) for p in params])
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        for p in params:
            p.grad.zero_()  # SGD then leaves every parameter as it was

    step.gradient_hooks.append(hook)
    before = _store()
    step(X)
    assert seen == [["loc", "s", "scale", "w"]]  # sorted by name: the same order on every rank
    assert all(torch.equal(_store()[n], v) for n, v in before.items())


# --- a model must train its own tensors --------------------------------------------------------
class Regression(PyroModule):
    def __init__(self):
        super().__init__()
        self.linear = PyroModule[torch.nn.Linear](1, 1)

    def model(self, x):
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(self.linear(x[:, :1]).squeeze(-1), 1.0), obs=x[:, 1])


XY = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])


def _no_guide(x):
    pass


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def test_a_second_pyro_module_with_the_same_names_is_refused_until_the_store_is_cleared():
    first, second = Regression(), Regression()
    late = SVIStep(second.model, _no_guide, lr=0.1)  # built while the store was still empty
    SVIStep(first.model, _no_guide, lr=0.1)(XY)
    w1, w2 = _weights(first), _weights(second)
    message = r"\['linear.bias', 'linear.weight'\].*clear_param_store"
    with pytest.raises(ValueError, match=message):  # refused when the step is built ...
        SVIStep(second.model, _no_guide, lr=0.1)
    with pytest.raises(ValueError, match=message):  # ... or at its first update
        late(XY)
    assert not _changed(w1, first) and not _changed(w2, second)
    assert all(p.grad is None for p in [*first.parameters(), *second.parameters()])
    pyro.clear_param_store()
    late(XY)
    assert not _changed(w1, first) and _changed(w2, second) == {"linear.weight", "linear.bias"}


class Scale(PyroModule):
    """A user's PyroModule with a constrained PyroParam and its own forward program."""

    def __init__(self):
        super().__init__()
        self.sigma = PyroParam(torch.tensor(1.0), constraint=constraints.positive)

    def forward(self, y):
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(0.0, self.sigma), obs=y)


def test_pyro_params_of_a_second_module_are_not_silently_shared():
    """Pyro would hand the second module the first one's stored sigma (PyroParams adopt the
    store's tensor), so training one would move the other."""
    y = torch.tensor([2.0, -3.0, 1.0])
    first = Scale()
    SVIStep(first, _no_guide, lr=0.1)(y)
    with pytest.raises(ValueError, match=r"\['sigma'\].*param_scope=True"):
        SVIStep(Scale(), _no_guide, lr=0.1)
    sigma = first.sigma.detach().clone()
    second = Scale()
    step = SVIStep(second, _no_guide, lr=0.1, param_scope=True)
    for _ in range(3):
        step(y)
    assert torch.equal(first.sigma.detach(), sigma)
    with step.param_scope():
        assert not torch.equal(second.sigma.detach(), sigma)


def test_two_vaes_train_side_by_side_in_private_param_stores():
    x = torch.rand(8, 5).round()
    vaes = [VAE(5, 2, (4,)), VAE(5, 2, (4,))]
    steps = [SVIStep(v.model, v.guide, lr=0.01, param_scope=True) for v in vaes]
    for _ in range(2):
        for i, (vae, step) in enumerate(zip(vaes, steps, strict=True)):
            before = [_weights(v) for v in vaes]
            step(x)
            assert _changed(before[i], vae) == set(before[i])  # its own tensors, all of them
            assert not _changed(before[1 - i], vaes[1 - i])  # and not the other model's
    assert not list(pyro.get_param_store().keys())  # the global store was never touched
    names = set(steps[0].param_state["params"])
    assert "encoder.net.0.weight" in names and names == set(steps[1].param_state["params"])


def test_a_function_guide_with_pyro_module_is_refused_on_a_name_conflict():
    def guide_with(net):
        def g(x):
            pyro.module("enc", net)
            pyro.sample("z", dist.Normal(net(x[:, None]).sum(), 1.0))

        return g

    def zmodel(x):
        pyro.sample("z", dist.Normal(0.0, 1.0))

    net1, net2 = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    SVIStep(zmodel, guide_with(net1), pyro.infer.Trace_ELBO(), lr=0.1)(X)
    with pytest.raises(ValueError, match=r"\['enc\$\$\$bias', 'enc\$\$\$weight'\]"):
        SVIStep(zmodel, guide_with(net2), pyro.infer.Trace_ELBO(), lr=0.1)(X)
    # in a private store, net2 trains its own tensors
    before1, before2 = _weights(net1), _weights(net2)
    SVIStep(zmodel, guide_with(net2), pyro.infer.Trace_ELBO(), lr=0.1, param_scope=True)(X)
    assert not _changed(before1, net1) and _changed(before2, net2) == {"weight", "bias"}


def test_adopting_stored_tensors_is_not_a_conflict():
    """``pyro.module(..., update_module_params=True)`` computes with the store's tensors."""
    net1, net2 = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)

    def guide(x):
        net = pyro.module("enc", guide.net, update_module_params=True)
        pyro.sample("z", dist.Normal(net(x[:, None]).sum(), 1.0))

    def zmodel(x):
        pyro.sample("z", dist.Normal(0.0, 1.0))

    guide.net = net1
    SVIStep(zmodel, guide, pyro.infer.Trace_ELBO(), lr=0.1)(X)
    guide.net = net2
    stored = _weights(net1)
    SVIStep(zmodel, guide, pyro.infer.Trace_ELBO(), lr=0.1)(X)
    assert net2.weight is net1.weight and _changed(stored, net1) == {"weight", "bias"}


def test_param_scope_keeps_function_parameters_out_of_the_global_store():
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO(), lr=0.1, param_scope=True)
    step.setup(X)
    with step.param_scope():
        _set("w", 1.0)
    step(X)
    assert not list(pyro.get_param_store().keys())
    assert set(step.param_state["params"]) == {"w", "s", "loc", "scale"}
    with step.param_scope():
        assert pyro.param("w").item() != 1.0  # trained inside the scope
