"""Ready-made generative models, each a ``PyroModule``: :class:`VAE` (``.model`` / ``.guide``),
the conditional :class:`CVAE` (``.model(x, y)`` / ``.guide(x, y)``) and the implicit
:class:`Generator` of GANs (``.model`` emitting a named site)."""

from pyrogen.models.cvae import CVAE
from pyrogen.models.gan import Generator
from pyrogen.models.vae import VAE

__all__ = ["CVAE", "Generator", "VAE"]
