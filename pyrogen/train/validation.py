r""":class:`Validation`: held-out ELBO during training, early stopping, the best parameters back.

Every ``every`` steps the callback estimates the per-example ELBO of held-out data,

.. math:: \mathrm{ELBO}_{val} = \frac1N \sum_{i=1}^N \frac1K \sum_{k=1}^K
    \log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i), \qquad z_{ik} \sim q(z \mid x_i),

(the weights of :func:`pyrogen.infer.importance.log_importance_weights`, as
:func:`pyrogen.evaluate.elbo` computes them), records it in the :class:`~pyrogen.train.History`
(``history.column("val_elbo")``), stops training after ``patience`` evaluations without
improvement (early stopping, Prechelt 1998) and at the end puts back the step's state of the best
evaluation::

    val = Validation(x_val, every=100, patience=5, num_samples=10)
    history = Trainer(step, steps=10_000, callbacks=[val]).fit(x_train)
    history.column("val_elbo"), val.best_step, val.best_value

The estimate draws from its own seeded random numbers (the same at every evaluation, so
evaluations differ only by the parameters) and puts every RNG state back: a run with validation
trains exactly as one without. The best state is kept in memory and in checkpoints (the
callback's ``state_dict``), so a resumed run continues with the same best.

References:
  1. Early Stopping — But When?, L. Prechelt (1998).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pyro.poutine as poutine
import torch

from pyrogen.infer.importance import guess_max_plate_nesting, log_importance_weights
from pyrogen.train.callbacks import Callback, StopOnSignal, Trainer, TrainState
from pyrogen.train.checkpoint import get_rng_state, set_rng_state, set_seed

__all__ = ["Validation"]


def _copy(value: Any) -> Any:
    """A detached copy of the tensors in nested dicts/lists (a step's ``state_dict`` holds live
    tensors: buffers, optimizer moments)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return type(value)((k, _copy(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_copy(v) for v in value)
    return value


class Validation(Callback):
    """Validation ELBO every ``every`` steps, early stopping and the best state restored.

    :param data: held-out tensors, the arguments of ``model(*data)`` / ``guide(*data)`` (same
        first dimension; every sample site in one data plate at dim -1, as for
        :func:`pyrogen.evaluate.elbo`), on the model's device.
    :param every: evaluate after every this many steps.
    :param patience: request a stop after this many evaluations without improvement (``None``:
        never stop).
    :param num_samples: particles :math:`K` per example.
    :param batch_size: examples per chunk.
    :param restore_best: at the end of training (finished or stopped early; not after an error
        or a signal, so that resuming stays exact) load the step's state of the best evaluation.
    :param min_delta: an improvement must exceed this many nats per example.
    :param seed: seed of the estimate's own random numbers.
    :param key: name of the value in the step's record (``history.column(key)``).
    """

    def __init__(
        self,
        *data: torch.Tensor,
        every: int = 100,
        patience: int | None = None,
        num_samples: int = 10,
        batch_size: int = 1000,
        restore_best: bool = True,
        min_delta: float = 0.0,
        seed: int = 0,
        key: str = "val_elbo",
    ) -> None:
        if not data or not all(isinstance(d, torch.Tensor) for d in data):
            raise TypeError("Validation(*data, ...) takes the held-out tensors first.")
        if len({len(d) for d in data}) != 1 or len(data[0]) == 0:
            raise ValueError(
                f"Validation tensors must share a non-empty first dimension (examples), got"
                f" lengths {[len(d) for d in data]}."
            )
        for name, value in (
            ("every", every),
            ("num_samples", num_samples),
            ("batch_size", batch_size),
            ("patience", patience),
        ):
            if value is not None and value < 1:
                raise ValueError(f"Expected {name} >= 1, got {value}.")
        self.data, self.every, self.patience = data, every, patience
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.restore_best, self.min_delta, self.key = restore_best, min_delta, key
        self._nesting: int | None = None
        self._reset()

    def _reset(self) -> None:
        self.values: list[tuple[int, float]] = []  # (step, validation ELBO)
        self.best_step: int | None = None
        self.best_value = -math.inf
        self.best_state: dict[str, Any] | None = None
        self.bad = 0  # evaluations since the best
        self._resumed = False

    def on_train_begin(self, trainer: Trainer, state: TrainState) -> None:
        step = trainer.step
        if not (callable(getattr(step, "model", None)) and callable(getattr(step, "guide", None))):
            raise ValueError(
                f"Validation computes the ELBO of the step's .model and .guide (e.g. SVIStep);"
                f" {type(step).__name__} has none."
            )
        if not self._resumed:
            self._reset()

    def evaluate(self, step: Any) -> float:
        """The validation ELBO (nats per example) of ``step``'s model and guide, in the step's
        param scope, without gradients and without touching any RNG's state."""
        scope = getattr(step, "param_scope", contextlib.nullcontext)
        rng = get_rng_state()
        try:
            with torch.no_grad(), scope(), poutine.block():
                if self._nesting is None:
                    first = [d[: self.batch_size] for d in self.data]
                    self._nesting = guess_max_plate_nesting(step.model, step.guide, *first)
                set_seed(self.seed)  # the same draws at every evaluation
                return self._elbo(step.model, step.guide)
        finally:
            set_rng_state(rng)

    def _elbo(self, model: Any, guide: Any) -> float:
        n, total = len(self.data[0]), 0.0
        for start in range(0, n, self.batch_size):
            chunk = [d[start : start + self.batch_size] for d in self.data]
            log_w, _ = log_importance_weights(
                model,
                guide,
                *chunk,
                num_samples=self.num_samples,
                max_plate_nesting=self._nesting,
                per_example=True,
            )
            total += float(log_w.double().mean(0).sum())
        return total / n

    def on_step_end(self, trainer: Trainer, state: TrainState, record: Any) -> None:
        if state.step % self.every:
            return
        value = self.evaluate(trainer.step)
        if record is not None:
            record[self.key] = value
        self.values.append((state.step, value))
        if value > self.best_value + self.min_delta:
            self.best_step, self.best_value, self.bad = state.step, value, 0
            self.best_state = _copy(trainer.step.state_dict()) if self.restore_best else None
            return
        self.bad += 1
        if self.patience is not None and self.bad >= self.patience:
            state.request_stop(
                f"validation ELBO did not improve for {self.bad} evaluations (best"
                f" {self.best_value:.4g} at step {self.best_step})"
            )

    def on_train_end(self, trainer: Trainer, state: TrainState) -> None:
        signalled = any(
            isinstance(c, StopOnSignal) and getattr(c, "stopped", False) for c in trainer.callbacks
        )
        if self.best_state is not None and state.error is None and not signalled:
            trainer.step.load_state_dict(_copy(self.best_state))
        self._resumed = False

    def state_dict(self) -> dict[str, Any]:
        """The evaluations so far, the best one and the step's state then."""
        return {
            "values": [list(v) for v in self.values],
            "best_step": self.best_step,
            "best_value": self.best_value,
            "bad": self.bad,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = [(int(s), float(v)) for s, v in state["values"]]
        self.best_step, self.best_value = state["best_step"], float(state["best_value"])
        self.bad, self.best_state = int(state["bad"]), _copy(state["best_state"])
        self._resumed = True
