r"""Image-to-image translation objectives as Pyro losses ``loss(model, guide, *args, **kwargs)``.

* :class:`SiteL1`: :math:`\mathbb{E}\,\|x_{site} - x_{target}\|_1 / D`, the mean absolute
  difference per pixel between a program's generated site and a target.
* :func:`pix2pix_loss` (Isola et al. [1]): the generator's objective
  :math:`\mathcal{L}_{cGAN}(G, D) + \lambda\, \mathcal{L}_{L1}(G)`, with
  :math:`\mathcal{L}_{L1} = \mathbb{E}_{x, y, z} \|y - G(x, z)\|_1` (per pixel here), as a
  :class:`~pyrogen.infer.WeightedLoss` of the adversarial generator term on a conditional critic
  :math:`d(x_{out}, x_{in})` and an L1 term. ``adv_weight=0`` is the L1-only model.
* :func:`cycle_loss` (Zhu et al. [2]): :math:`\mathcal{L}_{GAN}(G, D_B) + \mathcal{L}_{GAN}(F, D_A)
  + \lambda (\|F(G(a)) - a\|_1 + \|G(F(b)) - b\|_1)` on the sites of
  :class:`~pyrogen.models.translation.CycleGAN`.

The critics' parts train in their own steps (:class:`~pyrogen.train.AdversarialStep`,
:class:`~pyrogen.train.steps.cycle.CycleGANStep`).

References:
  1. Image-to-Image Translation with Conditional Adversarial Networks, P. Isola, J.-Y. Zhu,
     T. Zhou, A. A. Efros (2017).
  2. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks,
     J.-Y. Zhu, T. Park, P. Isola, A. A. Efros (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pyrogen.infer.adversarial import AdversarialLoss, _site_value, adversarial_loss
from pyrogen.infer.compose import WeightedLoss


def _kwarg(name: str) -> Callable[..., torch.Tensor]:
    def target(*args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get(name) is None:
            raise ValueError(
                f"The L1 term compares the generated site with the keyword argument {name!r} of"
                f" the program, which was not given; call the program with {name}=<targets>."
            )
        return kwargs[name]

    return target


class SiteL1:
    r"""Mean absolute difference :math:`\frac{1}{ND}\sum_{i,j} |x_{ij} - t_{ij}|` between the
    value at ``site`` of one run of ``model`` (replayed on ``guide``) and a target.

    :param site: the generated example's site (a deterministic or latent site).
    :param target: the name of the program's keyword argument holding the targets (default
        ``"target"``), or a function ``fn(*args, **kwargs)`` of the program's arguments.
    """

    def __init__(self, site: str = "x", target: str | Callable[..., torch.Tensor] = "target"):
        if not isinstance(site, str) or not site:
            raise ValueError(f"site must be a non-empty site name, got {site!r}.")
        self.site = site
        self.target = _kwarg(target) if isinstance(target, str) else target
        if not callable(self.target):
            raise TypeError(f"target must be a keyword name or a function, got {target!r}.")

    def differentiable_loss(self, model: Callable, guide: Callable | None, *args, **kwargs):
        value = _site_value(model, guide, self.site, args, kwargs)
        target = self.target(*args, **kwargs).to(value)
        if target.shape != value.shape:
            raise ValueError(
                f"The L1 target has shape {tuple(target.shape)} but site {self.site!r} has shape"
                f" {tuple(value.shape)}; give one target per generated example."
            )
        return (value - target).abs().mean()

    __call__ = differentiable_loss

    def loss(self, model: Callable, guide: Callable | None, *args, **kwargs) -> float:
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def __repr__(self) -> str:
        return f"SiteL1(site={self.site!r})"


def pix2pix_loss(
    critic: Callable[..., torch.Tensor] | AdversarialLoss,
    l1_weight: float = 100.0,
    adv_weight: float = 1.0,
    loss: str = "nsgan",
    site: str = "x",
    target: str = "target",
) -> tuple[AdversarialLoss, WeightedLoss]:
    r"""pix2pix's objective: ``(adv, WeightedLoss([(adv_weight, adv), (l1_weight, SiteL1)]))``,
    the adversarial loss ``adv`` (named ``loss``, on the conditional ``critic(x, y)``; its critic
    part trains the critic) and the generator's objective
    :math:`\lambda_{adv}\mathcal{L}_{G} + \lambda_{L1}\,\mathcal{L}_{L1}` (paper: λ_L1 = 100).
    The program is called ``model(n, y=inputs, target=targets)``."""
    adv = (
        critic if isinstance(critic, AdversarialLoss) else adversarial_loss(loss, critic, site=site)
    )
    return adv, WeightedLoss([(adv_weight, adv), (l1_weight, SiteL1(site, target))])


def cycle_loss(
    adv_a: AdversarialLoss, adv_b: AdversarialLoss, cycle_weight: float = 10.0
) -> WeightedLoss:
    r"""CycleGAN's generators' objective :math:`\mathcal{L}_{GAN}(G, D_B) + \mathcal{L}_{GAN}(F,
    D_A) + \lambda(\mathcal{L}_1(F(G(a)), a) + \mathcal{L}_1(G(F(b)), b))` (paper: λ = 10) on a
    program ``model(x_a, x_b)`` with the sites ``fake_a``, ``fake_b``, ``rec_a``, ``rec_b``;
    ``adv_a`` scores ``fake_a`` with :math:`D_A`, ``adv_b`` scores ``fake_b`` with :math:`D_B`."""
    return WeightedLoss(
        [
            (1.0, adv_b),
            (1.0, adv_a),
            (cycle_weight, SiteL1("rec_a", target=lambda x_a, x_b: x_a)),
            (cycle_weight, SiteL1("rec_b", target=lambda x_a, x_b: x_b)),
        ]
    )
