"""Objectives and estimators for Pyro programs: ELBO variants, IWAE, adversarial losses, ADVI."""

__all__: list[str] = []
