r"""One training loop for every objective: SVI steps and adversarial steps.

The :class:`Trainer` knows neither the model's structure nor the loss's maths. It draws
mini-batches, hands each one to a *step* (any object following :class:`TrainingStep`), and records
what the step reports. :class:`SVIStep` is the step for Pyro's stochastic variational inference;
:class:`~pyrogen.train.AdversarialStep` the one for GANs.

Long runs lose nothing: the Trainer writes checkpoints (:mod:`pyrogen.train.checkpoint`) every
``checkpoint_every`` steps, at the end and on SIGINT/SIGTERM; ``resume=True`` continues from the
newest valid one *bit-identically* (the data order of epoch e is a function of ``(seed, e)``, the
per-batch transform draws from a generator whose state is saved, and so are all RNG states); a
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
import csv
import io
import json
import math
import random
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.optim
import torch
from tqdm.auto import tqdm

from pyrogen.train import checkpoint as ckpt
from pyrogen.train import distributed
from pyrogen.train.files import atomic_write_bytes
from pyrogen.train.steps.base import Batch, NonFiniteError, TrainingStep

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a final checkpoint was written."""

    def __init__(self, message: str, step: int, path: Path | None) -> None:
        super().__init__(message)
        self.step, self.path = step, path

    def __str__(self) -> str:
        return self.args[0]


def set_seed(seed: int) -> None:
    """Seed python, numpy, torch (CPU and CUDA) and Pyro from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    pyro.set_rng_seed(seed)  # also seeds torch (all devices)


@dataclass
class History:
    """What training reported, one record per step (``records[i]["loss"]`` …); ``skipped``
    counts steps dropped for a non-finite loss or gradient (``nonfinite="skip"``)."""

    records: list[dict[str, float]] = field(default_factory=list)
    skipped: int = 0

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.records]

    def column(self, name: str) -> list[float]:
        """Values of one reported quantity, skipping steps that did not report it."""
        return [r[name] for r in self.records if name in r]

    def __len__(self) -> int:
        return len(self.records)

    def save(self, directory: str | Path) -> None:
        """Write ``history.json`` (columns) and ``history.csv`` (one row per step)."""
        keys = sorted({k for r in self.records for k in r})
        columns = {k: [r.get(k) for r in self.records] for k in keys}
        columns["skipped"] = self.skipped
        atomic_write_bytes(Path(directory) / "history.json", json.dumps(columns).encode())
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["step", *keys])
        for i, r in enumerate(self.records):
            writer.writerow([i + 1, *(r.get(k, "") for k in keys)])
        atomic_write_bytes(Path(directory) / "history.csv", text.getvalue().encode())


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


@dataclass
class _Position:
    step: int = 0  # updates done
    batches: int = 0  # global batches drawn


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
    :param checkpoint_dir: where checkpoints and ``history.csv``/``.json`` go (``None``: none).
    :param checkpoint_every: write a checkpoint every this many steps (and always at the end).
    :param keep_checkpoints: how many of the newest checkpoints to keep.
    :param resume: continue from the newest valid checkpoint in ``checkpoint_dir`` up to the
        requested *total* ``epochs``/``steps``; start afresh if there is none.
    :param config: JSON-like settings stored in each checkpoint.
    :param nonfinite: ``"raise"`` (stop on a NaN/Inf loss or gradient) or ``"skip"`` (drop that
        batch and count it in ``History.skipped``).
    :param validate: check the first batch (NaN/Inf, and the step's ``validate``) before training.
    :param amp: mixed precision (``torch.autocast``, bfloat16 if supported) on CUDA.
    :param tensorboard: a log directory for TensorBoard scalars (needs ``tensorboard``).

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
    ) -> None:
        if not callable(step):
            raise TypeError(f"step must be callable as step(batch), got {type(step).__name__}.")
        if (epochs is None) == (steps is None):
            raise ValueError("Give exactly one of epochs= or steps= to the Trainer.")
        for name, value in (
            ("batch_size", batch_size),
            ("epochs", epochs),
            ("steps", steps),
            ("checkpoint_every", checkpoint_every),
            ("keep_checkpoints", keep_checkpoints),
        ):
            if value is not None and value < 1:
                raise ValueError(f"Expected {name} >= 1, got {value}.")
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"Expected nonfinite='raise' or 'skip', got {nonfinite!r}.")
        if (checkpoint_every or resume) and checkpoint_dir is None:
            raise ValueError("checkpoint_every= and resume= need a checkpoint_dir=.")
        self.step, self.batch_size, self.seed = step, batch_size, seed
        self.epochs, self.steps = epochs, steps
        self.transform, self.progress = transform, progress
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every, self.keep_checkpoints = checkpoint_every, keep_checkpoints
        self.resume, self.config, self.nonfinite = resume, dict(config or {}), nonfinite
        self.validate, self.amp, self.tensorboard = validate, amp, tensorboard
        self.last_checkpoint: Path | None = None
        self._signal: int | None = None

    def total_steps(self, num_data: int) -> int:
        """Number of updates: ``steps``, or ``epochs`` passes of batches (each update consuming
        ``batches_per_step`` batches)."""
        if self.steps is not None:
            return self.steps
        per_step = getattr(self.step, "batches_per_step", 1)
        return max(1, self.epochs * math.ceil(num_data / self.batch_size) // per_step)

    # --- data ----------------------------------------------------------------------------------
    def _batches(self, data: torch.Tensor, start: int, gen: torch.Generator) -> Iterator[Batch]:
        per_epoch = math.ceil(len(data) / self.batch_size)
        epoch, index = divmod(start, per_epoch)
        while True:
            order = epoch_order(len(data), self.seed, epoch).to(data.device)
            for i in range(index, per_epoch):
                batch = data[order[i * self.batch_size : (i + 1) * self.batch_size]]
                yield self.transform(batch, gen) if self.transform is not None else batch
            epoch, index = epoch + 1, 0

    # --- one update ------------------------------------------------------------------------------
    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        if device.type != "cuda":
            raise ValueError("amp=True (--amp) needs a CUDA device; drop it on CPU.")
        bf16 = torch.cuda.is_bf16_supported()
        return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)

    def _update(self, batches: list[Batch], ctx: distributed.Context, k: int, history: History):
        shards = [distributed.shard(b, ctx) for b in batches]
        weight = shards[-1][1]
        try:
            with distributed.weighted(weight), self._autocast(batches[0].device):
                record = self.step(*(s for s, _ in shards))
        except NonFiniteError as err:
            if self.nonfinite == "skip":
                history.skipped += 1
                return None
            raise NonFiniteError(f"Step {k + 1}: {err} {self._advice()}") from err
        except FloatingPointError as err:
            raise FloatingPointError(f"Step {k + 1}: {err} {self._advice()}") from err
        keys = sorted(record)
        return dict(zip(keys, distributed.average([record[k] for k in keys], ctx), strict=True))

    def _advice(self) -> str:
        where = self.last_checkpoint or "none written (give checkpoint_dir= / --checkpoint-every)"
        return (
            f"Last good checkpoint: {where}. Lower the learning rate, check the data, or skip such"
            " batches with nonfinite='skip' (--skip-nonfinite)."
        )

    # --- checkpoints -----------------------------------------------------------------------------
    def _trainer_config(self, num_data: int, ctx: distributed.Context) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "seed": self.seed,
            "num_data": num_data,
            "world_size": ctx.world_size,
        }

    def _save(self, pos, history, gen, num_data, ctx) -> None:
        rngs = distributed.gather(ckpt.get_rng_state(), ctx)
        if not ctx.is_main or self.checkpoint_dir is None:
            return
        state = {
            "step_state": self.step.state_dict(),
            "param_store": ckpt.get_param_store_state(),
            "batches": pos.batches,
            "epoch": pos.batches // math.ceil(num_data / self.batch_size),
            "skipped": history.skipped,
            "history": history.records,
            "rng": rngs,
            "data_rng": gen.get_state(),
            "trainer": self._trainer_config(num_data, ctx),
            "config": self.config,
        }
        self.last_checkpoint = ckpt.save_checkpoint(
            self.checkpoint_dir, pos.step, state, self.keep_checkpoints
        )
        history.save(self.checkpoint_dir)

    def _restore(self, pos, history, gen, num_data, ctx) -> None:
        path, state = ckpt.load_latest(self.checkpoint_dir)
        if state is None:
            if ctx.is_main:
                print(f"resume: no checkpoint in {self.checkpoint_dir}/; starting from step 0.")
            return
        saved, current = state["trainer"], self._trainer_config(num_data, ctx)
        for key in ("batch_size", "seed", "num_data"):
            if saved[key] != current[key]:
                raise ValueError(
                    f"Cannot resume from {path}: it was trained with {key}={saved[key]}, this run"
                    f" has {key}={current[key]}. Use the same settings, or a new output directory."
                )
        ckpt.set_param_store_state(state["param_store"])
        self.step.load_state_dict(state["step_state"])
        history.records, history.skipped = list(state["history"]), int(state["skipped"])
        pos.step, pos.batches = int(state["step"]), int(state["batches"])
        gen.set_state(state["data_rng"])
        if len(state["rng"]) == ctx.world_size:
            ckpt.set_rng_state(state["rng"][ctx.rank])
        else:  # another number of processes: reproducible, but not bit-identical
            set_seed(self.seed + ctx.rank + 7919 * pos.step)
        self.last_checkpoint = path
        if ctx.is_main:
            print(f"resume: continuing from {path} (step {pos.step}).")

    # --- signals ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if self.checkpoint_dir is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        self._signal = None

        def handler(signum, frame):
            if self._signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self._signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _tensorboard(self, ctx: distributed.Context):
        if self.tensorboard is None or not ctx.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ValueError(
                "TensorBoard logging needs the tensorboard package: pip install tensorboard"
                " (or drop --tensorboard)."
            ) from err
        return SummaryWriter(str(self.tensorboard))

    # --- the loop --------------------------------------------------------------------------------
    def _prepare(self, data: torch.Tensor, ctx: distributed.Context, gen: torch.Generator) -> None:
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

    def fit(self, data: torch.Tensor) -> History:
        """Train on ``data`` (first dimension indexes examples) and return the :class:`History`.

        :raises NonFiniteError: on a NaN/Inf loss or gradient (``nonfinite="raise"``).
        :raises TrainingInterrupted: after SIGINT/SIGTERM, once the final checkpoint is written.
        """
        if len(data) == 0:
            raise ValueError("Cannot train on an empty data set.")
        ctx = distributed.current()
        set_seed(self.seed + ctx.rank)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        history, pos = History(), _Position()
        self._prepare(data, ctx, gen)
        if self.resume:
            self._restore(pos, history, gen, len(data), ctx)
        total = self.total_steps(len(data))
        writer = self._tensorboard(ctx)
        try:
            with self._signals():
                self._loop(data, ctx, gen, history, pos, total, writer)
        finally:
            if writer is not None:
                writer.close()
        return history

    def _loop(self, data, ctx, gen, history, pos, total, writer) -> None:
        per_step = getattr(self.step, "batches_per_step", 1)
        batches = self._batches(data, pos.batches, gen)
        running = None
        bar = tqdm(
            total=total,
            initial=min(pos.step, total),
            disable=not self.progress or not ctx.is_main,
            desc="train",
            unit="step",
        )
        with bar:
            while pos.step < total:
                drawn = [next(batches) for _ in range(per_step)]
                record = self._update(drawn, ctx, pos.step, history)
                pos.step, pos.batches = pos.step + 1, pos.batches + per_step
                if record is not None:
                    history.records.append(record)
                    running = (
                        record["loss"]
                        if running is None
                        else 0.95 * running + 0.05 * record["loss"]
                    )
                    bar.set_postfix(loss=f"{running:.4g}", refresh=False)
                    if writer is not None:
                        for key, value in record.items():
                            writer.add_scalar(f"train/{key}", value, pos.step)
                bar.update()
                if (
                    self.checkpoint_every
                    and pos.step % self.checkpoint_every == 0
                    and pos.step < total
                ):
                    self._save(pos, history, gen, len(data), ctx)
                if distributed.any_rank(self._signal is not None, ctx):
                    self._interrupt(pos, history, gen, len(data), ctx, total)
        if self.checkpoint_dir is not None:
            self._save(pos, history, gen, len(data), ctx)

    def _interrupt(self, pos, history, gen, num_data, ctx, total) -> None:
        self._save(pos, history, gen, num_data, ctx)
        name = signal.Signals(self._signal).name if self._signal else "a signal on another rank"
        raise TrainingInterrupted(
            f"Interrupted by {name} at step {pos.step}/{total}; checkpoint written to"
            f" {self.last_checkpoint}. Run again with resume=True (--resume) to continue.",
            pos.step,
            self.last_checkpoint,
        )
