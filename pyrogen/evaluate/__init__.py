"""Evaluation: likelihoods of latent variable models, distances between samples."""

from pyrogen.evaluate.likelihood import elbo, elbo_and_log_likelihood, log_likelihood, log_weights

__all__ = ["elbo", "elbo_and_log_likelihood", "log_likelihood", "log_weights"]
