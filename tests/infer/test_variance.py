r"""gradient_variance against closed forms.

Guide :math:`q = \mathcal N(\mu, \sigma^2)` (``sigma`` unconstrained), model
:math:`p(z) = \mathcal N(0, 1)`. The negative ELBO is :math:`\mathrm{KL}(q \| p) =
\tfrac12(\mu^2 + \sigma^2 - 1) - \log\sigma`. With :math:`z = \mu + \sigma\epsilon`, Pyro's
reparameterized per-sample loss :math:`\log q(z) - \log p(z) = -\epsilon^2/2 - \log\sigma + z^2/2
+ c` has gradients :math:`g_\mu = z = \mu + \sigma\epsilon` and
:math:`g_\sigma = z\epsilon - 1/\sigma = \mu\epsilon + \sigma\epsilon^2 - 1/\sigma`, so
:math:`E g = (\mu, \sigma - 1/\sigma)` and :math:`\mathrm{Var}\, g = (\sigma^2, \mu^2 + 2\sigma^2)`.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrogen.infer import STL_ELBO, GradStats, gradient_variance

MU, SIGMA = 0.7, 1.3


def model():
    pyro.sample("z", dist.Normal(0.0, 1.0))


def guide():
    mu = pyro.param("mu", torch.tensor([MU, -MU]))
    sigma = pyro.param("sigma", torch.tensor([SIGMA, SIGMA]))
    with pyro.plate("p", 2):
        pyro.sample("z", dist.Normal(mu, sigma))


def model2():
    with pyro.plate("p", 2):
        pyro.sample("z", dist.Normal(0.0, 1.0))


@pytest.fixture(autouse=True)
def _seed():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


def test_reparameterized_gradient_statistics_match_closed_form():
    n = 1500
    stats = gradient_variance(Trace_ELBO(), model2, guide, num_samples=n)
    assert set(stats) == {"mu", "sigma"}
    assert all(isinstance(s, GradStats) for s in stats.values())
    mu = torch.tensor([MU, -MU], dtype=torch.float64)
    mean = {"mu": mu, "sigma": torch.full((2,), SIGMA - 1 / SIGMA, dtype=torch.float64)}
    var = {"mu": torch.full((2,), SIGMA**2), "sigma": mu**2 + 2 * SIGMA**2}
    kurt = {"mu": 3.0, "sigma": 15.0}  # generous fourth-moment bound for the variance's SE
    for name in ("mu", "sigma"):
        s = stats[name]
        assert s.mean.shape == s.variance.shape == s.snr.shape == (2,)
        v = var[name].double()
        assert (s.mean - mean[name]).abs().max() < 4 * math.sqrt(v.max() / n)
        assert ((s.variance - v).abs() < 4 * v * math.sqrt((kurt[name] - 1) / n)).all()
        assert torch.allclose(s.snr, s.mean.abs() / s.variance.sqrt())


def test_callable_loss_and_deterministic_estimator():
    """A callable loss; the analytic KL has zero variance and infinite SNR."""

    def kl_loss(model, guide):
        mu, sigma = pyro.param("mu", torch.tensor(MU)), pyro.param("sigma", torch.tensor(SIGMA))
        q = dist.Normal(mu, sigma)
        return torch.distributions.kl_divergence(q, dist.Normal(0.0, 1.0))

    stats = gradient_variance(kl_loss, model, guide, num_samples=5)
    assert stats["mu"].mean.item() == pytest.approx(MU)
    assert stats["sigma"].mean.item() == pytest.approx(SIGMA - 1 / SIGMA)
    assert stats["mu"].variance.item() == 0.0 and math.isinf(stats["mu"].snr.item())


def test_keys_are_param_store_names_and_shapes_follow_parameters():
    linear = torch.nn.Linear(3, 1)

    def enc_guide():
        net = pyro.module("enc", linear)
        pyro.sample("z", dist.Normal(net(torch.ones(3)).squeeze(), 1.0))

    stats = gradient_variance(STL_ELBO(), model, enc_guide, num_samples=4)
    assert set(stats) == {"enc$$$weight", "enc$$$bias"}
    assert stats["enc$$$weight"].mean.shape == (1, 3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        gradient_variance(Trace_ELBO(), model, guide, num_samples=1)
    with pytest.raises(ValueError, match="callable loss"):
        gradient_variance(3, model, guide)
    with pytest.raises(ValueError, match="differentiable tensor"):
        gradient_variance(lambda m, g: 1.0, model, guide, num_samples=2)
