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
(every site, or only ``sites=``) and uses :class:`~pyro.infer.TraceGraph_ELBO` (Rao-Blackwellized,
with Pyro's decaying-average or neural baselines) or the leave-one-out baseline of [4];
``"auto"`` is Pyro's own choice per site (pathwise where the site has ``rsample``), and with a
baseline attaches it only at the score-function sites
(:func:`~pyrogen.infer.score.with_baseline`), as mixed discrete/continuous guides need.
:func:`get_objective` maps the names used by the command line to configured losses.

References

1. *Auto-Encoding Variational Bayes*, Diederik P. Kingma, Max Welling (2014)
2. *Black Box Variational Inference*, Rajesh Ranganath, Sean Gerrish, David M. Blei (2014)
3. *Neural Variational Inference and Learning in Belief Networks*, Andriy Mnih, Karol Gregor (2014)
4. *Buy 4 REINFORCE Samples, Get a Baseline for Free!*, Wouter Kool, Herke van Hoof,
   Max Welling (2019)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

import pyro
import torch
from pyro.distributions.util import is_identically_zero
from pyro.infer import Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.elbo import ELBO as _PyroELBO
from pyro.infer.util import MultiFrameTensor
from pyro.ops.provenance import detach_provenance, get_provenance

from pyrogen._compat import elbo_trace, tracegraph_loss_and_surrogate, warn_if_nan

from .importance import PARTICLE_PLATE
from .iwae import (
    IWAE,
    STL_ELBO,
    _GuideCheck,
    _validate_num_particles,
)
from .score import score_function, with_baseline

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


def _leave_one_out(cost: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of the other particles' costs along the particle ``dim``."""
    k = cost.shape[dim]
    return (cost.sum(dim, keepdim=True) - cost) / (k - 1)


def _loo_surrogate(model_trace, guide_trace) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elbo, surrogate_loss)`` of one vectorized trace pair, as Pyro's ``TraceGraph_ELBO``
    builds them (downstream costs found by provenance, summed to each site's plates), with the
    leave-one-out baseline of the other particles at every non-reparameterized guide site."""
    elbo = surrogate = torch.zeros(())
    costs: dict[str, MultiFrameTensor] = defaultdict(MultiFrameTensor)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] != "sample":
                continue
            elbo = elbo + sign * site["log_prob_sum"]
            if sign > 0:
                surrogate = surrogate + site["log_prob_sum"]
            else:
                entropy = site["score_parts"].entropy_term
                if not is_identically_zero(entropy):
                    surrogate = surrogate - entropy.sum()
            for node in get_provenance(site["log_prob_sum"]):
                costs[node].add((site["cond_indep_stack"], sign * site["log_prob"]))
    for node, cost in costs.items():
        site = guide_trace.nodes[node]
        frames = [f for f in site["cond_indep_stack"] if f.name == PARTICLE_PLATE]
        if not frames:
            raise ValueError(f"Guide site {node!r} is outside the particle plate")
        score = site["score_parts"].score_function
        cost = cost.sum_to(site["cond_indep_stack"]).detach()
        cost = cost.expand(torch.broadcast_shapes(cost.shape, score.shape))
        baseline = _leave_one_out(cost, frames[0].dim)
        surrogate = surrogate + (score * (cost - baseline)).sum()
    return detach_provenance(elbo), -detach_provenance(surrogate)


class _LeaveOneOutELBO(_TraceGraph_ELBO):
    r"""Pyro's ``TraceGraph_ELBO`` with :math:`K` vectorized particles and, at each
    non-reparameterized guide site, the leave-one-out baseline of [4]:
    :math:`\frac1K \sum_k \nabla \log q(z_k)\,(c_k - \frac{1}{K-1}\sum_{j \ne k} c_j)`, where
    :math:`c_k` is the site's downstream cost per element of its plates (per datum for a local
    site, the whole data set's for a global one). Reparameterizable sites keep the pathwise
    gradient."""

    def __init__(self, num_particles: int, max_plate_nesting: float = float("inf")) -> None:
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=True,
        )

    def _loss_and_surrogate_loss_particle(self, model_trace, guide_trace):
        return _loo_surrogate(model_trace, guide_trace)


class _BaselineNet(torch.nn.Module):
    """Default neural baseline: a one-hidden-layer MLP on one datum, i.e. one row of the guide's
    first argument (a 1-D argument is a batch of scalars); returns one value per row, so it
    works for any batch size."""

    def __init__(self, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(x.shape[0] if x.dim() else 1, -1)
        return self.net(rows).squeeze(-1)


def _datum_features(x: torch.Tensor) -> int:
    return int(torch.Size(x.shape[1:]).numel()) if x.dim() else 1


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
        reparameterizable ones, or only at ``sites``) [2], or ``"auto"`` (reparameterize where
        possible, as Pyro does; a baseline then acts only at the sites without ``rsample``).
    :param str kl: ``"analytic"`` (closed-form KL where registered, via
        :class:`~pyro.infer.TraceMeanField_ELBO`; needs a mean-field reparameterized guide) or
        ``"mc"`` (Monte Carlo estimate of :math:`\log p(z) - \log q(z)`).
    :param int num_particles: samples per step (:math:`\ge 1`).
    :param baseline: variance reduction at the score-function sites (``"score"`` or ``"auto"``;
        each site's cost is its downstream cost per element of its plates, i.e. per datum for a
        local site): ``None``, ``"decaying_avg"`` (Pyro's per-site moving average of that cost
        [3]), ``"neural"`` (Pyro's neural baseline [3], by default an MLP on one datum, a row of
        the guide's first argument, so any batch size works; trained jointly by minimizing its
        squared error), or ``"loo"`` (mean cost of the other particles [4]; needs
        ``num_particles >= 2``; particles are vectorized).
    :param sites: with ``estimator="score"``, the only sites forced to the score function (the
        others keep Pyro's choice); ``None`` for every site.
    :param float baseline_beta: decay of the ``"decaying_avg"`` baseline, in ``[0, 1)``.
    :param baseline_net: module mapping the guide's first argument to the baseline (for
        ``"neural"``); it is fed in its own dtype and its output is broadcast to each
        site's batch shape (one value per datum is summed at a site outside the data plate).
    :param max_plate_nesting: as in :class:`~pyro.infer.ELBO`.
    :param bool vectorize_particles: as in :class:`~pyro.infer.ELBO` (``"loo"`` always
        vectorizes).

    >>> elbo = ELBO(estimator="score", baseline="decaying_avg", num_particles=4)
    >>> mixed = ELBO(estimator="auto", baseline="loo", num_particles=4)  # e.g. mixture models

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
        sites: Collection[str] | None = None,
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
        if baseline is not None and estimator == "reparam":
            raise ValueError(
                f"Baselines apply to score-function sites, and estimator='reparam' has none: use "
                f"estimator='auto' (score function only at sites without rsample) or 'score' "
                f"with baseline={baseline!r}"
            )
        if baseline is not None and kl == "analytic":
            raise ValueError(
                f"baseline={baseline!r} needs kl='mc' (the analytic-KL ELBO has no baselines)"
            )
        if sites is not None:
            if estimator != "score":
                raise ValueError(
                    f"sites= selects the sites forced to the score function: expected "
                    f"estimator='score', but got estimator={estimator!r}"
                )
            if isinstance(sites, str) or not all(isinstance(n, str) for n in sites):
                raise ValueError(f"Expected sites to be a collection of site names, got {sites!r}")
            sites = frozenset(sites)
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
        self.sites = sites
        options = dict(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=vectorize_particles,
        )
        if baseline == "loo":
            self._elbo = _LeaveOneOutELBO(num_particles, max_plate_nesting)
        elif estimator == "score" or baseline is not None:
            self._elbo = _TraceGraph_ELBO(**options)
        elif kl == "analytic":
            self._elbo = _TraceMeanField_ELBO(**options)
        elif estimator == "reparam":
            self._elbo = _ReparamTrace_ELBO(**options)
        else:
            self._elbo = _Trace_ELBO(**options)

    def _get_trace(self, model, guide, args, kwargs):
        return elbo_trace(self._elbo, model, self._wrap(guide), args, kwargs)

    def _handler(self, guide, baseline: dict | None = None):
        """``guide`` with the score function forced (``"score"``) or with ``baseline`` attached
        only at its sites without ``rsample`` (``"auto"``)."""
        if self.estimator == "score":
            return score_function(guide, sites=self.sites, baseline=baseline)
        return with_baseline(guide, baseline) if baseline is not None else guide

    def _wrap(self, guide):
        if self.estimator == "reparam" or self.baseline is None or self.baseline == "loo":
            return self._handler(guide) if self.estimator == "score" else guide
        if self.baseline == "decaying_avg":
            options = {"use_decaying_avg_baseline": True, "baseline_beta": self.baseline_beta}
            return self._handler(guide, options)

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
                net = _BaselineNet(_datum_features(inputs))
                self.baseline_net = net.to(device=inputs.device, dtype=inputs.dtype)
            weight = next(self.baseline_net.parameters(), None)
            if weight is not None:  # feed the network in its own dtype (e.g. float32 net, f64 x)
                inputs = inputs.to(dtype=weight.dtype)
            pyro.module("elbo_nn_baseline", self.baseline_net)
            options = {"nn_baseline": self.baseline_net, "nn_baseline_input": inputs}
            return self._handler(guide, options)(*args, **kwargs)

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
