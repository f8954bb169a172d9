"""Objectives and estimators for Pyro programs: ELBO variants, IWAE, adversarial losses, ADVI."""

from pyrogen.infer.adversarial import (
    LOSSES,
    WGAN,
    WGAN_GP,
    AdversarialLoss,
    HingeGAN,
    MinimaxGAN,
    NonSaturatingGAN,
    adversarial_loss,
    clip_weights_,
    gradient_penalty,
)
from pyrogen.infer.advi import ADVIResult, ConvergenceWarning, fit
from pyrogen.infer.autoencoding import aae_loss, reconstruction_loss, vae_gan_loss
from pyrogen.infer.compose import WeightedLoss
from pyrogen.infer.elbo import ELBO, OBJECTIVES, get_objective
from pyrogen.infer.importance import LogWeights, log_importance_weights
from pyrogen.infer.iwae import IWAE, STL_ELBO
from pyrogen.infer.score import ScoreFunctionMessenger, score_function
from pyrogen.infer.variance import GradStats, gradient_variance

__all__: list[str] = [
    "ELBO",
    "IWAE",
    "LOSSES",
    "OBJECTIVES",
    "STL_ELBO",
    "WGAN",
    "WGAN_GP",
    "ADVIResult",
    "AdversarialLoss",
    "ConvergenceWarning",
    "GradStats",
    "HingeGAN",
    "LogWeights",
    "MinimaxGAN",
    "NonSaturatingGAN",
    "ScoreFunctionMessenger",
    "WeightedLoss",
    "aae_loss",
    "adversarial_loss",
    "clip_weights_",
    "fit",
    "get_objective",
    "gradient_penalty",
    "gradient_variance",
    "log_importance_weights",
    "reconstruction_loss",
    "score_function",
    "vae_gan_loss",
]
