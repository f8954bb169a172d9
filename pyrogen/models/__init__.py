"""Ready-made generative models, each a ``PyroModule``: :class:`VAE` (``.model`` / ``.guide``),
the conditional :class:`CVAE` (``.model(x, y)`` / ``.guide(x, y)``), the implicit
:class:`Generator` of GANs (``.model`` emitting a named site), the :class:`VAEGAN` (a VAE
recording its decoded example at ``"x_rec"``) and the :class:`AdversarialAutoencoder` (codes at
the guide's ``"z"`` matched to a sampled prior)."""

from pyrogen.models.aae import AdversarialAutoencoder, gaussian_mixture_prior
from pyrogen.models.cvae import CVAE
from pyrogen.models.gan import Generator
from pyrogen.models.vae import VAE
from pyrogen.models.vae_gan import VAEGAN

__all__ = [
    "CVAE",
    "VAE",
    "VAEGAN",
    "AdversarialAutoencoder",
    "Generator",
    "gaussian_mixture_prior",
]
