r"""Per-example ELBO and importance-sampled log-likelihood of a Pyro model/guide pair.

Both are read off the same importance weights

.. math:: \log w_k = \log p(x, z_k) - \log q(z_k \mid x), \qquad z_k \sim q(z \mid x),

:math:`\mathrm{ELBO}(x) = \mathbb{E}_q[\log w]` and :math:`\log p(x) \approx
\log \frac1K \sum_k w_k` (Burda et al., 2016), the latter a stochastic lower bound that tightens
as K grows. Weights are computed in chunks of examples and particles, with ``logsumexp``
accumulated across chunks, so K = 5000 over 10 000 MNIST images stays within a few GB.

The weights are those of :func:`pyrogen.infer.importance.log_importance_weights`, per example
and unscaled (a subsampling scale of the data plate is ignored: each example counts once). The
model and guide must put every sample site inside one data plate at dim -1 (as
:class:`pyrogen.models.VAE` does): per-example terms are not defined for global latents. Pass an
object with ``.model(x)`` / ``.guide(x)``, or your own ``model(x)`` with ``guide=guide``.

References:
  1. Importance Weighted Autoencoders, Y. Burda, R. Grosse, R. Salakhutdinov (2016).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from tqdm.auto import tqdm

from pyrogen.infer.importance import guess_max_plate_nesting, log_importance_weights

#: Budget of floats for one chunk's decoder output (particles x examples x features).
MAX_CHUNK_ELEMENTS = 2**23


def _model_and_guide(
    model: Any, guide: Callable | None, data: Any = None
) -> tuple[Callable, Callable]:
    if callable(data) and not isinstance(data, torch.Tensor):
        raise TypeError(
            "The data came second and were a callable: give your guide by keyword, e.g."
            " log_likelihood(model, x, guide=guide) (the second argument is the data)."
        )
    if guide is not None:
        if not (callable(model) and callable(guide)):
            raise TypeError(
                f"Expected callables model and guide, got {type(model).__name__} and "
                f"{type(guide).__name__}."
            )
        return model, guide
    if not (callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))):
        raise TypeError(
            f"Expected an object with .model(x) and .guide(x) methods (e.g. pyrogen.models.VAE),"
            f" or a model callable with guide=..., got {type(model).__name__}."
        )
    return model.model, model.guide


def _device_of(model: Any, data: torch.Tensor) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return data.device


def _log_weights(
    model: Callable, guide: Callable, x: torch.Tensor, num_samples: int, nesting: int | None
) -> torch.Tensor:
    with torch.no_grad():
        log_w, _ = log_importance_weights(
            model,
            guide,
            x,
            num_samples=num_samples,
            max_plate_nesting=nesting,
            per_example=True,
        )
    return log_w


def log_weights(
    model: Any, x: torch.Tensor, num_samples: int, *, guide: Callable | None = None
) -> torch.Tensor:
    r"""Importance log-weights :math:`\log p(x, z_k) - \log q(z_k|x)`, shape ``(K, B)``.

    Unscaled per-example log-densities from
    :func:`pyrogen.infer.importance.log_importance_weights`, particles vectorized in an outer
    plate, so ``x`` is one chunk of examples.

    :param model: object with ``.model(x)`` and ``.guide(x)``, or a model callable with ``guide``.
    :param x: examples, one per row.
    :param num_samples: particles :math:`K`.
    :param guide: the guide, when ``model`` is a model callable.
    """
    return _log_weights(*_model_and_guide(model, guide, x), x, num_samples, None)


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
    model: Any,
    guide: Callable | None,
    data: torch.Tensor,
    num_samples: int,
    batch_size: int,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (mean log-weight, log mean weight) over ``num_samples`` particles, in chunks
    of at most ``batch_size`` examples and as many particles as ``MAX_CHUNK_ELEMENTS`` allows;
    the log-sum-exp over particles is accumulated across particle chunks."""
    model_fn, guide_fn = _model_and_guide(model, guide, data)
    if num_samples < 1:
        raise ValueError(f"Expected num_samples >= 1, got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1, got {batch_size}.")
    device = _device_of(model, data)
    features = max(1, data[0].numel())
    particle_chunk = max(1, min(num_samples, MAX_CHUNK_ELEMENTS // (batch_size * features)))
    nesting = guess_max_plate_nesting(model_fn, guide_fn, data[:batch_size].to(device))
    mean_log_w, log_mean_w = [], []
    bar = tqdm(total=len(data), disable=not progress, desc="evaluate", unit="example")
    for start, size in _chunks(len(data), batch_size):
        x = data[start : start + size].to(device)
        running_lse = running_sum = None  # in the weights' dtype (float64 models stay float64)
        for _, k in _chunks(num_samples, particle_chunk):
            log_w = _log_weights(model_fn, guide_fn, x, k, nesting).to(device)
            lse, total = torch.logsumexp(log_w, dim=0), log_w.sum(0)
            if running_lse is None:
                running_lse, running_sum = lse, total
            else:
                running_lse, running_sum = torch.logaddexp(running_lse, lse), running_sum + total
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
    *,
    guide: Callable | None = None,
) -> torch.Tensor:
    r"""Monte Carlo ELBO per example, :math:`\frac1K\sum_k \log w_k`, in nats.

    :param model: object with ``.model(x)`` and ``.guide(x)`` (e.g. a trained VAE), or a model
        callable ``model(x)`` with ``guide``.
    :param data: examples, one per row (the model's data plate at dim -1 runs over them).
    :param num_samples: particles per example.
    :param batch_size: examples per chunk.
    :param reduction: ``"mean"`` (a 0-dim tensor, nats per example) or ``"none"`` (shape (N,)).
    :param guide: the guide ``guide(x)``, when ``model`` is a model callable.
    """
    return _reduce(_estimates(model, guide, data, num_samples, batch_size)[0], reduction)


def log_likelihood(
    model: Any,
    data: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 100,
    reduction: str = "mean",
    *,
    guide: Callable | None = None,
) -> torch.Tensor:
    r"""Importance-sampled :math:`\log p(x) \approx \log \frac1K \sum_k w_k` per example, nats.

    A lower bound in expectation that approaches :math:`\log p(x)` as K grows; always at least the
    ELBO computed from the same particles. Arguments as in :func:`elbo`.
    """
    return _reduce(_estimates(model, guide, data, num_samples, batch_size)[1], reduction)


def elbo_and_log_likelihood(
    model: Any,
    data: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 100,
    progress: bool = False,
    *,
    guide: Callable | None = None,
) -> tuple[float, float]:
    """Both mean per-example estimates (ELBO, IS log-likelihood) from one pass over the same K
    particles; ``progress`` shows a tqdm bar over examples. Other arguments as in :func:`elbo`."""
    mean_log_w, log_mean_w = _estimates(model, guide, data, num_samples, batch_size, progress)
    return float(mean_log_w.mean()), float(log_mean_w.mean())
