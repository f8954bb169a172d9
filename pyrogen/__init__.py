"""pyrogen: deep generative models (VAEs, GANs, variational inference) for Pyro."""

__version__ = "0.1.0"
