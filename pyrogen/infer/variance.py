r"""Mean, variance and signal-to-noise ratio of a stochastic gradient estimator.

For an estimator :math:`\hat g` of :math:`\nabla_\nu \mathcal L` drawn ``num_samples`` times
independently (same parameters, fresh randomness),

.. math::

    \bar g = \frac1S \sum_{s=1}^S \hat g_s, \qquad
    \widehat{\mathrm{Var}}[\hat g] = \frac{1}{S-1} \sum_{s=1}^S (\hat g_s - \bar g)^2, \qquad
    \mathrm{SNR} = \frac{|\bar g|}{\sqrt{\widehat{\mathrm{Var}}[\hat g]}},

elementwise for every parameter. The SNR is the quantity Rainforth et al. [1] use to show that
IWAE's standard guide gradient degrades as :math:`K` grows; Roeder et al. [2] and Tucker et al. [3]
use the variance to compare STL and DReG.

References

1. *Tighter Variational Bounds are Not Necessarily Better*, Tom Rainforth, Adam R. Kosiorek,
   Tuan Anh Le, Chris J. Maddison, Maximilian Igl, Frank Wood, Yee Whye Teh (2018)
2. *Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational
   Inference*, Geoffrey Roeder, Yuhuai Wu, David Duvenaud (2017)
3. *Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives*, George Tucker,
   Dieterich Lawson, Shixiang Gu, Chris J. Maddison (2019)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pyro.poutine as poutine
import torch
from pyro.infer.elbo import ELBO as _PyroELBO


class GradStats(NamedTuple):
    """Per-parameter statistics of a gradient estimator (float64, shaped like the parameter)."""

    mean: torch.Tensor
    variance: torch.Tensor
    snr: torch.Tensor


def _backward(loss: _PyroELBO | Callable, model, guide, args, kwargs) -> None:
    if isinstance(loss, _PyroELBO):
        loss.loss_and_grads(model, guide, *args, **kwargs)
        return
    value = loss(model, guide, *args, **kwargs)
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        raise ValueError(
            "Expected a callable loss to return a differentiable tensor, but got "
            f"{type(value).__name__}"
            + ("" if not isinstance(value, torch.Tensor) else " without grad")
        )
    value.backward()


def gradient_variance(
    loss: _PyroELBO | Callable[..., torch.Tensor],
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    **kwargs: Any,
) -> dict[str, GradStats]:
    r"""Draw the gradient estimator of ``loss`` ``num_samples`` times at the current parameters.

    Each draw zeroes the gradients, calls ``loss.loss_and_grads(model, guide, *args, **kwargs)``
    for a Pyro :class:`~pyro.infer.ELBO` (or ``loss(model, guide, *args, **kwargs).backward()``
    for any other callable returning a tensor) and records the gradient of every parameter met
    in the model or guide. Parameters are not updated (stateful losses, such as a
    decaying-average baseline, do update their state).

    :param loss: a Pyro ELBO (including the pyrogen losses) or a callable loss.
    :param model: the model.
    :param guide: the guide.
    :param num_samples: number of independent draws :math:`S \ge 2`.
    :returns: ``{param_name: GradStats(mean, variance, snr)}`` keyed by Pyro param-store names;
        tensors are float64 and shaped like the parameter. Gradients are with respect to the
        *unconstrained* values (what Pyro's optimizers update); ``variance`` is the unbiased
        sample variance and ``snr = |mean| / sqrt(variance)`` (``inf`` where the estimator is
        deterministic and nonzero, ``nan`` where it is identically zero). Parameters that never
        receive a gradient are omitted.

    >>> import pyro, torch, pyro.distributions as dist
    >>> from pyrogen.infer import ELBO
    >>> def model():
    ...     pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> def guide():
    ...     pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(1.0)), 1.0))
    >>> elbo = ELBO(estimator="reparam", kl="analytic")  # -ELBO = KL(N(loc, 1) || N(0, 1))
    >>> stats = gradient_variance(elbo, model, guide, num_samples=10)
    >>> stats["loc"].mean, stats["loc"].variance  # d KL / d loc = loc, without noise
    (tensor(1., dtype=torch.float64), tensor(0., dtype=torch.float64))
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"Expected num_samples to be an integer >= 2, but got {num_samples!r}")
    if not callable(loss) and not isinstance(loss, _PyroELBO):
        raise ValueError(f"Expected a Pyro ELBO or a callable loss, but got {type(loss).__name__}")

    with poutine.trace(param_only=True) as capture:
        _backward(loss, model, guide, args, kwargs)
    params = {
        name: site["value"].unconstrained()
        for name, site in capture.trace.nodes.items()
        if site["type"] == "param"
    }
    if not params:
        raise ValueError("The model and guide have no Pyro parameters to differentiate.")

    count = 0
    mean: dict[str, torch.Tensor] = {}
    m2: dict[str, torch.Tensor] = {}
    seen: set[str] = set()
    for _ in range(num_samples):
        for p in params.values():
            p.grad = None
        _backward(loss, model, guide, args, kwargs)
        count += 1
        for name, p in params.items():  # Welford's online mean and variance, in float64
            grad = p.grad
            if grad is None:
                grad = torch.zeros_like(p)
            else:
                seen.add(name)
            grad = grad.detach().to(torch.float64)
            if name not in mean:
                mean[name] = torch.zeros_like(grad)
                m2[name] = torch.zeros_like(grad)
            delta = grad - mean[name]
            mean[name] += delta / count
            m2[name] += delta * (grad - mean[name])
    for p in params.values():
        p.grad = None

    stats = {}
    for name in params:
        if name not in seen:
            continue
        variance = m2[name] / (count - 1)
        stats[name] = GradStats(mean[name], variance, mean[name].abs() / variance.sqrt())
    return stats
