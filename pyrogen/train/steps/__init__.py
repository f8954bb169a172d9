"""Training steps: one parameter update per call of the :class:`~pyrogen.train.Trainer`.

:class:`SVIStep` is Pyro's SVI update; :class:`AdversarialStep` alternates k critic updates and one
generator update; :func:`vae_gan_step` and :func:`aae_step` build one for the VAE-GAN and the
adversarial autoencoder, :func:`pix2pix_step` for image-to-image translation. All follow the
:class:`TrainingStep` protocol, which users' own steps can follow too.
"""

from pyrogen.train.steps.adversarial import AdversarialStep
from pyrogen.train.steps.autoencoding import AutoencodingStep, aae_step, vae_gan_step
from pyrogen.train.steps.base import Batch, NonFiniteError, TrainingStep
from pyrogen.train.steps.svi import SVIStep
from pyrogen.train.steps.translation import pix2pix_step

__all__ = [
    "AdversarialStep",
    "AutoencodingStep",
    "Batch",
    "NonFiniteError",
    "SVIStep",
    "TrainingStep",
    "aae_step",
    "pix2pix_step",
    "vae_gan_step",
]
