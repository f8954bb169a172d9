r"""What an adversarial step needs to know about a user's Pyro program: how to call it on a batch,
which modules own it, and which parameters it trains (found by tracing, as Pyro's SVI does).

A generator is any Pyro program that records a generated example at a site: a function using
``pyro.module``/``pyro.param``, a ``PyroModule`` whose ``forward`` is the program, a bound method
(``vaegan.model``), or an ``nn.Module`` with a ``.model`` method
(:class:`~pyrogen.models.Generator`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.poutine.messenger import Messenger
from torch import nn

from pyrogen.infer.importance import rng_untouched

#: ``inputs(*batch) -> (args, kwargs)``: how the program is called on one batch.
Inputs = Callable[..., tuple[tuple, dict]]


def count_inputs(x: torch.Tensor, y: torch.Tensor | None = None, *rest: torch.Tensor):
    """GAN inputs: ``model(len(x))``, or ``model(len(x), y=y)`` for labelled data (the losses
    also give ``y`` to the critic: ``critic(x, y)``)."""
    if rest:
        raise ValueError(
            f"The default inputs='count' takes a batch (x,) or (x, y); got {2 + len(rest)} tensors."
            " Pass inputs=<fn(*batch) -> (args, kwargs)> to say how the program takes them."
        )
    return ((len(x),), {} if y is None else {"y": y})


def data_inputs(*batch: torch.Tensor):
    """Auto-encoder inputs: ``model(*batch)``, ``guide(*batch)`` (VAE-GAN, AAE)."""
    return (batch, {})


INPUTS: dict[str, Inputs] = {"count": count_inputs, "data": data_inputs}


def resolve_inputs(inputs: str | Inputs) -> Inputs:
    if callable(inputs):
        return inputs
    if inputs not in INPUTS:
        raise ValueError(
            f"Unknown inputs={inputs!r}: give 'count' (model(n), GANs), 'data' (model(*batch),"
            " auto-encoders) or a function fn(*batch) -> (args, kwargs)."
        )
    return INPUTS[inputs]


def call_inputs(inputs: Inputs, batch: tuple[torch.Tensor, ...]) -> tuple[tuple, dict]:
    """``inputs(*batch)``, checked to be ``(args, kwargs)``."""
    out = inputs(*batch)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise TypeError(
            "inputs(*batch) must return (args, kwargs), e.g. ((x,), {}); got"
            f" {type(out).__name__}."
        )
    return tuple(out[0]), out[1]


def program_of(generator: Any) -> Callable:
    """The Pyro program of ``generator``: an ``nn.Module``'s ``.model`` if it has one, else the
    callable itself."""
    if isinstance(generator, nn.Module) and callable(getattr(generator, "model", None)):
        return generator.model
    if not callable(generator):
        raise TypeError(
            "generator must be a Pyro program: a function using pyro.module/pyro.param, a"
            " PyroModule whose forward is the program, a bound method such as vaegan.model, or an"
            f" nn.Module with a .model method; got {type(generator).__name__}."
        )
    return generator


def program_self(fn: Callable | None) -> Any:
    """The object a program belongs to: a module program itself, or a bound method's ``self``
    (``vae`` of ``vae.model``); ``None`` for a function."""
    return fn if isinstance(fn, nn.Module) else getattr(fn, "__self__", None)


def owner_of(fn: Callable | None) -> nn.Module | None:
    """The module a program belongs to: itself, or a bound method's ``self``."""
    owner = program_self(fn)
    return owner if isinstance(owner, nn.Module) else None


def unique_modules(modules: Iterable[nn.Module | None]) -> list[nn.Module]:
    seen, out = set(), []
    for m in modules:
        if m is not None and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


class ParamCapture(Messenger):
    """Context recording the parameters a program run computes with, by Pyro name, as
    ``pyro.infer.SVI`` finds them (``pyro.param``, ``pyro.module``, ``PyroModule`` attributes),
    minus ``exclude`` (the critic's). A module's own ``nn.Parameter`` is recorded even where Pyro's
    param store holds another tensor under its name (a copy of the module, or another model
    built earlier): the program computes with its own, so that is the one to train."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.exclude = {id(p) for p in exclude}
        self.params: dict[str, torch.Tensor] = {}

    def _pyro_post_param(self, msg: dict) -> None:
        own = msg["args"][1] if len(msg["args"]) > 1 else None
        if not isinstance(own, nn.Parameter):
            value = msg["value"]
            own = value.unconstrained() if hasattr(value, "unconstrained") else value
        if own.requires_grad and id(own) not in self.exclude:
            self.params.setdefault(msg["name"], own)


def trace_params(
    run: Callable[[], Any], modules: Iterable[nn.Module], exclude: Iterable[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The trainable parameters one call of ``run`` (e.g. the generator's loss on a batch)
    registers with Pyro, by name; without gradients, random draws or changes to ``modules``'
    buffers (e.g. BatchNorm statistics), so the run leaves no trace. It also lets a loss do
    its first-call work, e.g. an ELBO guessing the plate nesting."""
    buffers = [(b, b.clone()) for m in modules for b in m.buffers()]
    try:
        with rng_untouched(), torch.no_grad(), poutine.block(), ParamCapture(exclude) as capture:
            run()
    finally:
        with torch.no_grad():
            for live, saved in buffers:
                live.copy_(saved)
    return capture.params
