r"""Multi-layer perceptrons with ReLU (the lecture's VAE example), LeakyReLU or tanh (Burda et
al. 2016).

:math:`h = \mathrm{act}(W_1^\top x + b_1)`, then linear heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh}


class MLP(nn.Sequential):
    """``Linear → act → … → Linear``: ``len(hidden)`` hidden layers (ReLU by default), linear
    output."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}."
            )
        sizes = [in_features, *hidden, out_features]
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f"Layer sizes must be positive integers, got {sizes}.")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)


class GaussianEncoder(nn.Module):
    r"""Inference network of an amortized Gaussian guide,
    :math:`\mu, \log\sigma^2 = \mathrm{NN}_\varphi(x)`; returns :math:`(\mu, \sigma)`.
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], latent_dim: int, activation: str = "relu"
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = MLP(in_features, hidden, 2 * latent_dim, activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_var = self.net(x).split(self.latent_dim, dim=-1)
        return loc, torch.exp(0.5 * log_var)
