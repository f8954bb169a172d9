"""Model traces shared by ADVI's fit and its diagnostics: site names, plate nesting, guide draws,
and the model run on posterior draws, vectorized where the model allows it, else looped."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import pyro
import torch
from pyro import poutine
from pyro.poutine.uncondition_messenger import UnconditionMessenger
from pyro.poutine.util import prune_subsample_sites


class VariationalFit(Protocol):
    """What the diagnostics read off a fit (:class:`~pyrogen.infer.advi.ADVIResult`)."""

    model: Callable
    guide: Callable
    method: str
    losses: list[float]
    converged: bool
    args: tuple
    kwargs: dict

    def param_scope(self) -> AbstractContextManager: ...

    def sample_posterior(self, num_samples: int = 1000) -> dict[str, torch.Tensor]: ...


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


@contextmanager
def _on(device: torch.device | None) -> Iterator[None]:
    """Tensors created inside (model constants, guide parameters) default to ``device``."""
    if device is None:
        yield
    else:
        with device:
            yield


# ------------------------------------------------------------------ model runs over draws
_logger = logging.getLogger("pyrogen.infer.advi")

_FAST_PATH_ADVICE = (
    "For the fast path make every batch dimension a pyro.plate and let latent values "
    "broadcast from the right: write X @ beta as (X * beta).sum(-1), and index with [..., i] "
    "rather than [i]."
)


@dataclass
class _ModelRun:
    """A model run once per posterior draw ``s = 1..n``.

    :ivar values: site -> ``(n,) + site_shape`` (latents: the draws; observed sites: values
        re-sampled from the likelihood; deterministic sites).
    :ivar log_probs: site -> ``(n,) + batch_shape``: :math:`\\log p(z_s)` at latent sites,
        :math:`\\log p(x_i \\mid z_s)` of the *given* data at observed sites (unscaled).
    :ivar log_joint: ``(n,)``: :math:`\\log p(x, z_s)` (scaled and masked as in Pyro's ELBO).
    :ivar path: ``"vectorized"`` or ``"looped"``.
    """

    values: dict[str, torch.Tensor]
    log_probs: dict[str, torch.Tensor]
    log_joint: torch.Tensor
    path: str


def _per_draw(value: torch.Tensor, n: int, shape: tuple) -> torch.Tensor:
    """A tensor of a run under the draws plate as ``(n,) + shape``; raise if it does not fit."""
    extra = value.dim() - 1 - len(shape)
    if extra < 0:  # the value does not depend on the draws
        return value.expand((n,) + shape)
    if value.shape[0] not in (1, n) or any(s != 1 for s in value.shape[1 : 1 + extra]):
        raise ValueError(f"got shape {tuple(value.shape)} for {n} draws of shape {shape}")
    return value.reshape((value.shape[0],) + value.shape[1 + extra :]).expand((n,) + shape)


def _scaled(site: dict, log_prob: torch.Tensor) -> torch.Tensor:
    mask = site["mask"]
    if mask is not None and mask is not True:
        log_prob = log_prob.masked_fill(~torch.as_tensor(mask, device=log_prob.device), 0.0)
    return log_prob * site["scale"]


def _collect(
    traces: list, proto, n: int, observed: set[str], latent: set[str]
) -> tuple[dict, dict, torch.Tensor]:
    """Values, per-site log-densities and the log joint of ``traces`` (one vectorized trace with
    ``n`` draws, or ``n`` traces of one draw each), shaped per draw."""
    values, log_probs = {}, {}
    log_joint = torch.zeros(n)
    for name, site in proto.nodes.items():
        if site["type"] != "sample":
            continue
        shape = tuple(site["value"].shape)
        batch = shape[: len(shape) - site["fn"].event_dim]
        vals = [t.nodes[name]["value"] for t in traces]
        values[name] = (
            _per_draw(vals[0], n, shape)
            if len(traces) == 1
            else torch.stack(vals).reshape((n,) + shape)
        )
        if site["infer"].get("_deterministic") or not (name in observed or name in latent):
            continue  # deterministic, or drawn from the likelihood without data to score
        scored = site["value"] if name in observed else None
        lps, joint = [], []
        for t in traces:
            s = t.nodes[name]
            lp = s["fn"].log_prob(scored if scored is not None else s["value"])
            lps.append(lp)
            joint.append(_scaled(s, lp))
        if len(traces) == 1:
            log_probs[name] = _per_draw(lps[0], n, batch)
            joint_n = _per_draw(joint[0].expand(lps[0].shape), n, batch)
        else:
            log_probs[name] = torch.stack([lp.expand(batch) for lp in lps])
            joint_n = torch.stack([j.expand(batch) for j in joint])
        log_joint = log_joint.to(joint_n) + joint_n.reshape(n, -1).sum(-1)
    return values, log_probs, log_joint


def _condition(model, draws: dict, index: int | None = None):
    data = draws if index is None else {k: v[index] for k, v in draws.items()}
    return poutine.condition(_resample_observed(model), data=data)


def _vectorized_run(model, draws, proto, n, args, kwargs, observed) -> _ModelRun:
    mpn = _max_plate_nesting(proto)
    with poutine.block(), torch.no_grad(), pyro.plate("_draws", n, dim=-mpn - 1):
        trace = poutine.trace(_condition(model, _padded(draws, proto, n))).get_trace(
            *args, **kwargs
        )
    values, log_probs, log_joint = _collect([trace], proto, n, observed, set(draws))
    # Correct first: the first draw must give what a plain run of the model gives (a model
    # may broadcast under the draws plate without error and still compute something else).
    first = _looped_run(
        model, {k: v[:1] for k, v in draws.items()}, proto, 1, args, kwargs, observed
    )
    for name, lp in first.log_probs.items():
        if not torch.allclose(log_probs[name][:1], lp, rtol=1e-4, atol=1e-4):
            raise ValueError(f"site {name!r} differs from a run of the model on one draw")
    for name, value in first.values.items():
        if proto.nodes[name]["infer"].get("_deterministic") and not torch.allclose(
            values[name][:1], value, rtol=1e-4, atol=1e-4
        ):
            raise ValueError(f"site {name!r} differs from a run of the model on one draw")
    return _ModelRun(values, log_probs, log_joint, "vectorized")


def _looped_run(model, draws, proto, n, args, kwargs, observed, traces=None) -> _ModelRun:
    traces = [] if traces is None else traces
    with poutine.block(), torch.no_grad():
        for s in range(n):
            traces.append(poutine.trace(_condition(model, draws, s)).get_trace(*args, **kwargs))
    values, log_probs, log_joint = _collect(traces, proto, n, observed, set(draws))
    return _ModelRun(values, log_probs, log_joint, "looped")


def run_model(result, draws: dict, n: int, args: tuple, kwargs: dict, what: str) -> _ModelRun:
    """Run ``result.model`` on each of ``n`` posterior ``draws`` (site -> ``(n,) + shape``),
    observed sites re-sampled: vectorized under an outer plate when the model allows it (and
    gives the same numbers as a plain run on the first draw), else once per draw.

    ``result.vectorize`` chooses: ``None`` (try the vectorized path, fall back to the loop and
    warn once), ``True`` (vectorized or an error with advice), ``False`` (always loop).
    """
    with _on(getattr(result, "device", None)):
        return _run_model(result, draws, n, args, kwargs, what)


def _run_model(result, draws: dict, n: int, args: tuple, kwargs: dict, what: str) -> _ModelRun:
    proto = _model_trace(result.model, args, kwargs)
    observed = set(_site_names(proto)[1])
    mode = getattr(result, "vectorize", None)
    if mode is not False:
        try:
            run = _vectorized_run(result.model, draws, proto, n, args, kwargs, observed)
        except (RuntimeError, ValueError, IndexError) as err:
            if mode:
                raise ValueError(
                    f"{what} runs the model once for all draws, under an extra plate on the "
                    f"left of its plates (vectorize=True), and the model failed there. "
                    f"{_FAST_PATH_ADVICE} Original error: {err}"
                ) from err
            if not getattr(result, "_warned_loop", False):
                warnings.warn(
                    f"{what}: the model cannot run all posterior draws at once under an extra "
                    f"plate ({type(err).__name__}: {err}), so it runs once per draw (same "
                    f"numbers, slower). {_FAST_PATH_ADVICE}",
                    UserWarning,
                    stacklevel=3,
                )
                result._warned_loop = True
        else:
            _logger.info("%s: vectorized over %d draws", what, n)
            result.draws_path = run.path
            return run
    run = _looped_run(result.model, draws, proto, n, args, kwargs, observed)
    _logger.info("%s: looped over %d draws", what, n)
    result.draws_path = run.path
    return run


def _sum_per_draw(log_prob: torch.Tensor, n: int, mpn: int) -> torch.Tensor:
    if log_prob.dim() <= mpn:
        return log_prob.sum().expand(n)
    return (
        log_prob.reshape(log_prob.shape[: log_prob.dim() - mpn] + (-1,))
        .sum(-1)
        .reshape(-1)
        .expand(n)
    )


def guide_draws(result, n: int, args: tuple, kwargs: dict) -> tuple[dict, torch.Tensor]:
    """``n`` draws :math:`z_s \\sim q` of every latent site (``(n,) + site_shape``, constrained
    space) and :math:`\\log q(z_s)`, ``(n,)``: the guide vectorized under an outer plate."""
    with _on(getattr(result, "device", None)):
        proto = _model_trace(result.model, args, kwargs)
        mpn = _max_plate_nesting(proto)
        with result.param_scope(), poutine.block(), torch.no_grad():
            with pyro.plate("_draws", n, dim=-mpn - 1):
                trace = poutine.trace(result.guide).get_trace(*args, **kwargs)
    log_q = torch.zeros(n)
    for site in trace.nodes.values():
        if site["type"] == "sample":
            lp = _scaled(site, site["fn"].log_prob(site["value"]))
            log_q = log_q.to(lp) + _sum_per_draw(lp, n, mpn)
    draws = {
        name: _per_draw(trace.nodes[name]["value"], n, tuple(proto.nodes[name]["value"].shape))
        for name in _site_names(proto)[0]
    }
    return draws, log_q
