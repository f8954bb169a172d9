r"""Per-example ELBO and importance-sampled log-likelihood of a Pyro model/guide pair.

Both are read off the same importance weights

.. math:: \log w_k = \log p(x, z_k) - \log q(z_k \mid x), \qquad z_k \sim q(z \mid x),

:math:`\mathrm{ELBO}(x) = \mathbb{E}_q[\log w]` and :math:`\log p(x) \approx
\log \frac1K \sum_k w_k` (Burda et al., 2016), the latter a stochastic lower bound that tightens
as K grows. Weights are computed in chunks of examples and particles, with ``logsumexp``
accumulated across chunks, so K = 5000 over 10 000 MNIST images stays within a few GB.

The model and guide must put every latent variable inside a data plate at dim -1 (as
:class:`pyrogen.models.VAE` does): per-example terms are not defined for global latents.

References:
  1. Importance Weighted Autoencoders, Y. Burda, R. Grosse, R. Salakhutdinov (2016).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

#: Budget of floats for one chunk's decoder output (particles x examples x features).
MAX_CHUNK_ELEMENTS = 2**23


def _model_and_guide(model: Any) -> tuple[Any, Any]:
    if not (callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))):
        raise TypeError(
            f"Expected an object with .model(x) and .guide(x) methods (e.g. pyrogen.models.VAE),"
            f" got {type(model).__name__}."
        )
    return model.model, model.guide


def _device_of(model: Any, data: torch.Tensor) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return data.device


def _sum_log_probs(trace: poutine.Trace, num_samples: int, batch: int) -> torch.Tensor:
    """Sum over non-auxiliary sample sites of ``unscaled_log_prob`` (without the data plate's
    subsample scale): shape (K, B)."""
    trace.compute_log_prob()
    total = torch.zeros(num_samples, batch)
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or site["infer"].get("is_auxiliary"):
            continue
        log_prob = site["unscaled_log_prob"]
        if log_prob.dim() < 2 or log_prob.shape[-1] != batch:
            raise ValueError(
                f"Site {name!r} has log_prob shape {tuple(log_prob.shape)}; per-example"
                f" weights need every sample site inside the data plate (dim -1, size {batch})."
            )
        total = total.to(log_prob.device) + log_prob
    return total


def log_weights(model: Any, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    r"""Importance log-weights :math:`\log p(x, z_k) - \log q(z_k|x)`, shape ``(K, B)``.

    Particles are vectorized with a plate at dim -2, so ``x`` is one chunk of examples.
    """
    model_fn, guide_fn = _model_and_guide(model)
    with torch.no_grad(), pyro.plate("_is_particles", num_samples, dim=-2):
        guide_trace = poutine.trace(guide_fn).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model_fn, trace=guide_trace)).get_trace(x)
    log_p = _sum_log_probs(model_trace, num_samples, len(x))
    log_q = _sum_log_probs(guide_trace, num_samples, len(x))
    return log_p - log_q


def _chunks(num: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, num, size):
        yield start, min(size, num - start)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")


def _estimates(
    model: Any, data: torch.Tensor, num_samples: int, batch_size: int, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (mean log-weight, log mean weight) over ``num_samples`` particles."""
    if num_samples < 1:
        raise ValueError(f"Expected num_samples >= 1, got {num_samples}.")
    device = _device_of(model, data)
    features = max(1, data[0].numel())
    particle_chunk = max(1, min(num_samples, MAX_CHUNK_ELEMENTS // (batch_size * features)))
    mean_log_w, log_mean_w = [], []
    bar = tqdm(total=len(data), disable=not progress, desc="evaluate", unit="example")
    for start, size in _chunks(len(data), batch_size):
        x = data[start : start + size].to(device)
        running_lse = torch.full((size,), -math.inf, device=device)
        running_sum = torch.zeros(size, device=device)
        for _, k in _chunks(num_samples, particle_chunk):
            log_w = log_weights(model, x, k).to(device)
            running_lse = torch.logaddexp(running_lse, torch.logsumexp(log_w, dim=0))
            running_sum += log_w.sum(0)
        mean_log_w.append((running_sum / num_samples).cpu())
        log_mean_w.append((running_lse - math.log(num_samples)).cpu())
        bar.update(size)
    bar.close()
    return torch.cat(mean_log_w), torch.cat(log_mean_w)


def elbo(
    model: Any,
    data: torch.Tensor,
    num_samples: int = 100,
    batch_size: int = 100,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Monte Carlo ELBO per example, :math:`\frac1K\sum_k \log w_k`, in nats.

    :param model: object with ``.model(x)`` and ``.guide(x)`` (e.g. a trained VAE).
    :param data: examples, one per row.
    :param num_samples: particles per example.
    :param batch_size: examples per chunk.
    :param reduction: ``"mean"`` (a 0-dim tensor, nats per example) or ``"none"`` (shape (N,)).
    """
    return _reduce(_estimates(model, data, num_samples, batch_size)[0], reduction)


def log_likelihood(
    model: Any,
    data: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 100,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Importance-sampled :math:`\log p(x) \approx \log \frac1K \sum_k w_k` per example, nats.

    A lower bound in expectation that approaches :math:`\log p(x)` as K grows; always at least the
    ELBO computed from the same particles. Arguments as in :func:`elbo`.
    """
    return _reduce(_estimates(model, data, num_samples, batch_size)[1], reduction)


def elbo_and_log_likelihood(
    model: Any,
    data: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 100,
    progress: bool = False,
) -> tuple[float, float]:
    """Both mean per-example estimates (ELBO, IS log-likelihood) from one pass over the same K
    particles; ``progress`` shows a tqdm bar over examples."""
    mean_log_w, log_mean_w = _estimates(model, data, num_samples, batch_size, progress)
    return float(mean_log_w.mean()), float(log_mean_w.mean())
