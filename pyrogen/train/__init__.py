"""Training: the :class:`Trainer` loop and the steps it drives.

* :mod:`~pyrogen.train.trainer` — :class:`Trainer`, seeding and batching;
* :mod:`~pyrogen.train.callbacks` — the :class:`Callback` protocol, :class:`TrainState`,
  :class:`History` and the built-in callbacks (progress, TensorBoard, checkpoints, signals);
* :mod:`~pyrogen.train.schedule` — :class:`LRScheduler` (learning-rate schedules per epoch/step);
* :mod:`~pyrogen.train.validation` — :class:`Validation` (validation ELBO, early stopping);
* :mod:`~pyrogen.train.steps` — :class:`SVIStep`, :class:`AdversarialStep`,
  :func:`vae_gan_step` / :func:`aae_step` (auto-encoders with a critic), the
  :class:`TrainingStep` protocol;
* :mod:`~pyrogen.train.checkpoint` — :class:`Checkpointer`; atomic, checksummed checkpoint
  files and RNG states;
* :mod:`~pyrogen.train.distributed` — data-parallel training under ``torchrun``;
* :mod:`~pyrogen.train.presets` — published GAN and VAE settings, the defaults of
  ``pyrogen gan`` and ``pyrogen vae``;
* :mod:`~pyrogen.train.files` — atomic file writing.
"""

from pyrogen.train.callbacks import (
    Callback,
    CheckpointEvery,
    History,
    ProgressBar,
    StopOnSignal,
    TensorBoard,
    TrainingInterrupted,
    TrainState,
)
from pyrogen.train.checkpoint import Checkpointer
from pyrogen.train.schedule import LRScheduler, StagewiseLR, stagewise_adam
from pyrogen.train.steps import (
    AdversarialStep,
    AutoencodingStep,
    Batch,
    NonFiniteError,
    SVIStep,
    TrainingStep,
    aae_step,
    pix2pix_step,
    vae_gan_step,
)
from pyrogen.train.trainer import Trainer, epoch_order, iterate_minibatches, set_seed
from pyrogen.train.validation import Validation

__all__ = [
    "AdversarialStep",
    "AutoencodingStep",
    "Batch",
    "Callback",
    "CheckpointEvery",
    "Checkpointer",
    "History",
    "LRScheduler",
    "StagewiseLR",
    "stagewise_adam",
    "NonFiniteError",
    "ProgressBar",
    "SVIStep",
    "StopOnSignal",
    "TensorBoard",
    "TrainState",
    "Trainer",
    "TrainingInterrupted",
    "TrainingStep",
    "Validation",
    "aae_step",
    "pix2pix_step",
    "epoch_order",
    "iterate_minibatches",
    "set_seed",
    "vae_gan_step",
]
