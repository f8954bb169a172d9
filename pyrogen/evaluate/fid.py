r"""Sample quality of images without downloads: Fréchet distance in the features of a small
classifier trained on the same data set ("FCD").

The Fréchet Inception Distance [1] compares Gaussians fitted to network features of real and
generated images,

.. math:: \mathrm{FD} = \|\mu_r - \mu_g\|_2^2 + \mathrm{tr}\big(\Sigma_r + \Sigma_g
          - 2 (\Sigma_r^{1/2} \Sigma_g \Sigma_r^{1/2})^{1/2}\big),

which is the squared 2-Wasserstein distance between the two Gaussians. Inception weights would
have to be downloaded and were trained on ImageNet photographs, not 8×8 digits; instead we train
a small MLP classifier on the data set's own labelled training split (as in the "FID with a
domain classifier" practice for MNIST-like data, e.g. [2]) and use its last hidden layer
(:data:`FEATURE_DIM` units). Scores are comparable only between runs using the same classifier
(same data set, seed and settings); lower is better; real held-out images score near 0.

Reading a score: the estimate is biased upwards by roughly the features' variance over the sample
sizes, so compare it with what real images of the same counts score (``pyrogen gan`` reports the
FCD between the two halves of the test set as a floor). The pixel-MLP features are sensitive to
exact stroke positions: on Fashion-MNIST, real images score 4× the test-halves floor with pixel
noise of σ = 0.05, 12× blurred by a 3×3 kernel and 30× shifted by one pixel
(``benchmarks/fcd_scale.py``).

Example::

    data = load_dataset("digits")
    clf = train_feature_classifier(data)           # seconds on CPU
    frechet_classifier_distance(samples, data.test_x, clf)

References:
  1. GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium,
     M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter (2017).
  2. Are GANs Created Equal? A Large-Scale Study, M. Lucic, K. Kurach, M. Michalski, S. Gelly,
     O. Bousquet (2018).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

#: Width of the feature layer.
FEATURE_DIM = 64


class FeatureClassifier(nn.Module):
    """MLP classifier ``in → 256 → FEATURE_DIM → classes``; :meth:`features` is its last hidden
    layer (after ReLU). ``accuracy`` holds its test accuracy after training."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_features, 256), nn.ReLU(), nn.Linear(256, FEATURE_DIM), nn.ReLU()
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        self.accuracy = float("nan")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(len(x), -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_feature_classifier(
    dataset: Any,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    max_train: int = 20_000,
) -> FeatureClassifier:
    """Train :class:`FeatureClassifier` on ``dataset.train_x/train_y`` (a
    :class:`~pyrogen.data.Dataset` with labels) and record its test accuracy."""
    if dataset.train_y is None:
        raise ValueError(
            f"Data set {dataset.name!r} has no labels; the Fréchet classifier distance needs a"
            " labelled training split."
        )
    generator = torch.Generator().manual_seed(seed)
    x, y = dataset.train_x[:max_train].float(), dataset.train_y[:max_train].long()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        clf = FeatureClassifier(x.shape[1], int(dataset.train_y.max()) + 1)
    optim = torch.optim.Adam(clf.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            optim.zero_grad()
            nn.functional.cross_entropy(clf(x[idx]), y[idx]).backward()
            optim.step()
    clf.eval()
    if dataset.test_y is not None:
        with torch.no_grad():
            pred = clf(dataset.test_x.float()).argmax(-1)
        clf.accuracy = float((pred == dataset.test_y).float().mean())
    return clf


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    r"""Fréchet (2-Wasserstein²) distance between :math:`\mathcal{N}(\mu_1, \Sigma_1)` and
    :math:`\mathcal{N}(\mu_2, \Sigma_2)` (see the module docs), computed with symmetric square
    roots (eigendecompositions), so it is stable for singular covariances."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise ValueError(
            f"Mismatched Gaussians: means {mu1.shape} vs {mu2.shape}, covariances"
            f" {cov1.shape} vs {cov2.shape}."
        )
    root1 = _sqrtm_psd(cov1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ cov2 @ root1), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def _stats(clf: FeatureClassifier, x: Any) -> tuple[np.ndarray, np.ndarray]:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    if len(x) < 2:
        raise ValueError("The Fréchet distance needs at least 2 samples on each side.")
    device = next(clf.parameters()).device
    with torch.no_grad():
        feats = torch.cat([clf.features(c.to(device)).cpu() for c in x.split(4096)]).double()
    feats = feats.numpy()
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_classifier_distance(samples: Any, real: Any, classifier: FeatureClassifier) -> float:
    """Fréchet distance between the classifier features of ``samples`` and of ``real`` (both
    ``(n, features)`` flattened images, same preprocessing as the training data)."""
    samples = torch.as_tensor(
        np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples
    )
    real = torch.as_tensor(np.asarray(real) if not isinstance(real, torch.Tensor) else real)
    width = classifier.body[0].in_features
    for name, t in (("samples", samples), ("real", real)):
        if t.reshape(len(t), -1).shape[1] != width:
            raise ValueError(
                f"{name} have {t.reshape(len(t), -1).shape[1]} features per example but the"
                f" classifier was trained on {width}."
            )
    return frechet_distance(*_stats(classifier, samples), *_stats(classifier, real))
