r"""Importance-weighted bound (IWAE) and path-derivative gradient estimators (STL, DReG).

With :math:`K` samples :math:`z_k \sim q(z \mid x)` and weights
:math:`w_k = p(x, z_k) / q(z_k \mid x)`, the importance-weighted bound of one example is

.. math::

    \mathcal L_K(x) = \mathbb E\Big[\log \frac1K \sum_{k=1}^K w_k\Big]
    \;\le\; \mathcal L_{K+1}(x) \;\le\; \log p(x),
    \qquad \mathcal L_1 = \text{ELBO}.

Gradient estimators (``z_k`` reparameterized, :math:`\tilde w_k = w_k / \sum_j w_j`):

- ``"standard"`` [1]: :math:`\sum_k \tilde w_k \nabla \log w_k`.
- ``"stl"`` (sticking the landing) [2]: the same, but :math:`\log q` is differentiated only
  through :math:`z_k` (its direct dependence on the variational parameters is dropped, a zero-mean
  term for :math:`K = 1`). Exact zero variance when :math:`q` is the posterior; for :math:`K > 1`
  it is biased for the guide's parameters [3].
- ``"dreg"`` (doubly reparameterized) [3]: guide parameters get
  :math:`\sum_k \tilde w_k^2\, \partial \log w_k / \partial z_k \cdot \partial z_k / \partial \phi`,
  model parameters the standard :math:`\sum_k \tilde w_k \nabla_\theta \log p(x, z_k)`. Unbiased,
  and its signal-to-noise ratio does not vanish as :math:`K` grows.

:class:`STL_ELBO` is the plain ELBO (:math:`K` independent particles averaged) with the STL
gradient, built on :class:`~pyro.infer.Trace_ELBO`.

References

1. *Importance Weighted Autoencoders*, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov (2016)
2. *Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational Inference*,
   Geoffrey Roeder, Yuhuai Wu, David Duvenaud (2017)
3. *Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives*, George Tucker,
   Dieterich Lawson, Shixiang Gu, Chris J. Maddison (2019)
"""

from __future__ import annotations

from typing import Any

import torch
from pyro.infer import Trace_ELBO
from pyro.infer.elbo import ELBO as _PyroELBO

from pyrogen._compat import scale_and_mask, warn_if_nan

from .importance import (
    WeightLayout,
    check_guide_sites,
    guess_max_plate_nesting,
    log_mean_weight,
    log_weights_of,
    particle_traces,
    sample_sites,
    sum_log_probs,
)

_IWAE_ESTIMATORS = ("standard", "stl", "dreg")


def _validate_num_particles(num_particles: Any) -> int:
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"Expected num_particles to be an integer >= 1, but got {num_particles!r}")
    return num_particles


class _GuideCheck:
    """Mixin for Pyro ELBOs: clear errors for guide sites missing from the model."""

    _require_reparam = False

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        check_guide_sites(model_trace, guide_trace, self._require_reparam)
        return model_trace, guide_trace


class _ParticleELBO(_PyroELBO):
    """Base of multi-sample objectives: one trace with particles vectorized in an outer plate."""

    def __init__(self, num_particles: int = 1, max_plate_nesting: float = float("inf")) -> None:
        _validate_num_particles(num_particles)
        super().__init__(
            num_particles=num_particles,
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=False,
        )

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("multi-sample objectives trace all particles at once")

    def _particle_traces(self, model, guide, args, kwargs, detached_model: bool = False):
        """Returns ``(model_trace, guide_trace, detached_model_trace or None, layout)``."""
        if self.max_plate_nesting == float("inf"):
            self.max_plate_nesting = guess_max_plate_nesting(model, guide, *args, **kwargs)
        return particle_traces(
            model,
            guide,
            args,
            kwargs,
            self.num_particles,
            int(self.max_plate_nesting),
            detached_model=detached_model,
        )

    @staticmethod
    def _sum_sites(trace, layout: WeightLayout, key: str = "unscaled_log_prob"):
        return sum_log_probs(trace, layout, key)

    def _elbo_and_surrogate(self, model, guide, args, kwargs):
        raise NotImplementedError

    def loss(self, model, guide, *args, **kwargs) -> float:
        """:returns: an estimate of the negative objective (a float, no gradient)."""
        with torch.no_grad():
            elbo, _ = self._elbo_and_surrogate(model, guide, args, kwargs, need_grad=False)
        loss = -float(elbo)
        warn_if_nan(loss, "loss")
        return loss

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """:returns: the negative objective as a tensor whose gradient is the estimator."""
        elbo, surrogate = self._elbo_and_surrogate(model, guide, args, kwargs)
        loss = -(elbo.detach() + surrogate - surrogate.detach())
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagates the estimator into the parameters; returns the loss as a float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return loss.item()


def _path_log_q(guide_trace, layout: WeightLayout) -> torch.Tensor:
    r""":math:`\log q_{\mathrm{sg}(\phi)}(z(\phi))`: the guide's log-density differentiated
    only through its samples (the direct dependence on the parameters stopped)."""
    total = torch.zeros(())
    for site in sample_sites(guide_trace).values():
        lp = site["unscaled_log_prob"]
        lp_fixed_z = site["fn"].log_prob(site["value"].detach())
        total = total + layout.reduce(site, lp - lp_fixed_z + lp_fixed_z.detach())
    return total


def _refuse_subsampled_globals(guide_trace, layout: WeightLayout) -> None:
    r"""With a global latent :math:`\beta` the importance weight is joint,
    :math:`w_k = p(\beta_k) \prod_{i=1}^N p(x_i, z_{ki} \mid \beta_k) / q(\beta_k, z_k)`, and
    :math:`\log \frac1K \sum_k w_k` is not a sum over data: no mini-batch of it is unbiased
    for the full-data bound (nor is it any scaling of the mini-batch's own bound)."""
    if layout.shared_scale:
        return
    globals_ = [name for name in layout.outside if name in sample_sites(guide_trace)]
    raise ValueError(
        f"The importance-weighted bound with global latent sites {globals_ or layout.outside} "
        f"and a subsampled data plate (scales {layout.scales}) has no unbiased mini-batch "
        "estimate: its log-sum-exp is over the joint weight of all the data. Use the full data "
        "set (no subsample), or STL_ELBO / ELBO(num_particles=K), which scale each site by its "
        "own factor, or move the global latents out of the guide (pyro.param point estimates)."
    )


class IWAE(_ParticleELBO):
    r"""Importance-weighted bound of Burda et al. [1] with a choice of gradient estimator.

    .. math::

        \mathcal L_K = \sum_{i \in \text{batch}} s\,\Big[\log \sum_{k=1}^K w_{k,i} - \log K\Big],
        \qquad w_{k,i} = \frac{p(x_i, z_{k,i})}{q(z_{k,i} \mid x_i)},

    where :math:`s` is the data plate's subsampling scale (``size / subsample_size``). Particles
    are vectorized in an outer :func:`~pyro.plate` at dim ``-(max_plate_nesting + 1)``. When every
    sample site lies in one plate at dim -1 (the data plate of a VAE) the log-sum-exp is taken per
    example; otherwise over the whole log joint. Traces and log weights come from
    :mod:`pyrogen.infer.importance` (the functions evaluation and PSIS use); this class adds the
    gradient estimators.

    ``estimator`` selects the gradient: ``"standard"`` [1], ``"stl"`` [2] or ``"dreg"`` [3]
    (see :mod:`pyrogen.infer.iwae`). ``"dreg"`` replays the model once more on detached samples
    to give model parameters their standard gradient.

    .. note:: Every guide site must be reparameterizable (``has_rsample``). STL and DReG are
        derived for guides whose sites are conditionally independent given the inputs (mean-field
        or amortized VAE guides); all sites must share one scale (``poutine.scale`` on a subset
        of sites is not supported). A global latent under a subsampled data plate is refused with
        a ValueError: the joint log-sum-exp has no unbiased mini-batch estimate (use the full
        batch or :class:`STL_ELBO`).

    >>> import pyro, torch, pyro.distributions as dist
    >>> def model(x):
    ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...     pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))  # the exact posterior
    >>> x = torch.tensor(1.0)
    >>> round(-IWAE(num_particles=8).loss(model, guide, x), 4)  # = log N(x; 0, 2)
    -1.5155

    :param int num_particles: :math:`K \ge 1`.
    :param str estimator: ``"standard"``, ``"stl"`` or ``"dreg"``.
    :param max_plate_nesting: bound on plate nesting; guessed from one run if omitted.

    References

    1. *Importance Weighted Autoencoders*, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov
    2. *Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational
       Inference*, Geoffrey Roeder, Yuhuai Wu, David Duvenaud
    3. *Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives*, George Tucker,
       Dieterich Lawson, Shixiang Gu, Chris J. Maddison
    """

    def __init__(
        self,
        num_particles: int = 5,
        estimator: str = "standard",
        max_plate_nesting: float = float("inf"),
    ) -> None:
        if estimator not in _IWAE_ESTIMATORS:
            raise ValueError(f"Expected estimator in {_IWAE_ESTIMATORS}, but got {estimator!r}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.estimator = estimator

    def _elbo_and_surrogate(self, model, guide, args, kwargs, need_grad: bool = True):
        dreg = need_grad and self.estimator == "dreg"
        model_trace, guide_trace, detached_trace, layout = self._particle_traces(
            model, guide, args, kwargs, detached_model=dreg
        )
        check_guide_sites(model_trace, guide_trace, require_reparam=True)
        _refuse_subsampled_globals(guide_trace, layout)
        scale = layout.scale
        log_w = log_weights_of(model_trace, guide_trace, layout, self.num_particles)
        elbo = scale * log_mean_weight(log_w).sum()
        if not need_grad or self.estimator == "standard":
            return elbo, elbo
        log_w_path = sum_log_probs(model_trace, layout) - _path_log_q(guide_trace, layout)
        if self.estimator == "stl":
            return elbo, scale * torch.logsumexp(log_w_path, dim=0).sum()
        # DReG: guide gets sum_k w~^2 dlog w/dz dz/dphi; model gets sum_k w~ grad log p.
        weights = torch.softmax(log_w.detach(), dim=0)
        log_p_fixed_z = sum_log_probs(detached_trace, layout)
        surrogate = (weights**2 * (log_w_path - log_p_fixed_z) + weights * log_p_fixed_z).sum()
        return elbo, scale * surrogate


class STL_ELBO(_GuideCheck, Trace_ELBO):
    r"""ELBO with the sticking-the-landing (path-derivative) gradient of Roeder et al. [1].

    .. math::

        \widehat{\nabla_\phi \text{ELBO}} = \frac1K \sum_{k=1}^K
        \nabla_z \big[\log p(x, z) - \log q_{\mathrm{sg}(\phi)}(z)\big]_{z = z_k(\phi)}
        \, \frac{\partial z_k}{\partial \phi},

    i.e. :class:`~pyro.infer.Trace_ELBO` with the score term
    :math:`\partial_\phi \log q_\phi(z)\rvert_{z}` (zero mean) removed from every reparameterized
    guide site. The estimate is unbiased and its variance is exactly zero when :math:`q` equals
    the posterior. Sites without ``rsample`` keep Pyro's score-function estimator. Accepts all
    :class:`~pyro.infer.Trace_ELBO` arguments (e.g. ``vectorize_particles=True``).

    >>> elbo = STL_ELBO(num_particles=4, vectorize_particles=True)

    References

    1. *Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational
       Inference*, Geoffrey Roeder, Yuhuai Wu, David Duvenaud
    """

    def __init__(self, num_particles: int = 1, **kwargs: Any) -> None:
        _validate_num_particles(num_particles)
        super().__init__(num_particles=num_particles, **kwargs)

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate_loss = super()._differentiable_loss_particle(model_trace, guide_trace)
        for site in sample_sites(guide_trace).values():
            if getattr(site["fn"], "has_rsample", False):
                lp = site["fn"].log_prob(site["value"].detach())
                lp = scale_and_mask(lp, site["scale"], site["mask"]).sum()
                surrogate_loss = surrogate_loss - (lp - lp.detach())
        return loss, surrogate_loss
