r"""Automatic differentiation variational inference (ADVI) for ordinary Pyro models.

:func:`fit` is the Bayesian modeller's entry point: give it any Pyro ``model`` whose observed sites
use ``obs=``, and it fits a Gaussian in the *unconstrained* space of the latent variables
("elliptical standardization"),

.. math::

    q(z) = \mathcal{N}\big(T^{-1}(z);\, \mu, \Sigma\big)\,
           \big|\det J_{T^{-1}}(z)\big|,

where :math:`T` maps :math:`\mathbb{R}^d` onto the support of :math:`z`. ``method="advi"``
(mean-field) uses a diagonal :math:`\Sigma` (Pyro's ``AutoNormal``), ``method="fullrank"`` a dense
:math:`\Sigma = LL^\top` (``AutoMultivariateNormal``), ``method="lowrank"`` a low rank plus
diagonal one (``AutoLowRankMultivariateNormal``). The ELBO

.. math::

    \mathcal{L}(\mu, \Sigma) = \mathbb{E}_{q}\big[\log p(x, z) - \log q(z)\big]

is maximised by SVI (reparameterized ``Trace_ELBO``) until Stan's relative-tolerance rule says it
has stopped moving (:class:`pyrogen.infer.advi.ELBOConvergence`), then for ``anneal_steps``
more steps with a decaying learning rate (``convergence="anneal"``, the default). The result
carries the −ELBO history, the guide, posterior and posterior predictive draws, and a printed
summary with the PSIS :math:`\hat k` diagnostic; :func:`pyrogen.infer.advi.to_inference_data`
turns it into ArviZ.

Example::

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    result = fit(model, y, method="fullrank", seed=0)
    result.sample_posterior(1000)["mu"].mean()
    result.summary()

References

1. *Automatic Differentiation Variational Inference*, A. Kucukelbir, D. Tran, R. Ranganath,
   A. Gelman, D. M. Blei (JMLR 2017; arXiv:1603.00788, 2016).
2. *Yes, but Did It Work?: Evaluating Variational Inference*, Y. Yao, A. Vehtari, D. Simpson,
   A. Gelman (ICML 2018).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyro
import pyro.optim
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import (
    AutoGuide,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from tqdm.auto import tqdm

from pyrogen.infer.advi._trace import (
    _max_plate_nesting,
    _model_trace,
    _on,
    _site_names,
    guide_draws,
    run_model,
)
from pyrogen.infer.advi.convergence import ELBOConvergence
from pyrogen.infer.advi.diagnostics import khat_reading, psis_khat

__all__ = ["ADVIResult", "ConvergenceWarning", "fit"]

# method name -> (autoguide class, human description)
_METHODS: dict[str, tuple[type[AutoGuide], str]] = {
    "advi": (AutoNormal, "mean-field Gaussian, AutoNormal"),
    "fullrank": (AutoMultivariateNormal, "full-rank Gaussian, AutoMultivariateNormal"),
    "lowrank": (AutoLowRankMultivariateNormal, "low-rank Gaussian, AutoLowRankMultivariateNormal"),
}


def _resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``device`` as a ``torch.device`` that can hold tensors, or a ValueError saying why not."""
    if device is None:
        return None
    try:
        device = torch.device(device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, TypeError) as err:
        raise ValueError(
            f"Cannot use device={device!r}: {err}. Pass 'cpu', 'cuda', 'cuda:<index>' or 'mps' "
            "for a device this machine has (torch.cuda.is_available() says whether CUDA is)."
        ) from err
    return device


def _to_device(obj: Any, device: torch.device | None) -> Any:
    """``obj`` with every tensor in it (through tuples, lists and dicts) moved to ``device``."""
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_device(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


#: Total learning-rate decay of the annealing phase of ``convergence="anneal"``.
ANNEAL_DECAY = 0.01


def _scale_lr(optim: pyro.optim.PyroOptim, factor: float) -> None:
    """Multiply the learning rate of every torch optimizer inside a Pyro optimizer."""
    for obj in optim.optim_objs.values():
        for group in getattr(obj, "optimizer", obj).param_groups:
            group["lr"] *= factor


@dataclass
class _Steps:
    """SVI steps that record the −ELBO, stop on a non-finite one, and on a rule."""

    svi: SVI
    args: tuple
    kwargs: dict
    losses: list[float]
    bar: Any
    lr: float

    def __call__(self, count: int, rule: ELBOConvergence | None, after=None) -> bool:
        for _ in range(count):
            loss = float(self.svi.step(*self.args, **self.kwargs))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"The ELBO became {loss} at step {len(self.losses)}: the optimisation "
                    f"diverged. Lower the learning rate (lr={self.lr}), use more particles, or "
                    "check the model for invalid parameter values."
                )
            self.losses.append(loss)
            self.bar.update(1)
            if after is not None:
                after()
            if rule is not None and rule.update(loss):
                return True
            if len(self.losses) % 50 == 1:
                self.bar.set_postfix(loss=f"{loss:.4g}")
        return False


class ConvergenceWarning(UserWarning):
    """The ELBO did not meet the relative-tolerance rule within ``num_steps``."""


def _check_latents(model: Callable, args: tuple, kwargs: dict) -> int:
    """Raise a helpful error when the model has discrete latent sites or none at all; return
    the model's ``max_plate_nesting``."""
    trace = _model_trace(model, args, kwargs)
    latent = _site_names(trace)[0]
    discrete = [
        f"'{n}' ({type(trace.nodes[n]['fn']).__name__})"
        for n in latent
        if trace.nodes[n]["fn"].support.is_discrete
    ]
    if discrete:
        raise ValueError(
            f"fit() approximates the posterior by a Gaussian in the unconstrained space, which "
            f"cannot represent discrete latent site(s) {', '.join(discrete)}. Either marginalize "
            "them out (mark them with infer={'enumerate': 'parallel'} or @config_enumerate and "
            "train an autoguide on poutine.block(model, hide=[...]) with TraceEnum_ELBO), or use "
            "a different method, e.g. pyro.infer.MCMC(NUTS(model)), which enumerates discrete "
            "sites."
        )
    if not latent:
        raise ValueError(
            "The model has no latent sample sites (every pyro.sample has obs=): there is no "
            "posterior to fit. Check that unobserved quantities are pyro.sample statements."
        )
    return _max_plate_nesting(trace)


@dataclass
class ADVIResult:
    r"""What :func:`fit` returns: the fitted guide, the −ELBO history and ways to use them.

    :ivar model: the Pyro model that was fitted.
    :ivar guide: the fitted Pyro autoguide (a Gaussian in the unconstrained space).
    :ivar method: ``"advi"``, ``"fullrank"`` or ``"lowrank"``.
    :ivar losses: −ELBO estimate at every SVI step (list of floats).
    :ivar converged: whether Stan's relative-ELBO rule was met before ``num_steps``.
    :ivar args: positional arguments the model was fitted with.
    :ivar kwargs: keyword arguments the model was fitted with.
    :ivar rel_changes: relative ELBO change at each convergence check.
    :ivar tol_rel_obj: the tolerance used (``None`` if the rule was switched off).
    :ivar elapsed: wall time of the optimisation, seconds.
    :ivar anneal_steps: steps run after Stan's rule with a decaying learning rate (the last
        ``anneal_steps`` of ``losses``; 0 with ``convergence="stan"``).
    :ivar device: the device of the guide and of the tensor data (``None``: left as given).
    :ivar vectorize: how the diagnostics run the model on posterior draws: ``None`` (default)
        vectorized under an outer plate when the model allows it (checked against a plain run
        on the first draw), else once per draw with one warning; ``True`` vectorized or an
        error; ``False`` always once per draw.
    :ivar draws_path: the path the last run took, ``"vectorized"`` or ``"looped"``.

    .. note::
        The guide's parameters live in the guide and in a private param-store scope, so
        :func:`fit` never reads or overwrites the global Pyro param store. The methods below
        enter that scope; to call ``result.guide(...)`` yourself, do it inside
        ``with result.param_scope():``.
    """

    model: Callable
    guide: AutoGuide
    method: str
    losses: list[float]
    converged: bool
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    rel_changes: list[float] = field(default_factory=list)
    tol_rel_obj: float | None = 0.01
    elapsed: float = 0.0
    anneal_steps: int = 0
    device: torch.device | None = None
    vectorize: bool | None = None
    draws_path: str | None = None
    _param_state: dict = field(default_factory=dict, repr=False)
    _buffer_len: int = field(default=2, repr=False)
    _warned_loop: bool = field(default=False, repr=False)

    @contextmanager
    def param_scope(self) -> Iterator[dict]:
        """Context in which the global param store holds exactly this fit's parameters."""
        with pyro.get_param_store().scope(self._param_state) as state:
            yield state

    def _args(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return (args, kwargs) if args or kwargs else (self.args, self.kwargs)

    @torch.no_grad()
    def sample_posterior(self, num_samples: int = 1000) -> dict[str, torch.Tensor]:
        r"""Draw :math:`z^{(s)} \sim q(z)`, ``s = 1..num_samples``, in the constrained space.

        :param num_samples: number of draws.
        :returns: dict ``site -> tensor`` of shape ``(num_samples,) + site_shape`` for every
            latent site of the model, and every ``pyro.deterministic`` site (a function of
            them).
        """
        draws, _ = guide_draws(self, num_samples, self.args, self.kwargs)
        deterministic = _site_names(_model_trace(self.model, self.args, self.kwargs))[2]
        if deterministic:
            run = run_model(self, draws, num_samples, self.args, self.kwargs, "sample_posterior")
            draws.update({name: run.values[name] for name in deterministic})
        return draws

    @torch.no_grad()
    def predictive(self, num_samples: int = 1000, *args: Any, **kwargs: Any) -> dict:
        r"""Posterior predictive draws :math:`\tilde x^{(s)} \sim p(x \mid z^{(s)})`,
        :math:`z^{(s)} \sim q(z)`.

        Observed sites are *re-sampled* (as with ``poutine.uncondition``), so passing the
        training data gives replicated data for posterior predictive checks, and passing new
        covariates (e.g. ``x_new``, ``y=None``) gives predictions.

        :param num_samples: number of draws.
        :param args: model arguments; default: the arguments the model was fitted with.
        :param kwargs: model keyword arguments; default: those the model was fitted with.
        :returns: dict ``site -> tensor`` of shape ``(num_samples,) + site_shape`` for every
            sample and deterministic site (latents and observed sites).
        """
        args, kwargs = self._args(args, kwargs)
        args, kwargs = _to_device((args, kwargs), self.device)
        draws, _ = guide_draws(self, num_samples, self.args, self.kwargs)
        return run_model(self, draws, num_samples, args, kwargs, "predictive").values

    def summary(self, num_samples: int = 1000, prob: float = 0.9) -> None:
        r"""Print the fit (steps, convergence, final −ELBO), PSIS :math:`\hat k` with its reading
        (:math:`\hat k < 0.5` good, :math:`0.5`–:math:`0.7` ok, :math:`> 0.7` unreliable) and
        posterior mean, sd and central ``prob`` interval of every latent scalar.

        :param num_samples: number of posterior draws for the table and for :math:`\hat k`.
        :param prob: mass of the central interval.
        """
        print(self._summary_text(num_samples, prob))

    def _summary_text(self, num_samples: int, prob: float) -> str:
        guide_cls = _METHODS[self.method][1]
        window = min(100, len(self.losses))
        final = sum(self.losses[-window:]) / window
        if self.tol_rel_obj is None:
            status = "convergence not checked (tol_rel_obj=None)"
        elif self.converged:
            buffer = self.rel_changes[-self._buffer_len :]
            mean, median = sum(buffer) / len(buffer), sorted(buffer)[len(buffer) // 2]
            status = f"converged (relative ELBO change: mean {mean:.2g}, median {median:.2g}; "
            status += f"one of them < tol_rel_obj={self.tol_rel_obj})"
        else:
            status = "NOT converged: increase num_steps, or the learning rate, then check losses"
        khat = psis_khat(self, num_samples=num_samples)
        lines = [
            f"ADVI fit, method={self.method!r} ({guide_cls}): {len(self.losses)} steps in "
            f"{self.elapsed:.1f} s, {status}"
            + (f", then {self.anneal_steps} annealing steps" if self.anneal_steps else ""),
            f"-ELBO (mean of the last {window} steps): {final:.4g}",
            f"PSIS k-hat ({num_samples} draws): {khat:.2f}, {khat_reading(khat)}",
            "",
        ]
        lo, hi = (1 - prob) / 2, (1 + prob) / 2
        header = f"{'':>16} {'mean':>10} {'sd':>10} {lo:>10.1%} {'50%':>10} {hi:>10.1%}"
        lines.append(header)
        for name, draws in self.sample_posterior(num_samples).items():
            flat = draws.reshape(num_samples, -1).double()
            probs = torch.tensor([lo, 0.5, hi], dtype=flat.dtype, device=flat.device)
            q = torch.quantile(flat, probs, dim=0)
            for j in range(flat.shape[1]):
                index = tuple(torch.unravel_index(torch.tensor(j), draws.shape[1:]))
                label = name + (f"[{','.join(str(int(i)) for i in index)}]" if index else "")
                lines.append(
                    f"{label:>16} {flat[:, j].mean():>10.4g} {flat[:, j].std():>10.4g} "
                    f"{q[0, j]:>10.4g} {q[1, j]:>10.4g} {q[2, j]:>10.4g}"
                )
        return "\n".join(lines)


def fit(
    model: Callable,
    *args: Any,
    method: str = "advi",
    num_steps: int = 10000,
    tol_rel_obj: float | None = 0.01,
    eval_elbo: int = 100,
    lr: float = 0.05,
    optim: pyro.optim.PyroOptim | None = None,
    num_particles: int = 1,
    init_scale: float = 0.1,
    seed: int | None = None,
    progress_bar: bool = True,
    device: str | torch.device | None = None,
    convergence: str = "anneal",
    anneal_steps: int = 1000,
    **kwargs: Any,
) -> ADVIResult:
    r"""Fit a Gaussian variational posterior (ADVI) to any Pyro model by maximising the ELBO.

    The guide is a Gaussian in the unconstrained space, :math:`\zeta = T^{-1}(z) \sim
    \mathcal{N}(\mu, \Sigma)`; SVI maximises
    :math:`\mathcal{L} = \mathbb{E}_q[\log p(x, T(\zeta)) + \log|\det J_T(\zeta)|] + \mathbb{H}[q]`
    with reparameterized gradients. Every ``eval_elbo`` steps the mean −ELBO of the last window
    is compared with the previous one; optimisation stops when the mean or the median of the
    recent relative changes falls below ``tol_rel_obj`` (Stan's rule, see
    :class:`pyrogen.infer.advi.ELBOConvergence`). If that never happens a
    :class:`ConvergenceWarning` is emitted and ``result.converged`` is ``False``.

    :param model: a Pyro model; observed sites use ``obs=``; latent sites must be continuous.
    :param args: positional arguments passed to ``model`` (the data).
    :param method: ``"advi"`` (mean-field, ``AutoNormal``), ``"fullrank"``
        (``AutoMultivariateNormal``) or ``"lowrank"`` (``AutoLowRankMultivariateNormal``).
    :param num_steps: maximum number of SVI steps.
    :param tol_rel_obj: relative ELBO tolerance (Stan's default 0.01); ``None`` runs all
        ``num_steps`` without checking (``converged`` is then ``False``, and no warning).
    :param eval_elbo: steps per convergence check (Stan's default 100).
    :param lr: learning rate of the default optimizer ``pyro.optim.Adam``.
    :param optim: any ``pyro.optim`` optimizer, replacing the default.
    :param num_particles: Monte Carlo samples per ELBO gradient (vectorized when > 1).
    :param init_scale: initial standard deviation of the guide in the unconstrained space.
    :param seed: seeds Python, NumPy, torch and Pyro (``pyro.set_rng_seed``) before fitting.
    :param progress_bar: show a tqdm progress bar with the running −ELBO.
    :param convergence: ``"anneal"`` (default): Stan's rule over at most ``num_steps -
        anneal_steps`` steps, then ``anneal_steps`` more steps with the learning rate decayed
        geometrically by ``ANNEAL_DECAY`` (100x) — constant-step Adam leaves the iterate
        jittering around the optimum, and on a conjugate regression Stan's stop alone leaves the
        full-rank covariance 10–70 % off, annealing 3–5 %; ``"stan"``: Stan's rule exactly (stop
        at the check that meets it).
    :param anneal_steps: length of the annealing phase (1000; at most ``num_steps // 2``).
    :param device: where to fit, e.g. ``"cuda"``: tensors in ``args``/``kwargs`` (also inside
        tuples, lists, dicts) are moved there, and tensors the model and the guide create
        (constants, guide parameters) default to it (``with torch.device(device)``).
        ``None`` leaves everything where it is.
    :param kwargs: keyword arguments passed to ``model``.
    :returns: an :class:`ADVIResult`.
    :raises ValueError: for an unknown ``method``, bad settings, or discrete latent sites.
    :raises FloatingPointError: when the ELBO becomes NaN or infinite.

    .. note::
        Models need a static structure. The diagnostics run the model on posterior draws
        vectorized under an outer plate when it allows (``(X * w).sum(-1)``), else once per draw
        (``X @ w``, ``alpha[group]``), with one warning; see ``ADVIResult.vectorize``.
    """
    if method not in _METHODS:
        choices = ", ".join(f"{k!r} ({v[1]})" for k, v in _METHODS.items())
        raise ValueError(f"Unknown method {method!r}; expected one of {choices}.")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"Expected num_steps to be a positive int, got {num_steps!r}.")
    if tol_rel_obj is not None and not tol_rel_obj > 0:
        raise ValueError(f"Expected tol_rel_obj > 0 (or None to disable), got {tol_rel_obj}.")
    if not lr > 0:
        raise ValueError(f"Expected a learning rate lr > 0, got {lr}.")
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"Expected num_particles to be an int >= 1, got {num_particles!r}.")
    if convergence not in ("anneal", "stan"):
        raise ValueError(f"Unknown convergence={convergence!r}; expected 'anneal' or 'stan'.")
    if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 0:
        raise ValueError(f"Expected anneal_steps to be an int >= 0, got {anneal_steps!r}.")
    anneal = min(anneal_steps, num_steps // 2) if convergence == "anneal" else 0
    device = _resolve_device(device)
    args, kwargs = _to_device((args, kwargs), device)
    if seed is not None:
        pyro.set_rng_seed(seed)
    with _on(device):
        max_plate_nesting = _check_latents(model, args, kwargs)
        guide_cls = _METHODS[method][0]
        guide = guide_cls(model, init_scale=init_scale)
        optim = optim if optim is not None else pyro.optim.Adam({"lr": lr})
        elbo = Trace_ELBO(
            num_particles=num_particles,
            vectorize_particles=num_particles > 1,
            max_plate_nesting=max_plate_nesting,
        )
        rule = (
            ELBOConvergence(tol_rel_obj, eval_elbo=eval_elbo, num_steps=num_steps)
            if tol_rel_obj is not None
            else None
        )

        losses: list[float] = []
        converged = False
        start = time.perf_counter()
        with pyro.get_param_store().scope() as param_state:
            svi = SVI(model, guide, optim, loss=elbo)
            bar = tqdm(total=num_steps, desc=f"ADVI ({method})", disable=not progress_bar)
            run = _Steps(svi, args, kwargs, losses, bar, lr)
            converged = run(num_steps - anneal, rule)
            if anneal:  # lr decays geometrically by ANNEAL_DECAY over the last `anneal` steps
                factor = ANNEAL_DECAY ** (1 / anneal)
                run(anneal, None, lambda: _scale_lr(optim, factor))
                _scale_lr(optim, ANNEAL_DECAY**-1)
            bar.close()
        elapsed = time.perf_counter() - start

        if rule is not None and not converged:
            if rule.rel_changes:
                last = f"mean {rule.mean:.3g}, median {rule.median:.3g} over the last checks"
            else:
                last = f"never checked: num_steps < eval_elbo={eval_elbo}"
            warnings.warn(
                f"ADVI did not converge in {num_steps} steps ({num_steps - anneal} under Stan's "
                f"rule, then {anneal} annealing steps): the relative ELBO change ({last}) "
                f"is still above tol_rel_obj={tol_rel_obj}. Increase num_steps or the learning "
                "rate, and inspect result.losses.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return ADVIResult(
            model=model,
            guide=guide,
            method=method,
            losses=losses,
            converged=converged,
            args=args,
            kwargs=kwargs,
            rel_changes=list(rule.rel_changes) if rule is not None else [],
            tol_rel_obj=tol_rel_obj,
            elapsed=elapsed,
            anneal_steps=anneal,
            device=device,
            _param_state=param_state,
            _buffer_len=rule.buffer.maxlen if rule is not None else 2,
        )
