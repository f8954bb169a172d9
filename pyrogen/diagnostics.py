r"""Diagnostics for variational fits: ELBO convergence, PSIS :math:`\hat k`, ArviZ output.

* :class:`ELBOConvergence` — Stan's relative-tolerance stopping rule for the ELBO.
* :func:`psis_khat` — Pareto :math:`\hat k` of the importance ratios
  :math:`w^{(s)} = p(x, z^{(s)}) / q(z^{(s)})`, :math:`z^{(s)} \sim q` (Yao et al. 2018), read as
  :math:`\hat k < 0.5` good, :math:`0.5 \le \hat k \le 0.7` ok, :math:`\hat k > 0.7` unreliable.
* :func:`to_inference_data` — an :class:`arviz.InferenceData` from a fit of
  :func:`pyrogen.infer.fit`, so that ``az.summary``, ``az.plot_*``, ``az.loo`` and ``az.waic``
  work on variational posteriors (``arviz.from_pyro`` only reads MCMC).

References

1. *Yes, but Did It Work?: Evaluating Variational Inference*, Y. Yao, A. Vehtari, D. Simpson,
   A. Gelman (ICML 2018).
2. *Pareto Smoothed Importance Sampling*, A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry
   (JMLR 2024; arXiv:1507.02646).
3. *Automatic Differentiation Variational Inference*, A. Kucukelbir, D. Tran, R. Ranganath,
   A. Gelman, D. M. Blei (JMLR 2017) — the convergence rule, as implemented in Stan.
4. *Practical Bayesian model evaluation using leave-one-out cross-validation and WAIC*,
   A. Vehtari, A. Gelman, J. Gabry (Statistics and Computing 2017).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.infer.importance import vectorized_importance_weights
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import prune_subsample_sites

if TYPE_CHECKING:
    import arviz

    from pyrogen.infer.advi import ADVIResult

__all__ = [
    "ELBOConvergence",
    "khat_reading",
    "log_importance_weights",
    "psis_khat",
    "to_inference_data",
]


class ELBOConvergence:
    r"""Stan's relative-tolerance rule for stopping ELBO maximisation.

    Every ``eval_elbo`` steps the −ELBO is estimated by the mean of the losses of the last
    ``eval_elbo`` steps, :math:`\bar L_k`, and the relative change *with respect to the current
    value*

    .. math::

        \delta_k = \left| \frac{\bar L_{k-1} - \bar L_k}{\bar L_k} \right|,
        \qquad \bar L_0 = 0 \;(\text{so } \delta_1 = 1),

    is pushed into a circular buffer of the last :math:`\max(0.1\, \text{num\_steps} /
    \text{eval\_elbo}, 2)` changes. The fit has converged when the mean *or* the median of the
    buffer is below ``tol_rel_obj`` (the mean catches smooth convergence, the median is robust to
    a noisy estimate). As in Stan's ``advi::stochastic_gradient_ascent``, the median of an
    even-sized buffer is its upper middle element, and the first check records :math:`\delta_1 = 1`
    (Stan starts from an ELBO of 0), so at least two genuine changes are needed to stop.

    :param tol_rel_obj: relative tolerance (Stan's default 0.01).
    :param eval_elbo: steps per check (Stan's default 100).
    :param num_steps: the step budget, which sets the buffer length as in Stan.

    :ivar rel_changes: :math:`\delta_k` of every check so far.
    :ivar mean: mean of the buffer at the last check (``inf`` before the first).
    :ivar median: Stan's median of the buffer at the last check (``inf`` before the first).

    .. note::
        Stan estimates the ELBO at each check with 100 fresh draws; averaging the losses the
        optimiser already computed costs nothing and has comparable noise.

    Example::

        >>> rule = ELBOConvergence(0.01, eval_elbo=2, num_steps=100)
        >>> [rule.update(x) for x in [10.0, 10.0, 5.0, 5.0, 4.99, 4.99, 4.98, 4.98, 4.98, 4.98]]
        [False, False, False, False, False, False, False, False, False, True]
        >>> [round(d, 4) for d in rule.rel_changes]
        [1.0, 1.0, 0.002, 0.002, 0.0]
    """

    def __init__(self, tol_rel_obj: float = 0.01, eval_elbo: int = 100, num_steps: int = 10000):
        if not tol_rel_obj > 0:
            raise ValueError(f"Expected tol_rel_obj > 0, got {tol_rel_obj}.")
        if not isinstance(eval_elbo, int) or eval_elbo < 1:
            raise ValueError(f"Expected eval_elbo to be a positive int, got {eval_elbo!r}.")
        self.tol_rel_obj = tol_rel_obj
        self.eval_elbo = eval_elbo
        self.buffer: deque[float] = deque(maxlen=max(int(0.1 * num_steps / eval_elbo), 2))
        self.rel_changes: list[float] = []
        self.mean = math.inf
        self.median = math.inf
        self._window: list[float] = []
        self._previous = 0.0

    def update(self, loss: float) -> bool:
        """Record one step's loss; return ``True`` once the rule is satisfied."""
        self._window.append(float(loss))
        if len(self._window) < self.eval_elbo:
            return False
        current = sum(self._window) / len(self._window)
        self._window = []
        previous, self._previous = self._previous, current
        rel = abs((previous - current) / current) if current != 0 else math.inf
        self.rel_changes.append(rel)
        self.buffer.append(rel)
        self.mean = sum(self.buffer) / len(self.buffer)
        self.median = sorted(self.buffer)[len(self.buffer) // 2]  # Stan: nth_element(n / 2)
        return self.mean < self.tol_rel_obj or self.median < self.tol_rel_obj


def khat_reading(khat: float) -> str:
    r"""The usual reading of a PSIS :math:`\hat k` (Yao et al. 2018; Vehtari et al. 2024)."""
    if math.isnan(khat):
        return "could not be estimated"
    if khat < 0.5:
        return "good (k-hat < 0.5): q is close to the posterior"
    if khat <= 0.7:
        return "ok (0.5 <= k-hat <= 0.7): usable, but importance-weighted estimates are noisy"
    return (
        "unreliable (k-hat > 0.7): q misses posterior mass; fit longer, use a richer q "
        "(method='fullrank') or MCMC"
    )


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


@torch.no_grad()
def log_importance_weights(
    result: ADVIResult, *args: Any, num_samples: int = 1000, **kwargs: Any
) -> torch.Tensor:
    r"""Log importance ratios :math:`\log p(x, z^{(s)}) - \log q(z^{(s)})`, :math:`z^{(s)} \sim q`.

    Vectorized over draws with Pyro's ``vectorized_importance_weights`` (in chunks of 1000).

    :param result: a fit returned by :func:`pyrogen.infer.fit`.
    :param args: model arguments (default: those of the fit).
    :param num_samples: number of draws.
    :param kwargs: model keyword arguments (default: those of the fit).
    :returns: a tensor of shape ``(num_samples,)``.
    """
    if not args and not kwargs:
        args, kwargs = result.args, result.kwargs
    mpn = _max_plate_nesting(_model_trace(result.model, args, kwargs))
    chunks, left = [], num_samples
    with result.param_scope(), _vectorized("psis_khat / log_importance_weights"):
        while left > 0:
            size = min(left, 1000)
            lw = vectorized_importance_weights(
                result.model,
                result.guide,
                *args,
                num_samples=size,
                max_plate_nesting=mpn,
                **kwargs,
            )[0]
            chunks.append(lw.reshape(-1).expand(size))
            left -= size
    return torch.cat(chunks)


def psis_khat(result: ADVIResult, *args: Any, num_samples: int = 1000, **kwargs: Any) -> float:
    r"""Pareto :math:`\hat k` of the importance ratios :math:`p(x, z)/q(z)`, :math:`z \sim q`.

    A generalized Pareto distribution is fitted to the largest ratios (PSIS, ArviZ's
    ``psislw``); its shape :math:`\hat k` says how heavy the right tail of the ratios is, i.e.
    how much posterior mass :math:`q` misses (Yao et al. 2018): :math:`\hat k < 0.5` good,
    :math:`0.5`–:math:`0.7` ok, :math:`> 0.7` unreliable (see :func:`khat_reading`).

    :param result: a fit returned by :func:`pyrogen.infer.fit`.
    :param args: model arguments (default: those of the fit).
    :param num_samples: number of draws from ``q`` (a few thousand make :math:`\hat k` stable).
    :param kwargs: model keyword arguments (default: those of the fit).
    :returns: :math:`\hat k` as a float; ``-inf`` when the ratios are constant to numerical
        precision, i.e. ``q`` is the exact posterior and importance sampling is exact.
    """
    import arviz as az

    lw = log_importance_weights(result, *args, num_samples=num_samples, **kwargs).double()
    if not torch.isfinite(lw).all():
        raise FloatingPointError(
            "Some importance ratios p(x, z)/q(z) are not finite: the guide proposes values "
            "outside the model's support. Check the model's constraints."
        )
    eps = torch.finfo(torch.get_default_dtype()).eps
    if lw.max() - lw.min() <= 100 * eps * (1 + lw.abs().max()):
        return -math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psislw warns for k-hat > 0.7; we report it instead
        _, khat = az.psislw(lw.cpu().numpy())
    return float(khat)


def _dims(name: str, site: dict) -> list[str]:
    """Named dims of a site's value: its plate's name where a plate covers an axis."""
    value = site["value"]
    plates = {f.dim: f.name for f in site["cond_indep_stack"] if f.vectorized}
    if site["infer"].get("_deterministic"):  # all dims are event dims: align plates on the left
        batch_ndim = min(value.dim(), -min(plates, default=0))
    else:
        batch_ndim = value.dim() - site["fn"].event_dim
    return [plates.get(i - batch_ndim, f"{name}_dim_{i}") for i in range(value.dim())]


def _per_draw(value: torch.Tensor, num_samples: int, mpn: int, shape: tuple) -> np.ndarray:
    """A tensor vectorized over draws (draw dim at ``-mpn - 1``, plate dims possibly of size 1
    or missing) as an array of shape ``(1, num_samples) + shape`` (one chain)."""
    full = (num_samples,) + tuple(shape)
    if value.numel() != math.prod(full):
        value = value.expand((num_samples,) + (1,) * (mpn - len(shape)) + tuple(shape))
    return value.reshape(full)[None].detach().cpu().numpy()


@torch.no_grad()
def to_inference_data(
    result: ADVIResult,
    *args: Any,
    num_samples: int = 1000,
    coords: dict | None = None,
    dims: dict | None = None,
    **kwargs: Any,
) -> arviz.InferenceData:
    r"""An :class:`arviz.InferenceData` from a variational fit.

    With draws :math:`z^{(s)} \sim q`, :math:`s = 1..S` (one chain of :math:`S` independent
    draws), the groups are

    * ``posterior``: every latent site, constrained space, dims named after the plates;
    * ``posterior_predictive``: :math:`\tilde x^{(s)} \sim p(x \mid z^{(s)})` at observed sites;
    * ``log_likelihood``: :math:`\log p(x_i \mid z^{(s)})` per observation :math:`i`, so that
      ``az.loo`` (PSIS-LOO) and ``az.waic`` work;
    * ``observed_data``: the values given with ``obs=``;
    * ``sample_stats``: ``lp`` = :math:`\log p(x, z^{(s)})`; its ``attrs`` hold the fit's −ELBO
      history (``loss``), ``method``, ``converged`` and ``num_steps``.

    :param result: a fit returned by :func:`pyrogen.infer.fit`.
    :param args: model arguments (default: those of the fit).
    :param num_samples: number of posterior draws.
    :param coords: extra ArviZ coordinates, e.g. ``{"school": names}``.
    :param dims: extra or overriding ArviZ dims, e.g. ``{"theta": ["school"]}``.
    :param kwargs: model keyword arguments (default: those of the fit).
    :returns: an ``arviz.InferenceData``.

    .. note::
        The draws are independent, so ``az.summary``'s ESS is about ``num_samples`` and
        ``r_hat`` is undefined (one chain); MCMC-style checks do not validate a variational
        fit — use :func:`psis_khat` for that.
    """
    import arviz as az

    if not args and not kwargs:
        args, kwargs = result.args, result.kwargs
    trace = _model_trace(result.model, args, kwargs)
    mpn = _max_plate_nesting(trace)
    latent, observed, deterministic = _site_names(trace)
    sites = {n: trace.nodes[n] for n in latent + observed + deterministic}
    shapes = {n: tuple(s["value"].shape) for n, s in sites.items()}
    batch = {n: shapes[n][: len(shapes[n]) - s["fn"].event_dim] for n, s in sites.items()}
    site_dims = {n: _dims(n, s) for n, s in sites.items()}
    site_dims.update(dims or {})

    posterior = result.sample_posterior(num_samples)
    latent_draws = _padded({n: posterior[n] for n in latent}, trace, num_samples)
    with _vectorized("to_inference_data"):
        predictive = Predictive(
            _resample_observed(result.model),
            posterior_samples=latent_draws,
            return_sites=observed,
            parallel=True,
        )(*args, **kwargs)
        vec_trace = Predictive(
            result.model, posterior_samples=latent_draws, parallel=True
        ).get_vectorized_trace(*args, **kwargs)
    log_prob = {
        n: _per_draw(
            vec_trace.nodes[n]["fn"].log_prob(vec_trace.nodes[n]["value"]),
            num_samples,
            mpn,
            batch[n],
        )
        for n in latent + observed
    }
    lp = sum(v.reshape(num_samples, -1).sum(-1) for v in log_prob.values())

    def group(values: dict, names: list[str], per_obs: bool = False, **kw: Any):
        if not names:
            return None
        data = {
            n: values[n] if per_obs else _per_draw(values[n], num_samples, mpn, shapes[n])
            for n in names
        }
        group_dims = {n: site_dims[n][: len(batch[n])] if per_obs else site_dims[n] for n in names}
        return az.dict_to_dataset(data, coords=coords, dims=group_dims, library=pyro, **kw)

    observed_data = {n: sites[n]["value"].detach().cpu().numpy() for n in observed}
    idata = az.InferenceData(
        **{
            k: v
            for k, v in {
                "posterior": group(posterior, latent + deterministic),
                "posterior_predictive": group(predictive, observed),
                "log_likelihood": group(log_prob, observed, per_obs=True),
                "sample_stats": az.dict_to_dataset({"lp": np.asarray(lp)[None]}, library=pyro),
                "observed_data": az.dict_to_dataset(
                    observed_data,
                    coords=coords,
                    dims=site_dims,
                    library=pyro,
                    default_dims=[],
                )
                if observed
                else None,
            }.items()
            if v is not None
        }
    )
    idata.sample_stats.attrs.update(
        loss=np.asarray(result.losses, dtype=float),
        method=result.method,
        converged=int(result.converged),
        num_steps=len(result.losses),
    )
    return idata
