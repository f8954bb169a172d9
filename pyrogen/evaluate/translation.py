r"""Measures of image-to-image translation: PSNR and label preservation.

* :func:`psnr`: the peak signal-to-noise ratio :math:`10 \log_{10}(\mathrm{MAX}^2 /
  \mathrm{MSE})` in dB of every image (MSE over its pixels), averaged over images.
* :func:`label_preservation`: the fraction of translated images a classifier of the target
  domain gives the label of their source image (CycleGAN's "FCN score" idea, Zhu et al. 2017).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def psnr(x: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> float:
    r"""Mean over images (rows) of :math:`10\log_{10}(\mathrm{max}^2 / \mathrm{MSE}_i)` dB, with
    the MSE of image i over its pixels floored at 1e-10 (identical images: 100 dB)."""
    if x.shape != target.shape or x.dim() != 2:
        raise ValueError(
            f"psnr compares flattened images of equal shapes (n, d); got {tuple(x.shape)} and"
            f" {tuple(target.shape)}."
        )
    mse = ((x.double() - target.double()) ** 2).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(max_value**2 / mse)).mean())


@torch.no_grad()
def label_preservation(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    translated: torch.Tensor,
    source_labels: torch.Tensor,
) -> float:
    """The fraction of ``translated`` images to which ``classifier`` (logits ``(n, K)``, trained
    on the target domain) gives the label of their source image."""
    if len(translated) != len(source_labels):
        raise ValueError(
            f"Got {len(translated)} translated images but {len(source_labels)} source labels."
        )
    predicted = classifier(translated.float()).argmax(-1)
    return float((predicted == source_labels.to(predicted.device)).float().mean())
