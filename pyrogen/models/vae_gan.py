r"""The VAE-GAN of Larsen et al. (2016) as a Pyro program: a VAE whose decoded example is also
recorded at a deterministic site, so that an adversarial loss can score it.

.. math::

    z \sim \mathcal N(0, I), \quad \tilde x = \mathbb E[x \mid z] = \mu_\theta(z)
    \ (\text{site } \texttt{"x\_rec"}), \quad x \sim p(x \mid z; \theta)\ (\text{observed}),
    \quad q(z \mid x) = \mathcal N(\mu_\varphi(x), \sigma^2_\varphi(x) I).

The encoder/decoder side minimizes :math:`-\mathrm{ELBO} + \lambda\, \mathcal L_G`, with
:math:`\mathcal L_G` an adversarial generator loss (e.g. non-saturating,
:math:`-\mathbb E_q \log D(\tilde x)`) on the reconstructions :math:`\tilde x` of
:math:`z \sim q(z \mid x)` (the model replayed on the guide's trace); the critic :math:`D`
separates data from reconstructions in its own step. Compose the two with
:func:`pyrogen.infer.autoencoding.vae_gan_loss`::

    vaegan = VAEGAN(data_dim=64, latent_dim=8)
    loss = vae_gan_loss(vaegan, adv_weight=0.1)  # WeightedLoss: ELBO + 0.1 * nsgan on "x_rec"
    svi = pyro.infer.SVI(vaegan.model, vaegan.guide, pyro.optim.Adam({"lr": 1e-3}), loss)
    critic_loss = loss.terms[1][1].critic_loss(vaegan.model, vaegan.guide, x, real=x)

Difference from the paper: Larsen et al. replace the pixel likelihood by a Gaussian on the
critic's hidden features (a learned similarity); here the ELBO keeps the model's likelihood and
the critic only contributes the GAN term, so any Pyro ELBO applies unchanged.

References:
  1. Autoencoding beyond pixels using a learned similarity metric, A. B. L. Larsen,
     S. K. Sønderby, H. Larochelle, O. Winther (2016).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from pyrogen.models.likelihoods import Likelihood
from pyrogen.models.vae import VAE
from pyrogen.nn.adversarial import Critic


class VAEGAN(VAE):
    """A :class:`~pyrogen.models.VAE` that records the likelihood's mean at ``site`` and owns a
    critic on the data space.

    :param data_dim: features per example.
    :param latent_dim: size of z.
    :param hidden: hidden sizes of the encoder (the decoder mirrors them).
    :param likelihood: ``"bernoulli"``, ``"gaussian"`` or a Likelihood; the site holds its mean
        (pixel probabilities for Bernoulli, μ for Gaussian), which lies in the data's space.
    :param num_data: training-set size for the data plate's scale (``None``: the batch).
    :param critic_hidden: hidden sizes of the critic :attr:`critic`.
    :param critic_activation: hidden activation of the critic.
    :param site: name of the deterministic site holding the decoded example (not ``"x"``,
        ``"z"``).

    :attr:`critic` is a plain ``nn.Module`` (:class:`~pyrogen.nn.Critic`), deliberately *not* a
    PyroModule: the ELBO/generator side trains the Pyro parameters (encoder, decoder) and must not
    move the critic, which is trained by its own optimizer on the critic loss.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 10,
        hidden: Sequence[int] = (400,),
        likelihood: str | Likelihood = "bernoulli",
        num_data: int | None = None,
        critic_hidden: Sequence[int] = (256, 256),
        critic_activation: str = "leaky_relu",
        site: str = "x_rec",
    ) -> None:
        super().__init__(data_dim, latent_dim, hidden, likelihood, num_data)
        if not isinstance(site, str) or not site or site in ("x", "z"):
            raise ValueError(
                f"site must name a new deterministic site (not 'x', the observed data, nor 'z'),"
                f" got {site!r}; the default is 'x_rec'."
            )
        self.site = site
        self.critic_hidden, self.critic_activation = tuple(critic_hidden), critic_activation
        self.critic = self.make_critic()

    def make_critic(self) -> Critic:
        """A fresh critic ``d(x) -> (batch,)`` on the data space, with this model's settings."""
        return Critic(self.data_dim, self.critic_hidden, activation=self.critic_activation)

    def model(self, x: torch.Tensor) -> None:
        r""":math:`z \sim \mathcal N(0, I)`; the mean :math:`\tilde x` of :math:`p(x \mid z)` at
        :attr:`site`; :math:`x \sim p(x \mid z; \theta)` observed."""
        self._check_shape(x)
        with self._data_plate(x):
            prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).expand([len(x), self.latent_dim])
            z = pyro.sample("z", prior.to_event(1))
            out = self.decoder(z)
            pyro.deterministic(self.site, self.likelihood.mean(out), event_dim=1)
            pyro.sample("x", self.likelihood.distribution(out), obs=x)

    def config(self) -> dict:
        """Constructor arguments (``VAEGAN(**vaegan.config())``)."""
        return {
            **super().config(),
            "critic_hidden": list(self.critic_hidden),
            "critic_activation": self.critic_activation,
            "site": self.site,
        }
