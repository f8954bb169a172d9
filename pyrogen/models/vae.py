r"""The variational auto-encoder as a Pyro program (Kingma & Welling, 2014; Rezende et al., 2014).

Generative model and amortized guide:

.. math::

    p(z) = \mathcal N(0, I), \quad p(x \mid z; \theta) = \text{likelihood}(\mathrm{NN}_\theta(z)),
    \quad q(z \mid x; \varphi) = \mathcal N(\mu_\varphi(x), \sigma^2_\varphi(x) I).

Trained by maximizing :math:`\mathrm{ELBO} = \mathbb E_q[\log p(x|z)] - \mathrm{KL}(q(z|x) \|
p(z))` with any Pyro loss, e.g. ``TraceMeanField_ELBO`` (reparameterized, analytic KL).
The data plate is scaled by ``num_data / batch size``, so a mini-batch loss estimates the loss of
the whole data set.

References:
  1. Auto-Encoding Variational Bayes, D. P. Kingma, M. Welling (2014).
  2. Stochastic Backpropagation and Approximate Inference in Deep Generative Models,
     D. J. Rezende, S. Mohamed, D. Wierstra (2014).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_

from pyrogen.models.likelihoods import Bernoulli, Gaussian, Likelihood, get_likelihood
from pyrogen.nn import MLP, GaussianEncoder
from pyrogen.nn.conv import ConvDecoder, ConvEncoder

#: encoder/decoder architectures of :class:`VAE`
ARCHS = ("mlp", "conv")


def check_features(x: torch.Tensor, data_dim: int, name: str) -> None:
    """Refuse examples ``x`` whose last dimension is not ``data_dim`` (model class ``name``)."""
    if x.dim() < 1 or x.shape[-1] != data_dim:
        raise ValueError(
            f"The {name} expects examples with {data_dim} features (data_dim), got data of"
            f" shape {tuple(x.shape)}; flatten images to (N, {data_dim}) or build the"
            f" {name} with the data's feature size."
        )


def data_plate(x: torch.Tensor, num_data: int | None) -> pyro.plate:
    """The ``"data"`` plate over the rows of ``x``, scaled to a data set of ``num_data`` examples
    (``None``: the batch is the data set)."""
    size = num_data if num_data is not None else len(x)
    return pyro.plate("data", size, subsample=torch.arange(len(x), device=x.device), dim=-1)


class VAE(PyroModule):
    """A VAE with MLP (or convolutional) encoder/decoder, prior N(0, I) and a Gaussian amortized
    guide.

    :param data_dim: features per example (e.g. 64 for 8x8 digits, 784 for MNIST).
    :param latent_dim: size of z.
    :param hidden: hidden layer sizes of the encoder (the decoder mirrors them).
    :param likelihood: ``"bernoulli"`` (logits), ``"gaussian"`` (mean and log-variance) or a
        :class:`~pyrogen.models.likelihoods.Likelihood`.
    :param num_data: size of the training set, for the data plate's subsampling scale; ``None``
        means the batch is the whole data set.
    :param activation: of the hidden layers: ``"relu"``, ``"leaky_relu"`` or ``"tanh"`` (Burda et
        al. 2016 use tanh).
    :param arch: ``"mlp"`` or ``"conv"``: the :class:`~pyrogen.nn.conv.ConvEncoder` (two
        stride-2 convolutions with ``base_channels``, ``2·base_channels`` channels, then one
        fully connected layer of ``hidden[0]`` units) and the mirrored
        :class:`~pyrogen.nn.conv.ConvDecoder` (no BatchNorm), on flattened images of
        ``image_shape``. The model, guide and their sites are the same for both, so every
        estimator and :func:`pyrogen.evaluate.log_likelihood` apply unchanged.
    :param image_shape: ``(C, H, W)`` or ``(H, W)`` of one image (``arch="conv"`` only; its
        product is ``data_dim``, H and W multiples of 4), e.g. ``(8, 8)`` for digits.
    :param base_channels: channels of the encoder's first (the decoder's last hidden)
        convolution (``arch="conv"`` only).

    Its ``model(x)`` and ``guide(x)`` are ordinary Pyro programs for ``SVI`` (or
    :class:`pyrogen.train.SVIStep`); encode, decode and sample work on batches:

    >>> import pyro, torch
    >>> vae = VAE(data_dim=64, latent_dim=2, hidden=[32], num_data=1000)
    >>> svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
    ...                      pyro.infer.TraceMeanField_ELBO())
    >>> x = torch.bernoulli(torch.full((8, 64), 0.5))
    >>> loss = svi.step(x)  # -ELBO of the batch, scaled to the 1000 training examples
    >>> loc, scale = vae.encode(x)  # mean and std of q(z | x)
    >>> loc.shape, vae.decode(loc).shape, vae.sample(5).shape
    (torch.Size([8, 2]), torch.Size([8, 64]), torch.Size([5, 64]))
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 10,
        hidden: Sequence[int] = (400,),
        likelihood: str | Likelihood = "bernoulli",
        num_data: int | None = None,
        activation: str = "relu",
        arch: str = "mlp",
        image_shape: Sequence[int] | None = None,
        base_channels: int = 32,
    ) -> None:
        super().__init__()
        if data_dim < 1 or latent_dim < 1:
            raise ValueError(f"Expected data_dim, latent_dim >= 1, got {data_dim}, {latent_dim}.")
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.hidden = tuple(hidden)
        self.likelihood = get_likelihood(likelihood)
        self.num_data = num_data
        self.activation = activation
        self.arch, self.base_channels = arch, base_channels
        self.image_shape = _check_arch(arch, image_shape, data_dim, self.hidden, activation)
        if arch == "conv":
            self.encoder = ConvEncoder(image_shape, latent_dim, base_channels, self.hidden[0])
            factor = self.likelihood.params_per_feature
            self.decoder = ConvDecoder(latent_dim, image_shape, factor, base_channels)
        else:
            self.encoder = GaussianEncoder(data_dim, self.hidden, latent_dim, activation)
            out = data_dim * self.likelihood.params_per_feature
            self.decoder = MLP(latent_dim, self.hidden[::-1], out, activation)
        to_pyro_module_(self.encoder)
        to_pyro_module_(self.decoder)

    # --- the Pyro program -------------------------------------------------------------------
    def _check_shape(self, x: torch.Tensor) -> None:
        check_features(x, self.data_dim, type(self).__name__)

    def _data_plate(self, x: torch.Tensor) -> pyro.plate:
        return data_plate(x, self.num_data)

    def program_key(self) -> tuple | None:
        """The Python state :meth:`model` and :meth:`guide` read besides their argument, the
        parameters and the random generator: while it stays equal, ``SVIStep`` may replay a
        recorded graph of the program (:mod:`pyrogen.train.steps.replay`). ``None`` (not
        replayable) for a subclass that redefines the program or a likelihood that is not one
        of pyrogen's; the modules' ``training`` flags are part of the key."""
        program = ("model", "guide", "_check_shape", "_data_plate")
        if any(getattr(type(self), name) is not getattr(VAE, name) for name in program):
            return None
        if type(self.likelihood) not in (Bernoulli, Gaussian):
            return None  # a likelihood of the user's may read state we cannot see
        likelihood = (type(self.likelihood), *vars(self.likelihood).values())
        modes = tuple(m.training for m in self.modules())
        return self.data_dim, self.latent_dim, self.num_data, likelihood, modes

    def model(self, x: torch.Tensor) -> None:
        r""":math:`z \sim \mathcal N(0, I)`, :math:`x \sim p(x \mid z; \theta)` for each row."""
        self._check_shape(x)
        with self._data_plate(x):
            prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).expand([len(x), self.latent_dim])
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", self.likelihood.distribution(self.decoder(z)), obs=x)

    def guide(self, x: torch.Tensor) -> None:
        r""":math:`z \sim q(z \mid x) = \mathcal N(\mu(x), \sigma^2(x) I)`."""
        self._check_shape(x)
        with self._data_plate(x):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # --- using a trained model ----------------------------------------------------------------
    def validate(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the problem when ``x`` cannot be modelled: wrong feature
        size, NaN/inf, values outside the likelihood's support."""
        self._check_shape(x)
        self.likelihood.validate(x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z|x)."""
        self._check_shape(x)
        return self.encoder(x)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z) (pixel probabilities for Bernoulli, μ for Gaussian)."""
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: E[x | z = μ(x)]."""
        return self.decode(self.encode(x)[0])

    @torch.no_grad()
    def sample(
        self, num_samples: int, mean: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """New data from the model: z ~ N(0, I), then the mean of p(x|z) (``mean=True``) or a
        draw from it."""
        device = next(self.parameters()).device
        z = torch.randn(num_samples, self.latent_dim, generator=generator, device=device)
        if mean:
            return self.decode(z)
        return self.likelihood.distribution(self.decoder(z)).sample()

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild this model (``VAE(**vae.config())``);
        ``activation`` only when it is not the default ReLU, so earlier runs' config.json stay as
        they were."""
        config = {
            "data_dim": self.data_dim,
            "latent_dim": self.latent_dim,
            "hidden": list(self.hidden),
            "likelihood": self.likelihood.name,
            "num_data": self.num_data,
        }
        if self.activation != "relu":
            config["activation"] = self.activation
        if self.arch != "mlp":
            config.update(
                arch=self.arch, image_shape=list(self.image_shape), base_channels=self.base_channels
            )
        return config


def _check_arch(
    arch: str,
    image_shape: Sequence[int] | None,
    data_dim: int,
    hidden: tuple[int, ...],
    activation: str,
) -> tuple[int, ...] | None:
    """Refuse settings ``arch`` cannot use; the image shape of a convolutional VAE."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}.")
    if arch == "mlp":
        if image_shape is not None:
            raise ValueError("image_shape is for arch='conv'; drop it or pass arch='conv'.")
        return None
    if image_shape is None:
        raise ValueError(
            "arch='conv' needs the images' shape: pass image_shape=(H, W) or (C, H, W), e.g."
            " (8, 8) for digits or (28, 28) for MNIST."
        )
    shape = tuple(int(s) for s in image_shape)
    if math.prod(shape) != data_dim:
        raise ValueError(
            f"image_shape {shape} has {math.prod(shape)} pixels but data_dim={data_dim}; pass the"
            " shape of one (unflattened) example."
        )
    if len(hidden) != 1:
        raise ValueError(
            f"arch='conv' has one fully connected layer after the convolutions; pass one size in"
            f" hidden (e.g. hidden=(256,)), got {list(hidden)}."
        )
    if activation != "relu":
        raise ValueError(f"arch='conv' uses ReLU; drop activation={activation!r}.")
    return shape
