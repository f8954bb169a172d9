r"""One training loop for every objective: SVI steps and adversarial steps.

The :class:`Trainer` knows neither the model's structure nor the loss's maths. It draws
mini-batches, hands each one to a *step* (any object following :class:`TrainingStep`), records
what the step reports and tells its callbacks (:mod:`pyrogen.train.callbacks`). :class:`SVIStep`
is the step for Pyro's stochastic variational inference; :class:`~pyrogen.train.AdversarialStep`
the one for GANs.

Long runs lose nothing: a :class:`~pyrogen.train.checkpoint.Checkpointer` writes checkpoints
every ``checkpoint_every`` steps, at the end and on SIGINT/SIGTERM; ``resume=True`` continues from
the newest valid one *bit-identically* (the data order of epoch e is a function of ``(seed, e)``,
the per-batch transform draws from a generator whose state is saved, and so are all RNG states); a
NaN/Inf loss or gradient stops with the step and the site or parameter involved (or is skipped and
counted, ``nonfinite="skip"``). Under ``torchrun`` it trains data-parallel
(:mod:`pyrogen.train.distributed`).

Example::

    vae = VAE(data_dim=64)
    step = SVIStep(vae.model, vae.guide, TraceMeanField_ELBO(), lr=1e-3)
    history = Trainer(step, batch_size=128, epochs=50, seed=0).fit(train_x)
    history.losses  # one float per step
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from pyrogen.train import distributed
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
from pyrogen.train.checkpoint import Checkpointer, set_seed
from pyrogen.train.steps.base import Batch, NonFiniteError, TrainingStep

__all__ = [
    "History",
    "Trainer",
    "TrainingInterrupted",
    "epoch_order",
    "iterate_minibatches",
    "set_seed",
]

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
_HOOKS = ("on_train_begin", "on_step_end", "on_train_end")


def iterate_minibatches(
    data: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    transform: Transform | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """One epoch of shuffled mini-batches; ``transform(batch, generator)`` is applied to each
    (e.g. dynamic binarization, resampled every time a batch is drawn)."""
    order = torch.randperm(len(data), generator=generator)
    stop = len(data) - (len(data) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        batch = data[order[start : start + batch_size].to(data.device)]
        yield transform(batch, generator) if transform is not None else batch


def epoch_order(num_data: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch ``epoch``: a function of ``(seed, epoch)`` only, so a resumed
    run (or every rank of a distributed one) draws the same batches."""
    g = torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + epoch) % 2**63)
    return torch.randperm(num_data, generator=g)


def _validate_data(batch: torch.Tensor, step: TrainingStep, transform: Transform | None) -> None:
    if batch.is_floating_point() and not torch.isfinite(batch).all():
        rows = (~torch.isfinite(batch)).reshape(len(batch), -1).any(-1).nonzero().flatten()
        raise ValueError(
            f"The training data contain NaN or infinite values (first batch, rows"
            f" {rows[:5].tolist()}); remove or impute them before training."
        )
    check = getattr(step, "validate", None)
    if callable(check):
        check(batch)
        if transform is not None:  # a throwaway generator: the run's one stays untouched
            check(transform(batch, torch.Generator().manual_seed(0)))


def _autocast(amp: bool, device: torch.device) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise ValueError("amp=True (--amp) needs a CUDA device; drop it on CPU.")
    bf16 = torch.cuda.is_bf16_supported()
    return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)


def _check_arguments(epochs, steps, nonfinite, checkpoint_dir, resume, **positive) -> None:
    if (epochs is None) == (steps is None):
        raise ValueError("Give exactly one of epochs= or steps= to the Trainer.")
    for name, value in {"epochs": epochs, "steps": steps, **positive}.items():
        if value is not None and value < 1:
            raise ValueError(f"Expected {name} >= 1, got {value}.")
    if nonfinite not in ("raise", "skip"):
        raise ValueError(f"Expected nonfinite='raise' or 'skip', got {nonfinite!r}.")
    if (positive["checkpoint_every"] or resume) and checkpoint_dir is None:
        raise ValueError("checkpoint_every= and resume= need a checkpoint_dir=.")


def _checked_callbacks(callbacks: Iterable[Callback]) -> list[Callback]:
    callbacks = list(callbacks)
    for callback in callbacks:
        missing = [h for h in _HOOKS if not callable(getattr(callback, h, None))]
        if missing:
            raise TypeError(
                f"{type(callback).__name__} lacks {missing}; subclass pyrogen.train.Callback"
                " (its hooks do nothing unless overridden)."
            )
    return callbacks


class Trainer:
    r"""Drives a :class:`TrainingStep` over mini-batches for a number of epochs or steps.

    :param step: the update to run on each batch (e.g. :class:`SVIStep`).
    :param batch_size: examples per step (the *global* batch under ``torchrun``).
    :param epochs: passes over the data (give ``epochs`` or ``steps``, not both).
    :param steps: number of updates; the data are cycled through as often as needed.
    :param seed: seeds python, numpy, torch and Pyro (``seed + rank`` under ``torchrun``), the
        data order and the transform's generator.
    :param transform: applied to every batch as ``transform(batch, generator)``.
    :param progress: show a tqdm bar with the running (exponential average) loss.
    :param checkpoint_dir: where checkpoints and ``history.csv``/``.json`` go (``None``: none);
        also stops cleanly on SIGINT/SIGTERM (:class:`~pyrogen.train.callbacks.StopOnSignal`).
    :param checkpoint_every: write a checkpoint every this many steps (and always at the end).
    :param keep_checkpoints: how many of the newest checkpoints to keep.
    :param resume: continue from the newest valid checkpoint in ``checkpoint_dir`` up to the
        requested *total* ``epochs``/``steps``; start afresh if there is none. Other settings or
        other data are refused with a ``ValueError``.
    :param config: JSON-like settings stored in each checkpoint.
    :param nonfinite: ``"raise"`` (stop on a NaN/Inf loss or gradient) or ``"skip"`` (drop that
        batch and count it in ``History.skipped``).
    :param validate: check the first batch (NaN/Inf, and the step's ``validate``) before training.
    :param amp: mixed precision (``torch.autocast``, bfloat16 if supported) on CUDA.
    :param tensorboard: a log directory for TensorBoard scalars (needs ``tensorboard``).
    :param callbacks: user :class:`~pyrogen.train.callbacks.Callback` objects; they run before
        the built-in ones (progress, TensorBoard, checkpoints, signals) that the arguments above
        build.

    .. note:: Resuming is bit-identical on CPU: an interrupted and resumed run ends with exactly
        the parameters of an uninterrupted one (same settings and seed).
    """

    def __init__(
        self,
        step: TrainingStep,
        *,
        batch_size: int = 128,
        epochs: int | None = None,
        steps: int | None = None,
        seed: int = 0,
        transform: Transform | None = None,
        progress: bool = True,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 3,
        resume: bool = False,
        config: dict[str, Any] | None = None,
        nonfinite: str = "raise",
        validate: bool = True,
        amp: bool = False,
        tensorboard: str | Path | None = None,
        callbacks: Iterable[Callback] = (),
    ) -> None:
        if not callable(step):
            raise TypeError(f"step must be callable as step(batch), got {type(step).__name__}.")
        _check_arguments(
            epochs,
            steps,
            nonfinite,
            checkpoint_dir,
            resume,
            batch_size=batch_size,
            checkpoint_every=checkpoint_every,
            keep_checkpoints=keep_checkpoints,
        )
        self.step, self.batch_size, self.seed = step, batch_size, seed
        self.epochs, self.steps, self.transform = epochs, steps, transform
        self.nonfinite, self.validate, self.amp = nonfinite, validate, amp
        self.checkpointer = None
        if checkpoint_dir is not None:
            self.checkpointer = Checkpointer(checkpoint_dir, keep_checkpoints, config, resume)
        self.callbacks: list[Callback] = _checked_callbacks(callbacks)
        if progress:
            self.callbacks.append(ProgressBar())
        if tensorboard is not None:
            self.callbacks.append(TensorBoard(tensorboard))
        if self.checkpointer is not None:
            self.callbacks += [CheckpointEvery(self.checkpointer, checkpoint_every), StopOnSignal()]

    @property
    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint written or resumed from (``None``: none)."""
        return self.checkpointer.last_path if self.checkpointer is not None else None

    def total_steps(self, num_data: int) -> int:
        """Number of updates: ``steps``, or ``epochs`` passes of batches (each update consuming
        ``batches_per_step`` batches)."""
        if self.steps is not None:
            return self.steps
        per_step = getattr(self.step, "batches_per_step", 1)
        return max(1, self.epochs * math.ceil(num_data / self.batch_size) // per_step)

    def fit(self, data: torch.Tensor) -> History:
        """Train on ``data`` (first dimension indexes examples) and return the :class:`History`.

        :raises NonFiniteError: on a NaN/Inf loss or gradient (``nonfinite="raise"``).
        :raises TrainingInterrupted: after SIGINT/SIGTERM, once the final checkpoint is written.
        """
        if len(data) == 0:
            raise ValueError("Cannot train on an empty data set.")
        ctx = distributed.current()
        set_seed(self.seed + ctx.rank)
        state = TrainState(
            total=self.total_steps(len(data)),
            num_data=len(data),
            batches_per_epoch=math.ceil(len(data) / self.batch_size),
            generator=torch.Generator(device="cpu").manual_seed(self.seed),
            ctx=ctx,
        )
        self._prepare(data, ctx)
        if self.checkpointer is not None:
            self.checkpointer.start(self, state, data)
        begun = []
        try:
            for callback in self.callbacks:
                callback.on_train_begin(self, state)
                begun.append(callback)
            self._loop(data, state)
        except BaseException as err:
            state.error = err
            raise
        finally:
            for callback in begun:
                callback.on_train_end(self, state)
        return state.history

    def _prepare(self, data: torch.Tensor, ctx: distributed.Context) -> None:
        """Check the first batch, let the step create its parameters, synchronize ranks."""
        first = data[epoch_order(len(data), self.seed, 0)[: self.batch_size].to(data.device)]
        if self.validate:
            _validate_data(first, self.step, self.transform)
        setup = getattr(self.step, "setup", None)
        if callable(setup):
            g = torch.Generator().manual_seed(0)
            batch = self.transform(first, g) if self.transform is not None else first
            setup(distributed.shard(batch, ctx)[0])
        distributed.attach(self.step, ctx)
        distributed.broadcast_parameters(self.step, ctx)

    def _loop(self, data: torch.Tensor, state: TrainState) -> None:
        per_step = getattr(self.step, "batches_per_step", 1)
        batches = self._batches(data, state.batches, state.generator)
        while state.step < state.total and state.stop_reason is None:
            record = self._update([next(batches) for _ in range(per_step)], state)
            state.step, state.batches = state.step + 1, state.batches + per_step
            if record is not None:
                state.history.records.append(record)
            for callback in self.callbacks:
                callback.on_step_end(self, state, record)

    def _batches(self, data: torch.Tensor, start: int, gen: torch.Generator) -> Iterator[Batch]:
        """Global batches from the ``start``-th on; epoch e in the order ``epoch_order(e)``."""
        per_epoch = math.ceil(len(data) / self.batch_size)
        epoch, index = divmod(start, per_epoch)
        while True:
            order = epoch_order(len(data), self.seed, epoch).to(data.device)
            for i in range(index, per_epoch):
                batch = data[order[i * self.batch_size : (i + 1) * self.batch_size]]
                yield self.transform(batch, gen) if self.transform is not None else batch
            epoch, index = epoch + 1, 0

    def _update(self, batches: list[Batch], state: TrainState) -> dict[str, float] | None:
        """One step on this rank's shards; its record averaged over ranks (``None``: skipped)."""
        shards = [distributed.shard(b, state.ctx) for b in batches]
        try:
            with distributed.weighted(shards[-1][1]), _autocast(self.amp, batches[0].device):
                record = self.step(*(s for s, _ in shards))
        except NonFiniteError as err:
            if self.nonfinite == "skip":
                state.history.skipped += 1
                return None
            raise NonFiniteError(f"Step {state.step + 1}: {err} {self._advice()}") from err
        except FloatingPointError as err:
            raise FloatingPointError(f"Step {state.step + 1}: {err} {self._advice()}") from err
        keys = sorted(record)
        values = distributed.average([record[k] for k in keys], state.ctx)
        return dict(zip(keys, values, strict=True))

    def _advice(self) -> str:
        where = self.last_checkpoint or "none written (give checkpoint_dir= / --checkpoint-every)"
        return (
            f"Last good checkpoint: {where}. Lower the learning rate, check the data, or skip such"
            " batches with nonfinite='skip' (--skip-nonfinite)."
        )
