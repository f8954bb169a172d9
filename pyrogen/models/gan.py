r"""An implicit generative model as a Pyro program: :math:`z \sim p(z)`, :math:`x = g(z; \theta)`.

.. math:: \mathbf{x} \sim p(\mathbf{x};\theta) \Leftrightarrow
          \mathbf{z} \sim \mathcal{N}(0, I),\ \mathbf{x} = g(\mathbf{z};\theta).

``Generator.model(n, y=None)`` draws ``z`` at the sample site ``"z"`` (inside a ``"data"`` plate
of size ``n``) and records ``x = g(z, y)`` at a deterministic site (default ``"x"``): its density
is never needed, which is what makes the model *implicit*. The adversarial losses of
:mod:`pyrogen.infer.adversarial` read that site from ``poutine.trace(gen.model)``::

    gen = Generator(latent_dim=2, data_dim=2)
    trace = poutine.trace(gen.model).get_trace(128)
    trace.nodes["x"]["value"].shape  # (128, 2)

Because x comes from a Pyro program, the usual effect handlers apply: ``poutine.condition`` on
``"z"`` fixes the latent code (interpolation), ``poutine.replay`` against a guide trace decodes
an encoder's codes (VAE-GAN, adversarial autoencoders).

References:
  1. Generative Adversarial Nets, I. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu,
     D. Warde-Farley, S. Ozair, A. Courville, Y. Bengio (2014).
  2. Conditional Generative Adversarial Nets, M. Mirza, S. Osindero (2014).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyrogen.nn.adversarial import GeneratorNet


def _net_data_dim(net: nn.Module, latent_dim: int, data_dim: int | None, num_classes: int) -> int:
    """``net.data_dim``, checked against the Generator's arguments."""
    given = getattr(net, "data_dim", None)
    if not isinstance(given, int):
        raise ValueError(
            f"net ({type(net).__name__}) needs an int attribute data_dim, the features of one"
            " generated (flattened) example."
        )
    if data_dim is not None and data_dim != given:
        raise ValueError(f"data_dim={data_dim} disagrees with net.data_dim={given}; drop one.")
    for name, value in (("latent_dim", latent_dim), ("num_classes", num_classes)):
        if getattr(net, name, value) != value:
            raise ValueError(
                f"{name}={value} disagrees with the network's {name}={getattr(net, name)}."
            )
    return given


class Generator(PyroModule):
    r"""Implicit model :math:`x = g(z, y;\theta)`, :math:`z \sim \mathcal{N}(0, I_{latent})`.

    :param latent_dim: dimension of z (> 0).
    :param data_dim: number of features of one generated (flattened) example (> 0).
    :param hidden: hidden layer sizes of the MLP g.
    :param num_classes: if > 0, a conditional generator ``model(n, y)`` with labels in
        ``[0, num_classes)``.
    :param output: ``"identity"`` (real data, e.g. 2-D toy points) or ``"sigmoid"`` (pixels).
    :param site: name of the deterministic site holding x.
    :param activation: hidden activation of g.
    :param embedding_dim: label features of a conditional generator: 0 (default) the one-hot
        label, k > 0 a learned k-dimensional embedding (see :class:`~pyrogen.nn.GeneratorNet`).
    :param net: a network ``net(z, y) -> x`` to use instead of the MLP (e.g.
        :class:`~pyrogen.nn.conv.ConvGeneratorNet`); it must have a ``data_dim`` attribute (then
        ``data_dim`` may be omitted) and take conditional labels itself, so ``hidden``,
        ``output``, ``activation`` and ``embedding_dim`` are ignored.
    """

    def __init__(
        self,
        latent_dim: int,
        data_dim: int | None = None,
        hidden: Sequence[int] = (256, 256, 256),
        num_classes: int = 0,
        output: str = "identity",
        site: str = "x",
        activation: str = "relu",
        embedding_dim: int = 0,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"Expected latent_dim >= 1, got {latent_dim}.")
        if net is not None:
            data_dim = _net_data_dim(net, latent_dim, data_dim, num_classes)
        elif data_dim is None:
            raise ValueError("Pass data_dim (features of one example) or a network net=.")
        if data_dim < 1:
            raise ValueError(f"Expected data_dim >= 1, got {data_dim}.")
        if not site or site == "z":
            raise ValueError(f"site must be a non-empty name other than 'z', got {site!r}.")
        self.latent_dim, self.data_dim, self.num_classes, self.site = (
            latent_dim,
            data_dim,
            num_classes,
            site,
        )
        if net is None:
            net = GeneratorNet(
                latent_dim, data_dim, hidden, num_classes, output, activation, embedding_dim
            )
        self.net = net
        to_pyro_module_(self.net)  # PyroModules all the way down: Pyro's SVI sees every weight
        self.register_buffer("_zero", torch.zeros(()), persistent=False)

    def model(self, n: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` examples: ``z ~ N(0, I)`` at site ``"z"``, ``x = g(z, y)`` at
        ``self.site``."""
        n = int(n)
        if n < 1:
            raise ValueError(f"Expected a number of samples n >= 1, got {n}.")
        if y is not None and (y.dim() != 1 or len(y) != n):
            raise ValueError(f"Labels y must have shape ({n},), got {tuple(y.shape)}.")
        loc = self._zero.expand(self.latent_dim)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
            x = self.net(z, y)
            return pyro.deterministic(self.site, x, event_dim=1)

    def forward(self, n: int, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(n, y)

    @torch.no_grad()
    def sample(
        self, n: int, y: torch.Tensor | None = None, batch_size: int = 10_000
    ) -> torch.Tensor:
        """``n`` generated examples, shape ``(n, data_dim)``, without gradients, in chunks."""
        chunks = []
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            labels = None if y is None else y[start : start + m]
            trace = poutine.trace(self.model).get_trace(m, labels)
            chunks.append(trace.nodes[self.site]["value"])
        return torch.cat(chunks)
