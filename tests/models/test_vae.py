import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyrogen.data import load_dataset
from pyrogen.evaluate import elbo_and_log_likelihood
from pyrogen.models import VAE
from pyrogen.models.likelihoods import Gaussian, get_likelihood
from pyrogen.train import SVIStep, Trainer


def _vae(**kwargs):
    torch.manual_seed(0)
    return VAE(data_dim=6, latent_dim=3, hidden=(8,), **kwargs)


def _kl_closed_form(loc, scale):
    r"""KL(N(mu, s^2) || N(0, 1)) = 1/2 sum(mu^2 + s^2 - 1 - log s^2)."""
    return 0.5 * (loc**2 + scale**2 - 1 - torch.log(scale**2)).sum(-1)


def test_analytic_kl_equals_large_sample_monte_carlo_kl():
    vae = _vae()
    x = torch.rand(4, 6)
    loc, scale = vae.encode(x)
    q = torch.distributions.Normal(loc, scale)
    p = torch.distributions.Normal(torch.zeros_like(loc), 1.0)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    analytic = _kl_closed_form(loc, scale)
    torch.testing.assert_close(
        mc.mean(0), analytic, atol=4 * float(mc.std(0).max()) / 200_000**0.5, rtol=0
    )


def test_mean_field_elbo_is_reconstruction_minus_analytic_kl():
    """TraceMeanField_ELBO on the VAE uses the closed-form KL: replaying the same z gives
    loss = -log p(x|z) + KL exactly."""
    vae = _vae()
    x = torch.rand(5, 6).round()
    pyro.set_rng_seed(7)
    with torch.no_grad():
        loss = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(7)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    with torch.no_grad():
        log_lik = vae.likelihood.distribution(vae.decoder(z)).log_prob(x).sum()
    loc, scale = vae.encode(x)
    assert loss == pytest.approx(float(-log_lik + _kl_closed_form(loc, scale).sum()), rel=1e-5)


def test_mc_and_analytic_kl_elbos_agree_in_expectation():
    vae = _vae()
    x = torch.rand(5, 6).round()
    n = 4000
    analytic = TraceMeanField_ELBO(num_particles=n, vectorize_particles=True).loss(
        vae.model, vae.guide, x
    )
    mc = Trace_ELBO(num_particles=n, vectorize_particles=True).loss(vae.model, vae.guide, x)
    assert mc == pytest.approx(analytic, rel=0.01)


def test_data_plate_scales_the_minibatch_to_the_data_set():
    x = torch.rand(4, 6).round()
    full = _vae()
    scaled = _vae(num_data=40)
    pyro.set_rng_seed(1)
    a = TraceMeanField_ELBO().loss(full.model, full.guide, x)
    pyro.set_rng_seed(1)
    b = TraceMeanField_ELBO().loss(scaled.model, scaled.guide, x)
    assert b == pytest.approx(10 * a, rel=1e-5)


def test_shapes_of_encode_decode_sample_reconstruct():
    vae = _vae(likelihood="gaussian")
    x = torch.rand(7, 6)
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (7, 3) and (scale > 0).all()
    assert vae.decode(loc).shape == (7, 6)
    assert vae.reconstruct(x).shape == (7, 6)
    assert vae.sample(11).shape == (7 + 4, 6)
    assert vae.sample(3, mean=False).shape == (3, 6)
    rebuilt = VAE(**vae.config())
    rebuilt.load_state_dict(vae.state_dict())
    torch.testing.assert_close(rebuilt.reconstruct(x), vae.reconstruct(x))


def test_bernoulli_means_are_probabilities():
    vae = _vae()
    out = vae.sample(20)
    assert ((out >= 0) & (out <= 1)).all()


def test_gaussian_decoder_variance_is_bounded_below():
    lik = Gaussian(min_variance=1e-2)
    output = torch.cat([torch.zeros(1, 3), torch.full((1, 3), -100.0)], -1)
    d = lik.distribution(output)
    assert torch.allclose(d.base_dist.scale, torch.full((1, 3), 0.1), rtol=1e-3)
    big = lik.distribution(torch.cat([torch.zeros(1, 3), torch.full((1, 3), 4.0)], -1))
    assert torch.allclose(big.base_dist.scale**2, torch.full((1, 3), 4.0).exp(), rtol=1e-3)


@pytest.mark.parametrize(
    "data, likelihood, message",
    [
        (torch.full((3, 6), float("nan")), "bernoulli", "NaN"),
        (torch.full((3, 6), 2.0), "bernoulli", r"Bernoulli likelihood needs data in \[0, 1\]"),
        (torch.rand(3, 5), "bernoulli", "expects examples with 6 features"),
        (torch.tensor([[0.0, 1, 2, 3, 4, float("inf")]]), "gaussian", "NaN or infinite"),
    ],
)
def test_bad_data_raise_clear_errors(data, likelihood, message):
    vae = _vae(likelihood=likelihood)
    with pytest.raises(ValueError, match=message):
        vae.validate(data)


def test_wrong_feature_size_fails_in_the_model_too():
    vae = _vae()
    with pytest.raises(ValueError, match="expects examples with 6 features"):
        TraceMeanField_ELBO().loss(vae.model, vae.guide, torch.rand(3, 4))


def test_gaussian_accepts_data_outside_unit_interval():
    _vae(likelihood="gaussian").validate(torch.randn(4, 6) * 5)


def test_unknown_likelihood():
    with pytest.raises(ValueError, match="Unknown likelihood 'poisson'"):
        get_likelihood("poisson")


def test_training_on_digits_raises_the_test_elbo():
    data = load_dataset("digits", binarize="dynamic")
    torch.manual_seed(0)
    vae = VAE(data.dim, latent_dim=4, hidden=(64,), num_data=len(data.train_x))
    before, _ = elbo_and_log_likelihood(vae, data.test_x, num_samples=20)
    step = SVIStep(vae.model, vae.guide, lr=3e-3)
    Trainer(step, batch_size=100, epochs=8, transform=data.train_transform, progress=False).fit(
        data.train_x
    )
    after_elbo, after_ll = elbo_and_log_likelihood(vae, data.test_x, num_samples=200)
    assert after_elbo > before + 5  # nats per 8x8 image
    assert after_ll >= after_elbo
