r"""Gaps found by ``benchmarks/mutate.py`` in :mod:`pyrogen.evaluate.likelihood`: one example,
``batch_size`` validation, model/guide type errors, and the progress bar (off unless asked for).

A user's own program: :math:`z_i \sim \mathcal N(0, 1)`, :math:`x_i \mid z_i \sim
\mathcal N(z_i, 1)` with the exact posterior :math:`\mathcal N(x_i / 2, 1/2)` as guide, so every
log weight, the ELBO and the log-likelihood all equal :math:`\log \mathcal N(x_i; 0, 2)`.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.evaluate import elbo, elbo_and_log_likelihood, log_likelihood

X = torch.tensor([[0.3], [-1.2], [2.0]])


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])


def guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x[:, 0] / 2, 0.5**0.5))


def log_evidence(x):
    return dist.Normal(0.0, 2**0.5).log_prob(x[:, 0])


class Pair:
    model, guide = staticmethod(model), staticmethod(guide)


def test_a_single_example_is_evaluated():
    ll = log_likelihood(model, X[:1], num_samples=3, reduction="none", guide=guide)
    torch.testing.assert_close(ll, log_evidence(X[:1]))
    got_elbo, got_ll = elbo_and_log_likelihood(Pair(), X[2:], num_samples=2)
    assert got_elbo == pytest.approx(log_evidence(X[2:]).item(), abs=1e-6)
    assert got_ll == pytest.approx(log_evidence(X[2:]).item(), abs=1e-6)


def test_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size >= 1"):
        log_likelihood(model, X, num_samples=2, batch_size=0, guide=guide)


def test_model_and_guide_must_be_callables():
    with pytest.raises(TypeError, match="Expected callables model and guide"):
        log_likelihood(model, X, num_samples=2, guide="guide")
    with pytest.raises(TypeError, match="Expected callables model and guide"):
        elbo("model", X, num_samples=2, guide=guide)

    class OnlyModel:
        model = staticmethod(model)

    with pytest.raises(TypeError, match=r"\.guide\(x\)"):
        log_likelihood(OnlyModel(), X, num_samples=2)


def test_progress_bar_only_when_asked_for(capsys):
    elbo(Pair(), X, num_samples=2)
    log_likelihood(Pair(), X, num_samples=2)
    elbo_and_log_likelihood(Pair(), X, num_samples=2)
    assert capsys.readouterr().err == ""
    elbo_and_log_likelihood(Pair(), X, num_samples=2, progress=True)
    err = capsys.readouterr().err
    assert "evaluate" in err and "3/3" in err
