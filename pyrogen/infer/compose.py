r"""Weighted sums of Pyro losses on one program: :math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i`.

The VAE-GAN objective of Larsen et al. (2016), an ELBO plus λ times an adversarial generator loss
on the decoded example, is one such sum::

    loss = WeightedLoss([(1.0, Trace_ELBO()), (lam, NonSaturatingGAN(critic, site="x_rec"))])
    svi = pyro.infer.SVI(model, guide, optim, loss=loss)  # or SVIStep(model, guide, loss)

Each term is evaluated on its own run of ``model``/``guide`` with the same arguments, so the
gradient of the sum is exactly the weighted sum of the terms' gradient estimators. Only the
generator/guide side is a sum: an adversarial term contributes its generator part, and its critic
still trains in its own step with its own optimizer (its parameters are not Pyro parameters and get
no gradient here).

References:
  1. Autoencoding beyond pixels using a learned similarity metric, A. B. L. Larsen,
     S. K. Sønderby, H. Larochelle, O. Winther (2016).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer import ELBO as _PyroELBO


def differentiable(term: Any) -> Callable[..., torch.Tensor]:
    """The function ``(model, guide, *args, **kwargs) -> tensor`` of one term."""
    if hasattr(term, "differentiable_loss"):
        return term.differentiable_loss
    if callable(term) and not hasattr(term, "loss_and_grads"):
        return term
    raise TypeError(
        f"{type(term).__name__} has no differentiable_loss(model, guide, *args), so it cannot be"
        " weighted and summed; use an ELBO that has one (Trace_ELBO, TraceMeanField_ELBO,"
        " TraceEnum_ELBO, pyrogen.infer.ELBO, IWAE) or a callable loss(model, guide, *args)"
        " returning a tensor."
    )


class WeightedLoss(_PyroELBO):
    r"""The weighted sum :math:`\sum_i w_i \mathcal{L}_i` of Pyro losses, with Pyro's loss API
    (``loss``, ``differentiable_loss``, ``loss_and_grads``), usable in ``pyro.infer.SVI``.

    :param terms: pairs ``(weight, loss)``; each loss is a Pyro ELBO with a
        ``differentiable_loss`` (e.g. ``Trace_ELBO()``), an adversarial loss (its generator part,
        see :mod:`pyrogen.infer.adversarial`) or a callable ``loss(model, guide, *args, **kwargs)``
        returning a scalar tensor. Weights are finite numbers.

    A subclass of Pyro's ``ELBO`` only so that ``SVI`` calls :meth:`loss_and_grads` (which
    backpropagates into Pyro parameters only) instead of treating it as a plain callable.
    """

    def __init__(self, terms: Iterable[tuple[float, Any]]) -> None:
        super().__init__()
        terms = list(terms)
        if not terms:
            raise ValueError("WeightedLoss needs at least one (weight, loss) pair.")
        self.terms: list[tuple[float, Any]] = []
        for i, pair in enumerate(terms):
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise ValueError(
                    f"Term {i} is {pair!r}; give (weight, loss) pairs, e.g."
                    " [(1.0, Trace_ELBO()), (0.1, NonSaturatingGAN(critic, site='x_rec'))]."
                )
            weight, term = pair
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"Term {i}: the weight must be a number, got {weight!r}.")
            if not math.isfinite(weight):
                raise ValueError(f"Term {i}: the weight must be finite, got {weight}.")
            differentiable(term)  # raises for terms that cannot be summed
            self.terms.append((float(weight), term))

    def differentiable_loss(self, model: Callable, guide: Callable | None, *args, **kwargs):
        r""":math:`\sum_i w_i \mathcal{L}_i` as a scalar tensor differentiable in the model's and
        guide's parameters; terms with weight 0 are not evaluated."""
        total = torch.zeros(())
        for weight, term in self.terms:
            if weight != 0.0:
                value = differentiable(term)(model, guide, *args, **kwargs)
                total = total.to(value) + weight * value
        return total

    __call__ = differentiable_loss

    def loss(self, model: Callable, guide: Callable | None, *args, **kwargs) -> float:
        """The weighted sum as a float, without gradients."""
        total = 0.0
        for weight, term in self.terms:
            if weight == 0.0:
                continue
            if hasattr(term, "loss"):
                total += weight * float(term.loss(model, guide, *args, **kwargs))
            else:
                with torch.no_grad():
                    total += weight * float(term(model, guide, *args, **kwargs))
        return total

    def loss_and_grads(self, model: Callable, guide: Callable | None, *args, **kwargs) -> float:
        """Backpropagates the weighted sum into the Pyro parameters of ``model`` and ``guide``
        (those ``pyro.param``/``pyro.module`` register while the terms run; a critic's parameters
        get no gradient); returns the sum as a float."""
        with poutine.trace(param_only=True) as param_capture:
            loss = self.differentiable_loss(model, guide, *args, **kwargs)
        params = [
            site["value"].unconstrained()
            for site in param_capture.trace.nodes.values()
            if site["value"].unconstrained().requires_grad
        ]
        if params and loss.requires_grad:
            loss.backward(inputs=params)
        return float(loss.detach())

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("A WeightedLoss has no trace of its own: each term runs its own.")

    def __repr__(self) -> str:
        inner = ", ".join(f"({w:g}, {type(t).__name__})" for w, t in self.terms)
        return f"{type(self).__name__}([{inner}])"
