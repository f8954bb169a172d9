r"""Output families of decoders: how decoder outputs become :math:`p(x \mid z)`.

A likelihood says how many numbers the decoder emits per feature, turns them into a Pyro
distribution over one example (event dim 1), gives the mean used for pictures, and checks that
data are in its support before training starts.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F


class Likelihood:
    """Base class: ``params_per_feature`` outputs per feature."""

    name = "likelihood"
    params_per_feature = 1

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def validate(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem when ``x`` cannot be modelled."""
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(-1).nonzero().flatten()[:5].tolist()
            raise ValueError(
                f"The data contain NaN or infinite values (first rows: {bad}); clean or impute"
                " them before training."
            )


class Bernoulli(Likelihood):
    r"""Bernoulli pixels with logits :math:`\ell = \mathrm{NN}_\theta(z)`:
    :math:`\log p(x|z) = \sum_j x_j \ell_j - \log(1 + e^{\ell_j})`.

    Grey levels in [0, 1] are accepted (the cross-entropy of the binary case; use dynamic
    binarization for a proper discrete likelihood).
    """

    name = "bernoulli"

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=output, validate_args=False).to_event(1)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def validate(self, x: torch.Tensor) -> None:
        super().validate(x)
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise ValueError(
                "A Bernoulli likelihood needs data in [0, 1], got values in"
                f" [{low:.3g}, {high:.3g}]; rescale the data (e.g. divide by 255) or use"
                " --likelihood gaussian."
            )


class Gaussian(Likelihood):
    r"""Gaussian with decoder-predicted mean and log-variance (the lecture's VAE decoder):
    :math:`\mu, \log\sigma^2 = \mathrm{NN}_\theta(z)`, :math:`p(x|z) = \mathcal N(x; \mu,
    \sigma^2 I)`.

    The log-variance is bounded below softly, :math:`\log\sigma^2 = \log\sigma^2_{min} +
    \mathrm{softplus}(o - \log\sigma^2_{min})`: features that never vary in the data (e.g. the
    borders of digit images) would otherwise drive :math:`\sigma \to 0` and the likelihood to
    infinity.
    """

    name = "gaussian"
    params_per_feature = 2

    def __init__(self, min_variance: float = 1e-3) -> None:
        if min_variance <= 0:
            raise ValueError(f"Expected min_variance > 0, got {min_variance}.")
        self.min_log_var = math.log(min_variance)

    def _loc_and_log_var(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = output.chunk(2, dim=-1)
        return loc, self.min_log_var + F.softplus(raw - self.min_log_var)

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        loc, log_var = self._loc_and_log_var(output)
        return dist.Normal(loc, torch.exp(0.5 * log_var)).to_event(1)

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        return self._loc_and_log_var(output)[0]


LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": Gaussian}


def get_likelihood(name: str | Likelihood) -> Likelihood:
    """A likelihood by name (``bernoulli`` or ``gaussian``) or the instance itself."""
    if isinstance(name, Likelihood):
        return name
    if name not in LIKELIHOODS:
        raise ValueError(f"Unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}.")
    return LIKELIHOODS[name]()
