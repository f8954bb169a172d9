"""Figures for adversarial training: 2-D samples over the true modes, loss / W1 curves, 1-D
densities with the critic's landscape, adversarial autoencoder codes over prior samples.
Matplotlib (Agg backend); every function returns the ``Figure`` and saves it when ``path`` is
given."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from pyrogen.plot.grid import as_numpy as _np
from pyrogen.plot.grid import finish


def plot_samples_2d(
    samples: Any,
    centers: Any | None = None,
    sigma: float | None = None,
    title: str = "",
    ax=None,
    path: str | os.PathLike | None = None,
):
    """Scatter of 2-D ``samples`` over the true mode centres, with a 3σ circle per mode."""
    x = _np(samples)
    fig = ax.figure if ax is not None else plt.figure(figsize=(5, 5))
    ax = ax if ax is not None else fig.add_subplot(111)
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, color="tab:blue", label="generated")
    if centers is not None:
        c = _np(centers)
        ax.scatter(c[:, 0], c[:, 1], marker="x", color="tab:red", s=40, label="true modes")
        if sigma:
            for cx, cy in c:
                ax.add_patch(plt.Circle((cx, cy), 3 * sigma, fill=False, color="tab:red", lw=0.8))
        span = np.abs(c).max() * 1.5 + 3 * (sigma or 0)
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return finish(fig, path)


def plot_codes_over_prior(
    codes: Any,
    labels: Any | None,
    prior_samples: Any,
    title: str = "codes of the test set over prior samples",
    ax=None,
    path: str | os.PathLike | None = None,
):
    """2-D latent codes (e.g. an adversarial autoencoder's ``encode(x)``) coloured by class,
    drawn over samples of the prior they were matched to (grey)."""
    z, p = _np(codes), _np(prior_samples)
    if z.ndim != 2 or z.shape[1] != 2 or p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(
            f"plot_codes_over_prior draws 2-D codes and prior samples, got shapes {z.shape} and"
            f" {p.shape}; use pyrogen.plot.latent_scatter (PCA) for larger latents."
        )
    fig = ax.figure if ax is not None else plt.figure(figsize=(5.5, 5))
    ax = ax if ax is not None else fig.add_subplot(111)
    ax.scatter(p[:, 0], p[:, 1], s=2, alpha=0.25, color="tab:gray", label="prior samples")
    colours = None if labels is None else _np(labels)
    points = ax.scatter(z[:, 0], z[:, 1], c=colours, cmap="tab10", s=6, alpha=0.9, label="codes")
    if labels is not None:
        fig.colorbar(points, ax=ax, label="class")
    ax.set(xlabel="z[0]", ylabel="z[1]", title=title, aspect="equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.tight_layout()
    return finish(fig, path)


def plot_losses(
    history: Any,
    title: str = "",
    path: str | os.PathLike | None = None,
    smooth: int = 50,
):
    """Generator and critic losses per generator step and, when recorded, the critic's W1
    estimate (a :class:`~pyrogen.train.History` or a list of records)."""
    records: Sequence[Mapping[str, float]] = getattr(history, "records", history)
    keys = [k for k in ("loss", "critic_loss", "w1") if any(k in r for r in records)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    labels = {"loss": "generator loss", "critic_loss": "critic loss", "w1": "critic's W1 estimate"}
    for ax, key in zip(axes[0], keys, strict=True):
        y = np.array([r[key] for r in records if key in r], dtype=float)
        ax.plot(y, lw=0.5, alpha=0.4, color="tab:gray")
        if len(y) >= smooth > 1:
            ax.plot(
                np.arange(smooth - 1, len(y)), np.convolve(y, np.ones(smooth) / smooth, "valid")
            )
        ax.set_xlabel("generator step")
        ax.set_title(labels[key])
    fig.suptitle(title)
    fig.tight_layout()
    return finish(fig, path)


def plot_density_1d(
    real: Any,
    fake: Any | None = None,
    critic: Any | None = None,
    optimal: Any | None = None,
    grid: Any | None = None,
    title: str = "",
    critic_label: str = "critic d(x)",
    ax=None,
    path: str | os.PathLike | None = None,
):
    """Histograms of 1-D real and generated samples; optionally a critic evaluated on ``grid``
    (a callable or values) and a reference curve ``optimal`` (e.g. D* or the optimal f)."""
    r = _np(real).reshape(-1)
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 3.5))
    ax = ax if ax is not None else fig.add_subplot(111)
    ax.hist(r, bins=100, density=True, alpha=0.4, color="tab:blue", label="data")
    if fake is not None:
        ax.hist(
            _np(fake).reshape(-1),
            bins=100,
            density=True,
            alpha=0.4,
            color="tab:orange",
            label="generated",
        )
    if critic is not None or optimal is not None:
        g = _np(grid).reshape(-1) if grid is not None else np.linspace(r.min(), r.max(), 400)
        twin = ax.twinx()
        if critic is not None:
            values = critic
            if callable(critic):
                with torch.no_grad():
                    values = critic(torch.as_tensor(g, dtype=torch.float32).unsqueeze(-1))
            twin.plot(g, _np(values).reshape(-1), color="tab:green", label=critic_label)
        if optimal is not None:
            twin.plot(g, _np(optimal).reshape(-1), "k--", lw=1, label="optimum")
        twin.legend(loc="upper right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return finish(fig, path)
