r"""Diagnostics for variational fits: ELBO convergence, PSIS :math:`\hat k`, ArviZ output.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch

from pyrogen.infer.advi._trace import (
    VariationalFit,
    _model_trace,
    _on,
    _site_names,
    guide_draws,
    run_model,
)
from pyrogen.infer.importance import log_importance_weights as importance_weights
from pyrogen.infer.importance import rng_untouched

if TYPE_CHECKING:
    import arviz

__all__ = [
    "khat_reading",
    "log_importance_weights",
    "psis_khat",
    "to_inference_data",
]


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


@torch.no_grad()
def log_importance_weights(
    result: VariationalFit, *args: Any, num_samples: int = 1000, **kwargs: Any
) -> torch.Tensor:
    r"""Log importance ratios :math:`\log p(x, z^{(s)}) - \log q(z^{(s)})`, :math:`z^{(s)} \sim q`.

    Computed by :func:`pyrogen.infer.importance.log_importance_weights` (the one weight function
    of pyrogen; sites scaled and masked as in Pyro's ELBO): particles vectorized in chunks of
    1000 when the model allows it, else one guide and model run per draw (see
    ``result.vectorize``).

    :param result: a fit returned by :func:`pyrogen.infer.fit`.
    :param args: model arguments (default: those of the fit).
    :param num_samples: number of draws.
    :param kwargs: model keyword arguments (default: those of the fit).
    :returns: a tensor of shape ``(num_samples,)``.
    """
    if not args and not kwargs:
        args, kwargs = result.args, result.kwargs
    what = "psis_khat / log_importance_weights"
    with rng_untouched():  # which path the model allows (warned once)
        probe, _ = guide_draws(result, 2, args, kwargs)
        looped = run_model(result, probe, 2, args, kwargs, what).path == "looped"
    chunks, left = [], num_samples
    with result.param_scope(), _on(getattr(result, "device", None)), torch.no_grad():
        while left > 0:
            size = min(left, 1000)
            chunks.append(_joint_log_weights(result, size, not looped, args, kwargs))
            left -= size
    return torch.cat(chunks)


def _joint_log_weights(result, size: int, vectorized: bool, args: tuple, kwargs: dict):
    """``size`` joint log weights from THE importance-weight function (all sites summed; the
    sites' shared scale applied, as Pyro's ELBO applies it)."""
    log_w, scale = importance_weights(
        result.model,
        result.guide,
        *args,
        num_samples=size,
        per_example=False,
        vectorized=vectorized,
        **kwargs,
    )
    if scale is None:
        raise NotImplementedError(
            "psis_khat / log_importance_weights need every site to share one scale (no"
            " poutine.scale or subsampling on part of the model)."
        )
    return scale * log_w.reshape(size)


def psis_khat(result: VariationalFit, *args: Any, num_samples: int = 1000, **kwargs: Any) -> float:
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


@torch.no_grad()
def to_inference_data(
    result: VariationalFit,
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
    latent, observed, deterministic = _site_names(trace)
    sites = {n: trace.nodes[n] for n in latent + observed + deterministic}
    shapes = {n: tuple(s["value"].shape) for n, s in sites.items()}
    batch = {n: shapes[n][: len(shapes[n]) - s["fn"].event_dim] for n, s in sites.items()}
    site_dims = {n: _dims(n, s) for n, s in sites.items()}
    site_dims.update(dims or {})

    draws, _ = guide_draws(result, num_samples, args, kwargs)
    run = run_model(result, draws, num_samples, args, kwargs, "to_inference_data")
    values = {n: v[None].detach().cpu().numpy() for n, v in run.values.items()}
    log_prob = {n: run.log_probs[n][None].detach().cpu().numpy() for n in latent + observed}
    lp = sum(v.reshape(num_samples, -1).sum(-1) for v in log_prob.values())

    def group(values: dict, names: list[str], per_obs: bool = False, **kw: Any):
        if not names:
            return None
        data = {n: values[n] for n in names}
        group_dims = {n: site_dims[n][: len(batch[n])] if per_obs else site_dims[n] for n in names}
        return az.dict_to_dataset(data, coords=coords, dims=group_dims, library=pyro, **kw)

    observed_data = {n: sites[n]["value"].detach().cpu().numpy() for n in observed}
    idata = az.InferenceData(
        **{
            k: v
            for k, v in {
                "posterior": group(values, latent + deterministic),
                "posterior_predictive": group(values, observed),
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
