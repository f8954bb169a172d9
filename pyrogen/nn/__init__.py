"""Neural building blocks: MLPs, amortized Gaussian encoders, generator networks and critics."""

from pyrogen.nn.adversarial import Critic, GeneratorNet, ProjectionCritic
from pyrogen.nn.mlp import MLP, GaussianEncoder

__all__ = ["Critic", "GaussianEncoder", "GeneratorNet", "MLP", "ProjectionCritic"]
