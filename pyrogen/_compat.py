"""Every Pyro API pyrogen uses that is not in Pyro's documentation, in one place.

pyrogen supports the Pyro versions its CI tests (``pyro-ppl>=1.9,<1.10`` in ``pyproject.toml``).
The names below are private (a leading underscore) or undocumented helpers of ``pyro.util``,
``pyro.distributions.util`` and ``pyro.infer.util``; a new Pyro release may change any of them,
and this module is the one place to adapt. Documented APIs (``pyro.poutine.util``,
``pyro.infer.util.is_validation_enabled``, ``pyro.infer.importance``, ...) are imported directly
where they are used.

pyrogen's ELBOs also override the protected hooks through which all of Pyro's own ELBOs are
built: ``ELBO._get_trace`` (one model/guide trace pair per particle) and
``Trace_ELBO._differentiable_loss_particle`` (the per-particle loss and surrogate). Overrides
cannot be re-exported; they are listed here for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

# Masks and scales a log-density exactly as Pyro's ELBOs do (a site's ``mask`` and ``scale``);
# IWAE builds its per-particle log-weights from the same terms.
from pyro.distributions.util import scale_and_mask

# How a PyroOptim loads a saved state into a new per-parameter optimizer.
from pyro.optim.optim import _load_state_dict

# Pyro's own trace checks and NaN warning, so custom ELBOs validate and warn as Pyro's do.
from pyro.util import check_model_guide_match, check_site_shape, warn_if_nan

#: Name prefix under which :class:`~pyro.infer.TraceGraph_ELBO` keeps a site's decaying-average
#: baseline in the param store (``"__baseline_avg_downstream_cost_" + site``); read, never written,
#: by :mod:`pyrogen.infer.score`.
DECAYING_AVG_BASELINE_PREFIX = "__baseline_avg_downstream_cost_"

__all__ = [
    "DECAYING_AVG_BASELINE_PREFIX",
    "check_model_guide_match",
    "check_site_shape",
    "elbo_trace",
    "param_store_tensors",
    "pending_optim_state",
    "per_param_optimizer",
    "pyro_module_prefix",
    "scale_and_mask",
    "tracegraph_loss_and_surrogate",
    "warn_if_nan",
]


def elbo_trace(elbo: Any, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> tuple:
    """``(model_trace, guide_trace)`` of one particle, built the way ``elbo`` builds its own
    (``ELBO._get_trace``): lets a wrapper ELBO delegate trace construction to the ELBO it wraps."""
    return elbo._get_trace(model, guide, args, kwargs)


def tracegraph_loss_and_surrogate(
    elbo: Any, model: Callable, guide: Callable, args: tuple, kwargs: dict
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elbo, surrogate_loss)`` of :class:`~pyro.infer.TraceGraph_ELBO`, averaged over
    particles (``TraceGraph_ELBO._loss_and_surrogate_loss``): its public methods only return a
    float or call ``backward``, and a differentiable loss needs the surrogate tensor."""
    return elbo._loss_and_surrogate_loss(model, guide, args, kwargs)


def pending_optim_state(optim: Any) -> dict[str, Any]:
    """Optimizer states a ``PyroOptim`` received with ``set_state`` whose params have not been
    updated since (``PyroOptim._state_waiting_to_be_consumed``): a checkpoint written right after
    a resume must still hold them."""
    return dict(getattr(optim, "_state_waiting_to_be_consumed", {}))


def per_param_optimizer(optim: Any, param: torch.Tensor) -> Any:
    """The torch optimizer (or scheduler) a ``PyroOptim`` keeps for ``param``, created as
    ``PyroOptim.__call__`` creates it on first use (``_get_optim``, ``_get_grad_clip``, and the
    state waiting in ``_state_waiting_to_be_consumed``), without stepping it."""
    objs = optim.optim_objs
    if param not in objs:
        objs[param] = optim._get_optim(param)
        optim.grad_clip[param] = optim._get_grad_clip(param)
        name = pyro.get_param_store().param_name(param)
        state = optim._state_waiting_to_be_consumed.pop(name, None)
        if state is not None:
            _load_state_dict(objs[param], state)
    return objs[param]


def pyro_module_prefix(module: Any) -> str:
    """The name a ``PyroModule`` prefixes to its parameters' names in the param store
    (``PyroModule._pyro_name``; ``""`` for a top-level module)."""
    return getattr(module, "_pyro_name", "")


def param_store_tensors() -> dict[str, torch.Tensor]:
    """The unconstrained tensors of Pyro's (current) param store by name, the store's own dict
    (``ParamStoreDict._params``; read, never written): no constrained copies as ``items()``
    makes."""
    return pyro.get_param_store()._params
