r"""Objectives of adversarially regularized autoencoders, as :class:`WeightedLoss` sums usable in
``pyro.infer.SVI``: the VAE-GAN (ELBO + λ · GAN loss on the decoded example) and the adversarial
autoencoder (reconstruction + λ · GAN loss on the codes).

* :func:`reconstruction_loss`: :math:`-\mathbb E_{q(z|x)} \log p(x \mid z)`, the model's observed
  sites scored with the model replayed on one draw of the guide (plates' subsampling scale
  applied, so with ``num_data`` it estimates the whole data set's reconstruction loss);
* :func:`vae_gan_loss`: :math:`-\mathrm{ELBO} + \lambda\, \mathcal L_G(\tilde x)` [1];
* :func:`aae_loss`: :math:`\text{reconstruction} + \lambda\, \mathcal L_G(z)` [2].

Scales: the ELBO and the reconstruction loss are *sums* over the data set (or batch), the
adversarial generator terms *means* per example; a per-example weight :math:`\lambda_1` is
``adv_weight = num_data * λ_1`` (or batch size × λ₁ without ``num_data``).

References:
  1. Autoencoding beyond pixels using a learned similarity metric, A. B. L. Larsen,
     S. K. Sønderby, H. Larochelle, O. Winther (2016).
  2. Adversarial Autoencoders, A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey (2016).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import TraceMeanField_ELBO

from pyrogen.infer.adversarial import adversarial_loss
from pyrogen.infer.compose import WeightedLoss


def _is_data(site: dict) -> bool:
    """An observed sample site that is not a ``pyro.deterministic`` record."""
    return (
        site["type"] == "sample"
        and site.get("is_observed", False)
        and not site.get("infer", {}).get("_deterministic", False)
    )


def reconstruction_loss(
    model: Callable, guide: Callable | None, *args: Any, **kwargs: Any
) -> torch.Tensor:
    r"""Reconstruction loss :math:`-\log p(x \mid z)` at :math:`z \sim q(z \mid x)` (one draw):
    minus the scaled log-likelihood of every observed site of ``model`` replayed on ``guide``'s
    trace. Latent sites are not scored (no KL / prior term). A Pyro loss
    ``loss(model, guide, *args, **kwargs)``, differentiable in the model's and guide's
    parameters (reparameterized or deterministic guides); usable as a :class:`WeightedLoss` term.
    """
    if guide is not None:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model = poutine.replay(model, trace=guide_trace)
    trace = poutine.trace(model).get_trace(*args, **kwargs)
    trace.compute_log_prob(site_filter=lambda name, site: _is_data(site))
    terms = [site["log_prob_sum"] for site in trace.nodes.values() if _is_data(site)]
    if not terms:
        raise ValueError(
            "The model has no observed sample site, so there is nothing to reconstruct; observe"
            " the data, e.g. pyro.sample('x', likelihood, obs=x)."
        )
    return -torch.stack(terms).sum()


def vae_gan_loss(
    vaegan: Any,
    adv_weight: float = 1.0,
    loss: str = "nsgan",
    elbo: Any = None,
    critic: Callable[..., torch.Tensor] | None = None,
    **loss_kwargs: Any,
) -> WeightedLoss:
    r"""``WeightedLoss([(1, elbo), (adv_weight, <loss>(critic, site=vaegan.site))])``: the
    VAE-GAN's encoder/decoder objective :math:`-\mathrm{ELBO} + \lambda\, \mathcal L_G(\tilde x)`.

    :param vaegan: a :class:`~pyrogen.models.VAEGAN` (anything with ``.critic`` and ``.site``).
    :param adv_weight: λ (see the module's note on scales).
    :param loss: name of the adversarial loss (``gan``, ``nsgan``, ``wgan``, ``wgan-gp``,
        ``hinge``); its critic part trains :attr:`critic` in a separate step.
    :param elbo: the ELBO term (default ``TraceMeanField_ELBO()``).
    :param critic: the critic (default ``vaegan.critic``).
    :param loss_kwargs: passed to the loss (``clip=``, ``penalty=``).
    """
    critic = vaegan.critic if critic is None else critic
    adv = adversarial_loss(loss, critic, site=vaegan.site, **loss_kwargs)
    return WeightedLoss([(1.0, elbo or TraceMeanField_ELBO()), (adv_weight, adv)])


def aae_loss(
    aae: Any,
    adv_weight: float = 1.0,
    loss: str = "nsgan",
    critic: Callable[..., torch.Tensor] | None = None,
    site: str = "z",
    **loss_kwargs: Any,
) -> WeightedLoss:
    r"""``WeightedLoss([(1, reconstruction_loss), (adv_weight, <loss>(critic, site="z"))])``:
    the adversarial autoencoder's encoder/decoder objective. The adversarial term reads the
    guide's codes (the model replayed on the guide's trace), so its gradient reaches the encoder;
    the critic (default ``aae.critic``) separates ``aae.prior_sample(n)`` (real) from codes.

    :param aae: a :class:`~pyrogen.models.AdversarialAutoencoder` (anything with ``.critic``).
    :param adv_weight: λ (see the module's note on scales).
    :param loss: name of the adversarial loss (``gan``, ``nsgan``, ``wgan``, ``wgan-gp``,
        ``hinge``).
    :param site: the latent site holding the codes.
    :param loss_kwargs: passed to the loss (``clip=``, ``penalty=``).
    """
    critic = aae.critic if critic is None else critic
    adv = adversarial_loss(loss, critic, site=site, **loss_kwargs)
    return WeightedLoss([(1.0, reconstruction_loss), (adv_weight, adv)])
