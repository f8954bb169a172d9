r"""Image-to-image translation tasks made from an image data set (flattened grey images in [0, 1]).

* :func:`superres_pairs`: super-resolution pairs. The low-resolution image is the
  ``factor × factor`` block average of the image (area downsampling, 28×28 → 7×7 for
  ``factor=4``), shown to a translator *upsampled back* to the full size (bicubic by default, as
  in SRCNN [1]), so input and output have the same shape; :func:`upsample` of the low-resolution
  image is also the bicubic baseline.
* :func:`inpaint_pairs`: inpainting pairs: the input is the image with its bottom half set to 0.
* :func:`unpaired_domains`: two *unpaired* domains for CycleGAN [2]: the images of one half of
  the data (A) and the transformed images of the other half (B), so no image of A has its
  transformed version in B. Transforms (:data:`DOMAIN_PAIRS`): ``bold`` (:func:`embolden`, the
  grey-scale dilation :math:`\max_{|i| + |j| \le 1} x_{u+i, v+j}` over the pixel and its 4
  neighbours, i.e. bolder strokes: an appearance change that keeps the geometry), ``invert``
  (:math:`1 - x`) and ``rotate`` (:func:`rotate90`, a geometric change);
  :func:`bold_domains` and :func:`rotated_domains` are the shortcuts.

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


def embolden(x: torch.Tensor, shape: Sequence[int], footprint: str = "cross") -> torch.Tensor:
    """Bolder strokes: the grey-scale dilation of flattened ``shape`` images, each pixel the
    maximum over its 3×3 ``footprint``: ``"cross"`` (itself and its 4 neighbours) or
    ``"square"`` (all 9 pixels: max pooling, stride 1)."""
    images = _images(x, shape)
    if footprint == "square":
        return F.max_pool2d(images, 3, stride=1, padding=1).flatten(1)
    if footprint != "cross":
        raise ValueError(f"footprint must be 'cross' or 'square', got {footprint!r}.")
    p = F.pad(images, (1, 1, 1, 1))
    shifts = [p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:]]
    return torch.stack([images, *shifts]).amax(0).flatten(1)


def invert(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Intensity-inverted flattened ``shape`` images, :math:`1 - x`."""
    return 1.0 - _images(x, shape).flatten(1)


#: domain B of :func:`unpaired_domains` = ``transform(x, shape)`` of A-like images
DOMAIN_PAIRS = {"bold": embolden, "invert": invert, "rotate": rotate90}
#: the inverse maps B → A where they exist (bold has none: dilation loses information)
INVERSE_TRANSFORMS = {"invert": invert, "rotate": lambda x, shape: rotate90(x, shape, k=-1)}


def unpaired_domains(
    x: torch.Tensor,
    shape: Sequence[int],
    transform: str = "bold",
    labels: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Two unpaired domains from disjoint halves of ``x`` (shuffled with ``seed``): ``a``, the
    images of one half, and ``b``, the images of the other half transformed by
    :data:`DOMAIN_PAIRS` ``[transform]``, with their labels (``a_labels``, ``b_labels``;
    ``None`` without ``labels``) and their indices into ``x`` (``a_index``, ``b_index``). Both
    hold ``len(x) // 2`` images."""
    if transform not in DOMAIN_PAIRS:
        raise ValueError(
            f"Unknown domain pair {transform!r}; expected one of {tuple(DOMAIN_PAIRS)}."
        )
    if len(x) < 2:
        raise ValueError(f"Need at least 2 images to make two domains, got {len(x)}.")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    half = len(x) // 2
    ia, ib = order[:half], order[half : 2 * half]
    return {
        "a": x[ia],
        "b": DOMAIN_PAIRS[transform](x[ib], shape),
        "a_labels": None if labels is None else labels[ia],
        "b_labels": None if labels is None else labels[ib],
        "a_index": ia,
        "b_index": ib,
    }


def rotated_domains(
    x: torch.Tensor, shape: Sequence[int], labels: torch.Tensor | None = None, seed: int = 0
) -> dict[str, torch.Tensor | None]:
    """:func:`unpaired_domains` with B the 90°-rotated images of the other half."""
    return unpaired_domains(x, shape, "rotate", labels, seed)


def bold_domains(
    x: torch.Tensor, shape: Sequence[int], labels: torch.Tensor | None = None, seed: int = 0
) -> dict[str, torch.Tensor | None]:
    """:func:`unpaired_domains` with B the emboldened (3×3 dilated) images of the other half."""
    return unpaired_domains(x, shape, "bold", labels, seed)
