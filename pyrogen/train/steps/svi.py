r""":class:`SVIStep`: Pyro's SVI update with guards against non-finite losses and gradients."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyro
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.nn import PyroModule
from pyro.poutine.messenger import Messenger

from pyrogen._compat import param_store_tensors, pending_optim_state, pyro_module_prefix
from pyrogen.infer.elbo import ELBO, _TraceMeanField_ELBO
from pyrogen.infer.importance import rng_untouched
from pyrogen.train import checkpoint as ckpt
from pyrogen.train.steps.base import Batch, NonFiniteError
from pyrogen.train.steps.fast import (
    Ineligible,
    MergedOptimizer,
    backward_elbo,
    mean_field_loss_and_grads,
)
from pyrogen.train.steps.program import owner_of, program_self
from pyrogen.train.steps.replay import Replay

_VALIDATION_CODE = torch.distributions.Distribution.__init__.__code__


class _ShadowedParams(Messenger):
    """Records the ``nn.Parameter`` objects a program hands to ``pyro.param`` (a ``PyroModule``'s or
    ``pyro.module``'s own) for which Pyro's param store returns another tensor: one registered
    under the same name by an earlier model. SVI would update the store's tensor, not the one the
    program computes with."""

    def __init__(self) -> None:
        super().__init__()
        self.params: dict[str, torch.nn.Parameter] = {}

    def _pyro_post_param(self, msg) -> None:
        own = msg["args"][1] if len(msg["args"]) > 1 else None
        if isinstance(own, torch.nn.Parameter):
            value = msg["value"]
            stored = value.unconstrained() if hasattr(value, "unconstrained") else value
            if stored is not own:
                self.params[msg["name"]] = own


def _nonfinite_sites(model: Callable, guide: Callable, batch: tuple[Batch, ...]) -> list[str]:
    """Sites whose value or log-density is NaN/Inf in a guide + replayed model run, with
    distribution validation off (an empty list if that run fails)."""
    bad = []
    try:
        with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
            guide_trace = poutine.trace(guide).get_trace(*batch)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*batch)
            for where, trace in (("guide", guide_trace), ("model", model_trace)):
                for name, site in trace.nodes.items():
                    if site["type"] != "sample":
                        continue
                    value = site["value"]
                    lp = site["fn"].log_prob(value)
                    if not torch.isfinite(value).all() or not torch.isfinite(lp).all():
                        bad.append(f"{where} site {name!r}")
    except Exception:  # the caller reports the original error instead
        return []
    return bad


def _raised_by_validation(err: BaseException) -> bool:
    """Whether ``err`` was raised by a distribution refusing its parameters (argument validation
    in ``torch.distributions.Distribution.__init__``), not by other code of the program."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is _VALIDATION_CODE


def _check_store_conflicts(modules: Iterable[torch.nn.Module]) -> None:
    r"""Raise if Pyro's param store holds, under the names of these ``PyroModule``\ s'
    parameters, other tensors (registered by another model built earlier): the modules would
    silently share them (``PyroParam``\ s adopt the stored tensor on first use)."""
    store = pyro.get_param_store().get_state()["params"]
    clashes = []
    for module in modules:
        if not isinstance(module, PyroModule):
            continue
        prefix = pyro_module_prefix(module)
        for name, param in module.named_parameters():
            name = name.removesuffix("_unconstrained")
            fullname = f"{prefix}.{name}" if prefix else name
            if fullname in store and store[fullname] is not param:
                clashes.append(fullname)
    if clashes:
        raise ValueError(_conflict_message(sorted(clashes)))


def _conflict_message(names: list[str]) -> str:
    return (
        f"Pyro's param store holds other tensors under this model's parameter names"
        f" {names[:5]} (another model with the same names registered them first), so SVI"
        " would train those instead. Call pyro.clear_param_store() before building this"
        " model, or give its step a private param store: SVIStep(..., param_scope=True)."
    )


def _clear_grads(params: Iterable[torch.Tensor]) -> None:
    for p in params:
        p.grad = None


def _fast_loss(loss: Any) -> bool:
    """Whether ``loss`` is plain one-particle ``TraceMeanField_ELBO`` (the fast path's loss):
    Pyro's, or pyrogen's ``ELBO("reparam", kl="analytic")`` (``pyrogen vae``'s default), which is
    Pyro's with checks of the guide's sites that the fast path makes too (a site the model lacks
    or without ``rsample`` sends the step to the standard path, where they raise)."""
    if type(loss) is ELBO:
        if (loss.estimator, loss.kl, loss.baseline) != ("reparam", "analytic", None):
            return False
        loss = loss._elbo
    return (
        type(loss) in (TraceMeanField_ELBO, _TraceMeanField_ELBO)
        and loss.num_particles == 1
        and not loss.vectorize_particles
        and not loss.retain_graph
    )


def _all_finite(grads: list[torch.Tensor]) -> bool:
    """One check for all gradients: their sums are finite (a NaN/Inf entry makes its sum NaN/Inf;
    an overflowing sum of finite entries only sends the caller to the exact check)."""
    if not grads:
        return True
    return bool(torch.isfinite(torch.stack([g.sum() for g in grads])).all())


class SVIStep:
    r"""One step of Pyro's SVI: :math:`\theta, \varphi \leftarrow \theta, \varphi - \eta \nabla
    \mathcal{L}(x_{batch})` for any Pyro loss ``loss(model, guide, batch)``.

    The update is ``pyro.infer.SVI.step``; between its backward pass and its optimizer update the
    step runs ``gradient_hooks`` (``fn(params)``, params sorted by name; data-parallel training
    averages gradients there) and two checks. A NaN/Inf loss, or a distribution refusing its
    parameters (naming the model/guide sites whose value or log-density is not finite), or a
    NaN/Inf gradient (naming the parameters) raises :class:`NonFiniteError`, and a model whose
    parameters Pyro's param store holds under the same names for another model raises
    ``ValueError``; either way no parameter changes.

    Pyro keeps parameters in one global param store, by name: a second model with the same
    parameter names (e.g. two ``VAE``\ s) would find the first model's tensors there. Call
    ``pyro.clear_param_store()`` before building the second model, or give each step its own
    store with ``param_scope=True`` (a :meth:`~pyro.params.param_store.ParamStoreDict.scope` the
    step enters on every call; use :meth:`param_scope` to run the model or guide yourself).

    :param model: Pyro model, called as ``model(*batch)`` (``model(x)``, or ``model(x, y)`` for
        ``Trainer.fit(x, y)``).
    :param guide: Pyro guide, called as ``guide(*batch)``.
    :param loss: a Pyro ``ELBO`` instance or any callable loss; default analytic-KL ELBO
        (``TraceMeanField_ELBO``).
    :param optim: a ``pyro.optim.PyroOptim``; default ``pyro.optim.Adam({"lr": lr})``.
    :param lr: learning rate of the default Adam optimizer.
    :param loss_scale: factor applied to the *reported* loss only, e.g. ``1 / num_data`` to record
        nats per example instead of per data set; gradients are unaffected.
    :param param_scope: keep this step's ``pyro.param``\ s in a private param store (see
        :meth:`param_scope`) instead of Pyro's global one.
    :param modules: further ``nn.Module``\ s whose buffers (e.g. BatchNorm statistics) belong to
        this step's state: networks that functions register with ``pyro.module``. Parameters are
        found by tracing; buffers only on the model's and guide's modules (a ``PyroModule``
        program, or the owner of a bound method such as ``vae.model``) and on these.
    :param replay: with the default loss, run a recorded graph of the program and its loss
        instead of the program (:mod:`pyrogen.train.steps.replay`; the same floats). ``None``
        (default): for programs whose owner module has a ``program_key()`` (e.g.
        :class:`~pyrogen.models.VAE`); ``True``: any program, whose author promises it reads no
        changing Python state besides its arguments and parameters; ``False``: never.

    With the default loss (one-particle ``TraceMeanField_ELBO``) every step after the first
    computes the same loss and gradients without Pyro's traces (:mod:`pyrogen.train.steps.fast`);
    a program that does not fit (or whose sites change) takes the standard path, with a warning;
    ``replay`` then skips running the program itself.
    A ``PyroOptim`` of per-parameter optimizers (Adam, SGD, ...) steps them in one call.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        loss: Any = None,
        optim: pyro.optim.PyroOptim | None = None,
        lr: float = 1e-3,
        loss_scale: float = 1.0,
        param_scope: bool = False,
        modules: Iterable[torch.nn.Module] = (),
        replay: bool | None = None,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"Expected a learning rate lr > 0, got {lr}.")
        self.model, self.guide = model, guide
        self.loss = loss if loss is not None else TraceMeanField_ELBO()
        self.optim = optim if optim is not None else pyro.optim.Adam({"lr": lr})
        self.svi = SVI(model, guide, self.optim, loss=self.loss)
        # SVI.step = loss_and_grads, then optim(params), then zero_grads: hook into both calls.
        self._loss_and_grads, self.svi.loss_and_grads = self.svi.loss_and_grads, self._record_loss
        self.svi.optim = self._update
        self.loss_scale = loss_scale
        self.gradient_hooks: list[Callable[[list[torch.Tensor]], None]] = []
        self.param_state: dict | None = {"params": {}, "constraints": {}} if param_scope else None
        self.extra_modules = list(modules)
        for module in self.extra_modules:
            if not isinstance(module, torch.nn.Module):
                raise TypeError(f"modules= takes nn.Modules, got {type(module).__name__}.")
        if not param_scope:
            _check_store_conflicts(self._owners().values())
        self._warned_buffers = False
        self._batch: tuple[Batch, ...] | None = None
        self._loss: Any = None
        self._rng_state: torch.Tensor | None = None
        self._shadowed = _ShadowedParams()
        self._fast = "first" if _fast_loss(self.loss) else "off"
        self._replay = self._replayer(replay) if self._fast != "off" else None
        pyro_call = type(self.optim).__call__ is pyro.optim.PyroOptim.__call__
        self._apply = MergedOptimizer(self.optim) if pyro_call else self.optim

    def _replayer(self, replay: bool | None) -> Replay | None:
        """The graph replay of the fast path (:mod:`pyrogen.train.steps.replay`): by default for
        programs whose owners say which Python state they read (``program_key()``)."""
        if replay is False:
            return None
        owners = [program_self(fn) for fn in (self.model, self.guide)]
        keys = {id(owner): getattr(owner, "program_key", None) for owner in owners}
        if replay is None and not all(callable(key) for key in keys.values()):
            return None
        keys = [key for key in keys.values() if callable(key)]

        def program_key() -> tuple | None:
            state = tuple(key() for key in keys)
            return None if any(s is None for s in state) else state

        def tensors() -> list[torch.Tensor]:
            modules = self._owners().values()
            return [*param_store_tensors().values(), *(b for m in modules for b in m.buffers())]

        return Replay(self.model, self.guide, program_key, tensors)

    @property
    def uses_fast_path(self) -> bool:
        """Whether the next step (after the first) computes the default loss without Pyro's
        traces (:mod:`pyrogen.train.steps.fast`)."""
        return self._fast != "off"

    @contextlib.contextmanager
    def param_scope(self) -> Iterator[None]:
        """Context in which Pyro's param store holds this step's parameters (``param_scope=True``;
        otherwise the global store, unchanged)."""
        if self.param_state is None:
            yield
            return
        store = pyro.get_param_store()
        with store.scope(self.param_state):
            try:
                yield
            finally:  # also keep parameters created by a call that raised
                self.param_state.update(store.get_state())

    def __call__(self, *batch: Batch) -> dict[str, float]:
        """One update on ``batch``: ``model(*batch)``, ``guide(*batch)``; returns ``{"loss"}``."""
        self._batch, self._loss, self._shadowed.params = batch, None, {}
        self._rng_state = torch.get_rng_state()
        try:
            with self.param_scope():
                if self._fast == "on":  # its own recorder finds shadowed params
                    loss = self._fast_step(batch)
                else:
                    loss = self._standard_step(batch)
                    if self._fast == "first":
                        self._fast = "on"
        finally:
            self._batch = self._loss = self._rng_state = None
        return {"loss": loss * self.loss_scale}

    def _standard_step(self, batch: tuple[Batch, ...]) -> float:
        with self._shadowed:
            return self.svi.step(*batch)

    def _fast_step(self, batch: tuple[Batch, ...]) -> float:
        """The default loss without Pyro's traces, then the same update as :meth:`_update`; the
        standard path (from now on, warned once) if the program does not fit."""
        replayed = self._replay(batch) if self._replay is not None else None
        if replayed is not None:
            elbo, params = replayed
            self._loss = loss = backward_elbo(elbo, bool(params))
            self._shadowed.params = {}
            self._update(params)
            _clear_grads(params)
            return loss
        runs: list = []
        try:
            self._loss = loss = mean_field_loss_and_grads(self.model, self.guide, batch, {}, runs)
        except Ineligible as why:
            self._fast = "off"
            warnings.warn(
                f"SVIStep uses Pyro's standard SVI path from now on: {why} (the fast path of"
                " TraceMeanField_ELBO needs a static mean-field program).",
                stacklevel=3,
            )
            torch.set_rng_state(self._rng_state)  # this step's draws, as if it had not run
            return self._standard_step(batch)
        except ValueError as err:
            if not _raised_by_validation(err):
                raise
            self._loss, loss = err, math.nan
        params = {id(p): p for run in runs for p in run.params.values()}
        self._shadowed.params = {n: p for run in runs for n, p in run.shadowed.items()}
        runs.clear()  # the sites' tensors are freed before the update allocates its own
        self._update(params.values())
        _clear_grads(params.values())
        return loss

    def _record_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> Any:
        try:
            self._loss = self._loss_and_grads(model, guide, *args, **kwargs)
        except ValueError as err:
            if not _raised_by_validation(err):
                raise
            self._loss = err  # a NaN/Inf or out-of-support parameter: raised by _update, after
            return math.nan  # the gradient hooks ran (on every rank, in data-parallel training)
        return self._loss

    def _update(self, params: Iterable[torch.Tensor]) -> None:
        store = pyro.get_param_store()
        params = sorted(params, key=lambda p: store.param_name(p) or "")
        try:
            self._check_shadowed()
            for hook in self.gradient_hooks:
                hook(params)
            self._check_finite(params)
        except BaseException:
            _clear_grads(params)
            raise
        self._apply(params)

    def _check_shadowed(self) -> None:
        used = {n: p for n, p in self._shadowed.params.items() if p.grad is not None}
        if used:
            _clear_grads(used.values())
            raise ValueError(_conflict_message(sorted(used)))

    def _check_finite(self, params: list[torch.Tensor]) -> None:
        loss = self._loss
        if isinstance(loss, Exception) or not math.isfinite(float(loss)):
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self._rng_state)  # the step's own draws, if they caused it
                sites = _nonfinite_sites(self.model, self.guide, self._batch)
            what = (
                f"a distribution got invalid parameters ({str(loss).splitlines()[0][:200]})"
                if isinstance(loss, Exception)
                else f"the loss is {float(loss)}"
            )
            where = ", ".join(sites) if sites else "no single site (re-run finite; check the loss)"
            raise NonFiniteError(f"{what}; non-finite: {where}.")
        if _all_finite([p.grad for p in params if p.grad is not None]):
            return
        store = pyro.get_param_store()
        bad = [
            store.param_name(p)
            for p in params
            if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        if bad:
            raise NonFiniteError(f"non-finite gradient of parameter(s) {bad[:5]}.")

    def setup(self, *batch: Batch) -> None:
        """Create every parameter (``pyro.param`` / ``PyroModule``) by running the guide and the
        model once, without gradients: they must exist before restoring a checkpoint or
        synchronizing ranks (Pyro issue #2354)."""
        with self.param_scope(), torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(self.guide).get_trace(*batch)
            poutine.replay(self.model, trace=guide_trace)(*batch)
            with rng_untouched():  # the loss's own parameters
                self.svi.evaluate_loss(*batch)  # (e.g. a neural baseline); draws left as they were

    def validate(self, *batch: Batch) -> None:
        """Run the ``validate(*batch)`` of the model's and guide's owners, if they have one."""
        seen = set()
        for module in self.modules().values():
            check = getattr(module, "validate", None)
            if callable(check) and id(module) not in seen:
                seen.add(id(module))
                check(*batch)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The modules of ``model`` and ``guide`` (a module program itself, or a bound method's
        ``self``) and those given as ``modules=`` (``"module0"``, ...)."""
        owners = {}
        for name, fn in (("model", self.model), ("guide", self.guide)):
            owner = owner_of(fn)
            if owner is not None:
                owners[name] = owner
        for i, module in enumerate(getattr(self, "extra_modules", ())):
            owners[f"module{i}"] = module
        return owners

    def _owners(self) -> dict[str, torch.nn.Module]:
        """:meth:`modules` without repeats (a VAE owns both its model and its guide)."""
        owners, seen = {}, set()
        for name, module in self.modules().items():
            if id(module) not in seen:
                seen.add(id(module))
                owners[name] = module
        return owners

    def _trained_param_names(self) -> list[str]:
        """Names of the params this step trains: every param its optimizer updates (each call
        passes it the params found by ``poutine.trace(param_only=True)`` of the model and guide,
        as Pyro's SVI does), those with restored optimizer state not yet used, and the owner
        modules' params (before the first update)."""
        store = pyro.get_param_store()
        names = set(self.optim.get_state()) | set(pending_optim_state(self.optim))
        for module in self._owners().values():
            names.update(store.param_name(p) for p in module.parameters())
        return sorted(n for n in names if n is not None and n in store)

    def state_dict(self) -> dict[str, Any]:
        """Everything this step trains, each tensor once: the params (``"params"``,
        unconstrained, with their ``"constraints"``), the owner modules' buffers (e.g.
        BatchNorm statistics) and the optimizer state. Buffers are the live tensors (like
        ``nn.Module.state_dict``)."""
        with self.param_scope():
            names = self._trained_param_names()
            params = ckpt.get_param_store_state(names)
        self._warn_unowned_networks(names)
        with self.param_scope():
            optim = {**pending_optim_state(self.optim), **self.optim.get_state()}
        return {**params, "buffers": self._buffers(), "optim": optim}

    def _warn_unowned_networks(self, names: list[str]) -> None:
        """Networks registered with ``pyro.module`` in plain functions: their parameters are in
        the state, their buffers only if the step knows the modules (``modules=``)."""
        registered = sorted({n.split("$$$")[0] for n in names if "$$$" in n})
        if registered and not self.modules() and not self._warned_buffers:
            self._warned_buffers = True
            warnings.warn(
                f"SVIStep saves the parameters of the networks registered with pyro.module"
                f" {registered}, but not their buffers (e.g. BatchNorm running statistics),"
                " which it cannot find from a function. If they have buffers, pass them:"
                " SVIStep(..., modules=[net, ...]).",
                stacklevel=3,
            )

    def _buffers(self) -> dict[str, torch.Tensor]:
        return {
            f"{owner}.{name}": b
            for owner, module in self._owners().items()
            for name, b in module.named_buffers()
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a :meth:`state_dict` in place into the param store (creating missing params with
        their constraints), the owner modules' buffers and the optimizer."""
        with self.param_scope():
            self._load_params_and_optim(state)
        buffers = self._buffers()
        unknown = sorted(set(state["buffers"]) - set(buffers))
        if unknown:
            raise ValueError(
                f"The state holds buffers {unknown[:5]} that this step's modules lack (they have"
                f" {sorted(buffers)[:5]}); load it into a step built like the saved one."
            )
        with torch.no_grad():
            for name, value in state["buffers"].items():
                buffers[name].copy_(value)

    def _load_params_and_optim(self, state: dict[str, Any]) -> None:
        ckpt.set_param_store_state({"params": state["params"], "constraints": state["constraints"]})
        current = pyro.get_param_store().get_state()["params"]
        for name in state["optim"]:  # optimizers rebuilt with the loaded state on the next step
            if name in current:
                self.optim.optim_objs.pop(current[name], None)
        self.optim.set_state(state["optim"])
