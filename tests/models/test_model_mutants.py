"""Likelihoods, the VAE's data plate and latent walks against exact values (gaps found by
benchmarks/mutate.py)."""

import math

import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F

from pyrogen.models import VAE
from pyrogen.models.latent import interpolate, random_walk
from pyrogen.models.likelihoods import Bernoulli, Gaussian, Likelihood, get_likelihood

# ------------------------------------------------------------------------------ likelihoods


def test_bernoulli_log_prob_mean_and_support():
    lik = Bernoulli()
    logits = torch.tensor([[0.5, -2.0, 3.0], [0.0, 1.0, -1.0]])
    x = torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0]])
    # log p(x | l) = sum_j x_j l_j - log(1 + e^{l_j}), one value per example
    expected = (x * logits - torch.log1p(logits.exp())).sum(-1)
    torch.testing.assert_close(lik.distribution(logits).log_prob(x), expected)
    torch.testing.assert_close(lik.mean(logits), 1 / (1 + (-logits).exp()))
    assert lik.params_per_feature == 1 and lik.name == "bernoulli"
    lik.validate(torch.tensor([[0.0, 1.0, 0.5]]))  # the closed interval [0, 1] is fine
    for bad in (-1e-3, 1.001):
        with pytest.raises(ValueError, match=r"data in \[0, 1\]"):
            lik.validate(torch.tensor([[0.0, bad]]))


def test_gaussian_log_prob_soft_variance_floor_and_mean():
    lik = Gaussian(min_variance=0.05)
    assert lik.params_per_feature == 2 and lik.name == "gaussian"
    loc = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    raw = torch.tensor([[0.3, -4.0], [1.5, -0.5]])
    x = torch.tensor([[0.0, 1.0], [2.5, -0.2]])
    output = torch.cat([loc, raw], -1)
    floor = math.log(0.05)
    log_var = floor + F.softplus(raw - floor)
    expected = (-0.5 * (math.log(2 * math.pi) + log_var + (x - loc) ** 2 / log_var.exp())).sum(-1)
    torch.testing.assert_close(lik.distribution(output).log_prob(x), expected)
    torch.testing.assert_close(lik.mean(output), loc)
    assert (lik.distribution(output).base_dist.scale ** 2 > 0.05).all()
    with pytest.raises(ValueError, match="min_variance > 0"):
        Gaussian(min_variance=0.0)
    Gaussian(min_variance=1e-12)
    # the default floor (what get_likelihood("gaussian") and the CLI use) is 1e-3
    assert get_likelihood("gaussian").min_log_var == pytest.approx(math.log(1e-3))


def test_gaussian_splits_the_last_dimension_of_batched_outputs():
    """Vectorized particles give decoder outputs of shape (K, batch, 2 * features)."""
    lik = Gaussian()
    output = torch.randn(2, 3, 4)
    torch.testing.assert_close(lik.mean(output), output[..., :2])
    d = lik.distribution(output)
    assert d.batch_shape == (2, 3) and d.event_shape == (2,)


def test_validation_names_the_bad_rows_and_get_likelihood():
    x = torch.zeros(4, 3)
    x[1, 2], x[3, 0] = float("nan"), float("-inf")
    for lik in (Bernoulli(), Gaussian()):
        with pytest.raises(ValueError, match=r"first rows: \[1, 3\]"):
            lik.validate(x)
    many = torch.full((8, 2), float("nan"))
    with pytest.raises(ValueError, match=r"first rows: \[0, 1, 2, 3, 4\]\)"):
        Gaussian().validate(many)  # at most five rows are listed
    Gaussian().validate(torch.tensor([[-5.0, 7.0]]))
    mine = Gaussian(min_variance=0.2)
    assert get_likelihood(mine) is mine
    assert isinstance(get_likelihood("bernoulli"), Bernoulli)
    assert isinstance(get_likelihood("gaussian"), Gaussian)
    with pytest.raises(NotImplementedError):
        Likelihood().distribution(x)
    with pytest.raises(NotImplementedError):
        Likelihood().mean(x)


# ------------------------------------------------------------------------------------- VAE


def _vae(**kwargs):
    torch.manual_seed(0)
    return VAE(data_dim=3, latent_dim=2, hidden=(5, 4), **kwargs)


@pytest.mark.parametrize("num_data, likelihood", [(None, "bernoulli"), (12, "gaussian")])
def test_vae_log_joint_and_guide_density_are_scaled_by_num_data_over_batch(num_data, likelihood):
    """Model and guide: every site in the data plate, scaled by num_data / batch size; log
    densities rebuilt in plain PyTorch from the encoder and decoder."""
    vae = _vae(num_data=num_data, likelihood=likelihood)
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5], [0.2, 0.9, 0.0]])
    scale = (num_data or len(x)) / len(x)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    assert z.shape == (3, 2)
    for trace in (guide_trace, model_trace):
        frames = trace.nodes["z"]["cond_indep_stack"]
        assert [(f.name, f.size, f.dim) for f in frames] == [("data", 3, -1)]  # subsample size
        assert trace.nodes["z"]["scale"] == pytest.approx(scale)
    with torch.no_grad():
        loc, sd = vae.encoder(x)
        log_q = torch.distributions.Normal(loc, sd).log_prob(z).sum()
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
        log_lik = vae.likelihood.distribution(vae.decoder(z)).log_prob(x).sum()
        assert float(guide_trace.log_prob_sum()) == pytest.approx(scale * float(log_q), rel=1e-5)
        expected = scale * float(log_prior + log_lik)
        assert float(model_trace.log_prob_sum()) == pytest.approx(expected, rel=1e-5)
    assert model_trace.nodes["x"]["is_observed"]
    torch.testing.assert_close(model_trace.nodes["x"]["value"], x)


def test_vae_architecture_and_config():
    vae = _vae(likelihood="gaussian", num_data=7)
    widths = [m.out_features for m in vae.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [4, 5, 3 * 2]  # mirrored hidden layers, two outputs per feature
    assert vae.config() == {
        "data_dim": 3,
        "latent_dim": 2,
        "hidden": [5, 4],
        "likelihood": "gaussian",
        "num_data": 7,
    }
    for bad in (dict(data_dim=0), dict(data_dim=3, latent_dim=0)):
        with pytest.raises(ValueError, match="data_dim, latent_dim >= 1"):
            VAE(**bad)
    VAE(data_dim=1, latent_dim=1, hidden=(2,))
    assert vae.encode(torch.zeros(3))[0].shape == (2,)  # one example as a 1-D tensor
    with pytest.raises(ValueError, match="3 features"):
        vae.encode(torch.zeros(4))  # 1-D input with the wrong size
    with pytest.raises(ValueError, match="3 features"):
        vae.encode(torch.tensor(1.0))


def test_vae_decode_reconstruct_and_sample_values():
    vae = _vae()
    x = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5]])
    with torch.no_grad():
        loc, sd = vae.encoder(x)
        torch.testing.assert_close(vae.reconstruct(x), torch.sigmoid(vae.decoder(loc)))
        g = torch.Generator().manual_seed(3)
        z = torch.randn(4, 2, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(vae.sample(4, generator=g), torch.sigmoid(vae.decoder(z)))
    draws = vae.sample(200, mean=False)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------------------- latent walks


def test_interpolation_values_and_dtype():
    z0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    z1 = torch.tensor([3.0, 2.0], dtype=torch.float64)
    path = interpolate(z0, z1, steps=3)
    assert path.dtype == torch.float64
    expected = torch.tensor([[1.0, -2.0], [2.0, 0.0], [3.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(path, expected)
    torch.testing.assert_close(interpolate(z0, z1, steps=2), torch.stack([z0, z1]))


def test_random_walk_recursion_is_exact():
    z0 = torch.tensor([[1.0, -1.0, 0.5]])
    walk = random_walk(z0, steps=4, step_size=0.6, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    expected = [z0]
    for _ in range(3):
        noise = torch.randn(z0.shape, generator=g)
        expected.append(math.sqrt(1 - 0.36) * expected[-1] + 0.6 * noise)
    torch.testing.assert_close(walk, torch.stack(expected))
    assert random_walk(z0, steps=1).shape == (1, 1, 3)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="step_size"):
            random_walk(z0, step_size=bad)
