"""VAE-GAN: a VAE recording its decoded mean at "x_rec", trained on ELBO + λ · GAN loss."""

import numpy as np
import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from pyrogen.data import load_dataset
from pyrogen.infer import NonSaturatingGAN, adversarial_loss
from pyrogen.infer.autoencoding import vae_gan_loss
from pyrogen.models import VAE, VAEGAN
from pyrogen.train import Trainer, vae_gan_step


def small(seed=0, **kwargs):
    torch.manual_seed(seed)
    return VAEGAN(6, 2, hidden=(8,), critic_hidden=(8,), **kwargs)


def test_x_rec_is_the_likelihood_mean_of_the_guide_code():
    vg = small()
    x = torch.rand(5, 6)
    guide_trace = poutine.trace(vg.guide).get_trace(x)
    trace = poutine.trace(poutine.replay(vg.model, trace=guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    x_rec = trace.nodes["x_rec"]["value"]
    assert torch.equal(trace.nodes["z"]["value"], z)
    assert torch.allclose(x_rec, torch.sigmoid(vg.decoder(z)))
    assert x_rec.requires_grad and trace.nodes["x"]["is_observed"]


def test_same_seed_same_vae_weights_and_config_round_trip():
    vg, vae = small(), None
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=(8,))
    for name, p in vae.named_parameters():
        assert torch.equal(p, dict(vg.named_parameters())[name])
    rebuilt = VAEGAN(**vg.config())
    assert rebuilt.config() == vg.config() and rebuilt.site == "x_rec"


@pytest.mark.parametrize("site", ["x", "z", ""])
def test_site_must_be_a_new_name(site):
    with pytest.raises(ValueError, match="site must name a new deterministic site"):
        small(site=site)


def test_composed_gradient_is_elbo_plus_lambda_adversarial_gradient():
    vg, x, lam = small(), torch.rand(7, 6), 0.37
    loss = vae_gan_loss(vg, adv_weight=lam)
    elbo, adv = loss.terms[0][1], loss.terms[1][1]
    assert isinstance(elbo, TraceMeanField_ELBO) and isinstance(adv, NonSaturatingGAN)
    assert adv.site == "x_rec" and adv.critic is vg.critic
    params = [p for n, p in vg.named_parameters() if not n.startswith("critic")]
    torch.manual_seed(3)
    total = torch.autograd.grad(loss.differentiable_loss(vg.model, vg.guide, x), params)
    torch.manual_seed(3)  # the same draws: the ELBO's run first, then the adversarial term's
    e = elbo.differentiable_loss(vg.model, vg.guide, x)
    a = adv.differentiable_loss(vg.model, vg.guide, x)
    g_e = torch.autograd.grad(e, params, retain_graph=True)
    g_a = torch.autograd.grad(a, params)
    for t, ge, ga in zip(total, g_e, g_a, strict=True):
        torch.testing.assert_close(t, ge + lam * ga, rtol=1e-5, atol=1e-6)
    assert any(ga.abs().sum() > 0 for ga in g_a)  # the adversarial term does move the VAE


def test_svi_step_does_not_touch_the_critic():
    vg, x = small(), torch.rand(7, 6)
    before = [p.detach().clone() for p in vg.critic.parameters()]
    svi = SVI(vg.model, vg.guide, pyro.optim.Adam({"lr": 0.1}), vae_gan_loss(vg, 1.0))
    svi.step(x)
    assert all(p.grad is None for p in vg.critic.parameters())
    assert all(torch.equal(b, p) for b, p in zip(before, vg.critic.parameters(), strict=True))
    assert not any(name.startswith("critic") for name in pyro.get_param_store().keys())


@pytest.mark.parametrize("name", ["gan", "nsgan", "wgan", "wgan-gp", "hinge"])
def test_pointing_the_loss_at_the_observed_data_is_refused(name):
    vg, x = small(), torch.rand(4, 6)
    adv = adversarial_loss(name, vg.critic, site="x")
    with pytest.raises(ValueError, match="Site 'x' is observed"):
        adv.generator_loss(vg.model, vg.guide, x)
    with pytest.raises(ValueError, match="Site 'x' is observed"):
        adv.critic_terms(vg.model, vg.guide, x, real=x)


def test_training_on_digits_through_the_step_and_trainer_decreases_both_terms():
    """The issue's test, on the product path: vae_gan_step (an AdversarialStep: critic update on
    data vs. reconstructions, then an encoder/decoder update on ELBO + λ · nsgan) driven by the
    Trainer; both the -ELBO term and the generator term go down from their start."""
    data = load_dataset("digits").train_x
    n, window = len(data), 50
    vg = VAEGAN(64, 8, hidden=(128,), num_data=n, critic_hidden=(64,))
    step = vae_gan_step(vg, adv_weight=7.0 * n)  # ≈ 7 per example (the ELBO is a data-set sum)
    history = Trainer(step, batch_size=128, steps=300, seed=0, progress=False).fit(data)
    e, g = np.array(history.column("neg_elbo")), np.array(history.column("generator"))
    assert len(e) == len(g) == 300 and len(history.column("critic_loss")) == 300
    print(
        f"-ELBO/example {e[:window].mean():.2f} -> {e[-window:].mean():.2f};"
        f" generator term {g[:window].mean():.3f} -> {g[-window:].mean():.3f}"
    )
    assert e[-window:].mean() < e[:window].mean() - 5
    assert g[-window:].mean() < g[:window].mean()


def test_step_records_the_terms_of_the_composed_loss():
    """The recorded terms are those of the composed loss on the update's batch: -ELBO per
    example and the generator term, whose weighted sum is the step's loss."""
    vg, x = small(num_data=40), torch.rand(8, 6)
    step = vae_gan_step(vg, adv_weight=3.0)
    record = step(x, x)
    assert set(record) >= {"loss", "critic_loss", "neg_elbo", "generator"}
    # TraceMeanField_ELBO's -ELBO with num_data=40 is a sum over 40 examples; the record is per
    # example, so loss = 40 * neg_elbo + 3 * generator
    assert record["loss"] == pytest.approx(40 * record["neg_elbo"] + 3 * record["generator"])
    assert step.loss.site == "x_rec" and step.loss.critic is vg.critic and step.guide == vg.guide
    assert step.critic_steps == 1 and step.lr == 1e-3 and step.betas == (0.9, 0.999)
