r"""Adversarial objectives on an implicit site of a Pyro model: GAN, non-saturating GAN, WGAN,
WGAN-GP and hinge.

The generator is any Pyro program that records its output at a named site (default ``"x"``,
e.g. :class:`pyrogen.models.gan.Generator`); the critic :math:`d(\cdot;\phi)` is an ``nn.Module``
returning one unnormalized score per example, shape ``(batch,)``. Every loss has two parts, both
*minimized*:

* ``gan``: critic :math:`-V = -\mathbb{E}_r \log D(x) - \mathbb{E}_g \log(1 - D(x))`,
  generator :math:`\mathbb{E}_g \log(1 - D(x))` (minimax game [1]);
* ``nsgan``: same critic, generator :math:`-\mathbb{E}_g \log D(x)` (non-saturating [1]);
* ``wgan``: critic :math:`\mathbb{E}_g d(x) - \mathbb{E}_r d(x)`, then every critic parameter
  clipped to :math:`[-c, c]`; generator :math:`-\mathbb{E}_g d(x)` [2];
* ``wgan-gp``: critic :math:`\mathbb{E}_g d - \mathbb{E}_r d + \lambda\,
  \mathbb{E}_{\hat x}(\|\nabla d(\hat x)\|_2 - 1)^2`, generator :math:`-\mathbb{E}_g d(x)` [3];
* ``hinge``: critic :math:`\mathbb{E}_r[1 - d(x)]_+ + \mathbb{E}_g[1 + d(x)]_+`,
  generator :math:`-\mathbb{E}_g d(x)` [4];

with :math:`D = \mathrm{sigmoid}(d)`, :math:`\mathbb{E}_r` over real data, :math:`\mathbb{E}_g`
over generated :math:`x = g(z)`, and :math:`\hat x = \epsilon x_r + (1-\epsilon) x_g`,
:math:`\epsilon \sim U[0, 1]`. V is the value function of Goodfellow et al. [1]; its optimum in
the critic is :math:`D^* = p_r / (p_r + p_g)`, where :math:`\max_\phi V = 2\,\mathrm{JSD} - \log 4`.
The Wasserstein critics estimate the Kantorovich–Rubinstein dual
:math:`W_1 = \sup_{\|f\|_L \le 1} \mathbb{E}_r f - \mathbb{E}_g f` [2]; the estimate
:math:`\mathbb{E}_r d - \mathbb{E}_g d` is reported as ``"w1"`` (with weight clipping it is W1
up to the unknown Lipschitz constant of the clipped critic).

Every loss follows Pyro's custom-loss signature, so its generator part can be added to an ELBO::

    adv = WGAN_GP(critic)
    loss = adv.critic_loss(gen.model, None, 128, real=x)        # critic update
    loss = adv(gen.model, None, 128)                            # generator update
    loss = Trace_ELBO().differentiable_loss(m, g, x) + adv(m, g, x, real=x)  # e.g. VAE-GAN

The model is run as ``model(*args, **kwargs)`` (``model(len(real))`` when no args are given),
replayed against ``guide(*args, **kwargs)`` when a guide is given; the site is looked up in the
model's trace, then in the guide's. The site must hold a *generated* value: a latent sample site
or a ``pyro.deterministic`` site. An observed site (``pyro.sample("x", d, obs=x)``) holds the
data, so the losses refuse it with a ``ValueError``; record the decoded example with
``pyro.deterministic("x_rec", decoded)`` and use ``site="x_rec"`` (VAE-GAN). A keyword ``y=``
is also passed to the critic as ``critic(x, y)`` (conditional GANs: real and generated examples
share the labels).

References:
  1. Generative Adversarial Nets, I. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu,
     D. Warde-Farley, S. Ozair, A. Courville, Y. Bengio (2014).
  2. Wasserstein GAN, M. Arjovsky, S. Chintala, L. Bottou (2017).
  3. Improved Training of Wasserstein GANs, I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin,
     A. Courville (2017).
  4. Geometric GAN, J. H. Lim, J. C. Ye (2017); Spectral Normalization for Generative
     Adversarial Networks, T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida (2018).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.poutine.util import site_is_subsample
from torch import nn


def _site_names(trace: poutine.Trace) -> list[str]:
    """Names of the sample sites of a trace (plates' subsample sites excluded): the places a
    loss can read a generated example from (not the weights a PyroModule registers)."""
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]


def _check_not_observed(name: str, node: dict) -> None:
    """Refuse an observed sample site: its value is the data, not a generated example."""
    observed = node["type"] == "sample" and node.get("is_observed", False)
    if observed and not node.get("infer", {}).get("_deterministic", False):
        raise ValueError(
            f"Site {name!r} is observed: its value is the real data, so the adversarial loss would"
            " score the data and give the model's parameters no gradient. Emit the generated"
            " example at a pyro.deterministic site, e.g. pyro.deterministic('x_rec', decoded),"
            " and point the loss at site='x_rec'."
        )


def _site_value(model: Callable, guide: Callable | None, site: str, args, kwargs) -> torch.Tensor:
    """Run ``model`` (replayed on ``guide``'s trace) and return the value at ``site``."""
    guide_trace = None
    if guide is not None:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model = poutine.replay(model, trace=guide_trace)
    model_trace = poutine.trace(model).get_trace(*args, **kwargs)
    for trace in (model_trace, guide_trace):
        if trace is not None and site in trace.nodes:
            node = trace.nodes[site]
            _check_not_observed(site, node)
            return node["value"]
    existing = _site_names(model_trace)
    if guide_trace is not None:
        existing += [n for n in _site_names(guide_trace) if n not in existing]
    raise ValueError(
        f"Site {site!r} is not in the trace of the model; sites that exist: {existing}."
        " Pass site=<name> to the loss, or record the generated example with"
        f" pyro.deterministic({site!r}, x)."
    )


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Two-sided gradient penalty
    :math:`\mathbb{E}_{\hat x}(\|\nabla_{\hat x} d(\hat x)\|_2 - 1)^2`
    at :math:`\hat x = \epsilon x_r + (1 - \epsilon) x_g`, :math:`\epsilon \sim U[0,1]` per
    example (Gulrajani et al., 2017). Differentiable in the critic's parameters; uses the first
    ``min(len(real), len(fake))`` pairs. For a linear critic :math:`d(x) = w^\top x + b` it equals
    :math:`(\|w\|_2 - 1)^2`.

    >>> import torch
    >>> linear = torch.nn.Linear(2, 1)
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    >>> def critic(x):
    ...     return linear(x).squeeze(-1)
    >>> penalty = gradient_penalty(critic, torch.randn(16, 2), torch.randn(16, 2))
    >>> float(penalty.detach())  # (5 - 1)^2
    16.0
    """
    n = min(len(real), len(fake))
    shape = (n,) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device=real.device if generator is None else "cpu")
    eps = eps.to(device=real.device, dtype=real.dtype)
    x_hat = (eps * real[:n].detach() + (1 - eps) * fake[:n].detach()).requires_grad_(True)
    with torch.enable_grad():
        scores = critic(x_hat)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.reshape(n, -1).norm(dim=1) - 1) ** 2).mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of ``module`` to ``[-clip, clip]`` in place (Arjovsky et al.)."""
    for p in module.parameters():
        p.clamp_(-clip, clip)


class AdversarialLoss:
    r"""Base class: a critic part and a generator part on a named site (see the module docs).

    Subclasses implement :meth:`_critic_terms` (from scores of real and generated examples) and
    :meth:`_generator_term`.

    :param critic: ``nn.Module`` (or callable) with ``critic(x) -> (batch,)`` scores, or
        ``critic(x, y)`` for conditional models.
    :param site: name of the model's site holding the generated example: a latent sample site
        or a ``pyro.deterministic`` site. An observed site holds the data and raises a
        ``ValueError`` when the loss is evaluated.
    """

    #: Short name used by :func:`adversarial_loss` and the CLI.
    name = "adversarial"
    #: Whether the critic estimates W1 (reported as ``"w1"``).
    wasserstein = False

    def __init__(self, critic: Callable[..., torch.Tensor], site: str = "x") -> None:
        if not callable(critic):
            raise TypeError(f"critic must be callable as critic(x), got {type(critic).__name__}.")
        if not isinstance(site, str) or not site:
            raise ValueError(f"site must be a non-empty site name, got {site!r}.")
        self.critic, self.site = critic, site

    # -- helpers -------------------------------------------------------------------------------
    def _args(self, args: tuple, real: torch.Tensor | None) -> tuple:
        if args:
            return args
        if real is None:
            raise ValueError(
                "Give the model's arguments (e.g. the number of samples n) or real=<batch>;"
                " with no arguments the model is run as model(len(real))."
            )
        return (len(real),)

    def scores(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Critic scores of ``x``, validated to shape ``(batch,)``."""
        out = self.critic(x) if y is None else self.critic(x, y)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"The critic must return a tensor, got {type(out).__name__}.")
        if out.dim() == 2 and out.shape[1] == 1:
            out = out.squeeze(1)
        if out.shape != (len(x),):
            raise ValueError(
                f"The critic returned shape {tuple(out.shape)} for a batch of {len(x)} examples;"
                f" expected one score per example, shape ({len(x)},) or ({len(x)}, 1)."
            )
        return out

    def generated(self, model: Callable, guide: Callable | None, *args, **kwargs) -> torch.Tensor:
        """The value at :attr:`site` of one run of ``model(*args, **kwargs)``."""
        return _site_value(model, guide, self.site, args, kwargs)

    def _check_shapes(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        if real.shape[1:] != fake.shape[1:]:
            raise ValueError(
                f"Generated examples at site {self.site!r} have shape {tuple(fake.shape[1:])} but"
                f" real data have shape {tuple(real.shape[1:])}; make the generator's output"
                f" (e.g. data_dim={real[0].numel()}) match the data."
            )

    # -- the two parts ---------------------------------------------------------------------------
    def critic_terms(
        self,
        model: Callable,
        guide: Callable | None,
        *args,
        real: torch.Tensor,
        **kwargs,
    ) -> dict[str, torch.Tensor]:
        """Critic loss (``"critic_loss"``, differentiable in φ only) and diagnostics (``"w1"``,
        ``"penalty"`` where defined) on one real batch and one generated batch."""
        if not isinstance(real, torch.Tensor):
            raise TypeError(f"real must be a tensor of data, got {type(real).__name__}.")
        args = self._args(args, real)
        with torch.no_grad():
            fake = self.generated(model, guide, *args, **kwargs)
        real = real.to(device=fake.device, dtype=fake.dtype)
        self._check_shapes(real, fake)
        y = kwargs.get("y")
        return self._critic_terms(real, fake, self.scores(real, y), self.scores(fake, y), y)

    def critic_loss(
        self, model: Callable, guide: Callable | None, *args, real: torch.Tensor, **kwargs
    ) -> torch.Tensor:
        """The critic part (a differentiable scalar tensor) — minimize it over the critic."""
        return self.critic_terms(model, guide, *args, real=real, **kwargs)["critic_loss"]

    def generator_loss(
        self,
        model: Callable,
        guide: Callable | None,
        *args,
        real: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """The generator part (a differentiable scalar tensor) — minimize it over the generator
        (and, when a guide is given, over the guide)."""
        args = self._args(args, real)
        fake = self.generated(model, guide, *args, **kwargs)
        if real is not None:
            self._check_shapes(real, fake)
        return self._generator_term(self.scores(fake, kwargs.get("y")))

    def differentiable_loss(self, model: Callable, guide: Callable | None, *args, **kwargs):
        """Same as :meth:`generator_loss` (Pyro's name for the differentiable objective)."""
        return self.generator_loss(model, guide, *args, **kwargs)

    __call__ = differentiable_loss

    def loss(self, model: Callable, guide: Callable | None, *args, **kwargs) -> float:
        """The generator part as a float, without gradients."""
        with torch.no_grad():
            return float(self.generator_loss(model, guide, *args, **kwargs))

    def after_critic_step(self) -> None:
        """Hook run after every critic update (WGAN clips the weights here)."""

    # -- to implement ----------------------------------------------------------------------------
    def _critic_terms(self, real, fake, s_real, s_fake, y) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _generator_term(self, s_fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(site={self.site!r})"


class MinimaxGAN(AdversarialLoss):
    r"""The original GAN game :math:`\min_\theta \max_\phi V(\phi, \theta)` [1], with
    :math:`V = \mathbb{E}_r \log D(x) + \mathbb{E}_g \log(1 - D(x))`,
    :math:`D = \mathrm{sigmoid}(d)`.

    Critic part :math:`-V` (the two-class cross-entropy, times 2); generator part
    :math:`\mathbb{E}_g \log(1 - D(g(z)))`, which saturates (vanishing gradient) when D rejects
    the generated samples confidently. The reported ``"value"`` is V (optimum
    :math:`2\,\mathrm{JSD}(p_r \| p_g) - \log 4`).

    A critic that cannot tell data from samples (:math:`D = 1/2` everywhere) is at the
    equilibrium: :math:`V = -\log 4` and the generator part is :math:`\log \tfrac12`.

    >>> import pyro, torch, pyro.distributions as dist
    >>> def generator(n):  # a Pyro program recording x = g(z) at the site "x"
    ...     with pyro.plate("data", n):
    ...         z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...         return pyro.deterministic("x", 2 * z, event_dim=1)
    >>> def undecided(x):
    ...     return torch.zeros(len(x))  # d = 0, D = sigmoid(0) = 1/2
    >>> gan = MinimaxGAN(undecided)
    >>> terms = gan.critic_terms(generator, None, real=torch.randn(8, 2))
    >>> round(float(terms["critic_loss"]), 4), round(float(terms["value"]), 4)
    (1.3863, -1.3863)
    >>> round(float(gan(generator, None, 8)), 4)  # generator part, log(1 - 1/2)
    -0.6931
    """

    name = "gan"

    def _critic_terms(self, real, fake, s_real, s_fake, y):
        loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        return {"critic_loss": loss, "value": -loss.detach()}

    def _generator_term(self, s_fake):
        return -F.softplus(s_fake).mean()  # log(1 - sigmoid(s)) = -softplus(s)


class NonSaturatingGAN(MinimaxGAN):
    r"""GAN with the non-saturating generator loss :math:`-\mathbb{E}_g \log D(g(z))` [1]: the
    same fixed points as the minimax game, but strong gradients when D rejects the samples."""

    name = "nsgan"

    def _generator_term(self, s_fake):
        return F.softplus(-s_fake).mean()  # -log sigmoid(s)


class WGAN(AdversarialLoss):
    r"""Wasserstein GAN with weight clipping [2]: critic part
    :math:`\mathbb{E}_g d(x) - \mathbb{E}_r d(x)`, every critic parameter clamped to
    :math:`[-c, c]` after each critic update; generator part :math:`-\mathbb{E}_g d(g(z))`.

    :param clip: the clipping constant c > 0 (paper: 0.01).
    """

    name = "wgan"
    wasserstein = True

    def __init__(self, critic: Callable[..., torch.Tensor], site: str = "x", clip: float = 0.01):
        super().__init__(critic, site)
        if not clip > 0:
            raise ValueError(f"Expected a clipping constant clip > 0, got {clip}.")
        if not isinstance(critic, nn.Module):
            raise TypeError("WGAN clips the critic's parameters: the critic must be an nn.Module.")
        self.clip = float(clip)

    def _critic_terms(self, real, fake, s_real, s_fake, y):
        w1 = s_real.mean() - s_fake.mean()
        return {"critic_loss": -w1, "w1": w1.detach()}

    def _generator_term(self, s_fake):
        return -s_fake.mean()

    def after_critic_step(self) -> None:
        clip_weights_(self.critic, self.clip)


class WGAN_GP(AdversarialLoss):
    r"""Wasserstein GAN with a two-sided gradient penalty [3]: critic part
    :math:`\mathbb{E}_g d(x) - \mathbb{E}_r d(x) + \lambda\, \mathbb{E}_{\hat x}
    (\|\nabla_{\hat x} d(\hat x)\|_2 - 1)^2` (see :func:`gradient_penalty`); generator part
    :math:`-\mathbb{E}_g d(g(z))`.

    :param penalty: the weight λ ≥ 0 (paper: 10).
    """

    name = "wgan-gp"
    wasserstein = True

    def __init__(self, critic: Callable[..., torch.Tensor], site: str = "x", penalty: float = 10.0):
        super().__init__(critic, site)
        if not penalty >= 0:
            raise ValueError(f"Expected a penalty weight >= 0, got {penalty}.")
        self.penalty = float(penalty)

    def _critic_terms(self, real, fake, s_real, s_fake, y):
        w1 = s_real.mean() - s_fake.mean()
        n = min(len(real), len(fake))
        labels = None if y is None else y[:n]
        gp = gradient_penalty(lambda x: self.scores(x, labels), real, fake)
        return {"critic_loss": -w1 + self.penalty * gp, "w1": w1.detach(), "penalty": gp.detach()}

    def _generator_term(self, s_fake):
        return -s_fake.mean()


class HingeGAN(AdversarialLoss):
    r"""Hinge loss [4]: critic part :math:`\mathbb{E}_r[1 - d(x)]_+ + \mathbb{E}_g[1 + d(x)]_+`,
    generator part :math:`-\mathbb{E}_g d(g(z))`."""

    name = "hinge"

    def _critic_terms(self, real, fake, s_real, s_fake, y):
        return {"critic_loss": F.relu(1 - s_real).mean() + F.relu(1 + s_fake).mean()}

    def _generator_term(self, s_fake):
        return -s_fake.mean()


#: Loss classes by name (the ``--loss`` choices of ``pyrogen gan``).
LOSSES: dict[str, type[AdversarialLoss]] = {
    cls.name: cls for cls in (MinimaxGAN, NonSaturatingGAN, WGAN, WGAN_GP, HingeGAN)
}


def adversarial_loss(
    name: str, critic: Callable[..., torch.Tensor], **kwargs: Any
) -> AdversarialLoss:
    """The loss called ``name`` (``gan``, ``nsgan``, ``wgan``, ``wgan-gp``, ``hinge``) on
    ``critic``; ``kwargs`` go to its constructor (``site=``, ``clip=``, ``penalty=``)."""
    if name not in LOSSES:
        raise ValueError(f"Unknown adversarial loss {name!r}; expected one of {sorted(LOSSES)}.")
    return LOSSES[name](critic, **kwargs)
