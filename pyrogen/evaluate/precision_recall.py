r"""Improved precision and recall of generative models (Kynkäänniemi et al., 2019) in feature
space.

Each set of feature vectors :math:`\Phi` defines a manifold, the union of balls around its
points with radius the distance to the point's k-th nearest neighbour in the set:

.. math:: f(\phi, \Phi) = 1 \iff \exists \phi' \in \Phi:\
          \|\phi - \phi'\|_2 \le \|\phi' - \mathrm{NN}_k(\phi', \Phi)\|_2 .

Then :math:`\mathrm{precision} = \frac{1}{|\Phi_g|}\sum_{\phi_g} f(\phi_g, \Phi_r)` (fraction of
generated samples inside the real manifold: quality) and :math:`\mathrm{recall} =
\frac{1}{|\Phi_r|}\sum_{\phi_r} f(\phi_r, \Phi_g)` (fraction of real samples inside the generated
manifold: coverage). A collapsed generator has a small recall; blurry or off-manifold samples a
small precision. Distances are computed in chunks of ``batch_size`` rows (memory
``batch_size × n``), so 10 000 × 10 000 comparisons fit in a few hundred MB.

The features here are those of a classifier trained on the data set
(:func:`pyrogen.evaluate.fid.train_feature_classifier`), as for the Fréchet classifier
distance; the paper uses VGG-16 features, which are not available offline.

References:
  1. Improved Precision and Recall Metric for Assessing Generative Models, T. Kynkäänniemi,
     T. Karras, S. Laine, J. Lehtinen, T. Aila (2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _features_2d(x: Any, name: str) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to("cpu", torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    if t.dim() != 2 or len(t) == 0:
        raise ValueError(f"{name} must have shape (n, d) with n >= 1, got {tuple(t.shape)}.")
    return t


def knn_radii(features: torch.Tensor, k: int = 3, batch_size: int = 1024) -> torch.Tensor:
    """Distance of every row of ``features`` to its k-th nearest neighbour among the other rows
    (duplicates count as neighbours at distance 0), computed in chunks."""
    if not 1 <= k < len(features):
        raise ValueError(
            f"k must satisfy 1 <= k < number of points ({len(features)}), got k={k}; use a"
            " smaller k or more samples."
        )
    radii = []
    for chunk in features.split(batch_size):
        d = torch.cdist(chunk, features)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # index 0: the point
    return torch.cat(radii)


def manifold_fraction(
    queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, batch_size: int = 1024
) -> float:
    """Fraction of ``queries`` within ``radii[j]`` of some ``points[j]`` (the k-NN manifold)."""
    inside = [
        (torch.cdist(chunk, points) <= radii).any(dim=1) for chunk in queries.split(batch_size)
    ]
    return float(torch.cat(inside).double().mean())


def precision_recall(
    real_features: Any, fake_features: Any, k: int = 3, batch_size: int = 1024
) -> dict[str, float]:
    """Improved precision and recall (see the module docs) of ``fake_features`` against
    ``real_features``, both ``(n, d)``.

    :param k: neighbourhood size of the k-NN radii (the paper's default is 3).
    :param batch_size: rows per chunk of the distance computations.
    :returns: ``{"precision": ..., "recall": ...}``, both in [0, 1].
    """
    real = _features_2d(real_features, "real_features")
    fake = _features_2d(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}."
        )
    real_radii = knn_radii(real, k, batch_size)
    fake_radii = knn_radii(fake, k, batch_size)
    return {
        "precision": manifold_fraction(fake, real, real_radii, batch_size),
        "recall": manifold_fraction(real, fake, fake_radii, batch_size),
    }


def classifier_features(classifier: Any, x: Any, batch_size: int = 4096) -> torch.Tensor:
    """``classifier.features(x)`` (e.g. a :class:`~pyrogen.evaluate.fid.FeatureClassifier`) in
    chunks, without gradients, on the classifier's device; returned on the CPU."""
    x = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    device = next(classifier.parameters()).device
    with torch.no_grad():
        return torch.cat(
            [classifier.features(c.float().to(device)).cpu() for c in x.split(batch_size)]
        )


def classifier_precision_recall(
    samples: Any, real: Any, classifier: Any, k: int = 3, batch_size: int = 1024
) -> dict[str, float]:
    """:func:`precision_recall` in the features of ``classifier`` (its ``.features(x)``, e.g.
    :func:`pyrogen.evaluate.fid.train_feature_classifier`) of generated ``samples`` and
    ``real`` examples (flattened as the classifier's training data)."""
    return precision_recall(
        classifier_features(classifier, real),
        classifier_features(classifier, samples),
        k,
        batch_size,
    )
