r"""Gaps found by ``benchmarks/mutate.py`` in :mod:`pyrogen.infer.importance`: one particle, a
scale given as a tensor, scales equal up to float rounding (or tiny and different), and the guessed
plate nesting of a program without plates.

Same conjugate program as ``test_importance.py`` (user functions with ``pyro.param``):
:math:`z_i \sim \mathcal N(0, 1)`, :math:`x_i \mid z_i \sim \mathcal N(z_i + b, 1)`, guide
:math:`\mathcal N((x_i - b) / 2, 1/2)` (the posterior), so every weight is
:math:`\log \mathcal N(x_i; b, 2)` exactly.
"""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyrogen.infer import log_importance_weights
from pyrogen.infer.importance import guess_max_plate_nesting

X = torch.tensor([0.3, -1.2, 2.0, 0.7])
B = 0.4


def model(x):
    b = pyro.param("b", torch.tensor(B))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + b, 1.0), obs=x)


def guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal((x - B) / 2, 0.5**0.5))


def log_evidence(x):
    return dist.Normal(B, 2**0.5).log_prob(x)


@pytest.fixture(autouse=True)
def _fresh():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


def test_one_particle_is_allowed():
    """K = 1 (the ELBO's single sample) is the smallest valid particle count."""
    log_w, scale = log_importance_weights(model, guide, X, num_samples=1)
    assert log_w.shape == (1, len(X)) and scale == 1.0
    torch.testing.assert_close(log_w, log_evidence(X)[None])
    default, _ = log_importance_weights(model, guide, X)  # num_samples defaults to 1
    torch.testing.assert_close(default, log_evidence(X)[None])


def test_a_scalar_tensor_scale_is_a_scale():
    """``poutine.scale(scale=torch.tensor(0.25))``: a one-element tensor is returned as a float;
    a tensor with one scale per example is refused (the scale must sit outside the log-sum-exp)."""
    s = torch.tensor(0.25)
    log_w, scale = log_importance_weights(
        poutine.scale(model, s), poutine.scale(guide, s), X, num_samples=3
    )
    assert isinstance(scale, float) and scale == 0.25
    torch.testing.assert_close(log_w, log_evidence(X).expand(3, -1))
    per_example = torch.tensor([1.0, 2.0, 1.0, 1.0])
    with pytest.raises(NotImplementedError, match="tensor scale of shape"):
        log_importance_weights(
            poutine.scale(model, per_example), poutine.scale(guide, per_example), X, num_samples=2
        )


def test_scales_equal_up_to_rounding_are_shared_and_tiny_different_scales_are_not():
    """The model scaled by a float32 tensor, the guide by the same number as a Python float:
    33333.332 vs 33333.333 differ in the 8th digit, which is rounding, not a different scale.
    Scales 1e-7 and 2e-7 differ by a factor of two although their difference is tiny."""
    n = 1e5 / 3
    log_w, scale = log_importance_weights(
        poutine.scale(model, torch.tensor(n)), poutine.scale(guide, n), X, num_samples=2
    )
    assert torch.tensor(n).item() != n  # the two scales really differ by rounding
    assert scale == pytest.approx(n, rel=1e-6)
    torch.testing.assert_close(log_w, log_evidence(X).expand(2, -1))

    def tiny_model(x):
        with pyro.plate("data", len(x)), poutine.scale(scale=1e-7):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with poutine.scale(scale=2.0):
                pyro.sample("x", dist.Normal(z + B, 1.0), obs=x)

    _, scale = log_importance_weights(tiny_model, poutine.scale(guide, 1e-7), X, num_samples=2)
    assert scale is None


def test_guessed_plate_nesting_is_the_deepest_plate_and_zero_without_plates():
    def no_plates(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def no_plates_guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    assert guess_max_plate_nesting(no_plates, no_plates_guide, torch.tensor(0.5)) == 0
    assert guess_max_plate_nesting(model, guide, X) == 1

    def deep(x):
        with pyro.plate("data", len(x), dim=-3):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[:, None, None])

    assert guess_max_plate_nesting(deep, lambda x: None, X) == 3
    # no plate: the joint weight of the one latent, log N(x; 0, 2) at the exact posterior
    log_w, _ = log_importance_weights(
        no_plates,
        lambda x: pyro.sample("mu", dist.Normal(x / 2, 0.5**0.5)),
        torch.tensor(0.5),
        num_samples=3,
    )
    torch.testing.assert_close(
        log_w, dist.Normal(0.0, 2**0.5).log_prob(torch.tensor(0.5)).expand(3)
    )


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_iwae_and_stl_refuse_fewer_than_one_particle(bad):
    from pyrogen.infer import IWAE, STL_ELBO

    for loss in (IWAE, STL_ELBO):
        with pytest.raises(ValueError, match="num_particles to be an integer >= 1"):
            loss(num_particles=bad)
    assert IWAE(num_particles=1).num_particles == STL_ELBO(num_particles=1).num_particles == 1


def test_iwae_stl_gives_model_parameters_the_standard_gradient():
    """STL only drops the guide's direct score term: off the posterior, with K = 6 particles,
    the model parameter b gets sum_k softmax(log w)_k d/db log p(x, z_k), the standard IWAE
    gradient, on the same draws (the softmax must use the true log weights)."""
    from pyrogen.infer import IWAE

    def shifted_guide(x):
        loc = pyro.param("loc", torch.tensor(0.7))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal((x - B) / 2 + loc, 0.9))

    grads = []
    for estimator in ("standard", "stl"):
        pyro.set_rng_seed(3)
        for name in ("b", "loc"):
            if name in pyro.get_param_store():
                pyro.param(name).unconstrained().grad = None
        IWAE(6, estimator=estimator).loss_and_grads(model, shifted_guide, X)
        grads.append(pyro.param("b").unconstrained().grad.clone())
    assert grads[0].abs() > 0.1
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
