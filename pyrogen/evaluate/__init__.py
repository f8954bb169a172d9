"""Evaluation: likelihoods of latent variable models, distances between samples, class coverage,
precision and recall."""

from pyrogen.evaluate.coverage import class_coverage
from pyrogen.evaluate.fid import frechet_classifier_distance, frechet_distance
from pyrogen.evaluate.likelihood import elbo, elbo_and_log_likelihood, log_likelihood, log_weights
from pyrogen.evaluate.modes import mode_coverage
from pyrogen.evaluate.precision_recall import classifier_precision_recall, precision_recall
from pyrogen.evaluate.wasserstein import sliced_wasserstein, wasserstein_1d

__all__ = [
    "class_coverage",
    "classifier_precision_recall",
    "elbo",
    "elbo_and_log_likelihood",
    "frechet_classifier_distance",
    "frechet_distance",
    "log_likelihood",
    "log_weights",
    "mode_coverage",
    "precision_recall",
    "sliced_wasserstein",
    "wasserstein_1d",
]
