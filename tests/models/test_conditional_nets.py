"""Conditional networks: projection critic (Miyato & Koyama, 2018) and learned label embeddings."""

import pyro.poutine as poutine
import pytest
import torch
from torch import nn

from pyrogen.models import Generator
from pyrogen.nn import Critic, GeneratorNet, ProjectionCritic


def test_projection_critic_is_psi_of_phi_plus_embedding_inner_product():
    torch.manual_seed(0)
    critic = ProjectionCritic(5, num_classes=3, hidden=(7, 4))
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 2, 1, 0])
    # By hand from the submodules: phi = relu(W2 relu(W1 x + b1) + b2).
    lin1, lin2 = critic.phi[0][0], critic.phi[0][2]
    h = torch.relu(lin2(torch.relu(x @ lin1.weight.T + lin1.bias)))
    expected = h @ critic.psi.weight[0] + critic.psi.bias[0]
    expected = expected + (critic.embed.weight[y] * h).sum(1)
    torch.testing.assert_close(critic(x, y), expected)
    # The label matters only through the projection term.
    other = critic(x, (y + 1) % 3) - critic(x, y)
    torch.testing.assert_close(
        other, ((critic.embed.weight[(y + 1) % 3] - critic.embed.weight[y]) * h).sum(1)
    )


def test_projection_critic_errors():
    critic = ProjectionCritic(2, num_classes=3, hidden=(4,))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        critic(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        critic(torch.randn(2, 2), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="pass labels"):
        critic(torch.randn(2, 2))
    with pytest.raises(ValueError, match="expects 2 features"):
        critic(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes >= 1"):
        ProjectionCritic(2, num_classes=0)
    with pytest.raises(ValueError, match="at least one hidden layer"):
        ProjectionCritic(2, num_classes=2, hidden=())


def test_default_networks_unchanged_by_the_embedding_option():
    torch.manual_seed(0)
    critic = Critic(3, (4,), num_classes=2)
    assert list(critic.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    one_hot = nn.functional.one_hot(y, 2).float()
    torch.testing.assert_close(critic(x, y), reference(torch.cat([x, one_hot], 1)).squeeze(-1))


def test_learned_label_embedding_in_critic_and_generator():
    torch.manual_seed(0)
    critic = Critic(3, (4,), num_classes=5, embedding_dim=2)
    x, y = torch.randn(4, 3), torch.tensor([0, 4, 1, 0])
    feats = torch.cat([x, critic.labels.embedding.weight[y]], 1)
    torch.testing.assert_close(critic(x, y), critic.net(feats).squeeze(-1))
    net = GeneratorNet(2, 3, (4,), num_classes=5, embedding_dim=2)
    z = torch.randn(4, 2)
    torch.testing.assert_close(
        net(z, y), net.net(torch.cat([z, net.labels.embedding.weight[y]], 1))
    )
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        critic(x, torch.tensor([0, 5, 1, 0]))
    with pytest.raises(ValueError, match="set num_classes > 0"):
        Critic(3, (4,), embedding_dim=2)
    with pytest.raises(ValueError, match="embedding_dim >= 0"):
        GeneratorNet(2, 3, (4,), num_classes=2, embedding_dim=-1)
    gen = Generator(2, 3, (4,), num_classes=5, embedding_dim=2)
    assert gen.sample(4, y).shape == (4, 3)
    # Pyro sees the embedding: it is a PyroModule parameter of the generator.
    params = poutine.trace(gen.model, param_only=True).get_trace(4, y).nodes
    assert any("labels.embedding.weight" in name for name in params)
