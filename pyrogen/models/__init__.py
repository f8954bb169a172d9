"""Ready-made generative models, each a ``PyroModule`` with ``.model`` and ``.guide``."""

from pyrogen.models.vae import VAE

__all__ = ["VAE"]
