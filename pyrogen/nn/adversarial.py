r"""Networks for adversarial training: a fully connected generator network, a critic and a
projection critic.

The critic :math:`d(\cdot;\phi) : \mathcal{X} \to \mathbb{R}` returns one *unnormalized* score per
example, shape ``(batch,)``: the GAN discriminator is :math:`\sigma(d(x))` (the sigmoid is
applied inside the losses, as a numerically stable ``softplus``), the Wasserstein critic is
:math:`d(x)` itself. A conditional critic takes the label as a second argument.

Labels enter a conditional network in one of three ways:

* ``Critic`` / ``GeneratorNet`` with ``embedding_dim=0`` (default): the one-hot label is
  concatenated to the input [4] — a fixed embedding, whose first layer acts as a learned
  embedding :math:`W_y e_y` of the label;
* ``embedding_dim=k > 0``: a learned table ``nn.Embedding(num_classes, k)`` is concatenated
  instead (a low-dimensional learned label embedding);
* :class:`ProjectionCritic`: :math:`d(x, y) = \psi(\phi(x)) + \mathrm{embed}(y)^\top\phi(x)` [5].

References:
  1. Generative Adversarial Nets, I. Goodfellow et al. (2014).
  2. Wasserstein GAN, M. Arjovsky, S. Chintala, L. Bottou (2017).
  3. PacGAN: The power of two samples in generative adversarial networks, Z. Lin, A. Khetan,
     G. Fanti, S. Oh (2018).
  4. Conditional Generative Adversarial Nets, M. Mirza, S. Osindero (2014).
  5. cGANs with Projection Discriminator, T. Miyato, M. Koyama (2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pyrogen.nn.mlp import ACTIVATIONS, MLP


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


class _Labels(nn.Module):
    """Label features: one-hot (``embedding_dim=0``) or a learned ``nn.Embedding`` table."""

    def __init__(self, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        if embedding_dim < 0:
            raise ValueError(f"Expected embedding_dim >= 0 (0: one-hot), got {embedding_dim}.")
        if embedding_dim and num_classes < 1:
            raise ValueError(
                "A label embedding (embedding_dim > 0) needs labels: set num_classes > 0."
            )
        self.num_classes = num_classes
        self.features = embedding_dim or num_classes
        self.embedding = nn.Embedding(num_classes, embedding_dim) if embedding_dim else None

    def forward(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        one_hot = _one_hot(y, self.num_classes, dtype)  # validates shape and range
        if self.embedding is None:
            return one_hot
        return self.embedding(y.long()).to(dtype)


def _label_features(net: nn.Module, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The one-hot label, or ``net.labels``' learned embedding when ``net`` has one."""
    labels = net._modules.get("labels")
    return _one_hot(y, net.num_classes, dtype) if labels is None else labels(y, dtype)


class Critic(nn.Module):
    r"""MLP critic / discriminator :math:`d(x;\phi) \in \mathbb{R}`, output shape ``(batch,)``.

    :param data_dim: number of features of one (flattened) example.
    :param hidden: hidden layer sizes.
    :param num_classes: if > 0, a conditional critic :math:`d(x, y)` (label features appended).
    :param activation: ``"relu"``, ``"leaky_relu"`` or ``"tanh"``.
    :param pack: PacGAN packing [3]: score groups of ``pack`` consecutive examples jointly
        (``d(x_1, ..., x_m)``) and give every example its group's score. Packing makes the
        critic see sample diversity, which penalizes mode collapse; use it with the gan, nsgan
        and hinge losses (with a gradient penalty the per-example gradients are those of the
        joint score). A batch whose size is not a multiple of ``pack`` is completed by wrapping.

    References:
      3. PacGAN: The power of two samples in generative adversarial networks, Z. Lin,
         A. Khetan, G. Fanti, S. Oh (2018).

    :param embedding_dim: 0 (default): append the one-hot label; k > 0: append a learned
        k-dimensional label embedding (``nn.Embedding(num_classes, k)``) instead.
    """

    def __init__(
        self,
        data_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        num_classes: int = 0,
        activation: str = "relu",
        pack: int = 1,
        embedding_dim: int = 0,
    ) -> None:
        super().__init__()
        if data_dim < 1:
            raise ValueError(f"Expected data_dim >= 1, got {data_dim}.")
        if num_classes < 0:
            raise ValueError(f"Expected num_classes >= 0, got {num_classes}.")
        if pack < 1:
            raise ValueError(f"Expected pack >= 1, got {pack}.")
        self.data_dim, self.num_classes, self.pack = data_dim, num_classes, pack
        labels = _Labels(num_classes, embedding_dim)
        self.net = adversarial_mlp((data_dim + labels.features) * pack, hidden, 1, activation)
        if embedding_dim:  # registered after net: the default critic is unchanged
            self.labels = labels

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
            x = torch.cat([x, _label_features(self, y, x.dtype)], dim=-1)
        if self.pack == 1:
            return self.net(x).squeeze(-1)
        n = len(x)
        extra = (-n) % self.pack
        if extra:
            x = torch.cat([x, x[torch.arange(extra, device=x.device) % n]])
        scores = self.net(x.reshape(len(x) // self.pack, -1)).squeeze(-1)
        return scores.repeat_interleave(self.pack)[:n]


class ProjectionCritic(nn.Module):
    r"""Conditional critic with a projection of the label (Miyato & Koyama, 2018):

    .. math:: d(x, y) = \psi(\phi(x)) + \mathrm{embed}(y)^\top \phi(x),

    with :math:`\phi` the MLP feature map (hidden layers, last activation included),
    :math:`\psi` a linear head and :math:`\mathrm{embed}` a learned ``nn.Embedding(num_classes,
    hidden[-1])`` (Glorot-uniform initialised, as in the paper's code). It is the optimal form of
    the logit when :math:`p(y \mid x)` is log-linear in :math:`\phi(x)`, and conditions the
    critic through an inner product instead of by concatenation.

    :param data_dim: number of features of one (flattened) example.
    :param num_classes: number of labels (>= 1); labels lie in ``[0, num_classes)``.
    :param hidden: hidden layer sizes (at least one); the feature size is ``hidden[-1]``.
    :param activation: ``"relu"``, ``"leaky_relu"`` or ``"tanh"``.

    Output shape ``(batch,)``; ``forward(x, y)`` needs the labels ``y`` of shape ``(batch,)``.
    """

    def __init__(
        self,
        data_dim: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 256, 256),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if data_dim < 1:
            raise ValueError(f"Expected data_dim >= 1, got {data_dim}.")
        if num_classes < 1:
            raise ValueError(
                f"A projection critic needs labels: expected num_classes >= 1, got {num_classes};"
                " use Critic for an unconditional critic."
            )
        if not hidden:
            raise ValueError("A projection critic needs at least one hidden layer: hidden=(h,).")
        self.data_dim, self.num_classes = data_dim, num_classes
        self.phi = nn.Sequential(
            MLP(data_dim, hidden[:-1], hidden[-1], activation), ACTIVATIONS[activation]()
        )
        self.psi = nn.Linear(hidden[-1], 1)
        self.embed = nn.Embedding(num_classes, hidden[-1])
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.data_dim:
            raise ValueError(
                f"Critic expects {self.data_dim} features per example, got {x.shape[1]}"
                f" (input shape {tuple(x.shape)})."
            )
        if y is None:
            raise ValueError("A projection critic is conditional: pass labels y, critic(x, y).")
        _one_hot(y, self.num_classes, x.dtype)  # validates shape and range
        h = self.phi(x)
        return self.psi(h).squeeze(-1) + (self.embed(y.long()) * h).sum(-1)


class GeneratorNet(nn.Module):
    r"""Deterministic map :math:`x = g(z, y; \theta)` used by
    :class:`pyrogen.models.gan.Generator`.

    :param latent_dim: dimension of z.
    :param data_dim: number of output features.
    :param hidden: hidden layer sizes.
    :param num_classes: if > 0, the label's features are appended to z.
    :param output: ``"identity"`` (real-valued data) or ``"sigmoid"`` (pixels in [0, 1]).
    :param activation: hidden activation.
    :param embedding_dim: 0 (default): the one-hot label is appended; k > 0: a learned
        k-dimensional label embedding (``nn.Embedding(num_classes, k)``) is appended instead.
    """

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        num_classes: int = 0,
        output: str = "identity",
        activation: str = "relu",
        embedding_dim: int = 0,
    ) -> None:
        super().__init__()
        if output not in ("identity", "sigmoid"):
            raise ValueError(f"output must be 'identity' or 'sigmoid', got {output!r}.")
        self.latent_dim, self.data_dim, self.num_classes = latent_dim, data_dim, num_classes
        self.output = output
        labels = _Labels(num_classes, embedding_dim)
        self.net = adversarial_mlp(latent_dim + labels.features, hidden, data_dim, activation)
        if embedding_dim:  # registered after net: the default network is unchanged
            self.labels = labels

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if y is None:
                raise ValueError("This generator is conditional (num_classes > 0): pass labels y.")
            z = torch.cat([z, _label_features(self, y, z.dtype)], dim=-1)
        x = self.net(z)
        return torch.sigmoid(x) if self.output == "sigmoid" else x
