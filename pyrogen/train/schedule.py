r""":class:`LRScheduler`: a callback stepping learning-rate schedules once per epoch or per step.

Pyro's schedulers (``pyro.optim.ExponentialLR``, ``StepLR``, ... — a
:class:`~pyro.optim.lr_scheduler.PyroLRScheduler`) are optimizers of their own: give one to
:class:`~pyrogen.train.SVIStep` and let this callback call its ``step()``, e.g. for
:math:`\eta_e = \eta_0 \gamma^e` after e epochs::

    optim = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": 1e-2}, "gamma": 0.9}
    )
    step = SVIStep(model, guide, optim=optim)
    Trainer(step, epochs=20, callbacks=[LRScheduler(every="epoch")]).fit(x)

Steps with plain ``torch.optim`` optimizers take ``torch.optim.lr_scheduler`` objects built on
them: ``LRScheduler(schedulers=[torch.optim.lr_scheduler.StepLR(opt, 10)])``.

:class:`StagewiseLR` is the stepwise schedule of Burda et al. (2016): learning rate
:math:`\eta_0 \cdot 10^{-i/7}` for :math:`3^i` passes, :math:`i = 0 \ldots 7` (3280 passes);
:func:`stagewise_adam` is Adam with it, to be stepped by ``LRScheduler(every="epoch")``.

The Pyro scheduler's state (``last_epoch``, learning rates) is part of the step's optimizer state
(``SVIStep.state_dict()["optim"]``); explicit torch schedulers' states and the count of scheduler
steps are this callback's state, so a resumed run is bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pyro.optim
import torch

from pyrogen.train.callbacks import Callback, Trainer, TrainState

__all__ = ["LRScheduler", "StagewiseLR", "stagewise_adam"]


def _pyro_scheduler(step: Any) -> pyro.optim.PyroLRScheduler:
    optim = getattr(step, "optim", None)
    if isinstance(optim, pyro.optim.PyroLRScheduler):
        return optim
    what = type(optim).__name__ if optim is not None else "no .optim"
    raise ValueError(
        f"LRScheduler steps the Pyro scheduler of the step's optimizer, but {type(step).__name__}"
        f" has {what}. Give the step a pyro.optim scheduler, e.g. SVIStep(model, guide,"
        " optim=pyro.optim.ExponentialLR({'optimizer': torch.optim.Adam, 'optim_args':"
        " {'lr': 1e-2}, 'gamma': 0.9})), or pass torch schedulers built on the step's torch"
        " optimizers: LRScheduler(schedulers=[torch.optim.lr_scheduler.StepLR(optimizer, 10)])."
    )


class LRScheduler(Callback):
    """Steps the learning-rate schedule once per completed epoch (``every="epoch"``) or after every
    update (``every="step"``).

    :param every: ``"epoch"`` or ``"step"``.
    :param schedulers: ``torch.optim.lr_scheduler`` objects to step (for steps with torch
        optimizers, e.g. ``AdversarialStep.critic_optim``); default: the
        ``pyro.optim.PyroLRScheduler`` given to the step as ``optim=`` (``SVIStep``).
    """

    def __init__(self, every: str = "epoch", schedulers: Iterable[Any] | None = None) -> None:
        if every not in ("epoch", "step"):
            raise ValueError(f"Expected every='epoch' or every='step', got {every!r}.")
        self.every = every
        self.schedulers = list(schedulers) if schedulers is not None else None
        for s in self.schedulers or ():
            if not (callable(getattr(s, "step", None)) and hasattr(s, "optimizer")):
                raise TypeError(
                    f"schedulers= takes torch.optim.lr_scheduler objects, got {type(s).__name__}."
                )
        self.count = 0  # scheduler steps taken

    def on_train_begin(self, trainer: Trainer, state: TrainState) -> None:
        if self.schedulers is None:
            _pyro_scheduler(trainer.step)
        elif getattr(trainer.step, "lr_decay", 0) > 0:
            raise ValueError(
                "This AdversarialStep sets its learning rates itself (lr_decay > 0); a torch"
                " scheduler's changes would be overwritten. Use either lr_decay= or LRScheduler."
            )

    def _due(self, state: TrainState) -> int:
        return state.epoch if self.every == "epoch" else state.step

    def on_step_end(self, trainer: Trainer, state: TrainState, record: Any) -> None:
        while self.count < self._due(state):
            if self.schedulers is None:
                _pyro_scheduler(trainer.step).step()  # every param's scheduler
            else:
                for scheduler in self.schedulers:
                    scheduler.step()
            self.count += 1

    def state_dict(self) -> dict[str, Any]:
        """The number of scheduler steps taken and the explicit schedulers' states."""
        return {
            "count": self.count,
            "schedulers": [s.state_dict() for s in self.schedulers or ()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["schedulers"]
        if len(saved) != len(self.schedulers or ()):
            raise ValueError(
                f"The checkpoint holds {len(saved)} scheduler state(s), this LRScheduler has"
                f" {len(self.schedulers or ())}; resume with the same schedulers."
            )
        self.count = int(state["count"])
        for scheduler, s in zip(self.schedulers or (), saved, strict=True):
            scheduler.load_state_dict(s)


class StagewiseLR:
    r"""Learning-rate factor of a stepwise schedule, by completed epochs ``e``:
    :math:`\gamma^i` in stage :math:`i`, stage :math:`i` lasting a share
    :math:`g^i / \sum_j g^j` of ``epochs`` (Burda et al. 2016: :math:`g = 3`, 8 stages,
    :math:`\gamma = 10^{-1/7}`, 3280 epochs: stage :math:`i` is :math:`3^i` passes).

    Fewer ``epochs`` *scale* every stage by ``epochs / 3280`` (stage :math:`i` starts at epoch
    :math:`\mathrm{round}(\text{epochs} \cdot (g^i - 1) / (g - 1) / \sum_j g^j)`), so a short run
    still ends at the last stage's rate; stages shorter than half an epoch are skipped.
    A picklable callable for ``torch.optim.lr_scheduler.LambdaLR``.

    References: Importance Weighted Autoencoders, Y. Burda, R. Grosse, R. Salakhutdinov (2016).
    """

    def __init__(
        self, epochs: int, stages: int = 8, growth: float = 3.0, gamma: float = 10 ** (-1 / 7)
    ) -> None:
        if int(epochs) < 1 or int(stages) < 1 or growth <= 0 or not 0 < gamma <= 1:
            raise ValueError(
                f"Expected epochs >= 1, stages >= 1, growth > 0 and 0 < gamma <= 1, got epochs="
                f"{epochs}, stages={stages}, growth={growth}, gamma={gamma}."
            )
        self.epochs, self.stages, self.growth, self.gamma = int(epochs), int(stages), growth, gamma
        lengths = [growth**i for i in range(self.stages)]
        total = sum(lengths)
        #: first epoch of each stage
        self.starts = [round(self.epochs * sum(lengths[:i]) / total) for i in range(self.stages)]

    def stage(self, epoch: int) -> int:
        """The stage ``i`` that epoch ``epoch`` (0-based: epochs completed) trains in."""
        return max(i for i, start in enumerate(self.starts) if start <= max(epoch, 0))

    def __call__(self, epoch: int) -> float:
        return self.gamma ** self.stage(epoch)


def stagewise_adam(
    lr: float,
    schedule: StagewiseLR | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> pyro.optim.PyroOptim:
    """Pyro's Adam with learning rate ``lr * schedule(e)`` after ``e`` epochs (a
    ``pyro.optim.LambdaLR``; step it with ``LRScheduler(every="epoch")``), or plain
    ``pyro.optim.Adam`` for ``schedule=None``."""
    if not (lr > 0 and math.isfinite(lr)) or eps <= 0:
        raise ValueError(f"Expected a learning rate lr > 0 and eps > 0, got lr={lr}, eps={eps}.")
    args = {"lr": lr, "betas": tuple(betas), "eps": eps}
    if schedule is None:
        return pyro.optim.Adam(args)
    return pyro.optim.LambdaLR(
        {"optimizer": torch.optim.Adam, "optim_args": args, "lr_lambda": schedule}
    )
