r"""Force the score-function (REINFORCE) gradient estimator at the sample sites of a program.

Pyro picks the gradient estimator of a guide site from its distribution: when
``site["fn"].has_rsample`` is true it samples with ``rsample`` and differentiates through the
sample (the reparameterization trick), otherwise it builds the score-function surrogate

.. math::

    \nabla_\nu \mathbb E_{q_\nu}[f(z)] = \mathbb E_{q_\nu}\big[\nabla_\nu \log q_\nu(z)\, f(z)\big],
    \qquad f = \log p(x, z) - \log q_\nu(z),

in :class:`~pyro.infer.Trace_ELBO` and :class:`~pyro.infer.TraceGraph_ELBO`. The
:class:`ScoreFunctionMessenger` wraps each site's distribution in a thin view whose
``has_rsample`` is ``False`` and whose samples are detached, so *any* Pyro ELBO uses the
score-function estimator at that site, even for reparameterizable distributions such as
:class:`~pyro.distributions.Normal`. Densities, supports and values are unchanged: only the
gradient estimator changes.

Variance reduction goes through Pyro's baselines (``infer={"baseline": {...}}``, used by
:class:`~pyro.infer.TraceGraph_ELBO`): pass ``baseline=`` to attach the same options to every site.

References

1. *Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement Learning*,
   Ronald J. Williams (1992)
2. *Black Box Variational Inference*, Rajesh Ranganath, Sean Gerrish, David M. Blei (2014)
3. *Neural Variational Inference and Learning in Belief Networks*, Andriy Mnih, Karol Gregor (2014)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyrogen._compat import DECAYING_AVG_BASELINE_PREFIX

_EMPTY = torch.Size()


class _NonReparameterized(TorchDistribution):
    """A view of ``base_dist`` with ``has_rsample = False`` and detached samples."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, base_dist: torch.distributions.Distribution) -> None:
        self.base_dist = base_dist
        super().__init__(base_dist.batch_shape, base_dist.event_shape, validate_args=False)

    @property
    def support(self):  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def expand(self, batch_shape, _instance=None):
        return _NonReparameterized(self.base_dist.expand(batch_shape))

    def sample(self, sample_shape=_EMPTY):
        with torch.no_grad():
            return self.base_dist.sample(sample_shape).detach()

    def rsample(self, sample_shape=_EMPTY):
        raise NotImplementedError("score_function forbids reparameterized sampling at this site")

    def log_prob(self, value):
        return self.base_dist.log_prob(value)

    def enumerate_support(self, expand=True):
        return self.base_dist.enumerate_support(expand=expand)

    def entropy(self):
        return self.base_dist.entropy()

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def variance(self):
        return self.base_dist.variance


def _expanded_call(net: Callable, shape: torch.Size, inputs: torch.Tensor) -> torch.Tensor:
    out = net(inputs)
    if out.dim() > len(shape) and out.shape[-1] == 1:  # e.g. Linear(..., 1): (batch, 1)
        out = out.squeeze(-1)
    if out.shape == shape:
        return out
    if out.dim() == 1 and out.shape[0] > 1 and (not shape or shape[-1] == 1):
        # one value per datum at a site outside the data plate (a global latent, whose
        # downstream cost sums over the data): its baseline is the sum over the data
        out = out.sum()
    try:
        return out.expand(shape)
    except RuntimeError as err:
        raise ValueError(
            f"The neural baseline returned shape {tuple(out.shape)}, which does not broadcast to "
            f"the site's batch shape {tuple(shape)}; return one value per batch element."
        ) from err


def _hold_reshaped_average(name: str, options: dict, shape: torch.Size) -> None:
    """Pyro's decaying average keeps one value per element of the site's batch shape and cannot
    be updated from a batch of another shape (e.g. a smaller last mini-batch). For such a batch,
    use the average's mean as a constant ``baseline_value`` and leave the average untouched."""
    store = pyro.get_param_store()
    key = DECAYING_AVG_BASELINE_PREFIX + name
    if key in store and store[key].shape != shape:
        options.pop("use_decaying_avg_baseline")
        options.pop("baseline_beta", None)
        options["baseline_value"] = store[key].detach().mean().expand(shape)


class ScoreFunctionMessenger(Messenger):
    r"""Make the sample sites of a program use the score-function gradient estimator.

    Every non-observed sample site (optionally only those named in ``sites``) gets its
    distribution wrapped so that ``has_rsample`` is ``False``; Pyro's ELBOs then build the
    surrogate :math:`\log q_\nu(z)\,\mathrm{sg}[\log p(x,z) - \log q_\nu(z)]` (with
    Rao-Blackwellization over plates, and over the dependency graph in
    :class:`~pyro.infer.TraceGraph_ELBO`) instead of differentiating through the sample [1, 2].

    ``baseline`` is a dict of Pyro baseline options set as ``infer["baseline"]`` on each site
    that has none; it is only read by :class:`~pyro.infer.TraceGraph_ELBO` [3]. Recognised keys:
    ``use_decaying_avg_baseline``, ``baseline_beta``, ``nn_baseline``, ``nn_baseline_input``,
    ``baseline_value``. An ``nn_baseline`` output is broadcast to the site's batch shape (a
    trailing dimension of size 1, as from ``Linear(..., 1)``, is dropped), and a
    decaying-average baseline whose stored shape no longer matches the site (e.g. a smaller last
    mini-batch) stands still for that batch: its mean is used as a constant baseline and
    Pyro's stored average is neither updated nor rewritten.

    >>> import pyro, torch, pyro.distributions as dist
    >>> def guide():
    ...     return pyro.sample("z", dist.Normal(torch.tensor(0.0), 1.0))
    >>> tr = pyro.poutine.trace(score_function(guide)).get_trace()
    >>> tr.nodes["z"]["fn"].has_rsample
    False

    :param sites: names of the sites to affect; ``None`` (default) for every sample site.
    :param baseline: Pyro baseline options for the affected sites, or ``None``.
    :param force: ``True`` (default) hides ``rsample`` at the affected sites; ``False`` leaves
        distributions alone and attaches ``baseline`` only at sites without ``rsample`` (see
        :func:`with_baseline`).

    References

    1. *Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
       Learning*, Ronald J. Williams
    2. *Black Box Variational Inference*, Rajesh Ranganath, Sean Gerrish, David M. Blei
    3. *Gradient Estimation Using Stochastic Computation Graphs*, John Schulman, Nicolas Heess,
       Theophane Weber, Pieter Abbeel
    """

    _BASELINE_KEYS = frozenset(
        {
            "use_decaying_avg_baseline",
            "baseline_beta",
            "nn_baseline",
            "nn_baseline_input",
            "baseline_value",
        }
    )

    def __init__(
        self,
        sites: Collection[str] | None = None,
        baseline: dict[str, Any] | None = None,
        *,
        force: bool = True,
    ) -> None:
        if sites is not None:
            if isinstance(sites, str) or not all(isinstance(s, str) for s in sites):
                raise ValueError(
                    f"Expected sites to be None or a collection of site names, but got {sites!r}"
                )
            sites = frozenset(sites)
        if baseline is not None:
            if not isinstance(baseline, dict):
                raise ValueError(
                    f"Expected baseline to be None or a dict of Pyro baseline options, "
                    f"but got {type(baseline).__name__}"
                )
            unknown = sorted(set(baseline) - self._BASELINE_KEYS)
            if unknown:
                raise ValueError(
                    f"Unknown baseline options {unknown}; expected keys among "
                    f"{sorted(self._BASELINE_KEYS)}"
                )
        super().__init__()
        self.sites = sites
        self.baseline = baseline
        self.force = force

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        if self.sites is not None and msg["name"] not in self.sites:
            return
        fn = msg["fn"]
        if not self.force:
            if getattr(fn, "has_rsample", False):
                return  # reparameterized: no score term, so no baseline
        elif not isinstance(fn, _NonReparameterized):
            msg["fn"] = _NonReparameterized(fn)
        if self.baseline is not None and "baseline" not in msg["infer"]:
            # Filled in by _pyro_post_sample, once enclosing plates have broadcast msg["fn"].
            msg["infer"]["baseline"] = dict(self.baseline)
            msg["infer"]["_pyrogen_baseline"] = True

    def _pyro_post_sample(self, msg) -> None:
        if not msg["infer"].pop("_pyrogen_baseline", False):
            return
        options = msg["infer"]["baseline"]  # the dict the trace recorded: update it in place
        shape = msg["fn"].batch_shape
        if options.get("nn_baseline") is not None:
            net = options["nn_baseline"]
            options["nn_baseline"] = functools.partial(_expanded_call, net, shape)
        if options.get("use_decaying_avg_baseline"):
            _hold_reshaped_average(msg["name"], options, shape)


def score_function(
    fn: Callable | None = None,
    sites: Collection[str] | None = None,
    baseline: dict[str, Any] | None = None,
):
    r"""Handler form of :class:`ScoreFunctionMessenger`: ``score_function(guide)`` returns
    ``guide`` with every (selected) sample site using the score-function gradient estimator
    :math:`\nabla_\nu \log q_\nu(z)\,(\log p(x,z) - \log q_\nu(z))`. Combine with any Pyro ELBO,
    e.g. ``SVI(model, score_function(guide), optim, TraceGraph_ELBO())``.

    :param fn: a stochastic function (callable containing Pyro primitive calls); if ``None``,
        the messenger is returned for use as a context manager.
    :param sites: names of the sites to affect; ``None`` for every sample site.
    :param baseline: Pyro baseline options for the affected sites (see
        :class:`ScoreFunctionMessenger`).
    """
    msngr = ScoreFunctionMessenger(sites=sites, baseline=baseline)
    if fn is None:
        return msngr
    if not callable(fn):
        raise ValueError(f"Expected a callable model or guide, but got {type(fn).__name__}")
    return functools.update_wrapper(msngr(fn), fn, updated=())


def with_baseline(fn: Callable, baseline: dict[str, Any]) -> Callable:
    r"""``fn`` with Pyro baseline options ``baseline`` (see :class:`ScoreFunctionMessenger`)
    attached only at its sample sites that have no ``rsample`` (e.g. ``Categorical``), the sites
    where Pyro uses the score function anyway; distributions are left unchanged, so
    reparameterizable sites keep the pathwise gradient. Read by
    :class:`~pyro.infer.TraceGraph_ELBO`.

    >>> import pyro, torch, pyro.distributions as dist
    >>> def guide():
    ...     pyro.sample("z", dist.Normal(0.0, 1.0))
    ...     pyro.sample("c", dist.Categorical(torch.ones(2)))
    >>> tr = pyro.poutine.trace(with_baseline(guide, {"baseline_value": 0.0})).get_trace()
    >>> "baseline" in tr.nodes["z"]["infer"], "baseline" in tr.nodes["c"]["infer"]
    (False, True)
    """
    if not callable(fn):
        raise ValueError(f"Expected a callable model or guide, but got {type(fn).__name__}")
    msngr = ScoreFunctionMessenger(baseline=baseline, force=False)
    return functools.update_wrapper(msngr(fn), fn, updated=())
