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
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from pyrogen.infer.adversarial import AdversarialLoss, adversarial_loss
from pyrogen.infer.compose import differentiable
from pyrogen.train.presets import DEFAULT_PRESET, PRESETS
from pyrogen.train.steps import program
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


def _check_gradients(what: str, params: list[torch.Tensor], names: dict[int, str]) -> None:
    """Raise :class:`NonFiniteError` naming the ``params`` whose gradient has a NaN/Inf."""
    grads = [p.grad for p in params if p.grad is not None]
    # fast path: a NaN/Inf anywhere makes the sum non-finite (isfinite() is ~10x slower)
    if not grads or math.isfinite(torch.stack([g.sum() for g in grads]).sum()):
        return
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

    :param generator: the generator's Pyro program, which records a generated example at
        ``site``: a function using ``pyro.module``/``pyro.param``, a ``PyroModule`` whose
        ``forward`` is the program, a bound method (``vaegan.model``), or an ``nn.Module`` with a
        ``.model`` method (e.g. :class:`pyrogen.models.gan.Generator`). Its parameters are those
        the program registers with Pyro, found by tracing it as ``pyro.infer.SVI`` does (a plain
        ``nn.Module`` must be registered with ``pyro.module``).
    :param critic: ``nn.Module`` returning one score per example (``critic(x)`` or
        ``critic(x, y)``).
    :param loss: a name of :data:`~pyrogen.infer.adversarial.LOSSES` (its :data:`PRESETS` give
        the optimizers) or an :class:`~pyrogen.infer.adversarial.AdversarialLoss` on ``critic``
        (optimizers then default to the preset of ``loss.name``).
    :param guide: an optional guide; the model is replayed on its trace, and the guide's
        parameters train with the generator's (VAE-GAN, adversarial auto-encoders).
    :param generator_loss: the generator/guide side, any Pyro loss with a
        ``differentiable_loss`` or a callable ``loss(model, guide, *args, **kwargs)``, e.g.
        ``WeightedLoss([(1, TraceMeanField_ELBO()), (lam, adv)])``; default: ``loss``'s
        generator part.
    :param inputs: how the program is called on a batch: ``"count"`` (default, GANs:
        ``model(len(x))``, or ``model(len(x), y=y)`` for a batch ``(x, y)``), ``"data"``
        (``model(*batch)``, ``guide(*batch)``) or a function ``fn(*batch) -> (args, kwargs)``.
    :param real: ``fn(*batch) -> tensor`` giving the critic's real examples of a batch (default
        the batch's first tensor; an adversarial auto-encoder's are prior samples).
    :param modules: further ``nn.Module``\ s whose buffers belong to the generator (networks a
        function registers with ``pyro.module``), saved and restored with the step.
    :param critic_steps: k, critic updates per generator update (default: the preset's).
    :param lr: generator learning rate (default: the preset's).
    :param critic_lr: critic learning rate (default: ``lr``).
    :param betas: Adam's β (default: the preset's).
    :param generator_optim: a function ``params -> torch.optim.Optimizer`` building the
        generator's optimizer once its parameters are known (or an optimizer already built on
        them); overrides the preset.
    :param critic_optim: a ``torch.optim`` optimizer of the critic (overrides the preset).
    :param site: the generated example's site (default: ``generator.site`` or ``"x"``).
    :param lr_decay: fraction of the final generator steps over which both learning rates
        decay linearly to 0 (0 = constant rates; needs ``total_steps``). Late-training decay
        lets the generator settle on the modes instead of oscillating around them.
    :param total_steps: the number of generator steps of the run (for ``lr_decay``).
    :param ema: decay β of an exponential moving average of the generator's weights
        (Yazıcı et al. [5]): after every generator update ``θ_ema ← β θ_ema + (1 − β) θ``.
        The average is the module :attr:`ema_generator` (a copy of the generator module made at
        construction; buffers are copied); sample from :attr:`sampler`. ``None`` = no average.
        Needs the generator as a module that owns all its parameters.
    :param loss_kwargs: ``clip=`` (wgan) or ``penalty=`` (wgan-gp), overriding the preset.

    Each call takes ``batches_per_step = critic_steps + 1`` real batches (tensors, or tuples of
    tensors such as ``(x, y)``): one per critic update, and the last one for the generator
    update. It returns ``{"loss": generator loss, "critic_loss": ..., "w1": ...}`` (``w1``, and
    ``penalty`` for wgan-gp, from the last critic update; ``value`` = V for gan/nsgan). A NaN/Inf
    in any of these or in a gradient raises :class:`NonFiniteError` and the call changes
    nothing (see the module docs).

    The generator's optimizer exists once the parameters are known: after :meth:`setup` (the
    :class:`~pyrogen.train.Trainer` calls it) or the first call. ``gradient_hooks`` (a list of
    ``fn(params)``) run between each backward pass and the check and update that follow it
    (data-parallel training averages the gradients there, so every rank checks the same
    gradients).
    """

    def __init__(
        self,
        generator: Callable,
        critic: nn.Module,
        loss: str | AdversarialLoss = "wgan-gp",
        *,
        guide: Callable | None = None,
        generator_loss: Any = None,
        inputs: str | program.Inputs = "count",
        real: Callable[..., torch.Tensor] | None = None,
        modules: Iterable[nn.Module] = (),
        critic_steps: int | None = None,
        lr: float | None = None,
        critic_lr: float | None = None,
        betas: tuple[float, float] | None = None,
        generator_optim: torch.optim.Optimizer | Callable | None = None,
        critic_optim: torch.optim.Optimizer | None = None,
        site: str | None = None,
        lr_decay: float = 0.0,
        total_steps: int | None = None,
        ema: float | None = None,
        **loss_kwargs: float,
    ) -> None:
        self.program = program.program_of(generator)
        if guide is not None and not callable(guide):
            raise TypeError(f"guide must be a Pyro program (callable), got {type(guide).__name__}.")
        if not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}.")
        if real is not None and not callable(real):
            raise TypeError(f"real must be a function fn(*batch) -> tensor, got {real!r}.")
        site = site if site is not None else getattr(generator, "site", "x")
        loss, preset = self._loss_and_preset(loss, critic, site, loss_kwargs)
        critic_steps = preset.critic_steps if critic_steps is None else critic_steps
        if critic_steps < 1:
            raise ValueError(f"Expected critic_steps >= 1, got {critic_steps}.")
        lr = preset.lr if lr is None else lr
        critic_lr = lr if critic_lr is None else critic_lr
        for name, value in (("lr", lr), ("critic_lr", critic_lr)):
            if not value > 0:
                raise ValueError(f"Expected a learning rate {name} > 0, got {value}.")
        betas = preset.betas if betas is None else tuple(betas)
        self.generator, self.guide, self.critic, self.loss = generator, guide, critic, loss
        self.generator_loss = self.loss if generator_loss is None else generator_loss
        self._generator_loss_fn = differentiable(self.generator_loss)
        self.inputs = program.resolve_inputs(inputs)
        self.real = real
        self.extra_modules = list(modules)
        for module in self.extra_modules:
            if not isinstance(module, nn.Module):
                raise TypeError(f"modules= takes nn.Modules, got {type(module).__name__}.")
        self.critic_steps = int(critic_steps)
        self.optim_name, self.lr, self.critic_lr, self.betas = preset.optim, lr, critic_lr, betas
        self._generator_optim_arg = generator_optim
        self._generator_optim: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None
        self.generator_params: dict[str, torch.Tensor] = {}
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
        self._base_lrs: list[list[float]] | None = None
        self.ema_generator: nn.Module | None = None
        if ema is not None:
            owner = program.owner_of(self.program)
            if owner is None:
                raise ValueError(
                    "ema= averages the generator module's weights, but the generator is a"
                    " function; give it as a PyroModule (or an nn.Module with .model), or drop ema."
                )
            self.ema_generator = copy.deepcopy(owner)
            self.ema_generator.requires_grad_(False)
        self.num_steps = 0
        self.gradient_hooks: list[Callable[[list[torch.Tensor]], None]] = []

    @staticmethod
    def _loss_and_preset(loss, critic, site, loss_kwargs):
        if isinstance(loss, AdversarialLoss):
            if loss.critic is not critic:
                raise ValueError("The loss was built on another critic than the one given.")
            if loss_kwargs:
                raise ValueError(f"{sorted(loss_kwargs)} only apply when loss is given by name.")
            return loss, PRESETS.get(loss.name, DEFAULT_PRESET)
        if isinstance(loss, str):
            if loss not in PRESETS:
                raise ValueError(
                    f"Unknown adversarial loss {loss!r}; expected one of {sorted(PRESETS)}."
                )
            preset = PRESETS[loss]
            kwargs = {**preset.loss_kwargs, **loss_kwargs}
            return adversarial_loss(loss, critic, site=site, **kwargs), preset
        raise TypeError(f"loss must be a name or an AdversarialLoss, got {type(loss).__name__}.")

    # -- the generator's parameters and optimizer -------------------------------------------------
    def modules(self) -> list[nn.Module]:
        """The generator side's modules: the program's and the guide's owners (a module program
        itself or a bound method's ``self``) and ``modules=``; their buffers are the step's."""
        owners = (program.owner_of(self.program), program.owner_of(self.guide))
        return program.unique_modules((*owners, *self.extra_modules))

    @property
    def generator_optim(self) -> torch.optim.Optimizer:
        """The optimizer of the generator's (and guide's) parameters."""
        if self._generator_optim is None:
            raise RuntimeError(
                "The generator's parameters are found by tracing its program on a batch, which"
                " has not happened yet: call step.setup(*batch) first (the Trainer does)."
            )
        return self._generator_optim

    def setup(self, *batch: torch.Tensor) -> None:
        """Find the generator's (and guide's) parameters by running its loss once on ``batch``
        (without gradients, random draws or buffer updates) and build its optimizer."""
        args, kwargs = program.call_inputs(self.inputs, batch)
        params = program.trace_params(
            lambda: self._generator_loss_fn(self.program, self.guide, *args, **kwargs),
            (*self.modules(), self.critic),
            self.critic.parameters(),
        )
        self._add_params(params)

    def _add_params(self, params: dict[str, torch.Tensor]) -> None:
        """Train ``params`` too (the first ones build the optimizer; later ones, registered by a
        program with a dynamic structure, join it as a new parameter group)."""
        new = {n: p for n, p in params.items() if n not in self.generator_params}
        if not new and self._generator_optim is not None:
            return
        if not new:
            raise ValueError(
                "The generator's program registers no trainable parameter with Pyro, so nothing"
                " would train. Make its networks Pyro-visible: a PyroModule (see"
                " pyro.nn.module.to_pyro_module_), or pyro.module('name', net) in the program."
            )
        self.generator_params.update(new)
        if self._generator_optim is None:
            self._generator_optim = self._build_generator_optim(list(new.values()))
            self._base_lrs = [
                [group["lr"] for group in opt.param_groups]
                for opt in (self._generator_optim, self.critic_optim)
            ]
            self._load_pending()  # a state loaded before the parameters were known
        else:
            self._generator_optim.add_param_group({"params": list(new.values())})
            self._base_lrs[0].append(self._generator_optim.param_groups[-1]["lr"])

    def _build_generator_optim(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        given = self._generator_optim_arg
        if given is None:
            return _make_optim(params, self.optim_name, self.lr, self.betas)
        if isinstance(given, torch.optim.Optimizer):
            missing = {id(p) for p in params} - {id(p) for p in _params(given)}
            if missing:
                names = [n for n, p in self.generator_params.items() if id(p) in missing]
                raise ValueError(
                    f"generator_optim does not hold the program's parameters {names[:5]}; build"
                    " it on them, or pass a function params -> optimizer."
                )
            return given
        return given(params)

    def _param_names(self) -> dict[int, str]:
        names = {id(p): n for n, p in self.generator_params.items()}
        for module in self.modules():
            names.update((id(p), n) for n, p in module.named_parameters())
        return names

    # -- learning rates and the moving average ---------------------------------------------------
    @property
    def sampler(self) -> Any:
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
        owner = program.owner_of(self.program)
        for avg, p in zip(self.ema_generator.parameters(), owner.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - self.ema)
        for avg, b in zip(self.ema_generator.buffers(), owner.buffers(), strict=True):
            avg.copy_(b)

    @property
    def batches_per_step(self) -> int:
        """Real batches consumed per call: one per critic update plus one for the generator."""
        return self.critic_steps + 1

    # -- one update ------------------------------------------------------------------------------
    def _apply(
        self, optim: torch.optim.Optimizer, terms: dict[str, torch.Tensor], what: str
    ) -> None:
        """Backward of the first of ``terms``, gradient hooks, then the update of ``optim`` only
        if every term and every gradient is finite (checked after the hooks, so that
        data-parallel ranks check the same averaged gradients and fail together)."""
        params = _params(optim)
        try:
            loss = next(iter(terms.values()))
            if loss.requires_grad:
                loss.backward(inputs=params)
            for hook in self.gradient_hooks:
                hook(params)
            _check_finite(f"{what} loss", terms)
            if what == "critic":
                names = {id(p): n for n, p in self.critic.named_parameters()}
            else:
                names = self._param_names()
            _check_gradients(what, params, names)
            optim.step()
        finally:
            optim.zero_grad(set_to_none=True)

    def _real(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        real = batch[0] if self.real is None else self.real(*batch)
        if not isinstance(real, torch.Tensor):
            raise TypeError(f"real(*batch) must return a tensor, got {type(real).__name__}.")
        return real

    def critic_update(self, *batch: torch.Tensor) -> dict[str, float]:
        """One critic update on one batch: its real examples against as many generated ones
        (raises :class:`NonFiniteError` before changing anything on a NaN/Inf loss, diagnostic or
        gradient)."""
        args, kwargs = program.call_inputs(self.inputs, batch)
        self.critic_optim.zero_grad(set_to_none=True)
        terms = self.loss.critic_terms(
            self.program, self.guide, *args, real=self._real(batch), **kwargs
        )
        self._apply(self.critic_optim, terms, "critic")
        self.loss.after_critic_step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def generator_update(self, *batch: torch.Tensor) -> float:
        """One generator (and guide) update on one batch; the critic is frozen meanwhile
        (raises :class:`NonFiniteError` before changing anything on a NaN/Inf loss or
        gradient). A batch of one int ``n`` means ``n`` generated examples (``inputs="count"``)."""
        if len(batch) == 1 and isinstance(batch[0], int):
            args, kwargs = (batch[0],), {}
        else:
            args, kwargs = program.call_inputs(self.inputs, batch)
        flags = [p.requires_grad for p in self.critic.parameters()]
        for p in self.critic.parameters():
            p.requires_grad_(False)
        try:
            capture = program.ParamCapture(exclude=self.critic.parameters())
            with capture:
                loss = self._generator_loss_fn(self.program, self.guide, *args, **kwargs)
            self._add_params(capture.params)
            self.generator_optim.zero_grad(set_to_none=True)
            self._apply(self.generator_optim, {"loss": loss}, "generator")
        finally:
            for p, flag in zip(self.critic.parameters(), flags, strict=True):
                p.requires_grad_(flag)
        return float(loss.detach())

    def _undo(self) -> Callable[[], None]:
        """Snapshot of everything a failing call could have changed (see :func:`_snapshot`)."""
        tensors = {id(t): t for t in (*self.critic.parameters(), *_params(self.critic_optim))}
        buffers = [b for m in (self.critic, *self.modules()) for b in m.buffers()]
        tensors.update((id(b), b) for b in buffers)
        optims = (self.generator_optim, self.critic_optim)
        return _snapshot(list(tensors.values()), self.critic_optim, optims)

    def __call__(self, *batches: torch.Tensor | tuple[torch.Tensor, ...]) -> dict[str, float]:
        if len(batches) != self.batches_per_step:
            raise ValueError(
                f"AdversarialStep with critic_steps={self.critic_steps} needs"
                f" {self.batches_per_step} real batches per call, got {len(batches)}."
            )
        device = self._device()
        batches = [
            tuple(t.to(device) for t in (b if isinstance(b, tuple | list) else (b,)))
            for b in batches
        ]
        if self._generator_optim is None:
            self.setup(*batches[-1])
        undo = self._undo()
        where = "generator update"
        try:
            if self.lr_decay > 0:  # else the optimizers' rates (a torch scheduler may set them)
                self._set_lrs()
            for module in (*self.modules(), self.critic):
                module.train()
            for i, batch in enumerate(batches[:-1]):
                where = f"critic update {i + 1} of {self.critic_steps}"
                record = self.critic_update(*batch)
            where = "generator update"
            loss = self.generator_update(*batches[-1])
        except NonFiniteError as err:
            undo()
            raise NonFiniteError(f"{where.capitalize()}: {err}; the step changed nothing.") from err
        except BaseException:
            undo()  # the step is atomic
            raise
        self._update_ema()
        self.num_steps += 1
        return {"loss": loss, **record}

    def _device(self) -> torch.device:
        for p in (*self.generator_params.values(), *self.critic.parameters()):
            return p.device
        return torch.device("cpu")

    def validate(self, *batch: torch.Tensor) -> None:
        """Raise a ``ValueError`` when a batch cannot be compared with generated data: real
        examples not ``(n, data_dim)`` of the generator, or NaN/inf (the
        :class:`~pyrogen.train.Trainer` calls this on the first batch)."""
        program.call_inputs(self.inputs, batch)  # raises on batches the program cannot take
        real = self._real(batch)
        dim = getattr(program.owner_of(self.program), "data_dim", None)
        if self.real is None and dim is not None and (real.dim() != 2 or real.shape[1] != dim):
            raise ValueError(
                f"Real data must have shape (n, {dim}) like the generator's output, got"
                f" {tuple(real.shape)}; flatten the examples or build the generator with"
                f" data_dim={real.shape[-1]}."
            )
        if not torch.isfinite(real).all():
            raise ValueError("The real data contain NaN or infinite values; clean them first.")

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Generator (its module's ``state_dict`` as ``"generator"``, other owner modules'
        under ``"generator_modules"``, parameters no module owns by Pyro name under
        ``"generator_params"``), critic, both optimizers' states and the generator's moving
        average (``generator_ema``, if ``ema`` is set); loadable with
        ``torch.load(weights_only=True)``."""
        modules = self.modules()
        owned = {id(p) for m in modules for p in m.parameters()}
        state = {
            "generator": modules[0].state_dict() if modules else {},
            "critic": self.critic.state_dict(),
            "generator_optim": self.generator_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "num_steps": self.num_steps,
        }
        if len(modules) > 1:
            state["generator_modules"] = [m.state_dict() for m in modules[1:]]
        unowned = {n: p.detach() for n, p in self.generator_params.items() if id(p) not in owned}
        if unowned:
            state["generator_params"] = unowned
        if self.ema_generator is not None:
            state["generator_ema"] = self.ema_generator.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a :meth:`state_dict` in place. Before :meth:`setup`, the generator's optimizer
        state and the parameters no module owns wait until setup has found the parameters."""
        modules = self.modules()
        if modules:
            modules[0].load_state_dict(state["generator"])
        for module, saved in zip(modules[1:], state.get("generator_modules", []), strict=False):
            module.load_state_dict(saved)
        self.critic.load_state_dict(state["critic"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self.num_steps = int(state.get("num_steps", 0))
        if self.ema_generator is not None:
            if "generator_ema" not in state:
                raise ValueError(
                    "This AdversarialStep keeps a generator EMA (ema is set) but the state has"
                    " no 'generator_ema'; it was saved without ema."
                )
            self.ema_generator.load_state_dict(state["generator_ema"])
        self._pending_state = state
        if self._generator_optim is not None:
            self._load_pending()

    def _load_pending(self) -> None:
        state, self._pending_state = self._pending_state, None
        if state is None:
            return
        saved_params = state.get("generator_params", {})
        missing = sorted(set(saved_params) - set(self.generator_params))
        if missing:
            raise ValueError(
                f"The state holds generator parameters {missing[:5]} that this step's program"
                " does not register; load it into a step built like the saved one."
            )
        with torch.no_grad():
            for name, value in saved_params.items():
                self.generator_params[name].copy_(value)
        self._generator_optim.load_state_dict(state["generator_optim"])
