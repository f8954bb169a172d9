"""Figures of generative models, saved as PNG: sample grids, reconstructions, latent
interpolations and random walks, latent scatter plots, loss curves."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

#: Grey level of the 1-pixel lines between tiled images (0 = white, 1 = black).
GAP_VALUE = 0.25


def _tile(images: torch.Tensor | np.ndarray, shape: Sequence[int], ncol: int) -> np.ndarray:
    """Arrange flattened images (N, H*W) into one array, rows of ``ncol``, with 1-pixel gaps."""
    images = np.asarray(torch.as_tensor(images).detach().cpu(), dtype=np.float32)
    h, w = shape
    n = len(images)
    nrow = -(-n // ncol)
    canvas = np.full((nrow * (h + 1) - 1, ncol * (w + 1) - 1), GAP_VALUE, dtype=np.float32)
    for i, image in enumerate(images.reshape(n, h, w)):
        r, c = divmod(i, ncol)
        canvas[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = image
    return canvas


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def image_grid(
    images: torch.Tensor,
    shape: Sequence[int],
    path: str | os.PathLike,
    ncol: int = 10,
    title: str | None = None,
) -> None:
    """Save flattened grey-level images (N, H*W), values in [0, 1], as one grid."""
    canvas = _tile(images, shape, min(ncol, len(images)))
    fig, ax = plt.subplots(
        figsize=(0.6 * min(ncol, len(images)) + 0.4, 0.6 * canvas.shape[0] / shape[0] + 0.6)
    )
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    _save(fig, path)


def reconstructions(
    originals: torch.Tensor,
    reconstructed: torch.Tensor,
    shape: Sequence[int],
    path: str | os.PathLike,
    ncol: int = 10,
) -> None:
    """Originals (odd rows) above their reconstructions (even rows)."""
    rows = []
    for start in range(0, len(originals), ncol):
        rows += [originals[start : start + ncol], reconstructed[start : start + ncol]]
    image_grid(torch.cat(rows), shape, path, ncol, "originals (odd rows) / reconstructions")


def frame_rows(
    frames: torch.Tensor, shape: Sequence[int], path: str | os.PathLike, title: str
) -> None:
    """Sequences of images, ``frames`` shaped (rows, steps, H*W): one sequence per row."""
    rows, steps = frames.shape[:2]
    image_grid(frames.reshape(rows * steps, -1), shape, path, steps, title)


def interpolation(frames: torch.Tensor, shape: Sequence[int], path: str | os.PathLike) -> None:
    """Rows of decoded latent interpolations, frames shaped (rows, steps, H*W)."""
    title = "latent interpolation: each row goes from one test image's code to another's"
    frame_rows(frames, shape, path, title)


def random_walk(frames: torch.Tensor, shape: Sequence[int], path: str | os.PathLike) -> None:
    """Decoded frames of latent random walks, (walks, steps, H*W): one walk per row."""
    frame_rows(frames, shape, path, "random walks in latent space (one per row, left to right)")


def latent_scatter(
    codes: torch.Tensor, labels: torch.Tensor | None, path: str | os.PathLike
) -> None:
    """2-D scatter of latent codes coloured by label; PCA to 2-D when the latent is larger."""
    codes = np.asarray(torch.as_tensor(codes).detach().cpu(), dtype=np.float64)
    xlabel, ylabel = "z[0]", "z[1]"
    if codes.shape[1] > 2:
        centred = codes - codes.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        codes = centred @ vt[:2].T
        explained = s[:2] ** 2 / (s**2).sum()
        xlabel, ylabel = (f"PC{i + 1} ({100 * e:.0f}% var.)" for i, e in enumerate(explained))
    elif codes.shape[1] == 1:
        codes = np.concatenate([codes, np.zeros_like(codes)], 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    colours = None if labels is None else np.asarray(torch.as_tensor(labels).cpu())
    points = ax.scatter(codes[:, 0], codes[:, 1], c=colours, cmap="tab10", s=8, alpha=0.8)
    if labels is not None:
        fig.colorbar(points, ax=ax, label="label")
    ax.set(xlabel=xlabel, ylabel=ylabel, title="posterior means of the test set")
    _save(fig, path)


def loss_curve(
    losses: Sequence[float],
    path: str | os.PathLike,
    ylabel: str = "loss",
    title: str | None = None,
) -> None:
    """Loss per step with a moving average over ~2 % of the run."""
    losses = np.asarray(losses, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=0.6, alpha=0.4, label="per step")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(losses)), smooth, lw=1.5, label=f"mean of {window}")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.legend()
    _save(fig, path)
