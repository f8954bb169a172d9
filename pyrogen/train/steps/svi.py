r""":class:`SVIStep`: Pyro's SVI update with guards against non-finite losses and gradients."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyro
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.infer.util import zero_grads

from pyrogen.train import checkpoint as ckpt
from pyrogen.train.steps.base import Batch, NonFiniteError


def claim_param_names(module: torch.nn.Module) -> None:
    """Make Pyro's global param store point at ``module``'s own parameters.

    A ``PyroModule`` registers its parameters under names such as ``"encoder.net.0.weight"``; a
    second model built in the same process would otherwise find the first model's tensors under
    those names, and SVI would silently optimize the wrong ones.
    """
    store = pyro.get_param_store()
    prefix = getattr(module, "_pyro_name", "")
    for name, param in module.named_parameters():
        fullname = f"{prefix}.{name}" if prefix else name
        if fullname in store and store.get_param(fullname) is not param:
            del store[fullname]


def _nonfinite_sites(model: Callable, guide: Callable, batch: Batch) -> list[str]:
    """Sites whose value or log-density is NaN/Inf in a fresh guide + replayed model run."""
    bad = []
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(batch)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(batch)
        for where, trace in (("guide", guide_trace), ("model", model_trace)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample":
                    continue
                value = site["value"]
                lp = site["fn"].log_prob(value)
                if not torch.isfinite(value).all() or not torch.isfinite(lp).all():
                    bad.append(f"{where} site {name!r}")
    return bad


class SVIStep:
    r"""One step of Pyro's SVI: :math:`\theta, \varphi \leftarrow \theta, \varphi - \eta \nabla
    \mathcal{L}(x_{batch})` for any Pyro loss ``loss(model, guide, batch)``.

    The update is ``pyro.infer.SVI.step`` with two checks before the optimizer runs: a NaN/Inf
    loss (naming the model/guide sites whose value or log-density is not finite) or gradient
    (naming the parameters) raises :class:`NonFiniteError` and leaves the parameters as they were.

    :param model: Pyro model, called as ``model(batch)``.
    :param guide: Pyro guide, called as ``guide(batch)``.
    :param loss: a Pyro ``ELBO`` instance or any callable loss; default analytic-KL ELBO
        (``TraceMeanField_ELBO``).
    :param optim: a ``pyro.optim.PyroOptim``; default ``pyro.optim.Adam({"lr": lr})``.
    :param lr: learning rate of the default Adam optimizer.
    :param loss_scale: factor applied to the *reported* loss only, e.g. ``1 / num_data`` to record
        nats per example instead of per data set; gradients are unaffected.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        loss: Any = None,
        optim: pyro.optim.PyroOptim | None = None,
        lr: float = 1e-3,
        loss_scale: float = 1.0,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"Expected a learning rate lr > 0, got {lr}.")
        self.model, self.guide = model, guide
        self.loss = loss if loss is not None else TraceMeanField_ELBO()
        self.optim = optim if optim is not None else pyro.optim.Adam({"lr": lr})
        self.svi = SVI(model, guide, self.optim, loss=self.loss)
        self.loss_scale = loss_scale
        self.gradient_hooks: list[Callable[[list[torch.Tensor]], None]] = []
        for module in self.modules().values():
            claim_param_names(module)

    def __call__(self, batch: Batch) -> dict[str, float]:
        with poutine.trace(param_only=True) as capture:
            try:
                loss = float(self.svi.loss_and_grads(self.model, self.guide, batch))
            except ValueError as err:  # a distribution validating NaN/Inf parameters
                if "invalid values" not in str(err):
                    raise
                loss = err
        store = pyro.get_param_store()
        named = {
            store.param_name(s["value"].unconstrained()): s for s in capture.trace.nodes.values()
        }
        params = [named[name]["value"].unconstrained() for name in sorted(named)]
        try:
            for hook in self.gradient_hooks:
                hook(params)
            self._check_finite(loss, batch, params)
            self.optim(params)
        finally:
            zero_grads(params)
        return {"loss": loss * self.loss_scale}

    def _check_finite(self, loss: float | Exception, batch: Batch, params: list) -> None:
        if isinstance(loss, Exception) or not math.isfinite(loss):
            with pyro.validation_enabled(False):
                sites = _nonfinite_sites(self.model, self.guide, batch)
            where = ", ".join(sites) if sites else "no single site (re-run finite; check the loss)"
            what = (
                f"a distribution got invalid parameters ({str(loss).splitlines()[0][:200]})"
                if isinstance(loss, Exception)
                else f"the loss is {loss}"
            )
            raise NonFiniteError(f"{what}; non-finite: {where}.")
        store = pyro.get_param_store()
        bad = [
            store.param_name(p)
            for p in params
            if p.grad is not None and not torch.isfinite(p.grad).all()
        ]
        if bad:
            raise NonFiniteError(f"non-finite gradient of parameter(s) {bad[:5]}.")

    def setup(self, batch: Batch) -> None:
        """Create every parameter (``pyro.param`` / ``PyroModule``) by running the guide and the
        model once, without gradients: they must exist before restoring a checkpoint or
        synchronizing ranks (Pyro issue #2354)."""
        with torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(self.guide).get_trace(batch)
            poutine.replay(self.model, trace=guide_trace)(batch)

    def validate(self, batch: Batch) -> None:
        """Run the ``validate(batch)`` of the model's and guide's owners, if they have one."""
        seen = set()
        for module in self.modules().values():
            check = getattr(module, "validate", None)
            if callable(check) and id(module) not in seen:
                seen.add(id(module))
                check(batch)

    def modules(self) -> dict[str, torch.nn.Module]:
        """The ``nn.Module`` owners of ``model`` and ``guide`` (bound methods' ``self``)."""
        owners = {}
        for name, fn in (("model", self.model), ("guide", self.guide)):
            owner = getattr(fn, "__self__", None)
            if isinstance(owner, torch.nn.Module):
                owners[name] = owner
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
        names = set(self.optim.get_state()) | set(_pending_optim_state(self.optim))
        for module in self._owners().values():
            names.update(store.param_name(p) for p in module.parameters())
        return sorted(n for n in names if n is not None and n in store)

    def state_dict(self) -> dict[str, Any]:
        """Everything this step trains, each tensor once: the params (``"params"``,
        unconstrained, with their ``"constraints"``), the owner modules' buffers (e.g.
        BatchNorm statistics) and the optimizer state. Buffers are the live tensors (like
        ``nn.Module.state_dict``)."""
        params = ckpt.get_param_store_state(self._trained_param_names())
        buffers = {
            f"{owner}.{name}": b
            for owner, module in self._owners().items()
            for name, b in module.named_buffers()
        }
        optim = {**_pending_optim_state(self.optim), **self.optim.get_state()}
        return {**params, "buffers": buffers, "optim": optim}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copy a :meth:`state_dict` in place into the param store (creating missing params with
        their constraints), the owner modules' buffers and the optimizer."""
        ckpt.set_param_store_state({"params": state["params"], "constraints": state["constraints"]})
        buffers = {
            f"{owner}.{name}": b
            for owner, module in self._owners().items()
            for name, b in module.named_buffers()
        }
        unknown = sorted(set(state["buffers"]) - set(buffers))
        if unknown:
            raise ValueError(
                f"The state holds buffers {unknown[:5]} that this step's modules lack (they have"
                f" {sorted(buffers)[:5]}); load it into a step built like the saved one."
            )
        with torch.no_grad():
            for name, value in state["buffers"].items():
                buffers[name].copy_(value)
        current = pyro.get_param_store().get_state()["params"]
        for name in state["optim"]:  # optimizers rebuilt with the loaded state on the next step
            if name in current:
                self.optim.optim_objs.pop(current[name], None)
        self.optim.set_state(state["optim"])


def _pending_optim_state(optim: pyro.optim.PyroOptim) -> dict[str, Any]:
    """Optimizer states loaded with ``set_state`` whose params have not been updated since."""
    return dict(getattr(optim, "_state_waiting_to_be_consumed", {}))
