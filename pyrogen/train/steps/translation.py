r"""The pix2pix training step (Isola et al. 2017): an :class:`~pyrogen.train.AdversarialStep`
on a translator program ``model(n, y=inputs, target=targets)`` trained on
``Trainer.fit(inputs, targets)``.

The critic judges pairs, ``critic(target, inputs)``, real pairs against translated ones; the
translator minimizes :math:`\lambda_{adv}\mathcal L_G + \lambda_{L1}\,\mathcal L_{L1}`
(:func:`~pyrogen.infer.translation.pix2pix_loss`; ``adv_weight=0`` is the L1-only model).

References:
  1. Image-to-Image Translation with Conditional Adversarial Networks, P. Isola, J.-Y. Zhu,
     T. Zhou, A. A. Efros (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pyrogen.infer.translation import pix2pix_loss
from pyrogen.train.steps.adversarial import AdversarialStep


def _pair_inputs(x: torch.Tensor, t: torch.Tensor) -> tuple[tuple, dict]:
    """A batch (inputs, targets) -> ``model(n, y=inputs, target=targets)``."""
    return (len(x),), {"y": x, "target": t}


def _targets(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The critic's real examples: the targets (scored as ``critic(target, inputs)``)."""
    return t


def pix2pix_step(
    translator: Callable,
    critic: torch.nn.Module,
    l1_weight: float = 100.0,
    adv_weight: float = 1.0,
    loss: str = "nsgan",
    **step_kwargs: Any,
) -> AdversarialStep:
    """An :class:`AdversarialStep` training ``translator`` against the pair ``critic`` with
    pix2pix's objective; one critic update per step and Adam β = (0.5, 0.999) unless
    ``step_kwargs`` say otherwise (e.g. ``lr=``)."""
    adv, objective = pix2pix_loss(critic, l1_weight, adv_weight, loss)
    settings = {"critic_steps": 1, "betas": (0.5, 0.999), **step_kwargs}
    return AdversarialStep(
        translator,
        critic,
        adv,
        generator_loss=objective,
        inputs=_pair_inputs,
        real=_targets,
        **settings,
    )
