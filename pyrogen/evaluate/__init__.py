"""Evaluation: likelihoods of latent variable models, distances between samples."""

from pyrogen.evaluate.fid import frechet_classifier_distance, frechet_distance
from pyrogen.evaluate.likelihood import elbo, elbo_and_log_likelihood, log_likelihood, log_weights
from pyrogen.evaluate.modes import mode_coverage
from pyrogen.evaluate.wasserstein import sliced_wasserstein, wasserstein_1d

__all__ = [
    "elbo",
    "elbo_and_log_likelihood",
    "frechet_classifier_distance",
    "frechet_distance",
    "log_likelihood",
    "log_weights",
    "mode_coverage",
    "sliced_wasserstein",
    "wasserstein_1d",
]
