r"""What the :class:`~pyrogen.train.Trainer` drives: the step protocol and its error."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

Batch = torch.Tensor


@runtime_checkable
class TrainingStep(Protocol):
    """What the :class:`Trainer` drives: one parameter update on a batch.

    ``step(*batch)`` performs the update on one batch and returns named scalars (at least
    ``"loss"``); a batch is a tuple of tensors, one per data tensor given to ``Trainer.fit``
    (``fit(x)``: ``step(x_batch)``; ``fit(x, y)``: ``step(x_batch, y_batch)``). A step with
    ``batches_per_step`` = k + 1 > 1 (an adversarial step with k critic updates) is called
    ``step(*batches)`` with k + 1 fresh batches, each a tensor (one data tensor) or a tuple of
    tensors (``fit(x, y)``).
    ``state_dict()`` / ``load_state_dict()`` hold everything needed to continue (modules and
    optimizer states).

    Optional hooks the Trainer uses when present: ``setup(*batch)`` creates lazily built
    parameters before training, ``validate(*batch)`` raises a ``ValueError`` on data the model
    cannot take, ``gradient_hooks`` (a list of ``fn(params)`` run between backward and update)
    for data-parallel training. A step raising :class:`NonFiniteError` promises that it changed
    no parameter.
    """

    def __call__(self, *batches: Batch) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NonFiniteError(FloatingPointError):
    """A NaN/Inf loss or gradient, raised *before* any parameter was changed."""
