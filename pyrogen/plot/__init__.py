"""Figures of generative models (Matplotlib, Agg backend): one image tiler, VAE figures
(reconstructions, interpolations, random walks, latent maps, loss curves) and adversarial figures
(2-D samples over the true modes, loss / W1 curves, 1-D densities with the critic)."""

from pyrogen.plot.adversarial import (
    plot_codes_over_prior,
    plot_density_1d,
    plot_losses,
    plot_samples_2d,
)
from pyrogen.plot.grid import image_grid
from pyrogen.plot.vae import (
    frame_rows,
    interpolation,
    latent_scatter,
    loss_curve,
    loss_curves,
    random_walk,
    reconstructions,
)

__all__ = [
    "frame_rows",
    "image_grid",
    "interpolation",
    "latent_scatter",
    "loss_curve",
    "loss_curves",
    "plot_codes_over_prior",
    "plot_density_1d",
    "plot_losses",
    "plot_samples_2d",
    "random_walk",
    "reconstructions",
]
