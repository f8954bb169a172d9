"""Generator(net=...): a user's network (here the DCGAN generator) inside the implicit model."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.nn import PyroModule

from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import GeneratorNet
from pyrogen.nn.conv import ConvGeneratorNet


def test_generator_with_conv_net_traces_images_from_z():
    pyro.set_rng_seed(0)
    net = ConvGeneratorNet(3, (8, 8), base_channels=4).eval()
    gen = Generator(3, net=net)
    assert gen.data_dim == 64 and gen.net is net
    assert isinstance(net.net[0], PyroModule)  # to_pyro_module_: Pyro sees every weight
    trace = poutine.trace(gen.model).get_trace(5)
    x, z = trace.nodes["x"]["value"], trace.nodes["z"]["value"]
    assert x.shape == (5, 64)
    torch.testing.assert_close(x, net(z))  # x = net(z) exactly
    names = set(dict(gen.named_parameters()))
    assert "net.net.0.weight" in names and "net.net.2.weight" in names  # BatchNorm too


def test_generator_net_conditional_and_mismatches():
    net = ConvGeneratorNet(2, (8, 8), base_channels=4, num_classes=3)
    gen = Generator(2, num_classes=3, net=net)
    assert gen.sample(6, y=torch.arange(6) % 3).shape == (6, 64)
    with pytest.raises(ValueError, match="data_dim=10 disagrees with net.data_dim=64"):
        Generator(2, 10, num_classes=3, net=net)
    with pytest.raises(ValueError, match="latent_dim=5 disagrees"):
        Generator(5, num_classes=3, net=net)
    with pytest.raises(ValueError, match="num_classes=0 disagrees"):
        Generator(2, net=net)
    with pytest.raises(ValueError, match="data_dim"):
        Generator(2, net=torch.nn.Linear(2, 3))  # no data_dim attribute
    with pytest.raises(ValueError, match="Pass data_dim"):
        Generator(2)


def test_generator_default_mlp_unchanged():
    """Without net= the Generator builds the same MLP from the same random draws as before."""
    torch.manual_seed(1)
    gen = Generator(2, 3, hidden=(8,))
    torch.manual_seed(1)
    ref = GeneratorNet(2, 3, (8,), 0, "identity", "relu", 0)
    for (name, p), q in zip(gen.net.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
