r"""Class coverage of generated images: which classes a classifier sees in the samples.

A classifier trained on the labelled data (e.g. :func:`pyrogen.evaluate.fid.
train_feature_classifier`) labels every sample; the histogram :math:`\hat q` of predicted
classes is compared with the data's class frequencies :math:`p`:

* ``histogram``: :math:`\hat q_k`, fraction of samples predicted as class k;
* ``kl``: :math:`\mathrm{KL}(\hat q \,\|\, p) = \sum_k \hat q_k \log(\hat q_k / p_k)` (the reverse
  KL of mode-coverage studies [1]; 0 when the samples have the data's class proportions,
  :math:`\log K` for uniform p when every sample falls into one class; finite when classes are
  missing, which the next two entries count);
* ``in_band``: fraction of classes whose share lies in ``band`` (default 5–15 %, the criterion
  "each of 10 classes holds 5–15 % of the samples");
* ``covered``: number of classes predicted for at least one sample.

Example::

    data = load_dataset("digits")
    clf = train_feature_classifier(data)
    class_coverage(samples, clf, real_labels=data.test_y)
    # {'histogram': [0.1, ...], 'kl': 0.004, 'in_band': 1.0, 'covered': 10, ...}

References:
  1. VEEGAN: Reducing Mode Collapse in GANs using Implicit Variational Learning,
     A. Srivastava, L. Valkov, C. Russell, M. Gutmann, C. Sutton (2017).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def _as_tensor(x: Any) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _predict(
    samples: Any, classifier: Callable[[torch.Tensor], torch.Tensor], batch_size: int
) -> tuple[torch.Tensor, int]:
    """``argmax`` of ``classifier(samples)`` (logits ``(n, K)``) and K, in chunks, without
    gradients, on the classifier's device (its parameters' device when it has any)."""
    x = _as_tensor(samples).float()
    params = list(classifier.parameters()) if isinstance(classifier, torch.nn.Module) else []
    device = params[0].device if params else x.device
    with torch.no_grad():
        logits = [classifier(c.to(device)).cpu() for c in x.split(batch_size)]
    return torch.cat(logits).argmax(-1), logits[0].shape[-1]


def class_coverage(
    samples: Any,
    classifier: Callable[[torch.Tensor], torch.Tensor],
    real_labels: Any | None = None,
    frequencies: Sequence[float] | None = None,
    band: tuple[float, float] = (0.05, 0.15),
    batch_size: int = 4096,
) -> dict[str, Any]:
    r"""Histogram of the classes ``classifier`` predicts for ``samples`` and its distance to the
    data's class frequencies (see the module docs).

    :param samples: generated examples, shape ``(n, ...)`` as the classifier takes them.
    :param classifier: returns logits ``(n, K)`` (e.g. a
        :class:`~pyrogen.evaluate.fid.FeatureClassifier`).
    :param real_labels: labels of real data, giving the reference frequencies :math:`p`; or
    :param frequencies: the reference class frequencies (length K, positive, normalised here).
        Pass exactly one of the two.
    :param band: a class is well covered when its share lies in ``[band[0], band[1]]``.
    :returns: dict with ``histogram`` (list of K fractions), ``counts`` (list of K ints),
        ``kl`` (float), ``in_band`` (fraction of classes in the band), ``covered`` (int),
        ``num_classes`` (K) and ``frequencies`` (the reference p, a list).
    """
    if (real_labels is None) == (frequencies is None):
        raise ValueError(
            "Pass the data's class frequencies: either real_labels= (labels of real examples)"
            " or frequencies= (one per class), not both."
        )
    if not 0 <= band[0] <= band[1] <= 1:
        raise ValueError(f"band must be (low, high) with 0 <= low <= high <= 1, got {band}.")
    if len(_as_tensor(samples)) == 0:
        raise ValueError("class_coverage needs at least one sample.")
    predicted, num_classes = _predict(samples, classifier, batch_size)
    if real_labels is not None:
        labels = _as_tensor(real_labels).long().reshape(-1)
        if len(labels) == 0 or labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"real_labels must be a non-empty set of labels in [0, {num_classes}) (the"
                " classifier's classes)."
            )
        p = torch.bincount(labels, minlength=num_classes).double()
    else:
        p = torch.as_tensor(np.asarray(frequencies, dtype=np.float64))
        if p.shape != (num_classes,) or not bool((p >= 0).all()) or not p.sum() > 0:
            raise ValueError(
                f"frequencies must be {num_classes} non-negative numbers (one per class of the"
                f" classifier) with a positive sum, got shape {tuple(p.shape)}."
            )
    p = p / p.sum()
    counts = torch.bincount(predicted, minlength=num_classes)
    q = counts.double() / counts.sum()
    terms = torch.where(q > 0, q * (q.log() - p.log()), torch.zeros_like(q))
    in_band = ((q >= band[0]) & (q <= band[1])).double().mean()
    return {
        "histogram": q.tolist(),
        "counts": counts.tolist(),
        "kl": float(terms.sum()),  # inf when a sampled class has p_k = 0
        "in_band": float(in_band),
        "covered": int((counts > 0).sum()),
        "num_classes": num_classes,
        "frequencies": p.tolist(),
    }
