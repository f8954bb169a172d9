r"""The conditional VAE as a Pyro program (Sohn, Lee & Yan, 2015): a VAE whose decoder and encoder
also see the class label :math:`y`, so that it can draw examples of a requested class.

Generative model and amortized guide, with :math:`e_y` the one-hot code of :math:`y`:

.. math::

    p(z) = \mathcal N(0, I), \quad p(x \mid z, y; \theta) = \text{likelihood}(\mathrm{NN}_\theta
    ([z, e_y])), \quad q(z \mid x, y; \varphi) = \mathcal N(\mu_\varphi([x, e_y]),
    \sigma^2_\varphi([x, e_y]) I).

Trained by maximizing the conditional ELBO :math:`\mathbb E_q[\log p(x|z,y)] -
\mathrm{KL}(q(z|x,y) \| p(z))`, a lower bound on :math:`\log p(x \mid y)`, with any Pyro loss.
The prior is the simple, common variant :math:`p(z)`, independent of :math:`y` (the paper also
allows a learned prior network :math:`p_\theta(z \mid y)`); then :math:`z` only has to carry what
the label does not say (the "style"). The data plate is scaled by ``num_data / batch size``.

References:
  1. Learning Structured Output Representation using Deep Conditional Generative Models,
     K. Sohn, H. Lee, X. Yan (NeurIPS 2015).
  2. Semi-supervised Learning with Deep Generative Models, D. P. Kingma, D. J. Rezende,
     S. Mohamed, M. Welling (2014) (the M2 model's labelled term is this ELBO).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_

from pyrogen.models.likelihoods import Likelihood, get_likelihood
from pyrogen.models.vae import check_features, data_plate
from pyrogen.nn import MLP, GaussianEncoder


class CVAE(PyroModule):
    """A conditional VAE with MLP encoder/decoder (ReLU), prior N(0, I) and a Gaussian guide
    q(z | x, y); labels ``y`` are integer class indices, one-hot encoded inside.

    :param data_dim: features per example (e.g. 64 for 8x8 digits, 784 for MNIST).
    :param num_classes: number of classes; labels are integers in ``[0, num_classes)``.
    :param latent_dim: size of z.
    :param hidden: hidden layer sizes of the encoder (the decoder mirrors them).
    :param likelihood: ``"bernoulli"`` (logits), ``"gaussian"`` (mean and log-variance) or a
        :class:`~pyrogen.models.likelihoods.Likelihood`.
    :param num_data: size of the training set, for the data plate's subsampling scale; ``None``
        means the batch is the whole data set.

    Example::

        data = load_dataset("digits", binarize="dynamic")
        cvae = CVAE(data.dim, num_classes=10, num_data=len(data.train_x))
        step = SVIStep(cvae.model, cvae.guide, pyro.infer.TraceMeanField_ELBO(), lr=1e-2)
        Trainer(step, steps=500, transform=data.train_transform).fit(data.train_x, data.train_y)
        sevens = cvae.sample(16, y=7)  # 16 images of the digit 7
    """

    def __init__(
        self,
        data_dim: int,
        num_classes: int,
        latent_dim: int = 10,
        hidden: Sequence[int] = (400,),
        likelihood: str | Likelihood = "bernoulli",
        num_data: int | None = None,
    ) -> None:
        super().__init__()
        if data_dim < 1 or latent_dim < 1:
            raise ValueError(f"Expected data_dim, latent_dim >= 1, got {data_dim}, {latent_dim}.")
        if num_classes < 1:
            raise ValueError(f"Expected num_classes >= 1, got {num_classes}.")
        self.data_dim, self.num_classes, self.latent_dim = data_dim, num_classes, latent_dim
        self.hidden = tuple(hidden)
        self.likelihood = get_likelihood(likelihood)
        self.num_data = num_data
        self.encoder = GaussianEncoder(data_dim + num_classes, self.hidden, latent_dim)
        out = data_dim * self.likelihood.params_per_feature
        self.decoder = MLP(latent_dim + num_classes, self.hidden[::-1], out)
        to_pyro_module_(self.encoder)
        to_pyro_module_(self.decoder)

    # --- checks and one-hot codes ---------------------------------------------------------------
    def _check_shape(self, x: torch.Tensor) -> None:
        check_features(x, self.data_dim, "CVAE")

    def _check_labels(self, y: torch.Tensor, num: int | None = None) -> None:
        """``y`` must be a 1-D integer tensor of class indices in ``[0, num_classes)``, with
        ``num`` entries (the examples' count) when given."""
        if not isinstance(y, torch.Tensor):
            raise ValueError(
                f"The CVAE expects labels as a tensor of class indices, got {type(y).__name__};"
                " pass torch.as_tensor(labels)."
            )
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            hint = " (one-hot labels: pass y.argmax(-1))" if y.dim() == 2 else ""
            raise ValueError(
                f"The CVAE expects integer class labels, got dtype {y.dtype}; convert them with"
                f" y.long(){hint}."
            )
        if y.dim() != 1:
            hint = "; for one-hot labels pass y.argmax(-1)" if y.dim() == 2 else ""
            raise ValueError(
                f"The CVAE expects a 1-D tensor of labels, one per example, got shape"
                f" {tuple(y.shape)}{hint}."
            )
        if num is not None and len(y) != num:
            raise ValueError(
                f"Got {num} examples but {len(y)} labels; give one label per example (row of x)."
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"Labels must lie in [0, {self.num_classes}) (num_classes={self.num_classes}), got"
                f" values in [{int(y.min())}, {int(y.max())}]; relabel the classes 0..K-1 or"
                " build the CVAE with more classes."
            )

    def _one_hot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """One-hot codes of ``y`` broadcast to ``like``'s batch shape (e.g. vectorized
        particles on the left)."""
        code = F.one_hot(y.long(), self.num_classes).to(like.dtype)
        return code.expand(*like.shape[:-1], self.num_classes)

    def _data_plate(self, x: torch.Tensor) -> pyro.plate:
        return data_plate(x, self.num_data)

    # --- the Pyro program -------------------------------------------------------------------
    def model(self, x: torch.Tensor, y: torch.Tensor) -> None:
        r""":math:`z \sim \mathcal N(0, I)`, :math:`x \sim p(x \mid z, y; \theta)` for each row."""
        self._check_shape(x)
        self._check_labels(y, len(x))
        with self._data_plate(x):
            prior = dist.Normal(x.new_zeros(self.latent_dim), 1.0).expand([len(x), self.latent_dim])
            z = pyro.sample("z", prior.to_event(1))
            output = self.decoder(torch.cat([z, self._one_hot(y, z)], -1))
            pyro.sample("x", self.likelihood.distribution(output), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor) -> None:
        r""":math:`z \sim q(z \mid x, y) = \mathcal N(\mu([x, e_y]), \sigma^2([x, e_y]) I)`."""
        self._check_shape(x)
        self._check_labels(y, len(x))
        with self._data_plate(x):
            loc, scale = self.encoder(torch.cat([x, self._one_hot(y, x)], -1))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # --- using a trained model ----------------------------------------------------------------
    def validate(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Raise a ``ValueError`` naming the problem when ``(x, y)`` cannot be modelled: wrong
        feature size, NaN/inf, values outside the likelihood's support, bad labels."""
        self._check_shape(x)
        self._check_labels(y, len(x))
        self.likelihood.validate(x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of q(z|x, y)."""
        self._check_shape(x)
        self._check_labels(y, len(x))
        return self.encoder(torch.cat([x, self._one_hot(y, x)], -1))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z, y) (pixel probabilities for Bernoulli, μ for Gaussian)."""
        self._check_labels(y, z.shape[-2] if z.dim() >= 2 else None)
        return self.likelihood.mean(self.decoder(torch.cat([z, self._one_hot(y, z)], -1)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: E[x | z = μ(x, y), y]."""
        return self.decode(self.encode(x, y)[0], y)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int | None = None,
        y: int | torch.Tensor | None = None,
        mean: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """New data of requested classes: z ~ N(0, I), then the mean of p(x|z, y)
        (``mean=True``) or a draw from it.

        ``sample(y=labels)``: one example per entry of ``labels``. ``sample(n, y=labels)``: ``n``
        per entry, grouped by entry (``len(labels) * n`` rows: ``n`` of ``labels[0]`` first).
        ``sample(n, y=c)`` with an int: ``n`` examples of class ``c``.
        """
        if y is None:
            raise ValueError(
                "A CVAE draws examples of given classes: pass the labels, e.g."
                " cvae.sample(y=torch.arange(10)) or cvae.sample(16, y=3)."
            )
        if num_samples is not None and num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        device = next(self.parameters()).device
        y = torch.as_tensor(y, device=device)
        if y.dim() == 0 and not (y.dtype.is_floating_point or y.dtype == torch.bool):
            y = y.expand(1 if num_samples is None else num_samples)
        elif num_samples is not None:
            y = y.repeat_interleave(num_samples) if y.dim() == 1 else y
        self._check_labels(y)
        z = torch.randn(len(y), self.latent_dim, generator=generator, device=device)
        if mean:
            return self.decode(z, y)
        output = self.decoder(torch.cat([z, self._one_hot(y, z)], -1))
        return self.likelihood.distribution(output).sample()

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild this model (``CVAE(**cvae.config())``)."""
        return {
            "data_dim": self.data_dim,
            "num_classes": self.num_classes,
            "latent_dim": self.latent_dim,
            "hidden": list(self.hidden),
            "likelihood": self.likelihood.name,
            "num_data": self.num_data,
        }
