"""Figures of latent variable models, saved as PNG: reconstructions, latent interpolations and
random walks, latent scatter plots, loss curves."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from pyrogen.plot.grid import finish, image_grid


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
    finish(fig, path)


def loss_curves(
    curves: dict[str, Sequence[float]], path: str | os.PathLike, ylabel: str = "training loss"
) -> None:
    """Several runs' losses per step overlaid, each smoothed over ~2 % of its run."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, losses in curves.items():
        losses = np.asarray(losses, dtype=np.float64)
        window = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(losses)), smooth, lw=1.2, label=name)
    ax.set(xlabel="step", ylabel=ylabel, title="mean of ~2 % of each run's steps")
    ax.legend()
    finish(fig, path)


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
    finish(fig, path)
