"""Convolutional blocks: shapes, gradients, size refusals, spectral-norm Lipschitz bound, and
drop-in use inside pyrogen's Generator (AdversarialStep) and VAE (SVI)."""

import copy

import pyro
import pytest
import torch
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyrogen.models.gan import Generator
from pyrogen.models.vae import VAE
from pyrogen.nn import ConvCritic, ConvDecoder, ConvEncoder, ConvGeneratorNet
from pyrogen.train import AdversarialStep

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 8, 8)]


def _all_grads_nonzero(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("num_classes", [0, 10])
def test_generator_and_critic_shapes_and_gradients(shape, num_classes):
    torch.manual_seed(0)
    c, h, w = shape
    gen = ConvGeneratorNet(16, shape, base_channels=8, num_classes=num_classes)
    critic = ConvCritic(shape, base_channels=8, num_classes=num_classes)
    y = torch.arange(6) % 10 if num_classes else None
    x = gen(torch.randn(6, 16), y)
    assert x.shape == (6, c * h * w)
    assert ((x > 0) & (x < 1)).all()  # sigmoid output
    score = critic(x, y)
    assert score.shape == (6,)
    score.square().sum().backward()
    _all_grads_nonzero(gen)
    _all_grads_nonzero(critic)


def test_generator_identity_output_and_label_effect():
    torch.manual_seed(0)
    gen = ConvGeneratorNet(4, (8, 8), base_channels=4, num_classes=3, output="identity").eval()
    z = torch.randn(3, 4)
    x0, x1 = gen(z, torch.zeros(3, dtype=torch.long)), gen(z, torch.ones(3, dtype=torch.long))
    assert (x0 < 0).any()  # not squashed
    assert not torch.allclose(x0, x1)  # the label changes the image
    critic = ConvCritic((8, 8), base_channels=4, num_classes=3)
    assert not torch.allclose(critic(x0, torch.zeros(3).long()), critic(x0, torch.ones(3).long()))
    with pytest.raises(ValueError, match="pass labels"):
        gen(z)
    with pytest.raises(ValueError, match="pass labels"):
        critic(x0)


def test_critic_scores_do_not_depend_on_the_batch():
    """No BatchNorm: d(x_i) is the same alone and in a batch (needed by WGAN-GP)."""
    torch.manual_seed(0)
    critic = ConvCritic((1, 28, 28), base_channels=4, spectral_norm=True).eval()
    x = torch.rand(5, 784)
    torch.testing.assert_close(critic(x)[2:3], critic(x[2:3]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("factor", [1, 2])
def test_encoder_decoder_shapes_and_gradients(shape, factor):
    torch.manual_seed(0)
    c, h, w = shape
    enc, dec = ConvEncoder(shape, 3, base_channels=4), ConvDecoder(3, shape, factor, 4)
    loc, scale = enc(torch.rand(2, 5, c * h * w))  # leading dims, e.g. vectorized particles
    assert loc.shape == scale.shape == (2, 5, 3)
    assert (scale > 0).all()
    out = dec(loc + scale * torch.randn_like(loc))
    assert out.shape == (2, 5, factor * c * h * w)
    out.square().mean().backward()
    _all_grads_nonzero(enc)
    _all_grads_nonzero(dec)


def test_decoder_halves_are_separate_images():
    """Factor 2: the first C·H·W outputs are one set of channels (the means), the rest the
    other: zeroing the last layer's weights of the second set leaves only its bias."""
    dec = ConvDecoder(2, (8, 8), out_channels_factor=2, base_channels=4)
    last = dec.net[-1]
    with torch.no_grad():
        last.weight[:, 1:] = 0
        last.bias[1] = 3.0
    loc, raw = dec(torch.randn(4, 2)).chunk(2, dim=-1)
    assert torch.all(raw == 3.0)
    assert not torch.all(loc == loc[0, 0])


@pytest.mark.parametrize(
    "make",
    [
        lambda s: ConvGeneratorNet(4, s),
        lambda s: ConvCritic(s),
        lambda s: ConvEncoder(s, 4),
        lambda s: ConvDecoder(4, s),
    ],
)
@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 10, 10), "stages=1"),  # divisible by 2, not by 4: suggest fewer stages
        ((1, 7, 7), "resize or pad"),
        ((28, 30), "multiples of 2\\*\\*stages = 4"),
        ((1, 0, 8), "positive"),
        ((1, 2, 8, 8), "positive sizes"),
    ],
)
def test_bad_sizes_are_refused(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make(shape)


def test_bad_arguments_and_inputs_are_refused():
    with pytest.raises(ValueError, match="output"):
        ConvGeneratorNet(4, (8, 8), output="tanh")
    with pytest.raises(ValueError, match="out_channels_factor"):
        ConvDecoder(4, (8, 8), out_channels_factor=3)
    with pytest.raises(ValueError, match="64 = 1·8·8"):
        ConvCritic((8, 8))(torch.rand(2, 63))
    with pytest.raises(ValueError, match="latent"):
        ConvGeneratorNet(4, (8, 8))(torch.rand(2, 5))
    # stages=1 works for 10×10
    assert ConvCritic((10, 10), stages=1)(torch.rand(2, 100)).shape == (2,)


# --- spectral normalization bounds the critic's Lipschitz constant ------------------------------


def _operator_norm(layer: nn.Module, in_shape: tuple[int, ...], iters: int = 200) -> float:
    """Largest singular value of the linear part of ``layer`` (bias removed) on inputs of
    ``in_shape``, by power iteration on A^T A with autograd."""
    weight = layer.weight.detach()
    if isinstance(layer, nn.Conv2d):

        def apply(v):
            return nn.functional.conv2d(v, weight, None, layer.stride, layer.padding)

    else:

        def apply(v):
            return v @ weight.T

    gen = torch.Generator().manual_seed(0)
    v = torch.randn((1, *in_shape), generator=gen, dtype=torch.float64)
    weight = weight.double()
    for _ in range(iters):
        v = v / v.norm()
        v.requires_grad_(True)
        out = apply(v)
        (v,) = torch.autograd.grad(out, v, out)  # A^T A v
        v = v.detach()
    return float(v.norm().sqrt())  # ‖A^T A v‖ for unit v → σ_max²


def _lipschitz_bound(critic: ConvCritic) -> float:
    """Product of the exact operator norms of the conv/linear layers (LeakyReLU is 1-Lipschitz)."""
    bound, shape = 1.0, critic.image_shape
    for layer in critic.net:
        if isinstance(layer, nn.Conv2d):
            bound *= _operator_norm(layer, shape)
            c, h, w = shape
            shape = (layer.out_channels, h // 2, w // 2)
        elif isinstance(layer, nn.Linear):
            bound *= _operator_norm(layer, (layer.in_features,))
    return bound


def _lipschitz_estimate(critic: nn.Module, dim: int, n: int = 2000) -> float:
    """max over random points of ‖∇d(x)‖ and over random pairs of |d(x)-d(x')|/‖x-x'‖."""
    gen = torch.Generator().manual_seed(1)
    x = torch.cat([torch.rand(n, dim, generator=gen), torch.randn(n, dim, generator=gen)])
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x)
    x = x.detach()
    x2 = x + 0.05 * torch.randn(x.shape, generator=gen)  # nearby pairs
    x3 = x[torch.randperm(len(x), generator=gen)]  # far pairs
    with torch.no_grad():
        d = critic(x)
        ratios = [(d - critic(xx)).abs() / (x - xx).norm(dim=1) for xx in (x2, x3)]
    return max(float(grad.norm(dim=1).max()), *(float(r.max()) for r in ratios))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_spectral_norm_bounds_the_critic_lipschitz_constant(shape):
    torch.manual_seed(0)
    critic = ConvCritic(shape, base_channels=8, spectral_norm=True)
    dim = critic.data_dim
    with torch.no_grad():  # converge the power iteration of spectral_norm (one per train pass)
        for _ in range(100):
            critic(torch.rand(2, dim))
    critic.eval()
    bound = _lipschitz_bound(critic)
    # each normalised layer has σ ≈ 1 on its reshaped kernel; a 4×4 stride-2 conv is then at
    # most 2-Lipschitz (each pixel is in ≤ 2×2 patches): the documented bound 2**stages
    assert bound <= 4 * 1.01
    lipschitz = _lipschitz_estimate(critic, dim)
    assert 0 < lipschitz <= bound * (1 + 1e-4)

    # scaling the raw weights up leaves the normalised critic within the bound …
    with torch.no_grad():
        for layer in critic.net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.parametrizations.weight.original.mul_(4.0)
                layer.bias.mul_(4.0)
    assert _lipschitz_estimate(critic, dim) <= bound * (1 + 1e-4)
    # … but the same critic without spectral norm, weights scaled up, is not within it
    plain = ConvCritic(shape, base_channels=8, spectral_norm=False).eval()
    with torch.no_grad():
        for layer in plain.net:
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.weight.mul_(4.0)
    assert _lipschitz_estimate(plain, dim) > 4 * 1.01


# --- drop-ins -----------------------------------------------------------------------------------


def test_conv_generator_is_a_drop_in_for_generator_net_in_adversarial_step():
    """Generator with its net replaced (then converted to PyroModules) trains with
    AdversarialStep: every conv weight and the critic's weights change, losses are finite."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, data_dim=64, output="sigmoid")
    gen.net = ConvGeneratorNet(8, (1, 8, 8), base_channels=8)
    to_pyro_module_(gen.net)
    critic = ConvCritic((1, 8, 8), base_channels=8, spectral_norm=True)
    step = AdversarialStep(gen, critic, "wgan-gp", critic_steps=1, lr=1e-3)
    before_g = copy.deepcopy(gen.net.state_dict())
    before_c = {k: v.clone() for k, v in critic.state_dict().items()}
    out = step(torch.rand(16, 64), torch.rand(16, 64))
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    for name, p in gen.net.named_parameters():
        assert not torch.equal(p, before_g[name]), name
    changed = [k for k, v in critic.state_dict().items() if not torch.equal(v, before_c[k])]
    assert any("original" in k for k in changed)  # spectral-normalised weights trained
    assert gen.sample(5).shape == (5, 64)


def test_conv_encoder_decoder_are_drop_ins_for_the_vae():
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(data_dim=64, latent_dim=3, likelihood="gaussian")
    vae.encoder = ConvEncoder((8, 8), 3, base_channels=4, hidden=16)
    vae.decoder = ConvDecoder(3, (8, 8), out_channels_factor=2, base_channels=4)
    to_pyro_module_(vae.encoder)
    to_pyro_module_(vae.decoder)
    svi = pyro.infer.SVI(
        vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO()
    )
    w = vae.decoder.net[0].weight.detach().clone()
    loss = svi.step(torch.rand(10, 64))
    assert torch.isfinite(torch.tensor(loss))
    assert not torch.equal(vae.decoder.net[0].weight, w)
    assert vae.reconstruct(torch.rand(4, 64)).shape == (4, 64)
