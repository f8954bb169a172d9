r"""What the :class:`~pyrogen.train.Trainer` tells the outside world: callbacks and their state.

A callback is any object with the three methods of :class:`Callback` (subclass it and override
what you need). The Trainer calls them in order, on every rank under ``torchrun``::

    on_train_begin(trainer, state)        # after setup and resume, before the first step
    on_step_end(trainer, state, record)   # after every update (record: its report, or None
                                          #   when the step was skipped for a NaN/Inf)
    on_train_end(trainer, state)          # always, also after an error (state.error is set)

:class:`TrainState` is what they read and write: the position (``step``, ``epoch``, ``total``),
the :class:`History`, and ``request_stop(reason)`` to end training after the current step (the
final checkpoint is still written). Under ``torchrun`` a callback must decide the same on every
rank, e.g. from ``record`` (averaged over ranks). A callback with ``state_dict()`` /
``load_state_dict(state)`` methods is saved in checkpoints and restored on resume.

The Trainer's keyword arguments build the built-in callbacks: :class:`ProgressBar`
(``progress=``), :class:`TensorBoard` (``tensorboard=``), :class:`CheckpointEvery`
(``checkpoint_dir=``, ``checkpoint_every=``) and :class:`StopOnSignal` (with ``checkpoint_dir=``).
User callbacks (``Trainer(..., callbacks=[...])``) run first, so a checkpoint sees their work.

Example — stop when the running loss is low enough::

    class StopBelow(Callback):
        def __init__(self, threshold):
            self.threshold = threshold

        def on_step_end(self, trainer, state, record):
            if record is not None and record["loss"] < self.threshold:
                state.request_stop(f"loss {record['loss']:.3g} < {self.threshold}")

    # record["loss"] is what the step reports: nats per example with SVIStep(loss_scale=1 / N)
    step = SVIStep(vae.model, vae.guide, loss_scale=1 / len(x))
    Trainer(step, steps=10_000, callbacks=[StopBelow(90.0)]).fit(x)
"""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pyrogen.train import distributed
from pyrogen.train.files import atomic_write_bytes

__all__ = [
    "Callback",
    "CheckpointEvery",
    "History",
    "ProgressBar",
    "StopOnSignal",
    "TensorBoard",
    "TrainState",
    "TrainingInterrupted",
]

Trainer = Any  # pyrogen.train.Trainer (not imported: it imports this module)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a final checkpoint was written."""

    def __init__(self, message: str, step: int, path: Path | None) -> None:
        super().__init__(message)
        self.step, self.path = step, path

    def __str__(self) -> str:
        return self.args[0]


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
        columns: dict[str, Any] = {k: [r.get(k) for r in self.records] for k in keys}
        columns["skipped"] = self.skipped
        atomic_write_bytes(Path(directory) / "history.json", json.dumps(columns).encode())
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["step", *keys])
        for i, r in enumerate(self.records):
            writer.writerow([i + 1, *(r.get(k, "") for k in keys)])
        atomic_write_bytes(Path(directory) / "history.csv", text.getvalue().encode())


@dataclass
class TrainState:
    """Where a run is. ``step``: updates done; ``batches``: global batches drawn; ``total``:
    updates planned; ``generator``: the per-batch transform's generator (saved in checkpoints);
    ``error``: the exception ending the run, if any (seen by ``on_train_end``)."""

    total: int
    num_data: int
    batches_per_epoch: int
    generator: torch.Generator
    ctx: distributed.Context = field(default_factory=distributed.Context)
    history: History = field(default_factory=History)
    step: int = 0
    batches: int = 0
    stop_reason: str | None = None
    error: BaseException | None = None

    @property
    def epoch(self) -> int:
        """Completed passes over the data."""
        return self.batches // self.batches_per_epoch

    def request_stop(self, reason: str) -> None:
        """End training after this step (the final checkpoint is still written)."""
        self.stop_reason = reason


class Callback:
    """Base class of callbacks; every hook does nothing unless overridden."""

    def on_train_begin(self, trainer: Trainer, state: TrainState) -> None:
        """After setup and resume, before the first step."""

    def on_step_end(
        self, trainer: Trainer, state: TrainState, record: dict[str, float] | None
    ) -> None:
        """After every update; ``record`` is ``None`` when the step was skipped."""

    def on_train_end(self, trainer: Trainer, state: TrainState) -> None:
        """At the end, also after an error (``state.error``) or a stop request."""


class ProgressBar(Callback):
    r"""A tqdm bar (rank 0 only) with the running loss :math:`\bar\ell \leftarrow
    \beta \bar\ell + (1 - \beta) \ell` (``smoothing`` :math:`\beta`)."""

    def __init__(self, smoothing: float = 0.95) -> None:
        self.smoothing = smoothing

    def on_train_begin(self, trainer: Trainer, state: TrainState) -> None:
        self.running: float | None = None
        self.bar = tqdm(
            total=state.total,
            initial=min(state.step, state.total),
            disable=not state.ctx.is_main,
            desc="train",
            unit="step",
        )

    def on_step_end(self, trainer, state, record) -> None:
        if record is not None:
            b, loss = self.smoothing, record["loss"]
            self.running = loss if self.running is None else b * self.running + (1 - b) * loss
            self.bar.set_postfix(loss=f"{self.running:.4g}", refresh=False)
        self.bar.update()

    def on_train_end(self, trainer, state) -> None:
        self.bar.close()


class TensorBoard(Callback):
    """Every reported scalar as ``train/<name>`` in a TensorBoard log (rank 0 only)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir, self.writer = Path(log_dir), None

    def on_train_begin(self, trainer, state) -> None:
        if not state.ctx.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ValueError(
                "TensorBoard logging needs the tensorboard package: pip install tensorboard"
                " (or drop --tensorboard)."
            ) from err
        self.writer = SummaryWriter(str(self.log_dir))

    def on_step_end(self, trainer, state, record) -> None:
        if self.writer is not None and record is not None:
            for key, value in record.items():
                self.writer.add_scalar(f"train/{key}", value, state.step)

    def on_train_end(self, trainer, state) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class CheckpointEvery(Callback):
    """A checkpoint every ``every`` steps (``None``: none on the way) and one at the end, unless
    training failed or the newest checkpoint already holds the final step; ``checkpointer`` is
    a :class:`~pyrogen.train.checkpoint.Checkpointer`."""

    def __init__(self, checkpointer: Any, every: int | None = None) -> None:
        self.checkpointer, self.every = checkpointer, every

    def on_step_end(self, trainer, state, record) -> None:
        if self.every and state.step % self.every == 0 and state.step < state.total:
            self.checkpointer.save(trainer, state)

    def on_train_end(self, trainer, state) -> None:
        if state.error is None and self.checkpointer.last_step != state.step:
            self.checkpointer.save(trainer, state)


class StopOnSignal(Callback):
    """SIGINT/SIGTERM stop training after the current step; once the final checkpoint is
    written (place this callback after :class:`CheckpointEvery`), :class:`TrainingInterrupted`
    is raised. A second signal stops at once (``KeyboardInterrupt``). Under ``torchrun`` a signal
    on any rank stops all of them."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def on_train_begin(self, trainer, state) -> None:
        self.received: int | None = None
        self.stopped = False
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}

    def _handler(self, signum, frame) -> None:
        if self.received is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def on_step_end(self, trainer, state, record) -> None:
        if distributed.any_rank(self.received is not None, state.ctx):
            self.stopped = True
            state.request_stop(self._name())

    def _name(self) -> str:
        return signal.Signals(self.received).name if self.received else "a signal on another rank"

    def on_train_end(self, trainer, state) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)
        self.previous = {}
        if self.stopped and state.error is None:
            raise TrainingInterrupted(
                f"Interrupted by {self._name()} at step {state.step}/{state.total}; checkpoint"
                f" written to {trainer.last_checkpoint}. Run again with resume=True (--resume)"
                " to continue.",
                state.step,
                trainer.last_checkpoint,
            )
