"""Model traces shared by ADVI's fit and its diagnostics: site names, plate nesting, posterior
draws padded as Predictive expects, and the vectorized-run error advice."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import torch
from pyro import poutine
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import prune_subsample_sites


class VariationalFit(Protocol):
    """What the diagnostics read off a fit (:class:`~pyrogen.infer.advi.ADVIResult`)."""

    model: Callable
    guide: Callable
    method: str
    losses: list[float]
    converged: bool
    args: tuple
    kwargs: dict

    def param_scope(self) -> AbstractContextManager: ...

    def sample_posterior(self, num_samples: int = 1000) -> dict[str, torch.Tensor]: ...


def _max_plate_nesting(trace) -> int:
    dims = [
        f.dim
        for s in trace.nodes.values()
        if s["type"] == "sample"
        for f in s["cond_indep_stack"]
        if f.vectorized
    ]
    return -min(dims) if dims else 0


def _model_trace(model, args: tuple, kwargs: dict):
    """One run of ``model`` (hidden from outer handlers), without plate subsample sites."""
    with poutine.block(), torch.no_grad():
        return prune_subsample_sites(poutine.trace(model).get_trace(*args, **kwargs))


class _UnconditionObservedMessenger(UnconditionMessenger):
    """``poutine.uncondition`` that leaves ``pyro.deterministic`` sites alone (unconditioning
    their ``Delta`` breaks their shapes under plates)."""

    def _pyro_sample(self, msg) -> None:
        if not msg["infer"].get("_deterministic"):
            super()._pyro_sample(msg)


def _resample_observed(model):
    """``model`` with observed sites drawn from their likelihood (posterior predictive)."""
    return _UnconditionObservedMessenger()(model)


@contextmanager
def _vectorized(what: str) -> Iterator[None]:
    """Turn a shape error of a model run under an outer draws plate into advice."""
    try:
        yield
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"{what} runs the model once for all draws, under an extra plate on the left of its "
            "plates, and the model failed there. Make every batch dimension a pyro.plate and "
            "let latent values broadcast from the right: write X @ beta as "
            "(X * beta).sum(-1), and index with [..., i] rather than [i]. "
            f"Original error: {err}"
        ) from err


def _padded(draws: dict[str, torch.Tensor], trace, num_samples: int) -> dict:
    """Draws of shape ``(n,) + site_shape`` padded with the size-1 plate dims Predictive
    expects in ``posterior_samples``: ``(n,) + (1,) * (max_plate_nesting - batch_ndim) +
    site_shape``."""
    mpn = _max_plate_nesting(trace)
    out = {}
    for name, value in draws.items():
        site = trace.nodes[name]
        pad = max(mpn - len(site["fn"].batch_shape), 0)
        out[name] = value.reshape((num_samples,) + (1,) * pad + tuple(site["value"].shape))
    return out


def _site_names(trace) -> tuple[list[str], list[str], list[str]]:
    """``(latent, observed, deterministic)`` sample-site names of a model trace."""
    latent, observed, deterministic = [], [], []
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        if site["infer"].get("_deterministic"):
            deterministic.append(name)
        elif site["is_observed"]:
            observed.append(name)
        else:
            latent.append(name)
    return latent, observed, deterministic


def _reshape_draws(draws: dict[str, torch.Tensor], trace, num_samples: int) -> dict:
    """Predictive pads draws with plate dims of size 1; give each site ``(n,) + its shape``."""
    out = {}
    for name, value in draws.items():
        shape = (num_samples,) + tuple(trace.nodes[name]["value"].shape)
        out[name] = value.reshape(shape) if value.numel() == math.prod(shape) else value
    return out
