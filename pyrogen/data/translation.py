r"""Image-to-image translation tasks made from an image data set (flattened grey images in [0, 1]).

* :func:`superres_pairs`: super-resolution pairs. The low-resolution image is the
  ``factor × factor`` block average of the image (area downsampling, 28×28 → 7×7 for
  ``factor=4``), shown to a translator *upsampled back* to the full size (bicubic by default, as
  in SRCNN [1]), so input and output have the same shape; :func:`upsample` of the low-resolution
  image is also the bicubic baseline.
* :func:`inpaint_pairs`: inpainting pairs: the input is the image with its bottom half set to 0.
* :func:`rotated_domains`: two *unpaired* domains for CycleGAN [2]: the images of one half of
  the data, and the 90°-rotated images of the other half (so no image of A has its rotated
  version in B).

References:
  1. Image Super-Resolution Using Deep Convolutional Networks, C. Dong, C. C. Loy, K. He,
     X. Tang (2014).
  2. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks,
     J.-Y. Zhu, T. Park, P. Isola, A. A. Efros (2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

UPSAMPLING = ("bicubic", "nearest", "bilinear")


def _images(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    h, w = (int(s) for s in shape)
    if x.dim() != 2 or x.shape[1] != h * w:
        raise ValueError(
            f"Expected flattened {h}×{w} images of shape (n, {h * w}), got {tuple(x.shape)}."
        )
    return x.reshape(-1, 1, h, w)


def downsample(x: torch.Tensor, shape: Sequence[int], factor: int) -> torch.Tensor:
    """``factor × factor`` block averages of flattened ``shape`` images → flattened
    ``(H/factor) × (W/factor)`` images."""
    h, w = (int(s) for s in shape)
    if factor < 1 or h % factor or w % factor:
        raise ValueError(
            f"factor must be a positive divisor of the image size {h}×{w}, got {factor}."
        )
    return F.avg_pool2d(_images(x, shape), factor).flatten(1)


def upsample(
    low: torch.Tensor, low_shape: Sequence[int], factor: int, mode: str = "bicubic"
) -> torch.Tensor:
    """Flattened ``low_shape`` images upsampled ``factor`` times (``bicubic``, ``bilinear`` or
    ``nearest``), clamped to [0, 1]."""
    if mode not in UPSAMPLING:
        raise ValueError(f"Unknown upsampling {mode!r}; expected one of {UPSAMPLING}.")
    extra = {} if mode == "nearest" else {"align_corners": False}
    up = F.interpolate(_images(low, low_shape), scale_factor=factor, mode=mode, **extra)
    return up.clamp(0.0, 1.0).flatten(1)


def superres_pairs(
    x: torch.Tensor, shape: Sequence[int], factor: int = 4, mode: str = "bicubic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``: each image downsampled ``factor`` times and upsampled back with
    ``mode`` (the input, also the baseline), and the image itself (the target)."""
    h, w = (int(s) for s in shape)
    low = downsample(x, shape, factor)
    return upsample(low, (h // factor, w // factor), factor, mode), x


def half_mask(shape: Sequence[int]) -> torch.Tensor:
    """Flattened mask, 1 on the kept top half of a ``shape`` image and 0 on the bottom half."""
    h, w = (int(s) for s in shape)
    mask = torch.zeros(h, w)
    mask[: h // 2] = 1.0
    return mask.flatten()


def inpaint_pairs(x: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``: each image with its bottom half set to 0, and the image."""
    _images(x, shape)
    return x * half_mask(shape).to(x), x


def rotate90(x: torch.Tensor, shape: Sequence[int], k: int = 1) -> torch.Tensor:
    """Flattened images rotated by ``k`` × 90° counter-clockwise."""
    return torch.rot90(_images(x, shape), k, dims=(2, 3)).flatten(1)


def rotated_domains(
    x: torch.Tensor,
    shape: Sequence[int],
    labels: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Two unpaired domains from disjoint halves of ``x`` (shuffled with ``seed``): ``a``, the
    images of one half, and ``b``, the 90°-rotated images of the other, with their labels
    (``a_labels``, ``b_labels``; ``None`` without ``labels``). Both hold ``len(x) // 2`` images."""
    if len(x) < 2:
        raise ValueError(f"Need at least 2 images to make two domains, got {len(x)}.")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    half = len(x) // 2
    ia, ib = order[:half], order[half : 2 * half]
    return {
        "a": x[ia],
        "b": rotate90(x[ib], shape),
        "a_labels": None if labels is None else labels[ia],
        "b_labels": None if labels is None else labels[ib],
    }
