"""Ready-made generative models, each a ``PyroModule``: :class:`VAE` (``.model`` / ``.guide``) and
the implicit :class:`Generator` of GANs (``.model`` emitting a named site)."""

from pyrogen.models.gan import Generator
from pyrogen.models.vae import VAE

__all__ = ["Generator", "VAE"]
