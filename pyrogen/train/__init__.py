"""Training: the :class:`Trainer` loop and the steps it drives.

* :mod:`~pyrogen.train.trainer` — :class:`Trainer`, :class:`History`, seeding and batching;
* :mod:`~pyrogen.train.steps` — :class:`SVIStep`, :class:`AdversarialStep`, the
  :class:`TrainingStep` protocol;
* :mod:`~pyrogen.train.checkpoint` — atomic, checksummed checkpoints and RNG states;
* :mod:`~pyrogen.train.distributed` — data-parallel training under ``torchrun``;
* :mod:`~pyrogen.train.presets` — published GAN settings and ``pyrogen gan``'s defaults;
* :mod:`~pyrogen.train.files` — atomic file writing.
"""

from pyrogen.train.steps import (
    AdversarialStep,
    Batch,
    NonFiniteError,
    SVIStep,
    TrainingStep,
)
from pyrogen.train.trainer import (
    History,
    Trainer,
    TrainingInterrupted,
    epoch_order,
    iterate_minibatches,
    set_seed,
)

__all__ = [
    "AdversarialStep",
    "Batch",
    "History",
    "NonFiniteError",
    "SVIStep",
    "Trainer",
    "TrainingInterrupted",
    "TrainingStep",
    "epoch_order",
    "iterate_minibatches",
    "set_seed",
]
