"""ADVI for ordinary Pyro models: :func:`fit` (mean-field, full-rank or low-rank Gaussian in the
unconstrained space), Stan's convergence rule (:class:`ELBOConvergence`) and the diagnostics
(PSIS :math:`\\hat k`, ArviZ ``InferenceData``)."""

from pyrogen.infer.advi.convergence import ELBOConvergence
from pyrogen.infer.advi.diagnostics import (
    khat_reading,
    log_importance_weights,
    psis_khat,
    to_inference_data,
)
from pyrogen.infer.advi.fit import ADVIResult, ConvergenceWarning, fit

__all__ = [
    "ADVIResult",
    "ConvergenceWarning",
    "ELBOConvergence",
    "fit",
    "khat_reading",
    "log_importance_weights",
    "psis_khat",
    "to_inference_data",
]
