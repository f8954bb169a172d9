r"""Alternating adversarial training as a :class:`~pyrogen.train.TrainingStep`.

One call of :class:`AdversarialStep` is one generator update preceded by k critic updates
(Goodfellow et al. [1], Algorithm 1):

.. math::
    \phi &\leftarrow \phi - \eta_\phi \nabla_\phi \mathcal{L}_d(\phi, \theta)
    \quad \text{(k times, one real batch each)} \\
    \theta &\leftarrow \theta - \eta_\theta \nabla_\theta \mathcal{L}_g(\phi, \theta)

with separate optimizers for the generator and the critic, so it runs in the same
:class:`~pyrogen.train.Trainer` as SVI::

    gen, critic = Generator(latent_dim=2, data_dim=2), Critic(2)
    step = AdversarialStep(gen, critic, loss="wgan-gp")        # paper defaults of WGAN-GP
    history = Trainer(step, batch_size=256, steps=2000).fit(load_dataset("ring8").train_x)
    history.column("w1")                                       # the critic's W1 estimates

The step is atomic: before every parameter update its loss and the gradients of the
parameters it changes are checked, and a NaN/Inf raises :class:`NonFiniteError` after undoing
the step's earlier critic updates (critic parameters and buffers, the critic optimizer's state,
the learning rates, the generator's buffers), so a skipped step (``nonfinite="skip"``) changed
nothing.

Paper defaults by loss name (:data:`PRESETS`): GAN (and nsgan, hinge) Adam 2e-4,
β = (0.5, 0.999), k = 1 [1, 4]; WGAN RMSprop 5e-5, c = 0.01, k = 5 [2]; WGAN-GP Adam 1e-4,
β = (0, 0.9), λ = 10, k = 5 [3].

References:
  1. Generative Adversarial Nets, I. Goodfellow et al. (2014).
  2. Wasserstein GAN, M. Arjovsky, S. Chintala, L. Bottou (2017).
  3. Improved Training of Wasserstein GANs, I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin,
     A. Courville (2017).
  4. Unsupervised Representation Learning with Deep Convolutional GANs, A. Radford, L. Metz,
     S. Chintala (2016).
  5. The Unusual Effectiveness of Averaging in GAN Training, Y. Yazıcı, C.-S. Foo, S. Winkler,
     K.-H. Yap, G. Piliouras, V. Chandrasekhar (2019).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pyrogen.infer.adversarial import AdversarialLoss, adversarial_loss
from pyrogen.train.presets import DEFAULT_PRESET, PRESETS
from pyrogen.train.steps.base import NonFiniteError


def _make_optim(params, optim: str, lr: float, betas) -> torch.optim.Optimizer:
    if optim == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas or (0.9, 0.999))
    if optim == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"Unknown optimizer {optim!r}; expected 'adam' or 'rmsprop'.")


def _params(optim: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optim.param_groups for p in group["params"]]


def _check_finite(what: str, terms: dict[str, torch.Tensor]) -> None:
    bad = [name for name, value in terms.items() if not torch.isfinite(value).all()]
    if bad:
        values = ", ".join(f"{name} = {float(terms[name].detach())}" for name in bad)
        raise NonFiniteError(f"the {what} is not finite ({values})")


def _check_gradients(what: str, params: list[torch.Tensor], module: nn.Module) -> None:
    grads = [p.grad for p in params if p.grad is not None]
    # fast path: a NaN/Inf anywhere makes the sum non-finite (isfinite() is ~10x slower)
    if not grads or math.isfinite(torch.stack([g.sum() for g in grads]).sum()):
        return
    names = {id(p): name for name, p in module.named_parameters()}
    bad = [
        names.get(id(p), f"#{i} of the optimizer")
        for i, p in enumerate(params)
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    if bad:  # else only the sum overflowed
        raise NonFiniteError(f"non-finite gradient of {what} parameter(s) {bad[:5]}")


@torch.no_grad()
def _snapshot(
    tensors: list[torch.Tensor],
    optim: torch.optim.Optimizer,
    lr_optims: tuple[torch.optim.Optimizer, ...],
) -> Callable[[], None]:
    """Copy ``tensors``, ``optim``'s state and the learning rates of ``lr_optims``; the returned
    function puts them back in place (the optimizers keep pointing at the same tensors)."""
    saved = [(t, t.clone()) for t in tensors]
    state = {
        p: {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in s.items()}
        for p, s in optim.state.items()
    }
    lrs = [(group, group["lr"]) for opt in lr_optims for group in opt.param_groups]

    @torch.no_grad()
    def restore() -> None:
        for live, copied in saved:
            live.copy_(copied)
        optim.state.clear()
        optim.state.update(state)
        for group, lr in lrs:
            group["lr"] = lr

    return restore


class AdversarialStep:
    r"""k critic updates then one generator update per call (see the module docs).

    :param generator: an ``nn.Module`` with a Pyro program ``generator.model(n)`` that records
        the generated batch at a site (e.g. :class:`pyrogen.models.gan.Generator`).
    :param critic: ``nn.Module`` returning one score per example.
    :param loss: a name of :data:`~pyrogen.infer.adversarial.LOSSES` (its :data:`PRESETS` give
        the optimizers) or an :class:`~pyrogen.infer.adversarial.AdversarialLoss` on ``critic``
        (optimizers then default to the preset of ``loss.name``).
    :param critic_steps: k, critic updates per generator update (default: the preset's).
    :param lr: generator learning rate (default: the preset's).
    :param critic_lr: critic learning rate (default: ``lr``).
    :param betas: Adam's β (default: the preset's).
    :param generator_optim: a ``torch.optim`` optimizer of the generator (overrides the preset).
    :param critic_optim: a ``torch.optim`` optimizer of the critic (overrides the preset).
    :param site: the generator's output site (default: ``generator.site`` or ``"x"``).
    :param lr_decay: fraction of the final generator steps over which both learning rates
        decay linearly to 0 (0 = constant rates; needs ``total_steps``). Late-training decay
        lets the generator settle on the modes instead of oscillating around them.
    :param total_steps: the number of generator steps of the run (for ``lr_decay``).
    :param ema: decay β of an exponential moving average of the generator's weights
        (Yazıcı et al. [5]): after every generator update ``θ_ema ← β θ_ema + (1 − β) θ``.
        The average is the module :attr:`ema_generator` (a copy of ``generator`` made at
        construction; buffers are copied); sample from :attr:`sampler`. ``None`` = no average.
    :param loss_kwargs: ``clip=`` (wgan) or ``penalty=`` (wgan-gp), overriding the preset.

    Each call takes ``batches_per_step = critic_steps + 1`` real batches: one per critic update,
    and the last one sets the generator's batch size. It returns ``{"loss": generator loss,
    "critic_loss": ..., "w1": ...}`` (``w1``, and ``penalty`` for wgan-gp, from the last critic
    update; ``value`` = V for gan/nsgan). A NaN/Inf in any of these or in a gradient raises
    :class:`NonFiniteError` and the call changes nothing (see the module docs).

    ``gradient_hooks`` (a list of ``fn(params)``) run between each backward pass and the check
    and update that follow it (data-parallel training averages the gradients there, so every
    rank checks the same gradients).
    """

    def __init__(
        self,
        generator: nn.Module,
        critic: nn.Module,
        loss: str | AdversarialLoss = "wgan-gp",
        *,
        critic_steps: int | None = None,
        lr: float | None = None,
        critic_lr: float | None = None,
        betas: tuple[float, float] | None = None,
        generator_optim: torch.optim.Optimizer | None = None,
        critic_optim: torch.optim.Optimizer | None = None,
        site: str | None = None,
        lr_decay: float = 0.0,
        total_steps: int | None = None,
        ema: float | None = None,
        **loss_kwargs: float,
    ) -> None:
        if not isinstance(generator, nn.Module) or not callable(getattr(generator, "model", None)):
            raise TypeError(
                "generator must be an nn.Module with a Pyro program .model(n)"
                f" (e.g. pyrogen.models.gan.Generator), got {type(generator).__name__}."
            )
        if not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}.")
        site = site if site is not None else getattr(generator, "site", "x")
        if isinstance(loss, AdversarialLoss):
            if loss.critic is not critic:
                raise ValueError("The loss was built on another critic than the one given.")
            if loss_kwargs:
                raise ValueError(f"{sorted(loss_kwargs)} only apply when loss is given by name.")
            preset = PRESETS.get(loss.name, DEFAULT_PRESET)
        elif isinstance(loss, str):
            if loss not in PRESETS:
                raise ValueError(
                    f"Unknown adversarial loss {loss!r}; expected one of {sorted(PRESETS)}."
                )
            preset = PRESETS[loss]
            loss = adversarial_loss(
                loss, critic, site=site, **{**preset.loss_kwargs, **loss_kwargs}
            )
        else:
            raise TypeError(
                f"loss must be a name or an AdversarialLoss, got {type(loss).__name__}."
            )
        critic_steps = preset.critic_steps if critic_steps is None else critic_steps
        if critic_steps < 1:
            raise ValueError(f"Expected critic_steps >= 1, got {critic_steps}.")
        lr = preset.lr if lr is None else lr
        critic_lr = lr if critic_lr is None else critic_lr
        for name, value in (("lr", lr), ("critic_lr", critic_lr)):
            if not value > 0:
                raise ValueError(f"Expected a learning rate {name} > 0, got {value}.")
        betas = preset.betas if betas is None else tuple(betas)
        self.generator, self.critic, self.loss = generator, critic, loss
        self.critic_steps = int(critic_steps)
        self.generator_optim = generator_optim or _make_optim(
            generator.parameters(), preset.optim, lr, betas
        )
        self.critic_optim = critic_optim or _make_optim(
            critic.parameters(), preset.optim, critic_lr, betas
        )
        if not 0.0 <= lr_decay <= 1.0:
            raise ValueError(f"Expected 0 <= lr_decay <= 1, got {lr_decay}.")
        if lr_decay > 0 and (total_steps is None or total_steps < 1):
            raise ValueError(f"lr_decay={lr_decay} needs total_steps >= 1, got {total_steps}.")
        if ema is not None and not 0.0 <= ema < 1.0:
            raise ValueError(f"Expected an EMA decay 0 <= ema < 1 (or None), got {ema}.")
        self.lr_decay, self.total_steps, self.ema = float(lr_decay), total_steps, ema
        self._base_lrs = [
            [group["lr"] for group in opt.param_groups]
            for opt in (self.generator_optim, self.critic_optim)
        ]
        self.ema_generator: nn.Module | None = None
        if ema is not None:
            self.ema_generator = copy.deepcopy(generator)
            self.ema_generator.requires_grad_(False)
        self.num_steps = 0
        self.gradient_hooks: list[Callable[[list[torch.Tensor]], None]] = []

    @property
    def sampler(self) -> nn.Module:
        """The generator to sample from: :attr:`ema_generator` if ``ema`` is set, else
        ``generator``."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base learning rates at (0-based) generator step ``step``: 1, then
        linear to 0 over the last ``lr_decay`` fraction of ``total_steps``."""
        if self.lr_decay <= 0 or self.total_steps is None:
            return 1.0
        start = self.total_steps * (1.0 - self.lr_decay)
        if step < start:
            return 1.0
        return max(0.0, (self.total_steps - step) / (self.total_steps - start))

    def _set_lrs(self) -> None:
        factor = self.lr_factor(self.num_steps)
        for opt, bases in zip(
            (self.generator_optim, self.critic_optim), self._base_lrs, strict=True
        ):
            for group, base in zip(opt.param_groups, bases, strict=True):
                group["lr"] = base * factor

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_generator is None:
            return
        for avg, p in zip(
            self.ema_generator.parameters(), self.generator.parameters(), strict=True
        ):
            avg.lerp_(p.detach(), 1.0 - self.ema)
        for avg, b in zip(self.ema_generator.buffers(), self.generator.buffers(), strict=True):
            avg.copy_(b)

    @property
    def batches_per_step(self) -> int:
        """Real batches consumed per call: one per critic update plus one for the generator."""
        return self.critic_steps + 1

    def _device(self) -> torch.device:
        for p in self.generator.parameters():
            return p.device
        return torch.device("cpu")

    def _apply(
        self, optim: torch.optim.Optimizer, terms: dict[str, torch.Tensor], owner: nn.Module
    ) -> None:
        """Backward of the first of ``terms``, gradient hooks, then the update of ``optim`` only
        if every term and every gradient is finite (checked after the hooks, so that
        data-parallel ranks check the same averaged gradients and fail together)."""
        what = "critic" if owner is self.critic else "generator"
        params = _params(optim)
        try:
            next(iter(terms.values())).backward()
            for hook in self.gradient_hooks:
                hook(params)
            _check_finite(f"{what} loss", terms)
            _check_gradients(what, params, owner)
            optim.step()
        finally:
            optim.zero_grad(set_to_none=True)

    def critic_update(self, real: torch.Tensor) -> dict[str, float]:
        """One critic update on the real batch ``real`` against ``len(real)`` generated examples
        (raises :class:`NonFiniteError` before changing anything on a NaN/Inf loss, diagnostic or
        gradient)."""
        self.critic_optim.zero_grad(set_to_none=True)
        terms = self.loss.critic_terms(self.generator.model, None, len(real), real=real)
        self._apply(self.critic_optim, terms, self.critic)
        self.loss.after_critic_step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def generator_update(self, n: int) -> float:
        """One generator update on ``n`` generated examples; the critic is frozen meanwhile
        (raises :class:`NonFiniteError` before changing anything on a NaN/Inf loss or
        gradient)."""
        flags = [p.requires_grad for p in self.critic.parameters()]
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            self.generator_optim.zero_grad(set_to_none=True)
            loss = self.loss.generator_loss(self.generator.model, None, n)
            self._apply(self.generator_optim, {"loss": loss}, self.generator)
        finally:
            for p, flag in zip(self.critic.parameters(), flags, strict=True):
                p.requires_grad_(flag)
        return float(loss.detach())

    def _undo(self) -> Callable[[], None]:
        """Snapshot of everything a failing call could have changed (see :func:`_snapshot`)."""
        tensors = {id(t): t for t in (*self.critic.parameters(), *_params(self.critic_optim))}
        tensors.update((id(b), b) for b in (*self.critic.buffers(), *self.generator.buffers()))
        optims = (self.generator_optim, self.critic_optim)
        return _snapshot(list(tensors.values()), self.critic_optim, optims)

    def __call__(self, *batches: torch.Tensor) -> dict[str, float]:
        if len(batches) != self.batches_per_step:
            raise ValueError(
                f"AdversarialStep with critic_steps={self.critic_steps} needs"
                f" {self.batches_per_step} real batches per call, got {len(batches)}."
            )
        device = self._device()
        undo = self._undo()
        where = "generator update"
        try:
            if self.lr_decay > 0:  # else the optimizers' rates (a torch scheduler may set them)
                self._set_lrs()
            self.generator.train()
            self.critic.train()
            for i, batch in enumerate(batches[:-1]):
                where = f"critic update {i + 1} of {self.critic_steps}"
                record = self.critic_update(batch.to(device))
            where = "generator update"
            loss = self.generator_update(len(batches[-1]))
        except NonFiniteError as err:
            undo()
            raise NonFiniteError(f"{where.capitalize()}: {err}; the step changed nothing.") from err
        except BaseException:
            undo()  # the step is atomic
            raise
        self._update_ema()
        self.num_steps += 1
        return {"loss": loss, **record}

    def validate(self, batch: torch.Tensor) -> None:
        """Raise a ``ValueError`` when real ``batch`` cannot be compared with generated data: not
        ``(n, data_dim)`` or NaN/inf (the :class:`~pyrogen.train.Trainer` calls this on the first
        batch)."""
        dim = getattr(self.generator, "data_dim", None)
        if batch.dim() != 2 or (dim is not None and batch.shape[1] != dim):
            raise ValueError(
                f"Real data must have shape (n, {dim}) like the generator's output, got"
                f" {tuple(batch.shape)}; flatten the examples or build the generator with"
                f" data_dim={batch.shape[-1]}."
            )
        if not torch.isfinite(batch).all():
            raise ValueError("The real data contain NaN or infinite values; clean them first.")

    def state_dict(self) -> dict[str, Any]:
        """Generator, critic, both optimizers' states and the generator's moving average
        (``generator_ema``, if ``ema`` is set), loadable with ``torch.load(weights_only=True)``."""
        state = {
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "generator_optim": self.generator_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "num_steps": self.num_steps,
        }
        if self.ema_generator is not None:
            state["generator_ema"] = self.ema_generator.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.generator_optim.load_state_dict(state["generator_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self.num_steps = int(state.get("num_steps", 0))
        if self.ema_generator is not None:
            if "generator_ema" not in state:
                raise ValueError(
                    "This AdversarialStep keeps a generator EMA (ema is set) but the state has"
                    " no 'generator_ema'; it was saved without ema."
                )
            self.ema_generator.load_state_dict(state["generator_ema"])
