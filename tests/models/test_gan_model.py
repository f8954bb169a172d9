import pyro
import pyro.optim
import pyro.poutine as poutine
import pytest
import torch

from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic, GeneratorNet, adversarial_mlp


def test_trace_exposes_z_and_x():
    gen = Generator(latent_dim=3, data_dim=2, hidden=(16,))
    trace = poutine.trace(gen.model).get_trace(5)
    assert trace.nodes["z"]["type"] == "sample"
    assert trace.nodes["z"]["value"].shape == (5, 3)
    x = trace.nodes["x"]["value"]
    assert x.shape == (5, 2)
    assert torch.allclose(x, gen.net(trace.nodes["z"]["value"]))
    assert x.requires_grad  # gradients flow to the generator's parameters


def test_custom_site_and_condition_on_z():
    gen = Generator(latent_dim=2, data_dim=4, hidden=(8, 8), site="img", output="sigmoid")
    z = torch.zeros(3, 2)
    trace = poutine.trace(poutine.condition(gen.model, data={"z": z})).get_trace(3)
    assert "img" in trace.nodes and "x" not in trace.nodes
    x = trace.nodes["img"]["value"]
    assert torch.allclose(x, x[:1].expand(3, 4))
    assert ((x > 0) & (x < 1)).all()


def test_conditional_generator_uses_labels():
    torch.manual_seed(0)
    gen = Generator(latent_dim=2, data_dim=2, hidden=(16,), num_classes=3)
    z = torch.zeros(2, 2)
    cond = poutine.condition(gen.model, data={"z": z})
    x = poutine.trace(cond).get_trace(2, torch.tensor([0, 2])).nodes["x"]["value"]
    assert not torch.allclose(x[0], x[1])
    with pytest.raises(ValueError, match="shape"):
        gen.model(2, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="pass labels"):
        gen.model(2)


def test_sample_chunks_without_grad():
    gen = Generator(latent_dim=2, data_dim=2, hidden=(8,))
    x = gen.sample(25, batch_size=10)
    assert x.shape == (25, 2) and not x.requires_grad


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(latent_dim=0, data_dim=2), "latent_dim"),
        (dict(latent_dim=2, data_dim=0), "data_dim"),
        (dict(latent_dim=2, data_dim=2, site="z"), "site"),
        (dict(latent_dim=2, data_dim=2, output="tanh"), "output"),
        (dict(latent_dim=2, data_dim=2, activation="gelu"), "activation"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Generator(**kwargs)


def test_critic_shapes_and_errors():
    critic = Critic(4, hidden=(8,))
    assert critic(torch.randn(6, 4)).shape == (6,)
    assert critic(torch.randn(6, 2, 2)).shape == (6,)  # flattened
    with pytest.raises(ValueError, match="expects 4 features"):
        critic(torch.randn(6, 3))
    cond = Critic(2, hidden=(8,), num_classes=3)
    assert cond(torch.randn(4, 2), torch.tensor([0, 1, 2, 0])).shape == (4,)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cond(torch.randn(1, 2), torch.tensor([3]))
    with pytest.raises(ValueError, match="sizes"):
        adversarial_mlp(2, (0,), 1)
    assert GeneratorNet(2, 3, (4,))(torch.randn(5, 2)).shape == (5, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generator_on_cuda():
    gen = Generator(latent_dim=2, data_dim=2, hidden=(8,)).cuda()
    trace = poutine.trace(gen.model).get_trace(4)
    assert trace.nodes["z"]["value"].is_cuda and trace.nodes["x"]["value"].is_cuda


@pytest.mark.parametrize("loss", ["gan", "nsgan", "wgan", "wgan-gp", "hinge"])
def test_pyro_svi_with_a_generator_loss_trains_every_generator_tensor(loss):
    """The generator is PyroModules all the way down: Pyro's SVI finds its weights by tracing
    (a plain nn.Module inside would leave the param store empty and nothing would train)."""
    from pyro.infer import SVI

    from pyrogen.infer import adversarial_loss

    gen, critic = Generator(2, 2, (16, 16)), Critic(2, (16,))
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    critic_before = {k: v.clone() for k, v in critic.state_dict().items()}
    svi = SVI(
        gen.model, lambda n: None, pyro.optim.Adam({"lr": 0.01}), adversarial_loss(loss, critic)
    )
    for _ in range(2):
        svi.step(32)
    changed = {k for k, v in gen.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == set(before)  # all 6 tensors of the generator
    assert all(torch.equal(critic_before[k], v) for k, v in critic.state_dict().items())
