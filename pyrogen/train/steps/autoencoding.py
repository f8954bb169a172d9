r"""Training steps of adversarially regularized auto-encoders: an
:class:`~pyrogen.train.AdversarialStep` wired for the VAE-GAN [1] and the adversarial
autoencoder [2], reporting each term of the encoder/decoder objective.

* :func:`vae_gan_step`: critic on data vs. reconstructions :math:`\tilde x` (site
  ``vaegan.site``); encoder/decoder on :math:`-\mathrm{ELBO} + \lambda\,\mathcal L_G(\tilde x)`
  (:func:`~pyrogen.infer.vae_gan_loss`);
* :func:`aae_step`: critic on prior samples vs. codes (site ``"z"``); encoder/decoder on
  :math:`\text{reconstruction} + \lambda\,\mathcal L_G(z)` (:func:`~pyrogen.infer.aae_loss`).

Both are the composition one would write by hand::

    composed = vae_gan_loss(vaegan, adv_weight)
    AdversarialStep(vaegan.model, vaegan.critic, composed.terms[1][1], guide=vaegan.guide,
                    generator_loss=composed, inputs="data")

with Adam(1e-3, β = (0.9, 0.999)) for both networks (auto-encoder settings, not the GAN
presets; any :class:`AdversarialStep` keyword overrides them), and each call also reports the
two terms *per example*: ``"neg_elbo"`` (VAE-GAN) or ``"reconstruction"`` (AAE), the ELBO /
reconstruction sum divided by ``num_data`` (or the batch size), and ``"generator"``, the
adversarial generator term (a mean over the batch). ``adv_weight`` is λ on the sum scale of
:mod:`pyrogen.infer.autoencoding`: a per-example weight λ₁ is ``adv_weight = num_data * λ₁``.

Example::

    vaegan = VAEGAN(64, 8, num_data=len(train_x))
    step = vae_gan_step(vaegan, adv_weight=7.0 * len(train_x))
    history = Trainer(step, batch_size=128, steps=300).fit(train_x)
    history.column("neg_elbo"), history.column("generator")

References:
  1. Autoencoding beyond pixels using a learned similarity metric, A. B. L. Larsen,
     S. K. Sønderby, H. Larochelle, O. Winther (2016).
  2. Adversarial Autoencoders, A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey (2016).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pyrogen.infer.autoencoding import aae_loss, vae_gan_loss
from pyrogen.infer.compose import WeightedLoss, differentiable
from pyrogen.train.steps.adversarial import AdversarialStep

#: Optimizer settings of both networks unless overridden (Adam's usual auto-encoder settings).
DEFAULTS: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999), "critic_steps": 1}


class _Recorded:
    """A loss term that remembers its last value per example (``values[name]``)."""

    def __init__(self, term: Any, name: str, values: dict[str, float], num_data: int | None):
        self.term, self.name, self.values, self.num_data = term, name, values, num_data
        self.fn = differentiable(term)

    def __call__(self, model: Callable, guide: Callable | None, *args, **kwargs) -> torch.Tensor:
        value = self.fn(model, guide, *args, **kwargs)
        scale = 1.0 if self.num_data == 0 else 1.0 / (self.num_data or len(args[0]))
        self.values[self.name] = float(value.detach()) * scale
        return value


class AutoencodingStep(AdversarialStep):
    """An :class:`AdversarialStep` whose record also holds the terms of its generator loss
    (``terms``: name -> value of the last generator update). Build it with
    :func:`vae_gan_step` or :func:`aae_step`."""

    def __init__(self, *args: Any, terms: dict[str, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terms = terms

    def __call__(self, *batches: Any) -> dict[str, float]:
        record = super().__call__(*batches)
        return {**record, **self.terms}


def _step(owner, composed: WeightedLoss, first: str, real, step_kwargs) -> AutoencodingStep:
    values: dict[str, float] = {}
    (w_main, main), (w_adv, adv) = composed.terms
    num_data = getattr(owner, "num_data", None)
    recorded = WeightedLoss(
        [
            (w_main, _Recorded(main, first, values, num_data)),
            (w_adv, _Recorded(adv, "generator", values, 0)),  # already a mean per example
        ]
    )
    kwargs = {**DEFAULTS, **step_kwargs}
    return AutoencodingStep(
        owner.model,
        owner.critic,
        adv,
        guide=owner.guide,
        generator_loss=recorded,
        inputs="data",
        real=real,
        terms=values,
        **kwargs,
    )


def vae_gan_step(
    vaegan: Any,
    adv_weight: float,
    loss: str = "nsgan",
    *,
    elbo: Any = None,
    loss_kwargs: dict[str, Any] | None = None,
    **step_kwargs: Any,
) -> AutoencodingStep:
    r"""The VAE-GAN's training step: per call, ``critic_steps`` critic updates (data vs.
    reconstructions at ``vaegan.site``), then one encoder/decoder update on
    :math:`-\mathrm{ELBO} + \lambda\,\mathcal L_G` (:func:`~pyrogen.infer.vae_gan_loss`).

    :param vaegan: a :class:`~pyrogen.models.VAEGAN` (``model``, ``guide``, ``critic``, ``site``).
    :param adv_weight: λ on the sum scale (``num_data`` × the per-example weight).
    :param loss: adversarial loss name (``gan``, ``nsgan``, ``wgan``, ``wgan-gp``, ``hinge``).
    :param elbo: the ELBO term (default ``TraceMeanField_ELBO()``).
    :param loss_kwargs: ``clip=`` / ``penalty=`` of the adversarial loss.
    :param step_kwargs: :class:`AdversarialStep` keywords (``lr``, ``critic_lr``,
        ``critic_steps``, ``betas``, ``critic_optim``, ...); defaults :data:`DEFAULTS`.

    Records ``loss`` (the weighted sum), ``neg_elbo`` (per example), ``generator`` and the
    critic's ``critic_loss``.
    """
    composed = vae_gan_loss(vaegan, adv_weight, loss, elbo=elbo, **(loss_kwargs or {}))
    return _step(vaegan, composed, "neg_elbo", None, step_kwargs)


def aae_step(
    aae: Any,
    adv_weight: float,
    loss: str = "nsgan",
    *,
    loss_kwargs: dict[str, Any] | None = None,
    **step_kwargs: Any,
) -> AutoencodingStep:
    r"""The adversarial autoencoder's training step: per call, ``critic_steps`` critic updates
    (``aae.prior_sample(n)`` as real examples vs. the codes at site ``"z"``), then one
    encoder/decoder update on :math:`\text{reconstruction} + \lambda\,\mathcal L_G`
    (:func:`~pyrogen.infer.aae_loss`).

    :param aae: an :class:`~pyrogen.models.AdversarialAutoencoder` (``model``, ``guide``,
        ``critic``, ``prior_sample``).
    :param adv_weight: λ on the sum scale (``num_data`` × the per-example weight).
    :param loss: adversarial loss name (``gan``, ``nsgan``, ``wgan``, ``wgan-gp``, ``hinge``).
    :param loss_kwargs: ``clip=`` / ``penalty=`` of the adversarial loss.
    :param step_kwargs: :class:`AdversarialStep` keywords; defaults :data:`DEFAULTS`.

    Records ``loss``, ``reconstruction`` (per example), ``generator`` and ``critic_loss``.
    """
    composed = aae_loss(aae, adv_weight, loss, **(loss_kwargs or {}))

    def real(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return aae.prior_sample(len(x)).to(x)

    return _step(aae, composed, "reconstruction", real, step_kwargs)
