r"""CycleGAN training (Zhu et al. [1]) as a :class:`~pyrogen.train.TrainingStep`: two critics,
one joint update of both generators.

One call on a batch ``(x_a, x_b)`` of the two (unpaired) domains is

.. math::
    \phi_A &\leftarrow \phi_A - \eta \nabla_{\phi_A} \mathcal{L}_{D}(D_A; a, F(b)), \qquad
    \phi_B \leftarrow \phi_B - \eta \nabla_{\phi_B} \mathcal{L}_{D}(D_B; b, G(a)), \\
    \theta &\leftarrow \theta - \eta \nabla_\theta \big[\mathcal{L}_{G}(D_B, G(a))
      + \mathcal{L}_{G}(D_A, F(b)) + \lambda(\|F(G(a)) - a\|_1 + \|G(F(b)) - b\|_1)\big]

with θ the parameters of both generators (:func:`~pyrogen.infer.translation.cycle_loss`).

Design: two :class:`~pyrogen.train.AdversarialStep`\ s on the same program, one per critic.
Step B (critic :math:`D_B` on the site ``fake_b``) owns the generators' optimizer and its
generator loss is the whole CycleGAN objective; step A (critic :math:`D_A` on ``fake_a``) is
used for its critic update only. So both critics' updates, the joint generator update, the
NaN/Inf checks and the parameter discovery of any Pyro program are AdversarialStep's; this class
only orders the three updates, makes the call atomic over both (a NaN/Inf anywhere undoes both
critic updates) and saves one state.

References:
  1. Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks,
     J.-Y. Zhu, T. Park, P. Isola, A. A. Efros (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pyrogen.infer.adversarial import adversarial_loss
from pyrogen.infer.translation import cycle_loss
from pyrogen.train.steps.adversarial import AdversarialStep
from pyrogen.train.steps.base import NonFiniteError


class _Recorded:
    """A loss term that remembers its last value (for the ``cycle_loss`` report)."""

    def __init__(self, term: Any) -> None:
        self.term, self.last = term, float("nan")

    def __call__(self, model, guide, *args, **kwargs) -> torch.Tensor:
        value = self.term(model, guide, *args, **kwargs)
        self.last = float(value.detach())
        return value


class CycleGANStep:
    r"""One CycleGAN update per call on a batch ``(x_a, x_b)`` (see the module docs).

    :param program: a Pyro program ``model(x_a, x_b)`` with the deterministic sites
        ``fake_b``, ``rec_a``, ``fake_a``, ``rec_b`` (e.g.
        :class:`~pyrogen.models.translation.CycleGAN`); its parameters are found by tracing.
    :param critic_a: :math:`D_A`, scoring images of domain A (``(batch,)`` scores).
    :param critic_b: :math:`D_B`, scoring images of domain B.
    :param loss: adversarial loss name (``nsgan``, ``hinge``, ``wgan-gp``, ...; the paper uses
        least squares, not offered here).
    :param cycle_weight: λ of the cycle-consistency terms (paper: 10).
    :param lr: learning rate of generators and critics (paper: 2e-4, Adam β = (0.5, 0.999)).
    :param betas: Adam's β.
    """

    batches_per_step = 1

    def __init__(
        self,
        program: Callable,
        critic_a: nn.Module,
        critic_b: nn.Module,
        loss: str = "nsgan",
        cycle_weight: float = 10.0,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
    ) -> None:
        if not cycle_weight >= 0:
            raise ValueError(f"Expected cycle_weight >= 0, got {cycle_weight}.")
        adv_a = adversarial_loss(loss, critic_a, site="fake_a")
        adv_b = adversarial_loss(loss, critic_b, site="fake_b")
        objective = cycle_loss(adv_a, adv_b, cycle_weight)
        self._cycle = [_Recorded(term) for _, term in objective.terms[2:]]
        weights = [w for w, _ in objective.terms[2:]]
        objective.terms[2:] = list(zip(weights, self._cycle, strict=True))
        common = {"inputs": "data", "critic_steps": 1, "lr": lr, "betas": betas}
        self.step_a = AdversarialStep(program, critic_a, adv_a, real=lambda a, b: a, **common)
        self.step_b = AdversarialStep(
            program, critic_b, adv_b, real=lambda a, b: b, generator_loss=objective, **common
        )
        self.program, self.critic_a, self.critic_b = program, critic_a, critic_b
        self.objective, self.num_steps = objective, 0
        # one list of gradient hooks, run after each of the three backward passes
        self.gradient_hooks = self.step_a.gradient_hooks = self.step_b.gradient_hooks

    def setup(self, x_a: torch.Tensor, x_b: torch.Tensor) -> None:
        """Find the generators' parameters (see :meth:`AdversarialStep.setup`)."""
        self.step_b.setup(x_a, x_b)
        self.step_a.setup(x_a, x_b)  # its own generator optimizer is never stepped

    def validate(self, x_a: torch.Tensor, x_b: torch.Tensor) -> None:
        """Refuse batches whose two domains' images differ in shape or hold NaN/Inf."""
        if x_a.shape[1:] != x_b.shape[1:]:
            raise ValueError(
                f"The domains' images have shapes {tuple(x_a.shape[1:])} and"
                f" {tuple(x_b.shape[1:])}; CycleGAN translates between images of one shape."
            )
        self.step_a.validate(x_a, x_b)
        self.step_b.validate(x_a, x_b)

    def __call__(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, float]:
        device = self.step_b._device()
        x_a, x_b = x_a.to(device), x_b.to(device)
        if self.step_b._generator_optim is None:
            self.setup(x_a, x_b)
        undo_a, undo_b = self.step_a._undo(), self.step_b._undo()
        where = "critic A update"
        try:
            for module in (*self.step_b.modules(), self.critic_a, self.critic_b):
                module.train()
            rec_a = self.step_a.critic_update(x_a, x_b)
            where = "critic B update"
            rec_b = self.step_b.critic_update(x_a, x_b)
            where = "generator update"
            loss = self.step_b.generator_update(x_a, x_b)
        except NonFiniteError as err:
            undo_b()
            undo_a()
            raise NonFiniteError(f"{where.capitalize()}: {err}; the step changed nothing.") from err
        except BaseException:
            undo_b()
            undo_a()
            raise
        self.num_steps += 1
        self.step_a.num_steps = self.step_b.num_steps = self.num_steps
        return {
            "loss": loss,
            "cycle_loss": sum(term.last for term in self._cycle),
            "critic_a_loss": rec_a["critic_loss"],
            "critic_b_loss": rec_b["critic_loss"],
        }

    def state_dict(self) -> dict[str, Any]:
        """Step B's state (generators, :math:`D_B`, both optimizers) plus :math:`D_A` and its
        optimizer."""
        return {
            **self.step_b.state_dict(),
            "critic_a": self.critic_a.state_dict(),
            "critic_a_optim": self.step_a.critic_optim.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_b.load_state_dict(state)
        self.critic_a.load_state_dict(state["critic_a"])
        self.step_a.critic_optim.load_state_dict(state["critic_a_optim"])
        self.num_steps = self.step_a.num_steps = self.step_b.num_steps
