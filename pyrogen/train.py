r"""One training loop for every objective: SVI steps and (later) adversarial steps.

The :class:`Trainer` knows neither the model's structure nor the loss's maths. It draws
mini-batches, hands each one to a *step* (any object following :class:`TrainingStep`), and records
what the step reports. :class:`SVIStep` is the step for Pyro's stochastic variational inference.

Example::

    vae = VAE(data_dim=64)
    step = SVIStep(vae.model, vae.guide, TraceMeanField_ELBO(), lr=1e-3)
    history = Trainer(step, batch_size=128, epochs=50, seed=0).fit(train_x)
    history.losses  # one float per step
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyro
import pyro.optim
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from tqdm.auto import tqdm

Batch = torch.Tensor
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@runtime_checkable
class TrainingStep(Protocol):
    """What the :class:`Trainer` drives: one parameter update on a batch.

    ``step(*batches)`` performs the update and returns named scalars (at least ``"loss"``);
    it receives ``getattr(step, "batches_per_step", 1)`` fresh batches (an adversarial step with k
    critic updates asks for k + 1). ``state_dict()`` / ``load_state_dict()`` hold everything
    needed to continue (modules and optimizer states).
    """

    def __call__(self, *batches: Batch) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def set_seed(seed: int) -> None:
    """Seed python, numpy, torch (CPU and CUDA) and Pyro from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    pyro.set_rng_seed(seed)  # also seeds torch (all devices)


def claim_param_names(module: torch.nn.Module) -> None:
    """Make Pyro's global param store point at ``module``'s own parameters.

    A ``PyroModule`` registers its parameters under names such as ``"encoder.net.0.weight"``; a
    second model built in the same process would otherwise find the first model's tensors under
    those names, and SVI would silently optimize the wrong ones.
    """
    store = pyro.get_param_store()
    prefix = getattr(module, "_pyro_name", "")
    for name, param in module.named_parameters():
        fullname = f"{prefix}.{name}" if prefix else name
        if fullname in store and store.get_param(fullname) is not param:
            del store[fullname]


class SVIStep:
    r"""One step of Pyro's SVI: :math:`\theta, \varphi \leftarrow \theta, \varphi - \eta \nabla
    \mathcal{L}(x_{batch})` for any Pyro loss ``loss(model, guide, batch)``.

    :param model: Pyro model, called as ``model(batch)``.
    :param guide: Pyro guide, called as ``guide(batch)``.
    :param loss: a Pyro ``ELBO`` instance or any callable loss; default analytic-KL ELBO
        (``TraceMeanField_ELBO``).
    :param optim: a ``pyro.optim.PyroOptim``; default ``pyro.optim.Adam({"lr": lr})``.
    :param lr: learning rate of the default Adam optimizer.
    :param loss_scale: factor applied to the *reported* loss only, e.g. ``1 / num_data`` to record
        nats per example instead of per data set; gradients are unaffected.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        loss: Any = None,
        optim: pyro.optim.PyroOptim | None = None,
        lr: float = 1e-3,
        loss_scale: float = 1.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"Expected a learning rate lr > 0, got {lr}.")
        self.model, self.guide = model, guide
        self.loss = loss if loss is not None else TraceMeanField_ELBO()
        self.optim = optim if optim is not None else pyro.optim.Adam({"lr": lr})
        self.svi = SVI(model, guide, self.optim, loss=self.loss)
        self.loss_scale = loss_scale
        for module in self.modules().values():
            claim_param_names(module)

    def __call__(self, batch: Batch) -> dict[str, float]:
        return {"loss": float(self.svi.step(batch)) * self.loss_scale}

    def modules(self) -> dict[str, torch.nn.Module]:
        """The ``nn.Module`` owners of ``model`` and ``guide`` (bound methods' ``self``)."""
        owners = {}
        for name, fn in (("model", self.model), ("guide", self.guide)):
            owner = getattr(fn, "__self__", None)
            if isinstance(owner, torch.nn.Module):
                owners[name] = owner
        return owners

    def state_dict(self) -> dict[str, Any]:
        modules = {name: m.state_dict() for name, m in self.modules().items()}
        return {"modules": modules, "optim": self.optim.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state["modules"][name])
        self.optim.set_state(state["optim"])


@dataclass
class History:
    """What training reported, one record per step (``records[i]["loss"]`` …)."""

    records: list[dict[str, float]] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.records]

    def column(self, name: str) -> list[float]:
        """Values of one reported quantity, skipping steps that did not report it."""
        return [r[name] for r in self.records if name in r]

    def __len__(self) -> int:
        return len(self.records)


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


class Trainer:
    """Drives a :class:`TrainingStep` over mini-batches for a number of epochs or steps.

    :param step: the update to run on each batch (e.g. :class:`SVIStep`).
    :param batch_size: examples per step.
    :param epochs: passes over the data (give ``epochs`` or ``steps``, not both).
    :param steps: number of updates; the data are cycled through as often as needed.
    :param seed: seeds python, numpy, torch and Pyro, and the data order.
    :param transform: applied to every batch as ``transform(batch, generator)``.
    :param progress: show a tqdm bar with the running (exponential average) loss.
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
    ) -> None:
        if not callable(step):
            raise TypeError(f"step must be callable as step(batch), got {type(step).__name__}.")
        if (epochs is None) == (steps is None):
            raise ValueError("Give exactly one of epochs= or steps= to the Trainer.")
        for name, value in (("batch_size", batch_size), ("epochs", epochs), ("steps", steps)):
            if value is not None and value < 1:
                raise ValueError(f"Expected {name} >= 1, got {value}.")
        self.step, self.batch_size, self.seed = step, batch_size, seed
        self.epochs, self.steps = epochs, steps
        self.transform, self.progress = transform, progress

    def total_steps(self, num_data: int) -> int:
        """Number of updates: ``steps``, or ``epochs`` passes of batches (each update consuming
        ``batches_per_step`` batches)."""
        if self.steps is not None:
            return self.steps
        per_step = getattr(self.step, "batches_per_step", 1)
        return max(1, self.epochs * math.ceil(num_data / self.batch_size) // per_step)

    def _batches(self, data: torch.Tensor, generator: torch.Generator) -> Iterator[torch.Tensor]:
        while True:
            yield from iterate_minibatches(data, self.batch_size, generator, self.transform)

    def fit(self, data: torch.Tensor) -> History:
        """Train on ``data`` (first dimension indexes examples) and return the :class:`History`."""
        if len(data) == 0:
            raise ValueError("Cannot train on an empty data set.")
        set_seed(self.seed)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        history = History()
        total = self.total_steps(len(data))
        per_step = getattr(self.step, "batches_per_step", 1)
        batches = self._batches(data, generator)
        running = None
        with tqdm(total=total, disable=not self.progress, desc="train", unit="step") as bar:
            for _ in range(total):
                record = self.step(*(next(batches) for _ in range(per_step)))
                history.records.append(record)
                loss = record["loss"]
                running = loss if running is None else 0.95 * running + 0.05 * loss
                bar.set_postfix(loss=f"{running:.4g}", refresh=False)
                bar.update()
        return history
