"""Training steps: one parameter update per call of the :class:`~pyrogen.train.Trainer`.

:class:`SVIStep` is Pyro's SVI update; :class:`AdversarialStep` alternates k critic updates and one
generator update. Both follow the :class:`TrainingStep` protocol, which users' own steps can follow
too.
"""

from pyrogen.train.steps.adversarial import AdversarialStep
from pyrogen.train.steps.base import Batch, NonFiniteError, TrainingStep
from pyrogen.train.steps.svi import SVIStep

__all__ = [
    "AdversarialStep",
    "Batch",
    "NonFiniteError",
    "SVIStep",
    "TrainingStep",
]
