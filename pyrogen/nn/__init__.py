"""Neural building blocks: MLPs, amortized Gaussian encoders, generator networks and critics
(fully connected and convolutional)."""

from pyrogen.nn.adversarial import Critic, GeneratorNet, ProjectionCritic
from pyrogen.nn.conv import ConvCritic, ConvDecoder, ConvEncoder, ConvGeneratorNet
from pyrogen.nn.mlp import MLP, GaussianEncoder

__all__ = [
    "ConvCritic",
    "ConvDecoder",
    "ConvEncoder",
    "ConvGeneratorNet",
    "Critic",
    "GaussianEncoder",
    "GeneratorNet",
    "MLP",
    "ProjectionCritic",
]
