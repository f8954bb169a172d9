"""Gaps found by ``benchmarks/mutate.py`` in :mod:`pyrogen.train` (SVIStep, Trainer, callbacks,
checkpoints), each on a user's own Pyro program."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.train import SVIStep

X = torch.tensor([0.5, -1.0, 2.0])


@pytest.fixture(autouse=True)
def _fresh():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


def model(x):
    b = pyro.param("b", torch.tensor(0.3))
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z + b, 1.0), obs=x)


def guide(x):
    loc = pyro.param("loc", torch.tensor(0.2))
    scale = pyro.param("scale", torch.tensor(0.9), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


def _values():
    return {k: v.unconstrained().detach().clone() for k, v in pyro.get_param_store().items()}


def test_default_optimizer_is_adam_with_lr_1e_3():
    """Adam's first update moves every parameter by lr * g / (|g| + eps), i.e. by lr = 1e-3."""
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO())
    step.setup(X)
    before = _values()
    step(X)
    for name, value in _values().items():
        assert (value - before[name]).abs().item() == pytest.approx(1e-3, rel=1e-3), name


def test_a_program_reading_a_param_without_an_init_value():
    """``pyro.param(name)`` with no initial value fetches a stored parameter: the step's check
    for shadowed parameters must accept it (Pyro passes no second argument then)."""

    def reading_guide(x):
        guide(x)
        pyro.param("loc")  # read back the value guide() created

    step = SVIStep(model, reading_guide, pyro.infer.Trace_ELBO(), lr=0.01)
    step.setup(X)
    before = _values()
    step(X)
    assert all(not torch.equal(v, before[k]) for k, v in _values().items())


def test_validate_runs_each_owner_module_once():
    """A module owning both model and guide (as a VAE does) is validated once per batch, and its
    error reaches the caller."""

    class Owner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def model(self, x):
            model(x)

        def guide(self, x):
            guide(x)

        def validate(self, batch):
            self.seen.append(batch)
            if batch.abs().max() > 10:
                raise ValueError("values above 10")

    owner = Owner()
    step = SVIStep(owner.model, owner.guide, pyro.infer.Trace_ELBO())
    step.validate(X)
    assert len(owner.seen) == 1 and owner.seen[0] is X
    with pytest.raises(ValueError, match="above 10"):
        step.validate(X * 100)


def test_state_dict_skips_a_trained_parameter_removed_from_the_store():
    """The optimizer remembers every parameter it updated (and, after a resume, the restored
    states not used yet); one the user has since deleted from the param store is not part of the
    step's state and does not break saving it."""
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO(), lr=0.01)
    step(X)
    saved = step.state_dict()
    del pyro.get_param_store()["b"]
    state = step.state_dict()
    assert set(state["params"]) == set(state["constraints"]) == {"loc", "scale"}
    pyro.clear_param_store()
    resumed = SVIStep(model, guide, pyro.infer.Trace_ELBO(), lr=0.01)
    resumed.load_state_dict(saved)  # optimizer states wait for the next update
    del pyro.get_param_store()["b"]
    state = resumed.state_dict()
    assert set(state["params"]) == set(state["constraints"]) == {"loc", "scale"}
