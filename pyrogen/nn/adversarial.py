r"""Networks for adversarial training: a fully connected generator network and a critic.

The critic :math:`d(\cdot;\phi) : \mathcal{X} \to \mathbb{R}` returns one *unnormalized* score per
example, shape ``(batch,)``: the GAN discriminator is :math:`\sigma(d(x))` (the sigmoid is
applied inside the losses, as a numerically stable ``softplus``), the Wasserstein critic is
:math:`d(x)` itself. A conditional critic takes the label as a second argument.

References:
  1. Generative Adversarial Nets, I. Goodfellow et al. (2014).
  2. Wasserstein GAN, M. Arjovsky, S. Chintala, L. Bottou (2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrogen.nn.mlp import MLP


def adversarial_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: str = "relu",
) -> nn.Sequential:
    """``Linear → act → … → Linear`` with ``len(hidden)`` hidden layers and a linear output
    (:class:`pyrogen.nn.MLP`)."""
    return MLP(in_features, hidden, out_features, activation)


def _one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    if y.dim() != 1:
        raise ValueError(f"Labels y must have shape (batch,), got {tuple(y.shape)}.")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"Labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]."
        )
    return nn.functional.one_hot(y.long(), num_classes).to(dtype)


class Critic(nn.Module):
    r"""MLP critic / discriminator :math:`d(x;\phi) \in \mathbb{R}`, output shape ``(batch,)``.

    :param data_dim: number of features of one (flattened) example.
    :param hidden: hidden layer sizes.
    :param num_classes: if > 0, a conditional critic :math:`d(x, y)` (one-hot label appended).
    :param activation: ``"relu"``, ``"leaky_relu"`` or ``"tanh"``.
    :param pack: PacGAN packing [3]: score groups of ``pack`` consecutive examples jointly
        (``d(x_1, ..., x_m)``) and give every example its group's score. Packing makes the
        critic see sample diversity, which penalizes mode collapse; use it with the gan, nsgan
        and hinge losses (with a gradient penalty the per-example gradients are those of the
        joint score). A batch whose size is not a multiple of ``pack`` is completed by wrapping.

    References:
      3. PacGAN: The power of two samples in generative adversarial networks, Z. Lin,
         A. Khetan, G. Fanti, S. Oh (2018).
    """

    def __init__(
        self,
        data_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        num_classes: int = 0,
        activation: str = "relu",
        pack: int = 1,
    ) -> None:
        super().__init__()
        if data_dim < 1:
            raise ValueError(f"Expected data_dim >= 1, got {data_dim}.")
        if num_classes < 0:
            raise ValueError(f"Expected num_classes >= 0, got {num_classes}.")
        if pack < 1:
            raise ValueError(f"Expected pack >= 1, got {pack}.")
        self.data_dim, self.num_classes, self.pack = data_dim, num_classes, pack
        self.net = adversarial_mlp((data_dim + num_classes) * pack, hidden, 1, activation)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.data_dim:
            raise ValueError(
                f"Critic expects {self.data_dim} features per example, got {x.shape[1]}"
                f" (input shape {tuple(x.shape)})."
            )
        if self.num_classes:
            if y is None:
                raise ValueError("This critic is conditional (num_classes > 0): pass labels y.")
            x = torch.cat([x, _one_hot(y, self.num_classes, x.dtype)], dim=-1)
        if self.pack == 1:
            return self.net(x).squeeze(-1)
        n = len(x)
        extra = (-n) % self.pack
        if extra:
            x = torch.cat([x, x[torch.arange(extra, device=x.device) % n]])
        scores = self.net(x.reshape(len(x) // self.pack, -1)).squeeze(-1)
        return scores.repeat_interleave(self.pack)[:n]


class GeneratorNet(nn.Module):
    r"""Deterministic map :math:`x = g(z, y; \theta)` used by
    :class:`pyrogen.models.gan.Generator`.

    :param latent_dim: dimension of z.
    :param data_dim: number of output features.
    :param hidden: hidden layer sizes.
    :param num_classes: if > 0, the one-hot label is appended to z.
    :param output: ``"identity"`` (real-valued data) or ``"sigmoid"`` (pixels in [0, 1]).
    :param activation: hidden activation.
    """

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        num_classes: int = 0,
        output: str = "identity",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if output not in ("identity", "sigmoid"):
            raise ValueError(f"output must be 'identity' or 'sigmoid', got {output!r}.")
        self.latent_dim, self.data_dim, self.num_classes = latent_dim, data_dim, num_classes
        self.output = output
        self.net = adversarial_mlp(latent_dim + num_classes, hidden, data_dim, activation)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if y is None:
                raise ValueError("This generator is conditional (num_classes > 0): pass labels y.")
            z = torch.cat([z, _one_hot(y, self.num_classes, z.dtype)], dim=-1)
        x = self.net(z)
        return torch.sigmoid(x) if self.output == "sigmoid" else x
