r"""The adversarial autoencoder of Makhzani et al. (2016) as a Pyro program.

An autoencoder :math:`z = f_\varphi(x)` (or :math:`z \sim q(z \mid x)`), :math:`x \sim
p(x \mid z; \theta)`, whose aggregated posterior :math:`q(z) = \mathbb E_{p_d(x)} q(z \mid x)` is
matched to a prior :math:`p(z)` by an adversarial game instead of a KL term:

.. math::

    \min_{\theta, \varphi}\ -\mathbb E_{p_d(x)} \mathbb E_{q(z|x)} \log p(x \mid z; \theta)
    + \lambda\, \mathcal L_G(q), \qquad
    \text{critic: separate } z \sim p(z) \text{ (real) from } z \sim q(z \mid x) \text{ (fake)}.

The prior only has to be *sampled*: a ``pyro.distributions`` distribution (e.g.
:func:`gaussian_mixture_prior`, the paper's 10 Gaussians on a circle) or any callable
``n -> (n, latent_dim)`` samples (an implicit prior). The adversarial losses of
:mod:`pyrogen.infer.adversarial` read the codes at the guide's site ``"z"`` (the model replayed on
the guide's trace, so gradients reach the encoder); compose them with the reconstruction term via
:func:`pyrogen.infer.autoencoding.aae_loss`::

    aae = AdversarialAutoencoder(64, latent_dim=2, prior=gaussian_mixture_prior())
    loss = aae_loss(aae, adv_weight=1000.0)  # reconstruction + 1000 * nsgan on "z"
    adv = loss.terms[1][1]
    adv.critic_loss(aae.model, aae.guide, x, real=aae.prior_sample(len(x)))  # critic step

References:
  1. Adversarial Autoencoders, A. Makhzani, J. Shlens, N. Jaitly, I. Goodfellow, B. Frey (2016).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn.module import to_pyro_module_

from pyrogen.models.likelihoods import Likelihood
from pyrogen.models.vae import VAE
from pyrogen.nn import MLP
from pyrogen.nn.adversarial import Critic

#: Kinds of encoder: a deterministic map (Delta guide) or a Gaussian q(z|x).
ENCODERS = ("deterministic", "gaussian")


def gaussian_mixture_prior(
    num_components: int = 10, radius: float = 4.0, scale: float = 0.5
) -> dist.MixtureSameFamily:
    r"""Equal-weight mixture of ``num_components`` isotropic 2-D Gaussians with means on a circle,

    .. math:: p(z) = \frac1K \sum_{k=0}^{K-1} \mathcal N\big(z;\ r(\cos\tfrac{2\pi k}{K},
        \sin\tfrac{2\pi k}{K}),\ s^2 I_2\big),

    the prior of the adversarial autoencoder's Fig. 4 (Makhzani et al., 2016); event shape (2,).
    """
    if num_components < 1:
        raise ValueError(f"Expected num_components >= 1, got {num_components}.")
    if not radius >= 0 or not scale > 0:
        raise ValueError(f"Expected radius >= 0 and scale > 0, got {radius}, {scale}.")
    angles = torch.arange(num_components) * (2 * math.pi / num_components)
    locs = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
    mixing = dist.Categorical(logits=torch.zeros(num_components))
    return dist.MixtureSameFamily(mixing, dist.Normal(locs, scale).to_event(1))


class AdversarialAutoencoder(VAE):
    r"""Adversarial autoencoder (Makhzani et al., 2016): encoder at the guide's site ``"z"``,
    decoder :math:`p(x \mid z)` at the observed site ``"x"``, a critic on codes and a prior
    given as a sampler.

    :param data_dim: features per example.
    :param latent_dim: size of z (2 for :func:`gaussian_mixture_prior`).
    :param hidden: hidden sizes of the encoder (the decoder mirrors them).
    :param likelihood: ``"bernoulli"``, ``"gaussian"`` or a Likelihood.
    :param prior: ``None`` (:math:`\mathcal N(0, I)`), a ``pyro.distributions`` distribution with
        event shape ``(latent_dim,)``, or a callable ``n -> tensor (n, latent_dim)``.
    :param encoder: ``"deterministic"`` (:math:`q(z|x) = \delta_{f(x)}`, a ``Delta`` guide) or
        ``"gaussian"`` (:math:`\mathcal N(\mu(x), \sigma^2(x) I)`, reparameterized).
    :param num_data: training-set size for the data plate's scale (``None``: the batch).
    :param critic_hidden: hidden sizes of :attr:`critic`, a plain ``nn.Module`` on codes (not a
        PyroModule: the generator side must not move it).
    :param critic_activation: hidden activation of the critic.

    The model's ``"z"`` site draws from the prior (a ``Delta`` at the sampler's draw for an
    implicit prior), so ``model`` is a generative program; its density at ``z`` is not used:
    train with the reconstruction term plus an adversarial term, not with an ELBO.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (400,),
        likelihood: str | Likelihood = "bernoulli",
        prior: dist.Distribution | Callable[[int], torch.Tensor] | None = None,
        encoder: str = "deterministic",
        num_data: int | None = None,
        critic_hidden: Sequence[int] = (256, 256),
        critic_activation: str = "relu",
    ) -> None:
        super().__init__(data_dim, latent_dim, hidden, likelihood, num_data)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}.")
        self.encoder_kind = encoder
        if encoder == "deterministic":
            self.encoder = MLP(data_dim, self.hidden, latent_dim)
            to_pyro_module_(self.encoder)
        self.prior = self._check_prior(prior)
        self.critic_hidden, self.critic_activation = tuple(critic_hidden), critic_activation
        self.critic = self.make_critic()

    def _check_prior(self, prior):
        if prior is None:
            return dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1)
        if isinstance(prior, dist.Distribution):
            if tuple(prior.batch_shape) != () or tuple(prior.event_shape) != (self.latent_dim,):
                raise ValueError(
                    f"The prior must have batch shape () and event shape ({self.latent_dim},)"
                    f" (latent_dim), got {tuple(prior.batch_shape)} and"
                    f" {tuple(prior.event_shape)}; use .to_event(1) on a factorized prior."
                )
            return prior
        if callable(prior):
            return prior
        raise ValueError(
            f"prior must be None, a pyro.distributions distribution or a callable n -> samples"
            f" of shape (n, {self.latent_dim}), got {type(prior).__name__}."
        )

    def make_critic(self) -> Critic:
        """A fresh critic ``d(z) -> (batch,)`` on codes, with this model's settings."""
        return Critic(self.latent_dim, self.critic_hidden, activation=self.critic_activation)

    def prior_sample(self, n: int) -> torch.Tensor:
        """``n`` draws from the prior, shape ``(n, latent_dim)`` (the critic's real examples)."""
        n = int(n)
        if n < 1:
            raise ValueError(f"Expected a number of samples n >= 1, got {n}.")
        if isinstance(self.prior, dist.Distribution):
            z = self.prior.sample((n,))
        else:
            z = self.prior(n)
            if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, self.latent_dim):
                shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise ValueError(
                    f"The prior sampler returned {shape} for n={n}; it must return a tensor of"
                    f" shape (n, latent_dim) = ({n}, {self.latent_dim})."
                )
        return z.to(next(self.parameters()).device).detach()

    # --- the Pyro program -------------------------------------------------------------------
    def model(self, x: torch.Tensor) -> None:
        r""":math:`z \sim p(z)`, :math:`x \sim p(x \mid z; \theta)` for each row."""
        self._check_shape(x)
        with self._data_plate(x):
            if isinstance(self.prior, dist.Distribution):
                prior = self.prior.expand([len(x)])
            else:
                prior = dist.Delta(self.prior_sample(len(x)).to(x), event_dim=1)
            z = pyro.sample("z", prior)
            pyro.sample("x", self.likelihood.distribution(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        r""":math:`z = f_\varphi(x)` (Delta) or :math:`z \sim \mathcal N(\mu(x), \sigma^2(x) I)`."""
        self._check_shape(x)
        with self._data_plate(x):
            if self.encoder_kind == "deterministic":
                pyro.sample("z", dist.Delta(self.encoder(x), event_dim=1))
            else:
                loc, scale = self.encoder(x)
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # --- using a trained model ----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of ``x``, shape ``(N, latent_dim)``: f(x), or the mean of q(z|x) for a Gaussian
        encoder (unlike :meth:`VAE.encode`, one tensor)."""
        self._check_shape(x)
        out = self.encoder(x)
        return out[0] if self.encoder_kind == "gaussian" else out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the code of ``x``: E[x | z = encode(x)]."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, num_samples: int, mean: bool = True) -> torch.Tensor:
        """New data: z from the prior, then the mean of p(x|z) (``mean=True``) or a draw."""
        z = self.prior_sample(num_samples)
        if mean:
            return self.decode(z)
        return self.likelihood.distribution(self.decoder(z)).sample()

    def config(self) -> dict:
        """Constructor arguments except the prior (pass it again:
        ``AdversarialAutoencoder(**aae.config(), prior=prior)``)."""
        return {
            **super().config(),
            "encoder": self.encoder_kind,
            "critic_hidden": list(self.critic_hidden),
            "critic_activation": self.critic_activation,
        }
