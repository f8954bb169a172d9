"""The convolutional VAE (``VAE(arch="conv")``): same Pyro program, conv networks."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.infer import get_objective
from pyrogen.models import VAE
from pyrogen.nn.conv import ConvDecoder, ConvEncoder
from pyrogen.train import SVIStep


def _conv_vae(shape, likelihood="bernoulli", **kwargs):
    dim = shape[0] * shape[1]
    return VAE(dim, 3, (16,), likelihood, arch="conv", image_shape=shape, base_channels=4, **kwargs)


@pytest.mark.parametrize("shape", [(8, 8), (28, 28)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_conv_vae_sites_shapes_and_finite_elbo(shape, likelihood):
    pyro.set_rng_seed(0)
    vae = _conv_vae(shape, likelihood, num_data=100)
    assert isinstance(vae.encoder, ConvEncoder) and isinstance(vae.decoder, ConvDecoder)
    dim = shape[0] * shape[1]
    x = torch.bernoulli(torch.full((5, dim), 0.5))
    guide = poutine.trace(vae.guide).get_trace(x)
    model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x)
    sites = [n for n, site in model.nodes.items() if site["type"] == "sample"]
    assert sites == ["data", "z", "x"] and model.observation_nodes == ["x"]
    assert model.nodes["z"]["value"].shape == (5, 3)
    assert model.nodes["x"]["fn"].batch_shape == (5,)
    assert model.nodes["x"]["fn"].event_shape == (dim,)
    assert model.nodes["x"]["scale"] == pytest.approx(100 / 5)
    loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    assert torch.isfinite(loss)
    assert vae.sample(4).shape == (4, dim) and vae.reconstruct(x).shape == (5, dim)


@pytest.mark.parametrize("estimator", ["iwae", "dreg", "stl", "score"])
def test_every_estimator_gives_a_finite_loss_and_reaches_both_networks(estimator):
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    vae = _conv_vae((8, 8))
    x = torch.bernoulli(torch.full((6, 64), 0.5))
    loss = get_objective(estimator, 3).differentiable_loss(vae.model, vae.guide, x)
    assert torch.isfinite(loss)
    loss.backward()
    first_conv = vae.encoder.net[0].weight.grad
    last_deconv = vae.decoder.net[-1].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0
    assert last_deconv is not None and last_deconv.abs().sum() > 0


def test_conv_vae_trains_in_a_user_loop_and_its_loss_decreases():
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    probs = torch.zeros(8, 8)
    probs[2:6, 2:6] = 0.9  # a bright square, clearly learnable
    data = torch.bernoulli(probs.reshape(1, 64).expand(32, 64))
    vae = _conv_vae((8, 8), num_data=32)
    step = SVIStep(vae.model, vae.guide, TraceMeanField_ELBO(), lr=1e-2, loss_scale=1 / 32)
    losses = [step(data)["loss"] for _ in range(30)]  # -ELBO per example, about 48 nats at first
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_config_rebuilds_the_conv_vae_and_mlp_config_is_unchanged():
    vae = _conv_vae((8, 8), num_data=10)
    config = vae.config()
    assert config["arch"] == "conv" and config["image_shape"] == [8, 8]
    assert config["base_channels"] == 4
    clone = VAE(**config)
    clone.load_state_dict(vae.state_dict())
    x = torch.bernoulli(torch.full((3, 64), 0.5))
    torch.testing.assert_close(clone.encode(x), vae.encode(x))
    assert "arch" not in VAE(64).config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"arch": "cnn", "image_shape": (8, 8)}, "arch must be one of"),
        ({"arch": "conv"}, "needs the images' shape"),
        ({"arch": "conv", "image_shape": (4, 8)}, "has 32 pixels but data_dim=64"),
        ({"arch": "conv", "image_shape": (8, 8), "hidden": (8, 8)}, "pass one size"),
        ({"image_shape": (8, 8)}, "image_shape is for arch='conv'"),
        ({"arch": "conv", "image_shape": (8, 8), "activation": "tanh"}, "uses ReLU"),
    ],
)
def test_bad_arch_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VAE(64, **kwargs)
