r"""The fast path of :class:`~pyrogen.train.SVIStep` with its default loss: Pyro's
``TraceMeanField_ELBO`` (one particle) computed without Pyro's traces, and one optimizer call
for all parameters instead of one per parameter.

The loss is exactly Pyro's (same terms, same order, so the same floats and gradients):

.. math::

    -\mathcal L = -\sum_{x\ \text{observed}} s_x \log p(x \mid z)
    + \sum_{z\ \text{latent}} s_z\, \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big),

with :math:`z` the guide's reparameterized draw replayed in the model and :math:`s` the plates'
scales. One light messenger records the sample sites and the parameters of the guide's and the
model's run; Pyro's trace objects, log-densities of every site, shape checks and the per-site
score parts it does not use are skipped. Pyro's own checks run on the first step (the standard
path); a program that is not eligible (non-reparameterized or auxiliary guide sites, latent
model sites the guide lacks, no analytic KL, enumeration) or whose sites change between steps
uses the standard path, with one warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions.kl import kl_divergence
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyrogen._compat import per_param_optimizer, scale_and_mask


class Ineligible(Exception):
    """The program's structure does not allow the fast path (the message says why)."""


class _Sites(Messenger):
    r"""Records a run's sample sites (after the plates set their scale and mask), its plates'
    subsample sites apart, and the params it uses (unconstrained, by name), with those
    ``nn.Parameter``\ s a program passed to ``pyro.param`` for which Pyro's param store returned
    another tensor (``shadowed``: see ``SVIStep``); with ``replay`` (a guide run), latent and
    subsample sites take the guide's values, as ``poutine.replay`` does."""

    def __init__(self, replay: _Sites | None = None) -> None:
        super().__init__()
        self.replay = replay
        self.sites: dict[str, dict] = {}
        self.subsamples: dict[str, dict] = {}
        self.params: dict[str, torch.Tensor] = {}
        self.shadowed: dict[str, torch.nn.Parameter] = {}

    def _pyro_sample(self, msg: dict) -> None:
        if self.replay is None or msg["is_observed"]:
            return
        name = msg["name"]
        guide_site = self.replay.sites.get(name) or self.replay.subsamples.get(name)
        if guide_site is None:
            if site_is_subsample(msg):
                return
            raise Ineligible(f"the model's latent site {name!r} is not in the guide")
        msg["done"] = True
        msg["value"] = guide_site["value"]
        msg["infer"] = guide_site["infer"]

    def _pyro_post_sample(self, msg: dict) -> None:
        where = self.subsamples if site_is_subsample(msg) else self.sites
        where[msg["name"]] = msg  # subsample indices are not in the loss (Pyro prunes them)

    def _pyro_post_param(self, msg: dict) -> None:
        value = msg["value"]
        stored = value.unconstrained() if hasattr(value, "unconstrained") else value
        self.params[msg["name"]] = stored
        args = msg["args"]
        if len(args) > 1 and isinstance(args[1], torch.nn.Parameter) and args[1] is not stored:
            self.shadowed[msg["name"]] = args[1]


def _check_guide_site(site: dict) -> None:
    if site["is_observed"]:
        raise Ineligible(f"the guide observes site {site['name']!r}")
    if site["infer"].get("enumerate") or site["infer"].get("is_auxiliary"):
        raise Ineligible(f"the guide's site {site['name']!r} is enumerated or auxiliary")
    if not getattr(site["fn"], "has_rsample", False):
        raise Ineligible(f"the guide's site {site['name']!r} is not reparameterized")


def _kl_sum(guide_site: dict, model_site: dict) -> torch.Tensor:
    """:math:`s \\sum \\mathrm{KL}(q \\| p)` of one latent site, as ``TraceMeanField_ELBO``."""
    try:
        kl = kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        raise Ineligible(f"no analytic KL for site {guide_site['name']!r}") from None
    kl = scale_and_mask(kl, scale=guide_site["scale"], mask=guide_site["mask"])
    if not torch.is_tensor(kl):
        return kl * torch.Size(guide_site["fn"].batch_shape).numel()
    if kl.shape != guide_site["fn"].batch_shape:
        raise Ineligible(f"the KL of site {guide_site['name']!r} has another shape than q")
    return kl.sum()


def mean_field_elbo(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, sites: list[_Sites]
) -> torch.Tensor:
    """The one-particle ``TraceMeanField_ELBO`` of the program (a tensor, before ``.item()``);
    ``sites`` receives the two recorders. Raises :class:`Ineligible` when the program does not
    fit."""
    guide_run = _Sites()
    sites.append(guide_run)
    with guide_run:
        guide(*args, **kwargs)
    for site in guide_run.sites.values():
        _check_guide_site(site)
    model_run = _Sites(replay=guide_run)
    sites.append(model_run)
    with model_run:
        model(*args, **kwargs)
    elbo: Any = 0
    for name, site in model_run.sites.items():
        if site["is_observed"]:
            log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
            elbo = elbo + scale_and_mask(log_p, site["scale"], site["mask"]).sum()
        else:
            elbo = elbo - _kl_sum(guide_run.sites[name], site)
    missing = set(guide_run.sites) - set(model_run.sites)
    if missing:
        raise Ineligible(f"the guide's sites {sorted(missing)} are not in the model")
    if not torch.is_tensor(elbo):
        raise Ineligible("the model has no sample site")
    return elbo


def mean_field_loss_and_grads(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, sites: list[_Sites]
) -> float:
    """``TraceMeanField_ELBO().loss_and_grads(model, guide, *args, **kwargs)`` (one particle) with
    one light messenger per run; ``sites`` receives the two recorders (their ``params`` are
    those to update, even when a run raises). Raises :class:`Ineligible` before any backward
    pass when the program does not fit."""
    elbo = mean_field_elbo(model, guide, args, kwargs, sites)
    return backward_elbo(elbo, any(run.params for run in sites))


def backward_elbo(elbo: torch.Tensor, has_params: bool) -> float:
    """``-elbo`` as a float, after its backward pass (when there are parameters to train)."""
    loss = -elbo.item()
    if has_params and elbo.requires_grad:
        (-elbo).backward()
    return loss


class MergedOptimizer:
    """One ``torch.optim`` step for all parameters a ``PyroOptim`` trains, each keeping the
    per-parameter optimizer and state Pyro made for it (the same state dicts, so ``get_state`` /
    ``set_state`` and checkpoints are unchanged, and the update is the same floats). Parameters
    whose optimizers have equal settings share one param group, checked on every call, so a
    changed learning rate is seen. For optimizers that update each parameter on its own (Adam,
    SGD, ...) without gradient clipping; others step through ``PyroOptim`` as before."""

    INDEPENDENT = (
        torch.optim.Adam,
        torch.optim.AdamW,
        torch.optim.SGD,
        torch.optim.RMSprop,
        torch.optim.Adagrad,
        torch.optim.Adamax,
        torch.optim.NAdam,
        torch.optim.RAdam,
    )

    def __init__(self, optim: Any) -> None:
        self.optim = optim
        self._key: tuple = ()
        self._groups: list[tuple] = []
        self._merged: torch.optim.Optimizer | None = None

    def __call__(self, params: list[torch.Tensor]) -> None:
        objs = [per_param_optimizer(self.optim, p) for p in params]
        kind = type(objs[0]) if objs else None
        if (
            kind not in self.INDEPENDENT
            or any(type(o) is not kind for o in objs)
            or any(self.optim.grad_clip.get(p) is not None for p in params)
        ):
            self.optim(params)  # schedulers, clipping, other optimizers: Pyro's own loop
            return
        key = tuple(map(id, objs))
        groups = [tuple(o.param_groups[0].values()) for o in objs]  # settings, seen live
        if key != self._key or groups != self._groups or self._merged is None:
            settings = [_settings(o) for o in objs]
            if any(torch.is_tensor(v) for setting in settings for v in setting.values()):
                self.optim(params)  # tensor-valued settings (e.g. lr): Pyro's own loop
                return
            self._merged = _merge(params, objs, settings)
            self._key, self._groups = key, groups
        self._merged.step()


#: Optimizers whose multi-tensor (``foreach``) update gives the same floats as their one-tensor
#: update, which torch chooses on CPU by default (checked bit for bit, 30 steps, default and
#: weight-decay / AMSGrad settings; NAdam and RAdam differ): the merged step uses it, one call
#: per operation for all parameters instead of one per parameter.
MULTI_TENSOR_SAME_FLOATS = (torch.optim.Adam, torch.optim.AdamW)


def _settings(optimizer: torch.optim.Optimizer) -> dict:
    """A one-parameter optimizer's hyper-parameters (its param group without the params)."""
    return {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}


def _merge(params: list[torch.Tensor], objs: list, settings: list[dict]) -> torch.optim.Optimizer:
    """An optimizer of the same class with one param group per distinct setting, whose state
    for each param is the dict of that param's own optimizer (updated in place)."""
    groups: list[dict] = []
    for p, setting in zip(params, settings, strict=True):
        group = next((g for g in groups if _same(g, setting)), None)
        if group is None:
            groups.append({**setting, "params": [p]})
        else:
            group["params"].append(p)
    kind = type(objs[0])
    for group in groups:
        if kind in MULTI_TENSOR_SAME_FLOATS and group.get("foreach") is None:
            group["foreach"] = not group.get("fused")
    merged = kind(groups)
    for p, o in zip(params, objs, strict=True):
        merged.state[p] = o.state[p]
    return merged


def _same(group: dict, setting: dict) -> bool:
    return all(k in group and group[k] == v for k, v in setting.items())
