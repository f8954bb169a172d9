r"""Convolutional networks for images: a DCGAN generator and critic [1], a convolutional
Gaussian encoder and decoder for VAEs.

All of them take and return *flattened* images, shape ``(..., C·H·W)``, so they are drop-ins for
the MLP networks (:class:`~pyrogen.nn.GeneratorNet`, :class:`~pyrogen.nn.Critic`,
:class:`~pyrogen.nn.GaussianEncoder`, :class:`~pyrogen.nn.MLP` decoders) on the same data.

Every resolution change is a stride-2 convolution with a 4×4 kernel and padding 1, which halves
(``Conv2d``) or doubles (``ConvTranspose2d``) the height and width exactly. With ``stages``
such layers the image height and width must be divisible by :math:`2^{stages}`; the smallest
feature map is :math:`(H / 2^{stages}) \times (W / 2^{stages})` — 7×7 for 28×28 MNIST and 2×2 for
8×8 digits with the default ``stages=2``.

* :class:`ConvGeneratorNet` (DCGAN generator): ``Linear(z ⊕ label) → BN → ReLU`` to a
  ``(base·2^{stages-1}, H/2^{stages}, W/2^{stages})`` map, then ``stages − 1`` blocks
  ``ConvTranspose2d → BatchNorm2d → ReLU`` halving the channels, and a last ``ConvTranspose2d``
  to ``C`` channels (no BatchNorm), followed by a sigmoid (pixels in [0, 1]) or nothing.
* :class:`ConvCritic` (DCGAN discriminator): ``stages`` blocks ``Conv2d → LeakyReLU(0.2)``
  doubling the channels from ``base``, then ``Linear → 1``. No BatchNorm, so the score of one
  example does not depend on the rest of the batch, as the gradient penalty of WGAN-GP [2]
  requires. With ``spectral_norm=True`` every ``Conv2d`` and ``Linear`` weight is divided by its
  largest singular value [3] (``torch.nn.utils.parametrizations.spectral_norm``).
* :class:`ConvEncoder` / :class:`ConvDecoder`: the same stacks without BatchNorm (so that a
  VAE's likelihood of one example does not depend on the batch) with ReLU, heads giving
  :math:`(\mu, \sigma)` resp. the likelihood's parameters (logits, or mean and log-variance).

Labels (``num_classes > 0``): the generator appends the one-hot label to z (as
:class:`~pyrogen.nn.GeneratorNet`); the critic appends ``num_classes`` constant feature maps
holding the one-hot label to the image channels [4] (the conditional DCGAN practice), so the first
convolution sees the label at every position.

References:
  1. Unsupervised Representation Learning with Deep Convolutional Generative Adversarial
     Networks, A. Radford, L. Metz, S. Chintala (2016).
  2. Improved Training of Wasserstein GANs, I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin,
     A. Courville (2017).
  3. Spectral Normalization for Generative Adversarial Networks, T. Miyato, T. Kataoka,
     M. Koyama, Y. Yoshida (2018).
  4. Conditional Generative Adversarial Nets, M. Mirza, S. Osindero (2014).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from pyrogen.nn.adversarial import _one_hot


def _image_shape(image_shape: Sequence[int], stages: int) -> tuple[int, int, int]:
    """Validate ``(C, H, W)`` (or ``(H, W)``, one channel) against ``stages`` stride-2 layers."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            "image_shape must be (C, H, W) or (H, W) with positive sizes, got"
            f" {tuple(image_shape)}."
        )
    if stages < 1:
        raise ValueError(f"Expected stages >= 1 (stride-2 layers), got {stages}.")
    c, h, w = shape
    factor = 2**stages
    if h % factor or w % factor:
        examples = ", ".join(str(factor * k) for k in (1, 2, 3, 4, 7, 8))
        fix = (
            f"use stages={_max_stages(h, w)} for {h}×{w} images, or resize/pad them"
            if _max_stages(h, w)
            else "resize or pad them to even sizes"
        )
        raise ValueError(
            f"Image size {h}×{w} does not work with stages={stages} stride-2 layers: height and"
            f" width must be multiples of 2**stages = {factor} (e.g. {examples}); {fix}."
        )
    return c, h, w


def _max_stages(h: int, w: int) -> int:
    n = 0
    while h % 2 == 0 and w % 2 == 0:
        h, w, n = h // 2, w // 2, n + 1
    return n


def _flat_images(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(..., C·H·W)`` → ``(N, C, H, W)`` with a shape check naming the expected size."""
    c, h, w = net.image_shape
    if x.dim() < 1 or x.shape[-1] != c * h * w:
        raise ValueError(
            f"{type(net).__name__} expects flattened images with {c * h * w} = {c}·{h}·{w}"
            f" features in the last dimension, got input shape {tuple(x.shape)}."
        )
    return x.reshape(-1, c, h, w)


def _down_stack(
    in_channels: int, base: int, stages: int, act: Callable[[], nn.Module]
) -> list[nn.Module]:
    """``stages`` × (Conv2d 4×4 stride 2 → activation), channels base, 2·base, 4·base, …"""
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(stages):
        out = base * 2**i
        layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), act()]
        channels = out
    return layers


def _up_stack(channels: int, out_channels: int, stages: int, batch_norm: bool) -> list[nn.Module]:
    """``stages − 1`` × (ConvTranspose2d 4×4 stride 2 → [BN] → ReLU) halving the channels, then
    a last ConvTranspose2d to ``out_channels``."""
    layers: list[nn.Module] = []
    for _ in range(stages - 1):
        layers.append(nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(channels // 2))
        layers.append(nn.ReLU())
        channels //= 2
    layers.append(nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1))
    return layers


class _Unflatten(nn.Module):
    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), *self.shape)


def _check_sizes(base_channels: int, latent_dim: int | None = None) -> None:
    if base_channels < 1:
        raise ValueError(f"Expected base_channels >= 1, got {base_channels}.")
    if latent_dim is not None and latent_dim < 1:
        raise ValueError(f"Expected latent_dim >= 1, got {latent_dim}.")


class ConvGeneratorNet(nn.Module):
    r"""DCGAN generator :math:`x = g(z, y;\theta)` (Radford et al., 2016), a drop-in for
    :class:`~pyrogen.nn.GeneratorNet` in :class:`pyrogen.models.gan.Generator`.

    ``Linear(z ⊕ onehot(y)) → BatchNorm2d → ReLU`` to ``base·2^{stages−1}`` maps of size
    ``(H/2^{stages}) × (W/2^{stages})``; ``stages − 1`` × ``ConvTranspose2d(4, stride 2) →
    BatchNorm2d → ReLU`` halving the channels; ``ConvTranspose2d`` to ``C`` channels; the output
    nonlinearity. Returns flattened images ``(batch, C·H·W)``.

    :param latent_dim: dimension of z.
    :param image_shape: ``(C, H, W)`` (or ``(H, W)`` for one channel); H and W multiples of
        ``2**stages``.
    :param base_channels: channels of the last hidden map (the first has ``base·2^{stages−1}``).
    :param num_classes: if > 0, the one-hot label is appended to z (``forward(z, y)``).
    :param output: ``"sigmoid"`` (pixels in [0, 1]) or ``"identity"``.
    :param stages: number of upsampling (stride-2) layers.
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        base_channels: int = 64,
        num_classes: int = 0,
        output: str = "sigmoid",
        stages: int = 2,
    ) -> None:
        super().__init__()
        if output not in ("identity", "sigmoid"):
            raise ValueError(f"output must be 'identity' or 'sigmoid', got {output!r}.")
        if num_classes < 0:
            raise ValueError(f"Expected num_classes >= 0, got {num_classes}.")
        _check_sizes(base_channels, latent_dim)
        self.image_shape = c, h, w = _image_shape(image_shape, stages)
        self.latent_dim, self.num_classes, self.output = latent_dim, num_classes, output
        self.data_dim = c * h * w
        first = (base_channels * 2 ** (stages - 1), h // 2**stages, w // 2**stages)
        self.net = nn.Sequential(
            nn.Linear(latent_dim + num_classes, first[0] * first[1] * first[2]),
            _Unflatten(first),
            nn.BatchNorm2d(first[0]),
            nn.ReLU(),
            *_up_stack(first[0], c, stages, batch_norm=True),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Expected z with latent_dim={self.latent_dim} features in the last dimension, got"
                f" shape {tuple(z.shape)}."
            )
        batch = z.shape[:-1]
        z = z.reshape(-1, self.latent_dim)
        if self.num_classes:
            if y is None:
                raise ValueError("This generator is conditional (num_classes > 0): pass labels y.")
            z = torch.cat([z, _one_hot(y.reshape(-1), self.num_classes, z.dtype)], dim=-1)
        x = self.net(z).reshape(*batch, self.data_dim)
        return torch.sigmoid(x) if self.output == "sigmoid" else x


class ConvCritic(nn.Module):
    r"""DCGAN critic / discriminator :math:`d(x;\phi) \in \mathbb{R}` on flattened images, output
    shape ``(batch,)`` (a drop-in for :class:`~pyrogen.nn.Critic`).

    ``stages`` × ``Conv2d(4, stride 2) → LeakyReLU(0.2)`` with ``base, 2·base, …`` channels, then
    ``Linear → 1``. No BatchNorm (WGAN-GP's per-example gradient penalty stays valid).

    :param image_shape: ``(C, H, W)`` or ``(H, W)``; H and W multiples of ``2**stages``.
    :param base_channels: channels of the first convolution.
    :param num_classes: if > 0, a conditional critic ``d(x, y)``: ``num_classes`` constant
        one-hot label maps are appended to the image channels.
    :param spectral_norm: divide every ``Conv2d``/``Linear`` weight by its spectral norm
        (Miyato et al., 2018), estimated by one power iteration per training forward pass. The
        matrix normalised is the ``(out, in·4·4)`` reshaped kernel; a 4×4 stride-2 convolution
        then has operator norm at most 2 (each input pixel lies in at most 2×2 patches), so the
        critic is at most :math:`2^{stages}`-Lipschitz in x (LeakyReLU is 1-Lipschitz).
    :param stages: number of downsampling (stride-2) layers.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        base_channels: int = 64,
        num_classes: int = 0,
        spectral_norm: bool = False,
        stages: int = 2,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"Expected num_classes >= 0, got {num_classes}.")
        _check_sizes(base_channels)
        self.image_shape = c, h, w = _image_shape(image_shape, stages)
        self.num_classes, self.data_dim = num_classes, c * h * w
        last = base_channels * 2 ** (stages - 1) * (h // 2**stages) * (w // 2**stages)
        layers = [
            *_down_stack(c + num_classes, base_channels, stages, lambda: nn.LeakyReLU(0.2)),
            nn.Flatten(),
            nn.Linear(last, 1),
        ]
        if spectral_norm:
            layers = [
                _spectral_norm(m) if isinstance(m, (nn.Conv2d, nn.Linear)) else m for m in layers
            ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        batch = x.shape[:-1]
        images = _flat_images(self, x)
        if self.num_classes:
            if y is None:
                raise ValueError("This critic is conditional (num_classes > 0): pass labels y.")
            labels = _one_hot(y.reshape(-1), self.num_classes, images.dtype)
            maps = labels[:, :, None, None].expand(-1, -1, *images.shape[2:])
            images = torch.cat([images, maps], dim=1)
        return self.net(images).reshape(batch)


class ConvEncoder(nn.Module):
    r"""Convolutional inference network of a Gaussian guide, a drop-in for
    :class:`~pyrogen.nn.GaussianEncoder`: :math:`\mu, \log\sigma^2 = \mathrm{NN}_\varphi(x)`,
    returns :math:`(\mu, \sigma)`, each of shape ``(..., latent_dim)``.

    ``stages`` × ``Conv2d(4, stride 2) → ReLU`` (channels ``base, 2·base, …``), ``Linear →
    hidden → ReLU → Linear → 2·latent_dim``. No BatchNorm.

    :param image_shape: ``(C, H, W)`` or ``(H, W)``; H and W multiples of ``2**stages``.
    :param latent_dim: dimension of z.
    :param base_channels: channels of the first convolution.
    :param hidden: width of the fully connected layer after the convolutions.
    :param stages: number of downsampling (stride-2) layers.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int,
        base_channels: int = 32,
        hidden: int = 256,
        stages: int = 2,
    ) -> None:
        super().__init__()
        _check_sizes(base_channels, latent_dim)
        if hidden < 1:
            raise ValueError(f"Expected hidden >= 1, got {hidden}.")
        self.image_shape = c, h, w = _image_shape(image_shape, stages)
        self.latent_dim = latent_dim
        last = base_channels * 2 ** (stages - 1) * (h // 2**stages) * (w // 2**stages)
        self.net = nn.Sequential(
            *_down_stack(c, base_channels, stages, nn.ReLU),
            nn.Flatten(),
            nn.Linear(last, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[:-1]
        out = self.net(_flat_images(self, x)).reshape(*batch, 2 * self.latent_dim)
        loc, log_var = out.split(self.latent_dim, dim=-1)
        return loc, torch.exp(0.5 * log_var)


class ConvDecoder(nn.Module):
    r"""Convolutional decoder :math:`z \mapsto` likelihood parameters, a drop-in for the VAE's
    MLP decoder: returns ``(..., out_channels_factor·C·H·W)`` unconstrained outputs (Bernoulli
    logits for ``out_channels_factor=1``; for 2, the first ``C·H·W`` are the means and the last
    the raw scales, as :meth:`torch.Tensor.chunk` ``(2, -1)`` expects).

    ``Linear(z) → ReLU`` to ``base·2^{stages−1}`` maps of size ``(H/2^{stages}) × (W/2^{stages})``,
    ``stages − 1`` × ``ConvTranspose2d(4, stride 2) → ReLU``, ``ConvTranspose2d`` to
    ``out_channels_factor·C`` channels. No BatchNorm.

    :param latent_dim: dimension of z.
    :param image_shape: ``(C, H, W)`` or ``(H, W)``; H and W multiples of ``2**stages``.
    :param out_channels_factor: likelihood parameters per pixel (1 or 2).
    :param base_channels: channels of the last hidden map.
    :param stages: number of upsampling (stride-2) layers.
    """

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        out_channels_factor: int = 1,
        base_channels: int = 32,
        stages: int = 2,
    ) -> None:
        super().__init__()
        if out_channels_factor not in (1, 2):
            raise ValueError(
                "out_channels_factor must be 1 (e.g. Bernoulli logits) or 2 (Gaussian mean and"
                f" scale), got {out_channels_factor}."
            )
        _check_sizes(base_channels, latent_dim)
        self.image_shape = c, h, w = _image_shape(image_shape, stages)
        self.latent_dim, self.factor = latent_dim, out_channels_factor
        first = (base_channels * 2 ** (stages - 1), h // 2**stages, w // 2**stages)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, first[0] * first[1] * first[2]),
            nn.ReLU(),
            _Unflatten(first),
            *_up_stack(first[0], c * out_channels_factor, stages, batch_norm=False),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Expected z with latent_dim={self.latent_dim} features in the last dimension, got"
                f" shape {tuple(z.shape)}."
            )
        batch = z.shape[:-1]
        out = self.net(z.reshape(-1, self.latent_dim))  # (N, factor·C, H, W)
        return out.reshape(*batch, -1)  # channel-major: [factor 0 image | factor 1 image]
