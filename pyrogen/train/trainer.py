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
from torch.utils.data import Dataset, IterableDataset, TensorDataset, default_collate

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
from pyrogen.train.checkpoint import Checkpointer, data_fingerprint, set_seed
from pyrogen.train.steps.base import NonFiniteError, TrainingStep

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


class _Data:
    """The training data as aligned tensors (``fit(*tensors)``, a ``TensorDataset``) or a sized
    map-style ``Dataset`` returning tuples (or single tensors), read by example indices."""

    def __init__(self, data: tuple[Any, ...]) -> None:
        self.dataset: Dataset | None = None
        if len(data) == 1 and isinstance(data[0], TensorDataset):
            data = tuple(data[0].tensors)
        elif len(data) == 1 and isinstance(data[0], Dataset):
            self.dataset, self.tensors = data[0], ()
            if isinstance(self.dataset, IterableDataset) or not hasattr(self.dataset, "__len__"):
                raise TypeError(
                    "Trainer.fit needs a sized map-style Dataset (__len__ and __getitem__), got"
                    f" {type(self.dataset).__name__}; load an iterable one into tensors first."
                )
            self.num = len(self.dataset)
            return
        if not data:
            raise TypeError("Trainer.fit needs data: fit(x), fit(x, y, ...) or fit(dataset).")
        for i, t in enumerate(data):
            if not isinstance(t, torch.Tensor):
                raise TypeError(
                    f"Trainer.fit takes tensors or one torch Dataset; argument {i} is a"
                    f" {type(t).__name__} (a DataLoader? pass its dataset)."
                )
            if t.dim() == 0:
                raise ValueError(f"Data tensor {i} is a scalar; examples are its rows.")
        if len(data) == 1 and data[0].dim() == 1:
            raise ValueError(
                f"The data are one 1-D tensor of shape {tuple(data[0].shape)}: examples are rows;"
                " for N scalar examples pass x.unsqueeze(-1)."
            )
        sizes = [len(t) for t in data]
        if len(set(sizes)) > 1:
            raise ValueError(
                f"The data tensors have different first dimensions {sizes}; each row of every"
                " tensor is one example, so they must agree."
            )
        self.tensors, self.num = tuple(data), sizes[0]

    def __len__(self) -> int:
        return self.num

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The examples at ``index``, one tensor per field."""
        if self.dataset is None:
            return tuple(t[index.to(t.device)] for t in self.tensors)
        batch = default_collate([self.dataset[i] for i in index.tolist()])
        batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if not all(isinstance(t, torch.Tensor) for t in batch):
            raise TypeError(
                f"{type(self.dataset).__name__}[i] must return a tensor or a tuple of tensors"
                f" (numbers), got fields {[type(t).__name__ for t in batch]}."
            )
        return batch

    def chunks(self, size: int = 4096) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
        """``(first row, tensors)`` over all examples in order (whole tensors when in memory)."""
        if self.dataset is None:
            yield 0, self.tensors
            return
        for start in range(0, self.num, size):
            yield start, self.take(torch.arange(start, min(start + size, self.num)))

    def fingerprint(self) -> str:
        """SHA-256 of the data (one tensor: :func:`data_fingerprint` as before)."""
        if self.dataset is None:
            return data_fingerprint(*self.tensors)
        return data_fingerprint(*(t for _, chunk in self.chunks() for t in chunk))


def _check_finite(data: _Data) -> None:
    """One pass over all floating tensors: NaN/Inf named by tensor index and first rows."""
    for start, chunk in data.chunks():
        for i, t in enumerate(chunk):
            # a NaN/Inf entry makes the sum NaN/Inf (one read); only then the exact check
            if (
                t.is_floating_point()
                and not torch.isfinite(t.sum())
                and not torch.isfinite(t).all()
            ):
                bad = (~torch.isfinite(t)).reshape(len(t), -1).any(-1).nonzero().flatten()
                rows = (bad[:5] + start).tolist()
                raise ValueError(
                    f"The training data contain NaN or infinite values (tensor {i}, rows {rows}"
                    f"{' …' if len(bad) > 5 else ''} of {len(data)}); remove or impute them"
                    " before training."
                )


def _apply(transform: Transform | dict[int, Transform] | None, batch, generator):
    """``transform(tensor, generator)`` on the first tensor, or ``{index: f}`` on those tensors
    (in increasing index, all drawing from ``generator``)."""
    if transform is None:
        return batch
    if callable(transform):
        transform = {0: transform}
    batch = list(batch)
    for i in sorted(transform):
        batch[i] = transform[i](batch[i], generator)
    return tuple(batch)


def _check_transform(transform: Any) -> None:
    if transform is None or callable(transform):
        return
    if not isinstance(transform, dict) or not all(
        isinstance(k, int) and callable(f) for k, f in transform.items()
    ):
        raise TypeError(
            "transform= takes f(tensor, generator) (applied to the first data tensor) or a dict"
            f" {{tensor_index: f}}, got {type(transform).__name__}."
        )


def _validate_data(data: _Data, first: tuple, step: TrainingStep, transform: Any, move) -> None:
    """All data finite; the first batch (moved to the device, and transformed) passes the step's
    ``validate``."""
    _check_finite(data)
    named = list(transform) if isinstance(transform, dict) else [0] if transform else []
    for i in named:
        if not -len(first) <= i < len(first):
            raise ValueError(f"transform= names tensor {i}; the data have {len(first)} tensors.")
    check = getattr(step, "validate", None)
    if callable(check):
        per_step = getattr(step, "batches_per_step", 1)
        _call_step(check, [move(first)], per_step, all_batches=False)
        if transform is not None:  # a throwaway generator: the run's one stays untouched
            batch = _apply(transform, first, torch.Generator().manual_seed(0))
            _call_step(check, [move(batch)], per_step, all_batches=False)


def _call_step(fn: Callable, batches: list[tuple], per_step: int, all_batches: bool = True):
    """``fn(*batch)`` for a one-batch step; ``fn(*batches)`` for a step that takes ``per_step`` > 1
    batches, each a tensor (data of one tensor) or a tuple of tensors (``all_batches=False``: one
    batch as ``fn(*batch)``, for setup/validate)."""
    if per_step == 1 or not all_batches:
        return fn(*batches[0])
    return fn(*(b[0] if len(b) == 1 else tuple(b) for b in batches))


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
    :param transform: applied to every batch as ``transform(tensor, generator)``: to the first
        data tensor, or ``{index: f}`` to the tensors named (e.g. ``{0: binarize}`` for
        ``fit(x, y)``), always on the CPU generator before the batch moves to ``device``.
    :param device: where batches go before the step (the data may stay on the CPU); ``None``:
        where the data are.
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
    :param validate: before training, check all data (NaN/Inf in floating tensors, named by
        tensor and row) and the first batch with the step's ``validate``.
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
        transform: Transform | dict[int, Transform] | None = None,
        device: torch.device | str | None = None,
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
            raise TypeError(f"step must be callable as step(*batch), got {type(step).__name__}.")
        _check_transform(transform)
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
        self.device = torch.device(device) if device is not None else None
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

    def fit(self, *data: torch.Tensor | Dataset) -> History:
        """Train on ``data`` and return the :class:`History`.

        ``fit(x)``, ``fit(x, y, ...)`` (tensors whose first dimension indexes the same examples)
        or ``fit(dataset)`` (a sized map-style ``Dataset`` returning tuples, e.g. a
        ``TensorDataset``). Each batch reaches the step as ``step(*batch)``, so an SVI step
        calls ``model(*batch)`` and ``guide(*batch)``.

        :raises ValueError: on data it cannot train on (a lone 1-D tensor, first dimensions that
            differ, NaN/Inf values when ``validate``).
        :raises NonFiniteError: on a NaN/Inf loss or gradient (``nonfinite="raise"``).
        :raises TrainingInterrupted: after SIGINT/SIGTERM, once the final checkpoint is written.
        """
        source = _Data(data)
        if len(source) == 0:
            raise ValueError("Cannot train on an empty data set.")
        ctx = distributed.current()
        set_seed(self.seed + ctx.rank)
        state = TrainState(
            total=self.total_steps(len(source)),
            num_data=len(source),
            batches_per_epoch=math.ceil(len(source) / self.batch_size),
            generator=torch.Generator(device="cpu").manual_seed(self.seed),
            ctx=ctx,
        )
        self._prepare(source, ctx)
        if self.checkpointer is not None:
            self.checkpointer.start(self, state, source)
        begun = []
        try:
            for callback in self.callbacks:
                callback.on_train_begin(self, state)
                begun.append(callback)
            self._loop(source, state)
        except BaseException as err:
            state.error = err
            raise
        finally:
            for callback in begun:
                callback.on_train_end(self, state)
        return state.history

    def _to_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.device is None:
            return batch
        return tuple(t.to(self.device, non_blocking=True) for t in batch)

    def _prepare(self, data: _Data, ctx: distributed.Context) -> None:
        """Check the data, let the step create its parameters, synchronize ranks."""
        first = data.take(epoch_order(len(data), self.seed, 0)[: self.batch_size])
        per_step = getattr(self.step, "batches_per_step", 1)
        if self.validate:
            _validate_data(data, first, self.step, self.transform, self._to_device)
        setup = getattr(self.step, "setup", None)
        if callable(setup):
            batch = _apply(self.transform, first, torch.Generator().manual_seed(0))
            shard = distributed.shard(self._to_device(batch), ctx)[0]
            _call_step(setup, [shard], per_step, all_batches=False)
        distributed.attach(self.step, ctx)
        distributed.broadcast_parameters(self.step, ctx)

    def _loop(self, data: _Data, state: TrainState) -> None:
        per_step = getattr(self.step, "batches_per_step", 1)
        batches = self._batches(data, state.batches, state.generator)
        while state.step < state.total and state.stop_reason is None:
            record = self._update([next(batches) for _ in range(per_step)], state)
            state.step, state.batches = state.step + 1, state.batches + per_step
            if record is not None:
                state.history.records.append(record)
            for callback in self.callbacks:
                callback.on_step_end(self, state, record)

    def _batches(
        self, data: _Data, start: int, gen: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Global batches from the ``start``-th on; epoch e in the order ``epoch_order(e)``."""
        per_epoch = math.ceil(len(data) / self.batch_size)
        epoch, index = divmod(start, per_epoch)
        while True:
            order = epoch_order(len(data), self.seed, epoch)
            for i in range(index, per_epoch):
                batch = data.take(order[i * self.batch_size : (i + 1) * self.batch_size])
                yield self._to_device(_apply(self.transform, batch, gen))
            epoch, index = epoch + 1, 0

    def _update(
        self, batches: list[tuple[torch.Tensor, ...]], state: TrainState
    ) -> dict[str, float] | None:
        """One step on this rank's shards; its record averaged over ranks (``None``: skipped)."""
        shards = [distributed.shard(b, state.ctx) for b in batches]
        per_step = getattr(self.step, "batches_per_step", 1)
        try:
            with distributed.weighted(shards[-1][1]), _autocast(self.amp, batches[0][0].device):
                record = _call_step(self.step, [s for s, _ in shards], per_step)
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
