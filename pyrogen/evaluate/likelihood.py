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
object with ``.model(*data)`` / ``.guide(*data)``, a ``(model, guide)`` tuple, or your own
``model(*data)`` with ``guide=guide``; ``data`` are one or several tensors (``x`` or ``x, y``)
whose rows are the examples, chunked together.

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


def _model_and_guide(model: Any, guide: Callable | None) -> tuple[Callable, Callable]:
    if guide is not None:
        if not (callable(model) and callable(guide)):
            raise TypeError(
                f"Expected callables model and guide, got {type(model).__name__} and "
                f"{type(guide).__name__}."
            )
        return model, guide
    if isinstance(model, tuple) and len(model) == 2 and all(map(callable, model)):
        return model
    if not (callable(getattr(model, "model", None)) and callable(getattr(model, "guide", None))):
        raise TypeError(
            f"Expected an object with .model(x) and .guide(x) methods (.model(x, y) and"
            f" .guide(x, y) for several data tensors; e.g. pyrogen.models.VAE), a (model, guide)"
            f" tuple, or a model callable with guide=..., got {type(model).__name__}."
        )
    return model.model, model.guide


def _split(
    args: tuple[Any, ...], options: dict[str, Any], defaults: dict[str, Any]
) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """Data tensors (the leading positional tensors; one tuple of tensors or a
    ``TensorDataset`` is unpacked) and the options, of which the older positional form
    ``(num_samples, batch_size, ...)`` may follow the data."""
    args = list(args)
    if len(args) >= 1 and isinstance(args[0], torch.utils.data.TensorDataset):
        args[:1] = list(args[0].tensors)
    elif len(args) >= 1 and isinstance(args[0], (tuple, list)):
        args[:1] = list(args[0])
    n = 0
    while n < len(args) and isinstance(args[n], torch.Tensor):
        n += 1
    data, rest = tuple(args[:n]), args[n:]
    if not data:
        first = type(args[0]).__name__ if args else "nothing"
        raise TypeError(
            "The data came second and were a callable: give your guide by keyword, e.g."
            " log_likelihood(model, x, guide=guide) (the second argument is the data)."
            if args and callable(args[0])
            else f"Expected data tensors after the model, got {first}."
        )
    if len(rest) > len(defaults) or any(isinstance(r, torch.Tensor) for r in rest):
        raise TypeError(
            f"After the data tensors come at most {list(defaults)} positionally; got"
            f" {[type(r).__name__ for r in rest]}. Give the data tensors first, options by"
            " keyword."
        )
    for name, value in zip(defaults, rest, strict=False):
        if options[name] != defaults[name]:
            raise TypeError(f"{name} given both positionally and by keyword.")
        options[name] = value
    sizes = [len(t) if t.dim() else 0 for t in data]
    if 0 in sizes or len(set(sizes)) > 1:
        raise ValueError(
            f"Expected data tensors whose first dimension indexes the same examples, got shapes"
            f" {[tuple(t.shape) for t in data]}."
        )
    return data, options


def _device_of(model: Any, data: torch.Tensor) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return data.device


def _log_weights(
    model: Callable,
    guide: Callable,
    xs: tuple[torch.Tensor, ...],
    num_samples: int,
    nesting: int | None,
) -> torch.Tensor:
    with torch.no_grad():
        log_w, _ = log_importance_weights(
            model,
            guide,
            *xs,
            num_samples=num_samples,
            max_plate_nesting=nesting,
            per_example=True,
        )
    return log_w


def log_weights(
    model: Any, *data: torch.Tensor, num_samples: int | None = None, guide: Callable | None = None
) -> torch.Tensor:
    r"""Importance log-weights :math:`\log p(x, z_k) - \log q(z_k|x)`, shape ``(K, B)``.

    Unscaled per-example log-densities from
    :func:`pyrogen.infer.importance.log_importance_weights`, particles vectorized in an outer
    plate, so ``data`` are one chunk of examples.

    :param model: object with ``.model(*data)`` and ``.guide(*data)``, a ``(model, guide)``
        tuple, or a model callable with ``guide``.
    :param data: the program's arguments, one example per row (e.g. ``x`` or ``x, y``).
    :param num_samples: particles :math:`K` (also positionally after the data).
    :param guide: the guide, when ``model`` is a model callable.
    """
    data, opts = _split(data, {"num_samples": num_samples}, {"num_samples": None})
    if opts["num_samples"] is None:
        raise TypeError("log_weights needs num_samples= (the number of particles K).")
    return _log_weights(*_model_and_guide(model, guide), data, opts["num_samples"], None)


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
    data: tuple[torch.Tensor, ...],
    num_samples: int,
    batch_size: int,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (mean log-weight, log mean weight) over ``num_samples`` particles, in chunks
    of at most ``batch_size`` examples (of every data tensor) and as many particles as
    ``MAX_CHUNK_ELEMENTS`` allows; the log-sum-exp over particles is accumulated across particle
    chunks."""
    model_fn, guide_fn = _model_and_guide(model, guide)
    if num_samples < 1:
        raise ValueError(f"Expected num_samples >= 1, got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"Expected batch_size >= 1, got {batch_size}.")
    device = _device_of(model, data[0])
    num = len(data[0])
    features = max(1, sum(t[0].numel() for t in data))
    particle_chunk = max(1, min(num_samples, MAX_CHUNK_ELEMENTS // (batch_size * features)))
    first = tuple(t[:batch_size].to(device) for t in data)
    nesting = guess_max_plate_nesting(model_fn, guide_fn, *first)
    mean_log_w, log_mean_w = [], []
    bar = tqdm(
        total=num,
        disable=not progress,
        desc="evaluate",
        unit="example",
        smoothing=0.1,
        bar_format="{l_bar}{bar}| {n:.0f}/{total} [{elapsed}<{remaining}, {rate_fmt}]",
    )
    for start, size in _chunks(num, batch_size):
        xs = tuple(t[start : start + size].to(device) for t in data)
        running_lse = running_sum = None  # in the weights' dtype (float64 models stay float64)
        done = 0
        for _, k in _chunks(num_samples, particle_chunk):
            log_w = _log_weights(model_fn, guide_fn, xs, k, nesting).to(device)
            done += k  # the bar moves by fractions of the chunk (a steady ETA), never past it
            bar.update(min(start + size * done / num_samples, start + size) - bar.n)
            lse, total = torch.logsumexp(log_w, dim=0), log_w.sum(0)
            if running_lse is None:
                running_lse, running_sum = lse, total
            else:
                running_lse, running_sum = torch.logaddexp(running_lse, lse), running_sum + total
        mean_log_w.append((running_sum / num_samples).cpu())
        log_mean_w.append((running_lse - math.log(num_samples)).cpu())
        bar.n = start + size  # exact (an int) at chunk ends
        bar.refresh()
    bar.close()
    return torch.cat(mean_log_w), torch.cat(log_mean_w)


def elbo(
    model: Any,
    *data: torch.Tensor,
    num_samples: int = 100,
    batch_size: int = 100,
    reduction: str = "mean",
    guide: Callable | None = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""Monte Carlo ELBO per example, :math:`\frac1K\sum_k \log w_k`, in nats.

    ``elbo(vae, x)``, ``elbo(cvae, x, y)``, ``elbo((model, guide), x, y)`` or
    ``elbo(model, x, guide=guide)``; the older positional ``elbo(vae, x, num_samples,
    batch_size, reduction)`` still works (numbers after the tensors are options, not data).

    :param model: object with ``.model(*data)`` and ``.guide(*data)`` (e.g. a trained VAE), a
        ``(model, guide)`` tuple, or a model callable with ``guide``.
    :param data: the program's arguments, one example per row of each (the model's data plate
        at dim -1 runs over them); chunked together.
    :param num_samples: particles per example.
    :param batch_size: examples per chunk.
    :param reduction: ``"mean"`` (a 0-dim tensor, nats per example) or ``"none"`` (shape (N,)).
    :param guide: the guide ``guide(*data)``, when ``model`` is a model callable.
    :param progress: show a tqdm bar over the examples with the time left (ETA).
    """
    defaults = {"num_samples": 100, "batch_size": 100, "reduction": "mean"}
    opts = {"num_samples": num_samples, "batch_size": batch_size, "reduction": reduction}
    data, opts = _split(data, opts, defaults)
    values = _estimates(model, guide, data, opts["num_samples"], opts["batch_size"], progress)[0]
    return _reduce(values, opts["reduction"])


def log_likelihood(
    model: Any,
    *data: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 100,
    reduction: str = "mean",
    guide: Callable | None = None,
    progress: bool = False,
) -> torch.Tensor:
    r"""Importance-sampled :math:`\log p(x) \approx \log \frac1K \sum_k w_k` per example, nats.

    A lower bound in expectation that approaches :math:`\log p(x)` as K grows; always at least the
    ELBO computed from the same particles. Arguments as in :func:`elbo` (``log_likelihood(cvae,
    x, y, num_samples=K)``); ``progress`` shows a tqdm bar with the time left.

    With the exact posterior as the guide every weight equals :math:`p(x)`, so the estimate is
    exact: for :math:`z \sim \mathcal N(0, 1)`, :math:`x \mid z \sim \mathcal N(z, 1)`,
    :math:`p(x) = \mathcal N(x; 0, 2)` and :math:`p(z \mid x) = \mathcal N(x/2, 1/2)`.

    >>> import pyro, torch, pyro.distributions as dist
    >>> def model(x):
    ...     with pyro.plate("data", len(x)):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", len(x)):
    ...         pyro.sample("z", dist.Normal(x / 2, 0.5**0.5))
    >>> x = torch.tensor([0.0, 1.0, -2.0])
    >>> estimate = log_likelihood(model, x, guide=guide, num_samples=10, reduction="none")
    >>> torch.allclose(estimate, dist.Normal(0.0, 2.0**0.5).log_prob(x))
    True
    """
    defaults = {"num_samples": 5000, "batch_size": 100, "reduction": "mean"}
    opts = {"num_samples": num_samples, "batch_size": batch_size, "reduction": reduction}
    data, opts = _split(data, opts, defaults)
    values = _estimates(model, guide, data, opts["num_samples"], opts["batch_size"], progress)[1]
    return _reduce(values, opts["reduction"])


def elbo_and_log_likelihood(
    model: Any,
    *data: torch.Tensor,
    num_samples: int = 5000,
    batch_size: int = 100,
    progress: bool = False,
    guide: Callable | None = None,
) -> tuple[float, float]:
    """Both mean per-example estimates (ELBO, IS log-likelihood) from one pass over the same K
    particles; ``progress`` shows a tqdm bar over examples with the time left (ETA). Other
    arguments as in :func:`elbo`."""
    defaults = {"num_samples": 5000, "batch_size": 100, "progress": False}
    opts = {"num_samples": num_samples, "batch_size": batch_size, "progress": progress}
    data, opts = _split(data, opts, defaults)
    mean_log_w, log_mean_w = _estimates(
        model, guide, data, opts["num_samples"], opts["batch_size"], opts["progress"]
    )
    return float(mean_log_w.mean()), float(log_mean_w.mean())
