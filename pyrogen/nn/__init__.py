"""Neural building blocks: MLPs and amortized Gaussian encoders."""

from pyrogen.nn.mlp import MLP, GaussianEncoder

__all__ = ["GaussianEncoder", "MLP"]
