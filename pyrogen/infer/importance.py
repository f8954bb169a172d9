r"""Log importance weights of a Pyro model/guide pair, per example and scale-aware.

With :math:`K` particles :math:`z_k \sim q(z \mid x)` drawn at once (an outer
:func:`~pyro.plate` at dim ``-(max_plate_nesting + 1)``),

.. math:: \log w_k = \log p(x, z_k) - \log q(z_k \mid x),

summed over sites from their *unscaled* log-densities (masks applied). When every sample site lies
in one plate at dim -1 (the data plate of a VAE) the weights factorize over examples and have
shape ``(K, B)``; otherwise they are joint, shape ``(K,)``. The data plate's subsampling scale
:math:`s` (``size / subsample_size``, times any :func:`~pyro.poutine.scale`) is returned
separately and belongs *outside* the per-example log-sum-exp: the importance-weighted bound of
the full data set is estimated by

.. math::

    \mathcal L_K = \sum_{i \in \text{batch}} s\,\Big[\log \sum_{k=1}^K w_{k,i} - \log K\Big].

Pyro's ``site["log_prob"]`` already carries :math:`s` (so :class:`~pyro.infer.RenyiELBO` puts it
inside the log-sum-exp); evaluation uses the unscaled per-example weights.

This module is the one place that builds the particle traces and reduces them to log weights:
:class:`~pyrogen.infer.iwae.IWAE` adds its gradient estimators on top of :func:`particle_traces`
and :func:`sum_log_probs`; :mod:`pyrogen.evaluate.likelihood` and
:func:`pyrogen.infer.advi.psis_khat` call :func:`log_importance_weights`.

References

1. *Importance Weighted Autoencoders*, Yuri Burda, Roger Grosse, Ruslan Salakhutdinov (2016)
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites, site_is_subsample

from pyrogen._compat import check_model_guide_match, check_site_shape, scale_and_mask

__all__ = [
    "PARTICLE_PLATE",
    "LogWeights",
    "WeightLayout",
    "check_guide_sites",
    "guess_max_plate_nesting",
    "log_importance_weights",
    "log_mean_weight",
    "log_weights_of",
    "particle_traces",
    "sample_sites",
    "sum_log_probs",
]

#: Name of the plate that vectorizes the particles (as in Pyro's vectorized ELBOs).
PARTICLE_PLATE = "num_particles_vectorized"


def sample_sites(trace) -> dict[str, dict]:
    """The sample sites of a trace, without plate subsample sites."""
    return {
        name: site
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    }


def check_guide_sites(model_trace, guide_trace, require_reparam: bool = False) -> None:
    """Raise if a (non-auxiliary) guide site is not a latent site of the model, or if
    ``require_reparam`` and a guide site cannot be reparameterized."""
    model_latents = sorted(
        name for name, site in sample_sites(model_trace).items() if not site["is_observed"]
    )
    for name, site in sample_sites(guide_trace).items():
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


def _site_scale(site) -> float:
    scale = site["scale"]
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise NotImplementedError(
                f"Site {site['name']!r} has a tensor scale of shape {tuple(scale.shape)}; "
                "importance weights support only one scalar scale per site."
            )
        scale = scale.item()
    return float(scale)


class PerExampleError(ValueError):
    """Per-example weights were asked for, but the program's sites do not factorize over
    examples (a site outside the data plate)."""


class WeightLayout:
    """How per-site log-densities reduce to per-particle (and per-example) log weights.

    ``per_example`` when every site lies in one plate at dim -1 (the data plate): log weights
    then have shape ``(K, B)``. Otherwise they have shape ``(K,)`` and ``outside`` names the
    sites that are not in that plate. ``scales`` holds the sites' (subsampling times poutine)
    scales; :attr:`scale` is their common value.
    """

    def __init__(self, sites: list[dict], max_plate_nesting: int) -> None:
        self.ndim = max_plate_nesting + 1
        self.sites = list(dict.fromkeys(site["name"] for site in sites))
        plates, self.outside = set(), []
        for site in sites:
            frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.dim == -1]
            if not frames and site["name"] not in self.outside:
                self.outside.append(site["name"])
            plates.update(f.name for f in frames)
        self.plates = sorted(plates)
        self.per_example = max_plate_nesting >= 1 and not self.outside and len(plates) == 1
        self.scales = sorted({_site_scale(site) for site in sites})

    @property
    def shared_scale(self) -> bool:
        lo, hi = (self.scales[0], self.scales[-1]) if self.scales else (1.0, 1.0)
        return hi - lo <= 1e-6 * max(abs(lo), abs(hi))

    @property
    def scale(self) -> float:
        """The one scale shared by every site; raises if the sites have different scales."""
        if not self.shared_scale:
            raise NotImplementedError(
                "Multi-sample objectives need every site to share one scale (e.g. every site "
                f"inside the subsampled data plate), but got scales {self.scales} across "
                f"sites {self.sites}."
            )
        return self.scales[-1] if self.scales else 1.0

    def require_per_example(self) -> None:
        """Raise a ValueError saying why the weights do not factorize over examples."""
        if self.per_example:
            return
        if self.outside:
            why = f"sites {self.outside} are not inside the data plate at dim -1"
        elif len(self.plates) > 1:
            why = f"the sites lie in different plates at dim -1: {self.plates}"
        else:
            why = "the model has no plate at dim -1"
        raise PerExampleError(
            f"Per-example importance weights need every sample site of the model and guide "
            f"inside one data plate at dim -1, but {why}. Put every sample statement under "
            "`with pyro.plate('data', len(x), dim=-1):`; global latents have no per-example "
            "weight (use per_example=False for the joint weights)."
        )

    def reduce(self, site, log_prob: torch.Tensor) -> torch.Tensor:
        """Mask ``log_prob`` and sum it over every dim but the particles' (and the data
        plate's when ``per_example``); the scale is *not* applied."""
        log_prob = scale_and_mask(log_prob, mask=site["mask"])
        if log_prob.dim() > self.ndim:
            raise NotImplementedError(
                f"Site {site['name']!r} has log_prob shape {tuple(log_prob.shape)} with more than "
                f"max_plate_nesting + 1 = {self.ndim} dims; enumeration is not supported."
            )
        log_prob = log_prob.reshape((1,) * (self.ndim - log_prob.dim()) + log_prob.shape)
        keep = 2 if self.per_example else 1
        dims = tuple(range(1, self.ndim - keep + 1))
        return log_prob.sum(dims) if dims else log_prob


@contextlib.contextmanager
def rng_untouched() -> Iterator[None]:
    """Run a block without moving torch's random number generators (CPU and the current CUDA
    device): seeded runs then draw the same numbers whether or not the block ran."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield


def guess_max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """Deepest vectorized plate of one run of ``guide`` and ``model`` replayed against it
    (hidden from outer handlers; the random number generators are left as they were, so a
    seeded evaluation draws the same particles whether or not the nesting was guessed)."""
    with rng_untouched(), poutine.block(), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for site in sample_sites(trace).values()
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims) if dims else 0


def particle_traces(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    max_plate_nesting: int,
    detached_model: bool = False,
    vectorized: bool = True,
):
    """Guide and model traces with ``num_particles`` particles in one outer plate
    (``vectorized=False``: one particle, no extra plate, for programs that cannot broadcast).

    :returns: ``(model_trace, guide_trace, detached_model_trace or None, layout)``, log-probs
        computed, subsample sites pruned. ``detached_model`` also replays the model on the
        guide's samples detached from the graph (for DReG's model-parameter gradient).
    """
    dim = -(max_plate_nesting + 1)

    def particles(fn):
        if not vectorized:
            return fn
        return pyro.plate(PARTICLE_PLATE, num_particles, dim=dim)(fn)

    if not vectorized and num_particles != 1:
        raise ValueError(f"Unvectorized traces hold one particle, got {num_particles}.")

    model, guide = particles(model), particles(guide)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    detached_trace = None
    if detached_model:
        frozen = guide_trace.copy()
        for name, site in sample_sites(guide_trace).items():
            frozen.nodes[name] = dict(site, value=site["value"].detach())
        detached_trace = poutine.trace(poutine.replay(model, trace=frozen)).get_trace(
            *args, **kwargs
        )
    nesting = max_plate_nesting + 1
    if is_validation_enabled():
        check_model_guide_match(model_trace, guide_trace, nesting)
    check_guide_sites(model_trace, guide_trace)
    traces = [prune_subsample_sites(t) for t in (model_trace, guide_trace)]
    if detached_trace is not None:
        detached_trace = prune_subsample_sites(detached_trace)
        detached_trace.compute_log_prob()
    for trace in traces:
        trace.compute_log_prob()
        if is_validation_enabled():
            for site in sample_sites(trace).values():
                check_site_shape(site, nesting)
    model_trace, guide_trace = traces
    sites = list(sample_sites(model_trace).values()) + list(sample_sites(guide_trace).values())
    return model_trace, guide_trace, detached_trace, WeightLayout(sites, max_plate_nesting)


def sum_log_probs(trace, layout: WeightLayout, key: str = "unscaled_log_prob") -> torch.Tensor:
    """Sum over the trace's sample sites of ``site[key]`` reduced by ``layout``."""
    total = torch.zeros(())
    for site in sample_sites(trace).values():
        total = total + layout.reduce(site, site[key])
    return total


def log_weights_of(model_trace, guide_trace, layout: WeightLayout, num_particles: int):
    r""":math:`\log p(x, z_k) - \log q(z_k \mid x)` of particle traces, shape ``(K, B)`` when
    ``layout.per_example`` else ``(K,)``."""
    log_w = sum_log_probs(model_trace, layout) - sum_log_probs(guide_trace, layout)
    if log_w.dim() == 0:
        log_w = log_w.reshape(1)
    return log_w.expand((num_particles,) + log_w.shape[1:])


class LogWeights(NamedTuple):
    """Log importance weights (unscaled) and the scale that multiplies them outside the
    log-sum-exp. ``scale`` is ``None`` when the sites have different scales."""

    log_weights: torch.Tensor
    scale: float | None


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1,
    max_plate_nesting: int | None = None,
    per_example: bool | None = None,
    vectorized: bool | None = None,
    **kwargs: Any,
) -> LogWeights:
    r"""Log importance weights :math:`\log p(x, z_k) - \log q(z_k \mid x)`, :math:`z_k \sim q`.

    The ``num_samples`` particles are drawn at once in an outer plate. Site log-densities are
    unscaled (the data plate's subsampling scale is returned, not applied) and masked.
    Differentiable; wrap in :func:`torch.no_grad` to evaluate.

    >>> import pyro, torch, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))  # the exact posterior
    >>> log_w, scale = log_importance_weights(model, guide, torch.tensor([0.0, 2.0]), num_samples=3)
    >>> log_w  # log N(x; 0, 2) for every particle
    tensor([[-1.2655, -2.2655],
            [-1.2655, -2.2655],
            [-1.2655, -2.2655]])

    :param model: a Pyro model.
    :param guide: its guide (every non-auxiliary guide site a latent site of the model).
    :param args: arguments of the model and guide.
    :param num_samples: particles :math:`K \ge 1`.
    :param max_plate_nesting: bound on the plates' nesting (particles go one dim further
        left); guessed from one extra run of guide and model if omitted.
    :param per_example: ``None`` (default): shape ``(K, B)`` when every site lies in one plate
        at dim -1, else ``(K,)``. ``True``: ``(K, B)`` or a ValueError naming the sites outside
        the data plate. ``False``: always ``(K,)`` (per-example weights summed over examples).
    :param vectorized: ``True``: draw the particles at once in an outer plate; ``False``: one at
        a time without it, for programs that do not broadcast over a batch dimension on the left
        (e.g. ``X @ w``, ``torch.cat([z, y], -1)``); ``None`` (default): vectorized, and one at a
        time with a warning if the program fails under the outer plate.
    :param kwargs: keyword arguments of the model and guide.
    :returns: :class:`LogWeights` ``(log_weights, scale)``; ``scale`` is the sites' common
        scale :math:`s` (``None`` if they differ), and
        :math:`\sum_i s\,[\operatorname{logsumexp}_k \log w_{k,i} - \log K]` is the
        importance-weighted bound of the full data set.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"Expected num_samples to be an integer >= 1, but got {num_samples!r}")
    if max_plate_nesting is None:
        max_plate_nesting = guess_max_plate_nesting(model, guide, *args, **kwargs)
    if vectorized is None:
        try:
            return _log_weights(
                model, guide, args, kwargs, num_samples, max_plate_nesting, per_example
            )
        except PerExampleError:
            raise
        except (RuntimeError, ValueError, IndexError) as err:
            warnings.warn(
                "The program fails when its particles are drawn at once in an outer plate, so"
                " importance weights are computed one particle at a time (same numbers, slower)."
                " To vectorize, let values broadcast from the right, e.g. torch.cat([z,"
                f" y.expand(z.shape[:-1] + y.shape[-1:])], -1). ({type(err).__name__}:"
                f" {str(err).splitlines()[0][:200]})",
                UserWarning,
                stacklevel=2,
            )
            vectorized = False
    if not vectorized:
        parts = [
            _log_weights(model, guide, args, kwargs, 1, max_plate_nesting, per_example, False)
            for _ in range(num_samples)
        ]
        scales = {p.scale for p in parts}
        return LogWeights(torch.cat([p.log_weights for p in parts]), scales.pop())
    return _log_weights(model, guide, args, kwargs, num_samples, max_plate_nesting, per_example)


def _log_weights(
    model, guide, args, kwargs, num_samples, max_plate_nesting, per_example, vectorized=True
) -> LogWeights:
    model_trace, guide_trace, _, layout = particle_traces(
        model, guide, args, kwargs, num_samples, int(max_plate_nesting), vectorized=vectorized
    )
    if per_example:
        layout.require_per_example()
    log_w = log_weights_of(model_trace, guide_trace, layout, num_samples)
    if per_example is False and log_w.dim() == 2:
        log_w = log_w.sum(-1)
    return LogWeights(log_w, layout.scale if layout.shared_scale else None)


def log_mean_weight(log_w: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \frac1K \sum_k w_k` over the particle dim 0 (per example if 2-D)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
