"""gradient_variance on a loss with a known sequence of gradients: exact mean, unbiased variance
and SNR (gaps found by benchmarks/mutate.py)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrogen.infer import gradient_variance

# first value: the call that discovers the parameters; then the recorded draws
COEF_A = [100.0, 1.0, 2.0, 4.0, 7.0]
COEF_B = [100.0, 0.0, 5.0, 0.0, 5.0]  # 0: no gradient at all (the site is skipped)


def _sequenced_loss():
    calls = iter(range(len(COEF_A)))

    def loss(model, guide):
        i = next(calls)
        a = pyro.param("a", torch.tensor([1.0, -1.0]))
        sigma = pyro.param("sigma", torch.tensor(2.0), constraint=dist.constraints.positive)
        pyro.param("unused", torch.tensor(0.0))  # met, but never receives a gradient
        value = COEF_A[i] * a.sum() + 3.0 * sigma
        if COEF_B[i]:
            value = value + COEF_B[i] * pyro.param("b", torch.tensor(0.5))
        return value

    return loss


def test_exact_statistics_of_a_known_gradient_sequence():
    pyro.param("b", torch.tensor(0.5))
    stats = gradient_variance(_sequenced_loss(), None, None, num_samples=4)
    assert set(stats) == {"a", "sigma", "b"}
    a = stats["a"]
    assert a.mean.dtype == a.variance.dtype == a.snr.dtype == torch.float64
    torch.testing.assert_close(a.mean, torch.full((2,), 3.5, dtype=torch.float64))
    torch.testing.assert_close(a.variance, torch.full((2,), 7.0, dtype=torch.float64))
    torch.testing.assert_close(a.snr, torch.full((2,), 3.5 / math.sqrt(7.0), dtype=torch.float64))
    # b: [0 (no gradient), 5, 0, 5]
    assert stats["b"].mean.item() == pytest.approx(2.5)
    assert stats["b"].variance.item() == pytest.approx(25 / 3)
    # sigma = exp(u): the gradient with respect to the unconstrained u is 3 sigma = 6, always
    assert stats["sigma"].mean.item() == pytest.approx(6.0)
    assert stats["sigma"].variance.item() == 0.0 and math.isinf(stats["sigma"].snr.item())
    # parameters unchanged, gradients cleared
    torch.testing.assert_close(pyro.param("a"), torch.tensor([1.0, -1.0]))
    assert all(pyro.param(n).unconstrained().grad is None for n in ("a", "sigma", "b"))


def test_zero_gradient_has_nan_snr_and_pyro_elbo_path():
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        loc = pyro.param("loc", torch.tensor(0.0))
        pyro.param("dead", torch.tensor(1.0))
        pyro.sample("z", dist.Normal(loc * 0.0, 1.0))

    stats = gradient_variance(Trace_ELBO(), model, guide, num_samples=2)
    assert set(stats) == {"loc"}
    assert stats["loc"].mean.item() == 0.0 and math.isnan(stats["loc"].snr.item())
    with pytest.raises(ValueError, match="no Pyro parameters"):
        gradient_variance(lambda m, g: torch.ones(1, requires_grad=True).sum(), None, None)
    with pytest.raises(ValueError, match="Tensor without grad"):
        gradient_variance(lambda m, g: torch.ones(()), None, None)
    with pytest.raises(ValueError, match="got float$"):
        gradient_variance(lambda m, g: 1.0, None, None)
    for bad in (True, 2.0):
        with pytest.raises(ValueError, match="num_samples"):
            gradient_variance(Trace_ELBO(), model, guide, num_samples=bad)
