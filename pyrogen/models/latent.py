r"""Walking in latent space: interpolation between codes and random walks under the prior."""

from __future__ import annotations

import math

import torch


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int = 10) -> torch.Tensor:
    r"""Points on the line :math:`z_t = (1 - t) z_0 + t z_1`, :math:`t = 0, \frac1{n-1}, …, 1`.

    :param z0, z1: codes of the same shape ``(..., D)``.
    :returns: tensor of shape ``(steps, ..., D)`` starting at ``z0`` and ending at ``z1``.
    """
    if steps < 2:
        raise ValueError(f"An interpolation needs steps >= 2, got {steps}.")
    if z0.shape != z1.shape:
        raise ValueError(
            f"Codes must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}."
        )
    t = torch.linspace(0, 1, steps, device=z0.device, dtype=z0.dtype)
    t = t.reshape(-1, *([1] * z0.dim()))
    return (1 - t) * z0 + t * z1


def random_walk(
    z0: torch.Tensor,
    steps: int = 16,
    step_size: float = 0.3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""A random walk that keeps the prior :math:`\mathcal N(0, I)` invariant:

    .. math:: z_{t+1} = \sqrt{1 - \beta}\, z_t + \sqrt{\beta}\, \varepsilon_t, \quad
        \varepsilon_t \sim \mathcal N(0, I), \quad \beta = \text{step\_size}^2,

    so the walk wanders through typical codes instead of drifting off to where the decoder has
    never been trained (a plain Gaussian walk's norm grows like :math:`\sqrt t`).

    :returns: tensor of shape ``(steps, *z0.shape)`` whose first element is ``z0``.
    """
    if not 0 < step_size < 1:
        raise ValueError(f"step_size must be in (0, 1), got {step_size}.")
    beta = step_size**2
    frames = [z0]
    for _ in range(steps - 1):
        noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype).to(z0.device)
        frames.append(math.sqrt(1 - beta) * frames[-1] + math.sqrt(beta) * noise)
    return torch.stack(frames)
