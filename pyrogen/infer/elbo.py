r"""The ELBO with its gradient estimator as an explicit choice, built on Pyro's ELBOs.

.. math::

    \text{ELBO}(x; \nu) = \mathbb E_{q_\nu(z \mid x)}[\log p(x, z) - \log q_\nu(z \mid x)]
    = \mathbb E_{q_\nu}[\log p(x \mid z)] - \mathrm{KL}(q_\nu(z \mid x) \,\|\, p(z)).

Two unbiased estimators of :math:`\nabla_\nu \text{ELBO}`:

- *reparameterized* [1]: :math:`z = g(\nu, \epsilon)`, :math:`\epsilon \sim p(\epsilon)`,
  :math:`\nabla_\nu f(x, g(\nu, \epsilon))` averaged over :math:`\epsilon`;
- *score function* [2, 3]: :math:`\nabla_\nu \log q_\nu(z)\,(f(z) - b)` with a baseline
  :math:`b` that does not depend on :math:`z`.

``estimator="reparam"`` uses :class:`~pyro.infer.Trace_ELBO` (or
:class:`~pyro.infer.TraceMeanField_ELBO` with ``kl="analytic"``) and refuses guides that cannot
be reparameterized; ``"score"`` wraps the guide in :func:`~pyrogen.infer.score.score_function`
and uses :class:`~pyro.infer.TraceGraph_ELBO` (Rao-Blackwellized, with Pyro's decaying-average or
neural baselines) or the leave-one-out baseline of [4]; ``"auto"`` is Pyro's own choice per site.
:func:`get_objective` maps the names used by the command line to configured losses.

References

1. *Auto-Encoding Variational Bayes*, Diederik P. Kingma, Max Welling (2014)
2. *Black Box Variational Inference*, Rajesh Ranganath, Sean Gerrish, David M. Blei (2014)
3. *Neural Variational Inference and Learning in Belief Networks*, Andriy Mnih, Karol Gregor (2014)
4. *Buy 4 REINFORCE Samples, Get a Baseline for Free!*, Wouter Kool, Herke van Hoof,
   Max Welling (2019)
"""

from __future__ import annotations

from typing import Any

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO as _PyroELBO

from pyrogen._compat import elbo_trace, tracegraph_loss_and_surrogate, warn_if_nan

from .iwae import (
    IWAE,
    STL_ELBO,
    _GuideCheck,
    _ParticleELBO,
    _validate_num_particles,
)
from .score import score_function

_ESTIMATORS = ("reparam", "score", "auto")
_KLS = ("analytic", "mc")
_BASELINES = (None, "decaying_avg", "neural", "loo")
OBJECTIVES = ("reparam", "score", "iwae", "stl", "dreg")


class _Trace_ELBO(_GuideCheck, Trace_ELBO):
    pass


class _ReparamTrace_ELBO(_GuideCheck, Trace_ELBO):
    _require_reparam = True


class _TraceMeanField_ELBO(_GuideCheck, TraceMeanField_ELBO):
    _require_reparam = True


class _TraceGraph_ELBO(_GuideCheck, TraceGraph_ELBO):
    def differentiable_loss(self, model, guide, *args, **kwargs):
        elbo, surrogate = tracegraph_loss_and_surrogate(self, model, guide, args, kwargs)
        elbo = torch.as_tensor(elbo).detach()
        return -elbo + (surrogate - surrogate.detach())


class _LeaveOneOutELBO(_ParticleELBO):
    r"""Score-function ELBO with the leave-one-out baseline of the other particles [4]:
    :math:`\frac1K \sum_k \nabla \log q(z_k)\,(f_k - \frac{1}{K-1}\sum_{j \ne k} f_j)`, per example
    of the data plate."""

    def _elbo_and_surrogate(self, model, guide, args, kwargs, need_grad: bool = True):
        model_trace, guide_trace, _, layout = self._particle_traces(
            model, score_function(guide), args, kwargs
        )
        log_p = self._sum_sites(model_trace, layout)
        log_q = self._sum_sites(guide_trace, layout)
        cost = (log_p - log_q).detach()
        k = self.num_particles
        baseline = (cost.sum(0, keepdim=True) - cost) / (k - 1)
        elbo = layout.scale * cost.sum() / k
        surrogate = layout.scale * (log_p + log_q * (cost - baseline)).sum() / k
        return elbo, surrogate


class _BaselineNet(torch.nn.Module):
    """Default neural baseline: a one-hidden-layer MLP on the guide's first argument."""

    def __init__(self, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"Expected {name} in {choices}, but got {value!r}")


class ELBO(_PyroELBO):
    r"""Evidence lower bound with an explicit gradient estimator and KL treatment.

    .. math::

        \text{ELBO} = \mathbb E_{q}[\log p(x, z) - \log q(z \mid x)]
        = \mathbb E_{q}[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p(z))

    :param str estimator: ``"reparam"`` (pathwise gradient; error if a guide site has no
        ``rsample``) [1], ``"score"`` (score-function gradient at every guide site, even
        reparameterizable ones) [2], or ``"auto"`` (reparameterize where possible, as Pyro does).
    :param str kl: ``"analytic"`` (closed-form KL where registered, via
        :class:`~pyro.infer.TraceMeanField_ELBO`; needs a mean-field reparameterized guide) or
        ``"mc"`` (Monte Carlo estimate of :math:`\log p(z) - \log q(z)`).
    :param int num_particles: samples per step (:math:`\ge 1`).
    :param baseline: variance reduction for ``estimator="score"``: ``None``,
        ``"decaying_avg"`` (Pyro's per-site moving average of the downstream cost [3]),
        ``"neural"`` (Pyro's neural baseline [3], an MLP on the guide's first argument unless
        ``baseline_net`` is given, trained jointly by minimizing its squared error), or ``"loo"``
        (leave-one-out average of the other particles' costs [4]; needs ``num_particles >= 2``).
    :param float baseline_beta: decay of the ``"decaying_avg"`` baseline, in ``[0, 1)``.
    :param baseline_net: module mapping the guide's first argument to the baseline (for
        ``"neural"``); it is fed in its own dtype and its output is broadcast to each
        site's batch shape.
    :param max_plate_nesting: as in :class:`~pyro.infer.ELBO`.
    :param bool vectorize_particles: as in :class:`~pyro.infer.ELBO` (``"loo"`` always
        vectorizes).

    >>> elbo = ELBO(estimator="score", baseline="decaying_avg", num_particles=4)

    References

    1. *Auto-Encoding Variational Bayes*, Diederik P. Kingma, Max Welling
    2. *Black Box Variational Inference*, Rajesh Ranganath, Sean Gerrish, David M. Blei
    3. *Neural Variational Inference and Learning in Belief Networks*, Andriy Mnih, Karol Gregor
    4. *Buy 4 REINFORCE Samples, Get a Baseline for Free!*, Wouter Kool, Herke van Hoof,
       Max Welling
    """

    def __init__(
        self,
        estimator: str = "auto",
        kl: str = "mc",
        num_particles: int = 1,
        baseline: str | None = None,
        *,
        baseline_beta: float = 0.9,
        baseline_net: torch.nn.Module | None = None,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool = False,
    ) -> None:
        _choice("estimator", estimator, _ESTIMATORS)
        _choice("kl", kl, _KLS)
        _choice("baseline", baseline, _BASELINES)
        _validate_num_particles(num_particles)
        if estimator == "score" and kl == "analytic":
            raise ValueError(
                "Expected kl='mc' with estimator='score' (the analytic KL is differentiated "
                "pathwise), but got kl='analytic'"
            )
        if baseline is not None and estimator != "score":
            raise ValueError(
                f"Baselines apply to the score-function estimator: expected estimator='score' "
                f"with baseline={baseline!r}, but got estimator={estimator!r}"
            )
        if baseline == "loo" and num_particles < 2:
            raise ValueError(
                f"The leave-one-out baseline needs num_particles >= 2, but got {num_particles}"
            )
        if not 0.0 <= baseline_beta < 1.0:
            raise ValueError(f"Expected 0 <= baseline_beta < 1, but got {baseline_beta}")
        if baseline_net is not None and baseline != "neural":
            raise ValueError(f"baseline_net needs baseline='neural', but got {baseline!r}")
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
        )
        self.estimator, self.kl, self.baseline = estimator, kl, baseline
        self.baseline_beta = baseline_beta
        self.baseline_net = baseline_net
        options = dict(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
        )
        if baseline == "loo":
            self._elbo = _LeaveOneOutELBO(num_particles, max_plate_nesting)
        elif estimator == "score":
            self._elbo = _TraceGraph_ELBO(**options)
        elif kl == "analytic":
            self._elbo = _TraceMeanField_ELBO(**options)
        elif estimator == "reparam":
            self._elbo = _ReparamTrace_ELBO(**options)
        else:
            self._elbo = _Trace_ELBO(**options)

    def _get_trace(self, model, guide, args, kwargs):
        return elbo_trace(self._elbo, model, self._wrap(guide), args, kwargs)

    def _wrap(self, guide):
        if self.estimator != "score" or self.baseline == "loo":
            return guide
        if self.baseline is None:
            return score_function(guide)
        if self.baseline == "decaying_avg":
            options = {"use_decaying_avg_baseline": True, "baseline_beta": self.baseline_beta}
            return score_function(guide, baseline=options)

        def guide_with_neural_baseline(*args, **kwargs):
            if not args or not isinstance(args[0], torch.Tensor):
                raise ValueError(
                    "baseline='neural' feeds the guide's first positional argument to the "
                    "baseline network; expected a tensor, but got "
                    f"{type(args[0]).__name__ if args else 'no arguments'}"
                )
            inputs = args[0]
            if not inputs.is_floating_point():
                inputs = inputs.to(torch.get_default_dtype())
            if self.baseline_net is None:
                net = _BaselineNet(inputs.shape[-1])
                self.baseline_net = net.to(device=inputs.device, dtype=inputs.dtype)
            weight = next(self.baseline_net.parameters(), None)
            if weight is not None:  # feed the network in its own dtype (e.g. float32 net, f64 x)
                inputs = inputs.to(dtype=weight.dtype)
            pyro.module("elbo_nn_baseline", self.baseline_net)
            options = {"nn_baseline": self.baseline_net, "nn_baseline_input": inputs}
            return score_function(guide, baseline=options)(*args, **kwargs)

        return guide_with_neural_baseline

    def loss(self, model, guide, *args, **kwargs) -> float:
        """:returns: an estimate of the negative ELBO (a float)."""
        return float(self._elbo.loss(model, self._wrap(guide), *args, **kwargs))

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:returns: the negative ELBO as a tensor whose gradient is the chosen estimator."""
        loss = self._elbo.differentiable_loss(model, self._wrap(guide), *args, **kwargs)
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagates the chosen estimator; returns the negative ELBO as a float."""
        return float(self._elbo.loss_and_grads(model, self._wrap(guide), *args, **kwargs))


def get_objective(name: str, num_particles: int = 1) -> _PyroELBO:
    r"""The loss behind a command-line estimator name.

    ============  ============================================================================
    ``reparam``   :class:`ELBO` (reparameterized, analytic KL)
    ``score``     :class:`ELBO` (score function, decaying-average baseline)
    ``iwae``      :class:`~pyrogen.infer.iwae.IWAE` (standard gradient)
    ``stl``       :class:`~pyrogen.infer.iwae.STL_ELBO` (path-derivative ELBO)
    ``dreg``      :class:`~pyrogen.infer.iwae.IWAE` (doubly reparameterized gradient)
    ============  ============================================================================

    :param name: one of ``reparam``, ``score``, ``iwae``, ``stl``, ``dreg``.
    :param num_particles: samples per step, :math:`K \ge 1` (vectorized when :math:`K > 1`).
    :raises ValueError: for an unknown name or ``num_particles < 1``.
    """
    if name not in OBJECTIVES:
        raise ValueError(f"Unknown estimator {name!r}; expected one of {', '.join(OBJECTIVES)}")
    _validate_num_particles(num_particles)
    vectorize = num_particles > 1
    if name == "reparam":
        return ELBO(
            "reparam", kl="analytic", num_particles=num_particles, vectorize_particles=vectorize
        )
    if name == "score":
        return ELBO(
            "score",
            num_particles=num_particles,
            baseline="decaying_avg",
            vectorize_particles=vectorize,
        )
    if name == "stl":
        return STL_ELBO(num_particles=num_particles, vectorize_particles=vectorize)
    return IWAE(num_particles=num_particles, estimator="standard" if name == "iwae" else "dreg")
