r"""Toy mixtures with known modes: the 2-D benchmarks of mode collapse and 1-D lecture examples.

* ``"ring8"``: 8 Gaussians on the unit circle at angles :math:`2\pi i / 8`, :math:`i = 0..7`,
  :math:`\sigma = 0.01` (VEEGAN [1], PacGAN [2]). Note that ``linspace(0, 2π, 8)`` would give only
  7 distinct modes (its first and last angles coincide).
* ``"grid25"``: 25 Gaussians on the grid :math:`\{-4, -2, 0, 2, 4\}^2`, :math:`\sigma = 0.05`.
* ``"mix1d"``: a 1-D mixture of 3 Gaussians at :math:`\{-4, 0, 4\}`, :math:`\sigma = 0.25`.
* ``"lecture-p"`` / ``"lecture-q"``: the lecture's Wasserstein-1 example,
  :math:`p = \tfrac14 U[1,2] + \tfrac14 U[3,4] + \tfrac12 U[9,10]` and :math:`q = U[5,7]`,
  with :math:`W_1(p, q) = 3`.

The mode centres and σ are module constants, returned by :func:`toy_modes` and carried by the
loaded :class:`ToyDataset` (``.centers``, ``.sigma``, ``.weights``)::

    data = load_dataset("ring8")
    mode_coverage(samples, data.centers, data.sigma)

References:
  1. VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational Learning,
     A. Srivastava, L. Valkov, C. Russell, M. Gutmann, C. Sutton (2017).
  2. PacGAN: The power of two samples in generative adversarial networks,
     Z. Lin, A. Khetan, G. Fanti, S. Oh (2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrogen.data.dataset import Dataset

#: Mode centres of "ring8": angles 2πi/8, i = 0..7 (8 distinct points).
RING8_CENTERS = torch.tensor(
    [[math.cos(2 * math.pi * i / 8), math.sin(2 * math.pi * i / 8)] for i in range(8)]
)
RING8_SIGMA = 0.01

#: Mode centres of "grid25": {-4, -2, 0, 2, 4}².
GRID25_CENTERS = torch.tensor(
    [[float(a), float(b)] for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)]
)
GRID25_SIGMA = 0.05

#: Mode centres of "mix1d".
MIX1D_CENTERS = torch.tensor([[-4.0], [0.0], [4.0]])
MIX1D_SIGMA = 0.25

#: The lecture's W1 example: p = ¼U[1,2] + ¼U[3,4] + ½U[9,10], q = U[5,7]; W1(p, q) = 3.
LECTURE_P = ((0.25, 1.0, 2.0), (0.25, 3.0, 4.0), (0.5, 9.0, 10.0))  # (weight, low, high)
LECTURE_Q = ((1.0, 5.0, 7.0),)
LECTURE_W1 = 3.0

_GAUSSIAN = {
    "ring8": (RING8_CENTERS, RING8_SIGMA),
    "grid25": (GRID25_CENTERS, GRID25_SIGMA),
    "mix1d": (MIX1D_CENTERS, MIX1D_SIGMA),
}
_UNIFORM = {"lecture-p": LECTURE_P, "lecture-q": LECTURE_Q}

#: Names of the toy data sets (all registered with :func:`pyrogen.data.register_dataset`).
TOY_DATASETS = tuple(_GAUSSIAN) + tuple(_UNIFORM)

#: Sizes of the fixed train / test draws and the seed they are drawn with.
NUM_TRAIN, NUM_TEST, TOY_SEED = 50_000, 10_000, 0


@dataclass(frozen=True)
class ToyDataset(Dataset):
    """A :class:`~pyrogen.data.Dataset` of points from a known mixture.

    :ivar centers: mode centres, shape ``(num_modes, dim)`` (for uniform mixtures, the centres of
        the intervals).
    :ivar sigma: standard deviation of every Gaussian component (0 for uniform mixtures).
    :ivar weights: mixture weights, shape ``(num_modes,)``.
    """

    centers: torch.Tensor | None = None
    sigma: float = 0.0
    weights: torch.Tensor | None = None


def toy_modes(name: str) -> tuple[torch.Tensor, float]:
    """Mode centres ``(num_modes, dim)`` and σ of a Gaussian toy mixture ("ring8", "grid25",
    "mix1d")."""
    if name not in _GAUSSIAN:
        raise ValueError(
            f"Unknown Gaussian toy mixture {name!r}; expected one of {sorted(_GAUSSIAN)}."
        )
    centers, sigma = _GAUSSIAN[name]
    return centers.clone(), sigma


def sample_gaussian_mixture(
    centers: torch.Tensor,
    sigma: float,
    n: int,
    generator: torch.Generator | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``n`` points :math:`x = \mu_k + \sigma \varepsilon`, :math:`k \sim \mathrm{Cat}(w)`
    (uniform by default), :math:`\varepsilon \sim \mathcal{N}(0, I)`."""
    if sigma < 0:
        raise ValueError(f"Expected sigma >= 0, got {sigma}.")
    centers = torch.as_tensor(centers, dtype=torch.float32)
    probs = torch.full((len(centers),), 1.0 / len(centers)) if weights is None else weights
    k = torch.multinomial(probs, n, replacement=True, generator=generator)
    noise = torch.randn(n, centers.shape[1], generator=generator)
    return centers[k] + sigma * noise


def sample_uniform_mixture(
    components: tuple[tuple[float, float, float], ...],
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` points, shape ``(n, 1)``, of a mixture of uniforms given as ``(weight, low, high)``."""
    weights = torch.tensor([w for w, _, _ in components])
    low = torch.tensor([a for _, a, _ in components])
    high = torch.tensor([b for _, _, b in components])
    k = torch.multinomial(weights, n, replacement=True, generator=generator)
    u = torch.rand(n, generator=generator)
    return (low[k] + u * (high[k] - low[k])).unsqueeze(-1)


def uniform_mixture_quantiles(
    components: tuple[tuple[float, float, float], ...], n: int
) -> torch.Tensor:
    """Quantiles at the mid-points ``(i + 1/2) / n`` of a mixture of non-overlapping uniforms,
    sorted by position; shape ``(n, 1)``. A deterministic "sample" whose 1-D W1 is exact when
    ``n`` is a multiple of the inverse of every weight."""
    parts = sorted(components, key=lambda c: c[1])
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    out = torch.empty(n, dtype=torch.float64)
    start = 0.0
    for w, a, b in parts:
        inside = (u >= start) & (u < start + w + 1e-12)
        out[inside] = a + (u[inside] - start) / w * (b - a)
        start += w
    return out.unsqueeze(-1)


def load_toy(name: str, num_train: int = NUM_TRAIN, num_test: int = NUM_TEST) -> ToyDataset:
    """Draw the fixed train/test sets of a toy mixture (seed :data:`TOY_SEED`)."""
    generator = torch.Generator().manual_seed(TOY_SEED)
    if name in _GAUSSIAN:
        centers, sigma = toy_modes(name)
        weights = torch.full((len(centers),), 1.0 / len(centers))
        train = sample_gaussian_mixture(centers, sigma, num_train, generator)
        test = sample_gaussian_mixture(centers, sigma, num_test, generator)
    elif name in _UNIFORM:
        comps = _UNIFORM[name]
        centers = torch.tensor([[(a + b) / 2] for _, a, b in comps])
        weights, sigma = torch.tensor([w for w, _, _ in comps]), 0.0
        train = sample_uniform_mixture(comps, num_train, generator)
        test = sample_uniform_mixture(comps, num_test, generator)
    else:
        raise ValueError(f"Unknown toy data set {name!r}; expected one of {list(TOY_DATASETS)}.")
    return ToyDataset(
        name,
        train,
        None,
        test,
        None,
        shape=(train.shape[1],),
        centers=centers,
        sigma=sigma,
        weights=weights,
    )
