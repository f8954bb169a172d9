"""WeightedLoss: a weighted sum of Pyro losses on a user's own VAE-GAN program."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO
from pyro.optim import Adam
from torch import nn

from pyrogen.infer import NonSaturatingGAN, WeightedLoss
from pyrogen.train import SVIStep

D, Z = 3, 2


class Linear(nn.Module):
    def __init__(self, d_in):
        super().__init__()
        self.lin = nn.Linear(d_in, 1)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


def vae_gan(seed=0):
    """A user's VAE whose decoded mean is also recorded at pyro.deterministic("x_rec")."""
    torch.manual_seed(seed)
    decoder, encoder, critic = nn.Linear(Z, D), nn.Linear(D, 2 * Z), Linear(D)

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z), 1.0).to_event(1))
            mean = pyro.deterministic("x_rec", decoder(z), event_dim=1)
            pyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", encoder)
        loc, log_scale = encoder(x).chunk(2, -1)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    return model, guide, decoder, encoder, critic


def grads(loss_fn, params, seed):
    for p in params:
        p.grad = None
    torch.manual_seed(seed)
    loss_fn().backward()
    return [p.grad.clone() for p in params]


def test_composed_gradient_is_the_weighted_sum_of_the_terms_gradients():
    pyro.clear_param_store()
    model, guide, decoder, encoder, critic = vae_gan()
    x = torch.randn(5, D)
    elbo, adv, lam = Trace_ELBO(), NonSaturatingGAN(critic, site="x_rec"), 0.3
    loss = WeightedLoss([(1.0, elbo), (lam, adv)])
    params = [*decoder.parameters(), *encoder.parameters()]
    # the composed loss runs the ELBO, then the adversarial term: replay that RNG sequence
    torch.manual_seed(1)
    total = loss.differentiable_loss(model, guide, x)
    torch.manual_seed(1)
    e = elbo.differentiable_loss(model, guide, x)
    a = adv.differentiable_loss(model, guide, x)
    assert torch.allclose(total, e + lam * a)
    g_total = grads(lambda: loss.differentiable_loss(model, guide, x), params, 1)
    torch.manual_seed(1)
    for p in params:
        p.grad = None
    e = elbo.differentiable_loss(model, guide, x)
    g_e = torch.autograd.grad(e, params)
    a = adv.differentiable_loss(model, guide, x)
    g_a = torch.autograd.grad(a, params)
    for gt, ge, ga in zip(g_total, g_e, g_a, strict=True):
        assert torch.allclose(gt, ge + lam * ga, atol=1e-6)
    # the adversarial term changes the decoder's gradient (it is not a no-op)
    assert any(ga.abs().sum() > 0 for ga in g_a[:2])
    # loss_and_grads fills the same gradients into the Pyro parameters, none into the critic
    for p in [*params, *critic.parameters()]:
        p.grad = None
    torch.manual_seed(1)
    value = loss.loss_and_grads(model, guide, x)
    assert value == pytest.approx(total.item(), rel=1e-6)
    for p, gt in zip(params, g_total, strict=True):
        assert torch.allclose(p.grad, gt, atol=1e-6)
    assert all(p.grad is None for p in critic.parameters())
    torch.manual_seed(1)
    assert loss.loss(model, guide, x) == pytest.approx(total.item(), rel=1e-5)


def test_svi_with_the_composed_loss_moves_the_decoder():
    pyro.clear_param_store()
    model, guide, decoder, encoder, critic = vae_gan()
    x = torch.randn(8, D)
    before = [p.detach().clone() for p in decoder.parameters()]
    loss = WeightedLoss([(1.0, Trace_ELBO()), (0.5, NonSaturatingGAN(critic, site="x_rec"))])
    svi = SVI(model, guide, Adam({"lr": 0.05}), loss=loss)
    for _ in range(3):
        assert isinstance(svi.step(x), float)
    assert all(not torch.equal(b, p) for b, p in zip(before, decoder.parameters(), strict=True))
    assert all(p.grad is None for p in critic.parameters())


def test_adversarial_term_alone_moves_the_decoder_in_svistep():
    """Weight 0 on the ELBO: only the adversarial term acts, and it trains the decoder."""
    pyro.clear_param_store()
    model, guide, decoder, encoder, critic = vae_gan()
    x = torch.randn(8, D)
    before = [p.detach().clone() for p in decoder.parameters()]
    loss = WeightedLoss([(0.0, Trace_ELBO()), (1.0, NonSaturatingGAN(critic, site="x_rec"))])
    step = SVIStep(model, guide, loss, optim=Adam({"lr": 0.05}))
    out = step(x)
    assert set(out) == {"loss"}
    assert all(not torch.equal(b, p) for b, p in zip(before, decoder.parameters(), strict=True))


def test_plain_callable_term_and_validation():
    pyro.clear_param_store()
    model, guide, *_ = vae_gan()
    x = torch.randn(4, D)
    elbo = Trace_ELBO()
    torch.manual_seed(3)
    two = WeightedLoss([(2.0, elbo.differentiable_loss)]).differentiable_loss(model, guide, x)
    torch.manual_seed(3)
    assert torch.allclose(two, 2 * elbo.differentiable_loss(model, guide, x))
    with pytest.raises(ValueError, match="at least one"):
        WeightedLoss([])
    with pytest.raises(ValueError, match="pairs"):
        WeightedLoss([Trace_ELBO()])
    with pytest.raises(ValueError, match="finite"):
        WeightedLoss([(float("nan"), Trace_ELBO())])
    with pytest.raises(TypeError, match="differentiable_loss"):
        WeightedLoss([(1.0, TraceGraph_ELBO())])
