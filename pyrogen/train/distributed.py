r"""Data-parallel training over ``torch.distributed`` (gloo on CPU, NCCL on GPU).

Launched by ``torchrun --nproc-per-node P -m pyrogen vae ...``: every rank draws the *same*
global batch of size B (same data order and dynamic binarization), keeps its contiguous shard of
:math:`b_r \approx B / P` rows, computes the loss and its gradients, and the gradients are
averaged over ranks with one bucketed ``all_reduce`` before every optimizer step — what
``DistributedDataParallel`` does, without requiring that the model run through a wrapper's
``forward`` (Pyro programs are plain functions reading parameters from the param store; wrapping
them in Pyro's own ``DataParallel`` route is broken, Pyro issue #2354).

Subsample scaling. A model whose data plate has ``size = num_data`` scales a batch of b rows by
``num_data / b``. On rank r that is :math:`N / b_r` instead of the single-process :math:`N / B`,
so each rank runs under ``poutine.scale(P b_r / B)``; then

.. math:: \frac1P \sum_r \frac{P b_r}{B} \nabla \Big(\frac{N}{b_r} \sum_{i \in r} \ell_i + g\Big)
          = \nabla \Big(\frac NB \sum_{i} \ell_i + g\Big),

the single-process gradient on the global batch, also for global (non-plated) terms g. A rank
whose shard would be empty runs one row under ``poutine.mask(False)`` (zero gradient), so every
rank joins every ``all_reduce``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Union

import pyro
import pyro.poutine as poutine
import torch
import torch.distributed as dist

Batch = Union[torch.Tensor, tuple[torch.Tensor, ...]]  # noqa: UP007 (a runtime alias)


@dataclass(frozen=True)
class Context:
    """Where this process sits: ``rank`` of ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")  # where collective buffers live (NCCL: a GPU)

    @property
    def is_main(self) -> bool:
        """Rank 0, the only rank that writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (or another launcher) set ``WORLD_SIZE`` > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device | str = "cpu") -> tuple[Context, torch.device]:
    r"""Join the process group of a ``torchrun`` launch (no-op for a single process).

    :param device: ``cpu`` (gloo) or ``cuda``/``cuda:N`` (NCCL; plain ``cuda`` becomes
        ``cuda:LOCAL_RANK``).
    :returns: the :class:`Context` and the device this rank uses.
    """
    device = torch.device(device)
    if not (launched_by_torchrun() or dist.is_initialized()):
        return Context(), device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return current(), device


def current() -> Context:
    """The :class:`Context` of this process (rank 0 of 1 without a process group)."""
    if not dist.is_initialized():
        return Context()
    nccl = dist.get_backend() == "nccl"
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    return Context(dist.get_rank(), dist.get_world_size(), device)


def shard(batch: Batch, ctx: Context) -> tuple[Batch, float]:
    """This rank's contiguous rows of the global ``batch`` (a tensor, or a tuple of tensors
    sharing their first dimension: the same rows of each) and its weight :math:`P b_r / B`."""
    if isinstance(batch, (tuple, list)):
        parts = [shard(t, ctx) for t in batch]
        return tuple(p for p, _ in parts), parts[0][1]
    if not ctx.active:
        return batch, 1.0
    part = torch.tensor_split(batch, ctx.world_size)[ctx.rank]
    if len(part) == 0:
        return batch[:1], 0.0
    return part, ctx.world_size * len(part) / len(batch)


@contextlib.contextmanager
def weighted(weight: float) -> Iterator[None]:
    """Scale every sample site by ``weight`` (mask them out when it is 0)."""
    if weight == 1.0:
        yield
    elif weight == 0.0:
        with poutine.mask(mask=False):
            yield
    else:
        with poutine.scale(scale=weight):
            yield


def all_reduce_gradients(params: Iterable[torch.Tensor], ctx: Context) -> None:
    """Average the gradients of ``params`` over ranks in one flat ``all_reduce`` (missing
    gradients count as zero)."""
    params = [p for p in params if p.requires_grad]
    if not ctx.active or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    for p, chunk in zip(params, torch.split(flat, [g.numel() for g in grads]), strict=True):
        p.grad = chunk.view_as(p).clone()


def attach(step: Any, ctx: Context) -> None:
    """Make ``step`` average its gradients over ranks before every optimizer update: through
    its ``gradient_hooks`` list (:class:`~pyrogen.train.SVIStep`) or a step pre-hook on every
    ``torch.optim.Optimizer`` it holds (e.g. ``AdversarialStep``)."""
    if not ctx.active:
        return
    hooks = getattr(step, "gradient_hooks", None)
    if isinstance(hooks, list):
        hooks.append(lambda params: all_reduce_gradients(params, ctx))
        return
    optims = [v for v in vars(step).values() if isinstance(v, torch.optim.Optimizer)]
    if not optims:
        raise TypeError(
            f"{type(step).__name__} has neither gradient_hooks nor torch optimizers as attributes;"
            " it cannot be trained data-parallel."
        )
    for optim in optims:
        params = [p for group in optim.param_groups for p in group["params"]]
        optim.register_step_pre_hook(
            lambda opt, args, kwargs, params=params: all_reduce_gradients(params, ctx)
        )


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def broadcast_parameters(step: Any, ctx: Context) -> None:
    """Give every rank rank 0's parameters (modules' and Pyro's param store, or the step's
    private store when it has one: ``step.param_scope()``)."""
    if not ctx.active:
        return
    tensors = list(_tensors(step.state_dict()))
    scope = getattr(step, "param_scope", None)
    with scope() if callable(scope) else contextlib.nullcontext():
        tensors += list(pyro.get_param_store().get_state()["params"].values())
    with torch.no_grad():
        for t in tensors:
            if t.is_floating_point():
                dist.broadcast(t, src=0)


def average(values: list[float], ctx: Context) -> list[float]:
    """Mean over ranks of each number in ``values`` (same length on every rank)."""
    if not ctx.active or not values:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return (t / ctx.world_size).cpu().tolist()


def any_rank(flag: bool, ctx: Context) -> bool:
    """True on every rank if ``flag`` is true on some rank."""
    if not ctx.active:
        return flag
    t = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: Any, ctx: Context) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
