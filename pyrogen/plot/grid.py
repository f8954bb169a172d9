"""The one image tiler: flattened grey-level images laid out in a grid with 1-pixel gaps."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

#: Grey level of the 1-pixel lines between tiled images (0 = white, 1 = black).
GAP_VALUE = 0.25


def as_numpy(x: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a NumPy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def finish(fig: plt.Figure, path: str | os.PathLike | None) -> plt.Figure:
    """Save ``fig`` to ``path`` (and close it) when a path is given; return it."""
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig


def tile(images: Any, shape: Sequence[int], ncol: int) -> np.ndarray:
    """Arrange flattened images ``(N, H*W)`` into one array, rows of ``ncol``, 1-pixel gaps."""
    images = np.asarray(as_numpy(images), dtype=np.float32)
    h, w = shape
    n = len(images)
    nrow = -(-n // ncol)
    canvas = np.full((nrow * (h + 1) - 1, ncol * (w + 1) - 1), GAP_VALUE, dtype=np.float32)
    for i, image in enumerate(images.reshape(n, h, w)):
        r, c = divmod(i, ncol)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return canvas


def image_grid(
    images: Any,
    shape: Sequence[int],
    path: str | os.PathLike | None = None,
    ncol: int = 10,
    title: str | None = None,
    row_labels: Sequence[str | int] | None = None,
) -> plt.Figure:
    """A grid of flattened grey-level images ``(N, H*W)``, values in [0, 1], ``ncol`` per row;
    saved to ``path`` when given. ``row_labels`` (one per row) are written left of the rows,
    e.g. the class of each row of a conditional model's samples. Returns the figure."""
    if len(images) == 0:
        raise ValueError("image_grid needs at least one image, got none.")
    ncol = min(ncol, len(images))
    canvas = tile(images, shape, ncol)
    nrow = -(-len(images) // ncol)
    if row_labels is not None and len(row_labels) != nrow:
        raise ValueError(
            f"row_labels needs one label per row: {nrow} rows of {ncol} images, got"
            f" {len(row_labels)} labels."
        )
    fig, ax = plt.subplots(figsize=(0.6 * ncol + 0.4, 0.6 * canvas.shape[0] / shape[0] + 0.6))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    for r, label in enumerate(row_labels or ()):
        y_pixel = r * (shape[0] + 1) + (shape[0] - 1) / 2
        ax.text(-1.5, y_pixel, str(label), ha="right", va="center", fontsize=8)
    return finish(fig, path)
