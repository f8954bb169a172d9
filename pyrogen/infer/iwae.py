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

import math
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.elbo import ELBO as _PyroELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from pyrogen._compat import check_model_guide_match, check_site_shape, scale_and_mask, warn_if_nan

_PARTICLE_PLATE = "num_particles_vectorized"
_IWAE_ESTIMATORS = ("standard", "stl", "dreg")


def _validate_num_particles(num_particles: Any) -> int:
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"Expected num_particles to be an integer >= 1, but got {num_particles!r}")
    return num_particles


def _sample_sites(trace) -> dict[str, dict]:
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


def _check_guide_sites(model_trace, guide_trace, require_reparam: bool = False) -> None:
    """Raise if a (non-auxiliary) guide site is not a latent site of the model, or if
    ``require_reparam`` and a guide site cannot be reparameterized."""
    model_latents = sorted(
        name for name, site in _sample_sites(model_trace).items() if not site["is_observed"]
    )
    for name, site in _sample_sites(guide_trace).items():
        if site["infer"].get("is_auxiliary"):
            continue
        if name not in model_latents:
            raise ValueError(
                f"Guide sample site {name!r} is not a latent sample site of the model; "
                f"the model's latent sites are {model_latents}. Rename the guide site, or mark "
                "it infer={'is_auxiliary': True} if it is an auxiliary variable."
            )
        if require_reparam and not getattr(site["fn"], "has_rsample", False):
            raise ValueError(
                f"Guide site {name!r} ({type(site['fn']).__name__}) has no reparameterized "
                "sampler; use estimator='score' or 'auto' for it."
            )


class _GuideCheck:
    """Mixin for Pyro ELBOs: clear errors for guide sites missing from the model."""

    _require_reparam = False

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = super()._get_trace(model, guide, args, kwargs)
        _check_guide_sites(model_trace, guide_trace, self._require_reparam)
        return model_trace, guide_trace


def _site_scale(site) -> float:
    scale = site["scale"]
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise NotImplementedError(
                f"Site {site['name']!r} has a tensor scale of shape {tuple(scale.shape)}; "
                "multi-sample objectives support only one scalar scale shared by all sites."
            )
        scale = scale.item()
    return float(scale)


class _Layout:
    """How per-site log-densities reduce to per-particle (and per-example) log weights.

    ``local`` when every site lies in one plate at dim -1 (the data plate): log weights then have
    shape ``(K, batch)`` and the bound factorizes over examples. Otherwise they have shape
    ``(K,)``. ``scale`` is the single subsampling/poutine scale shared by every site.
    """

    def __init__(self, sites: list[dict], max_plate_nesting: int) -> None:
        self.ndim = max_plate_nesting + 1
        names = set()
        local = max_plate_nesting >= 1
        for site in sites:
            frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.dim == -1]
            if not frames:
                local = False
            names.update(f.name for f in frames)
        self.local = local and len(names) == 1
        scales = {_site_scale(site) for site in sites}
        if len(scales) > 1 and max(scales) - min(scales) > 1e-6 * max(abs(s) for s in scales):
            raise NotImplementedError(
                "Multi-sample objectives need every site to share one scale (e.g. every site "
                f"inside the subsampled data plate), but got scales {sorted(scales)} across "
                f"sites {[site['name'] for site in sites]}."
            )
        self.scale = scales.pop() if scales else 1.0

    def reduce(self, site, log_prob: torch.Tensor) -> torch.Tensor:
        log_prob = scale_and_mask(log_prob, mask=site["mask"])
        if log_prob.dim() > self.ndim:
            raise NotImplementedError(
                f"Site {site['name']!r} has log_prob shape {tuple(log_prob.shape)} with more than "
                f"max_plate_nesting + 1 = {self.ndim} dims; enumeration is not supported."
            )
        log_prob = log_prob.reshape((1,) * (self.ndim - log_prob.dim()) + log_prob.shape)
        keep = 2 if self.local else 1
        dims = tuple(range(1, self.ndim - keep + 1))
        return log_prob.sum(dims) if dims else log_prob


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

    def _particles(self, fn):
        dim = -(int(self.max_plate_nesting) + 1)
        return pyro.plate(_PARTICLE_PLATE, self.num_particles, dim=dim)(fn)

    def _particle_traces(self, model, guide, args, kwargs, detached_model: bool = False):
        """Returns ``(model_trace, guide_trace, detached_model_trace or None, layout)``."""
        if self.max_plate_nesting == float("inf"):
            self._guess_max_plate_nesting(model, guide, args, kwargs)
        model, guide = self._particles(model), self._particles(guide)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        detached_trace = None
        if detached_model:
            frozen = guide_trace.copy()
            for name, site in _sample_sites(guide_trace).items():
                frozen.nodes[name] = dict(site, value=site["value"].detach())
            detached_trace = poutine.trace(poutine.replay(model, trace=frozen)).get_trace(
                *args, **kwargs
            )
        nesting = int(self.max_plate_nesting) + 1
        if is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, nesting)
        _check_guide_sites(model_trace, guide_trace)
        traces = [prune_subsample_sites(t) for t in (model_trace, guide_trace)]
        if detached_trace is not None:
            detached_trace = prune_subsample_sites(detached_trace)
            detached_trace.compute_log_prob()
        for trace in traces:
            trace.compute_log_prob()
            if is_validation_enabled():
                for site in _sample_sites(trace).values():
                    check_site_shape(site, nesting)
        model_trace, guide_trace = traces
        sites = list(_sample_sites(model_trace).values()) + list(
            _sample_sites(guide_trace).values()
        )
        layout = _Layout(sites, int(self.max_plate_nesting))
        return model_trace, guide_trace, detached_trace, layout

    @staticmethod
    def _sum_sites(trace, layout: _Layout, key: str = "unscaled_log_prob"):
        total = 0.0
        for site in _sample_sites(trace).values():
            total = total + layout.reduce(site, site[key])
        return total

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


class IWAE(_ParticleELBO):
    r"""Importance-weighted bound of Burda et al. [1] with a choice of gradient estimator.

    .. math::

        \mathcal L_K = \sum_{i \in \text{batch}} s\,\Big[\log \sum_{k=1}^K w_{k,i} - \log K\Big],
        \qquad w_{k,i} = \frac{p(x_i, z_{k,i})}{q(z_{k,i} \mid x_i)},

    where :math:`s` is the data plate's subsampling scale (``size / subsample_size``). Particles
    are vectorized in an outer :func:`~pyro.plate` at dim ``-(max_plate_nesting + 1)``. When every
    sample site lies in one plate at dim -1 (the data plate of a VAE) the log-sum-exp is taken per
    example; otherwise over the whole log joint.

    ``estimator`` selects the gradient: ``"standard"`` [1], ``"stl"`` [2] or ``"dreg"`` [3]
    (see :mod:`pyrogen.infer.iwae`). ``"dreg"`` replays the model once more on detached samples
    to give model parameters their standard gradient.

    .. note:: Every guide site must be reparameterizable (``has_rsample``). STL and DReG are
        derived for guides whose sites are conditionally independent given the inputs (mean-field
        or amortized VAE guides); all sites must share one scale (``poutine.scale`` on a subset
        of sites is not supported).

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
        _check_guide_sites(model_trace, guide_trace, require_reparam=True)
        log_p = self._sum_sites(model_trace, layout)
        log_q = 0.0
        log_q_path = 0.0
        for site in _sample_sites(guide_trace).values():
            lp = site["unscaled_log_prob"]
            log_q = log_q + layout.reduce(site, lp)
            if need_grad and self.estimator in ("stl", "dreg"):
                lp_fixed_z = site["fn"].log_prob(site["value"].detach())
                lp = lp - lp_fixed_z + lp_fixed_z.detach()
                log_q_path = log_q_path + layout.reduce(site, lp)
        log_w = log_p - log_q
        log_k = math.log(self.num_particles)
        elbo = layout.scale * (torch.logsumexp(log_w, dim=0) - log_k).sum()
        if not need_grad or self.estimator == "standard":
            return elbo, elbo
        log_w_path = log_p - log_q_path
        if self.estimator == "stl":
            surrogate = layout.scale * torch.logsumexp(log_w_path, dim=0).sum()
            return elbo, surrogate
        # DReG: guide gets sum_k w~^2 dlog w/dz dz/dphi; model gets sum_k w~ grad log p.
        weights = torch.softmax(log_w.detach(), dim=0)
        log_p_fixed_z = self._sum_sites(detached_trace, layout)
        surrogate = (weights**2 * (log_w_path - log_p_fixed_z) + weights * log_p_fixed_z).sum()
        return elbo, layout.scale * surrogate


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
        for site in _sample_sites(guide_trace).values():
            if getattr(site["fn"], "has_rsample", False):
                lp = site["fn"].log_prob(site["value"].detach())
                lp = scale_and_mask(lp, site["scale"], site["mask"]).sum()
                surrogate_loss = surrogate_loss - (lp - lp.detach())
        return loss, surrogate_loss
