r"""Gradient estimators of the ELBO against closed forms; input validation; CLI objectives.

Closed-form problem. :math:`q = \mathcal N(\mu, \sigma^2)`, :math:`f(z) = (z - k)^2`,
:math:`z = \mu + \sigma\epsilon`, :math:`\epsilon \sim \mathcal N(0, 1)`, :math:`d = \mu - k`.
The test model is :math:`p(z) = q_{\mathrm{sg}}(z)` (the guide's density with *detached*
parameters) plus ``pyro.factor(-f(z))``, so :math:`\log p - \log q \equiv -f` in value and the loss
:math:`-\text{ELBO}` equals :math:`\mathbb E_q[f] = d^2 + \sigma^2` exactly, with gradient
:math:`(\partial_\mu, \partial_\sigma) = (2d, 2\sigma)`. Gaussian moments used below:
:math:`E\epsilon^2 = 1, E\epsilon^4 = 3, E\epsilon^6 = 15, E\epsilon^8 = 105`.

*Score function* :math:`g = s\, f(z)` with :math:`s_\mu = \partial_\mu \log q = \epsilon/\sigma`,
:math:`s_\sigma = \partial_\sigma \log q = (\epsilon^2 - 1)/\sigma`. Expanding
:math:`f = (d + \sigma\epsilon)^2` and dropping odd moments:

- :math:`E[s_\mu f] = 2d`, :math:`E[s_\mu^2] = 1/\sigma^2`,
  :math:`E[s_\mu^2 f] = (d^2 + 3\sigma^2)/\sigma^2`,
  :math:`E[s_\mu^2 f^2] = (d^4 + 18 d^2\sigma^2 + 15\sigma^4)/\sigma^2`, so
  :math:`\mathrm{Var} = d^4/\sigma^2 + 14 d^2 + 15\sigma^2`;
- :math:`E[s_\sigma f] = 2\sigma`, :math:`E[s_\sigma^2] = 2/\sigma^2`,
  :math:`E[s_\sigma^2 f] = (2d^2 + 10\sigma^2)/\sigma^2`,
  :math:`E[s_\sigma^2 f^2] = (2d^4 + 60 d^2\sigma^2 + 78\sigma^4)/\sigma^2`, so
  :math:`\mathrm{Var} = 2d^4/\sigma^2 + 60 d^2 + 74\sigma^2`.

*Score with a constant baseline* :math:`b`: :math:`g = s (f - b)`, still mean :math:`A = E[sf]`,
:math:`\mathrm{Var} = E[s^2 f^2] - 2b\,E[s^2 f] + b^2 E[s^2] - A^2`.

*Leave-one-out baseline* with :math:`K` samples:
:math:`g = \frac1K\sum_k s_k (f_k - \frac{1}{K-1}\sum_{j\ne k} f_j)
= \binom K2^{-1} \sum_{k<j} \psi(k, j)`, a U-statistic with kernel
:math:`\psi = \tfrac12 (s_k - s_j)(f_k - f_j)` and mean :math:`A`. With :math:`m = E f = d^2 +
\sigma^2`, :math:`E f^2 = d^4 + 6d^2\sigma^2 + 3\sigma^4`:
:math:`\zeta_1 = \mathrm{Var}\,E[\psi \mid 1] = \tfrac14 (E[s^2 (f - m)^2] - A^2)`,
:math:`\zeta_2 = \mathrm{Var}\,\psi = \tfrac12 (E[s^2 f^2] - 2m E[s^2 f] + E[s^2] E[f^2])`, and
Hoeffding's formula gives :math:`\mathrm{Var}\,g = \frac{2}{K(K-1)}(2(K-2)\zeta_1 + \zeta_2)`.

*Reparameterized, path only* (``STL_ELBO``; also ``kl="analytic"``, whose KL to
:math:`q_{\mathrm{sg}}` has zero gradient): :math:`g_\mu = f'(z) = 2(d + \sigma\epsilon)`,
:math:`g_\sigma = f'(z)\epsilon`; variances :math:`4\sigma^2` and :math:`4d^2 + 8\sigma^2`.

*Reparameterized, standard* (``Trace_ELBO``) adds the zero-mean score of :math:`\log q`:
:math:`g_\mu = 2(d + \sigma\epsilon) + \epsilon/\sigma`,
:math:`g_\sigma = 2d\epsilon + c\epsilon^2 - 1/\sigma` with :math:`c = 2\sigma + 1/\sigma`;
variances :math:`c^2` and :math:`4d^2 + 2c^2`.

Every estimate is drawn for ``R`` independent replicates at once: each replicate has its own copy
of :math:`(\mu, \sigma)` inside a plate, so the gradient with respect to copy :math:`i` is one draw
of the estimator. Tolerances are 4 Monte Carlo standard errors: :math:`\sqrt{v/R}` for the mean
and :math:`\sqrt{(m_4 - v^2)/R}` (empirical fourth central moment) for the variance.
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, TraceGraph_ELBO
from pyro.nn import PyroModule
from pyro.optim import Adam

from pyrogen.infer import (
    ELBO,
    IWAE,
    OBJECTIVES,
    STL_ELBO,
    get_objective,
    score_function,
)

MU, SIGMA, K_TARGET = 0.5, 0.8, 2.0
R = 20000


def _guide():
    mu = pyro.param("mu", torch.full((R,), MU))
    sigma = pyro.param("sigma", torch.full((R,), SIGMA))
    with pyro.plate("rep", R):
        pyro.sample("z", dist.Normal(mu, sigma))


def _model():
    mu, sigma = pyro.param("mu").detach(), pyro.param("sigma").detach()
    with pyro.plate("rep", R):
        z = pyro.sample("z", dist.Normal(mu, sigma))
        pyro.factor("f", -((z - K_TARGET) ** 2))


def _moments(d, s):
    """(A, E[s^2], E[s^2 f], E[s^2 f^2]) for the mu and sigma scores."""
    mu = (2 * d, 1 / s**2, (d**2 + 3 * s**2) / s**2, (d**4 + 18 * d**2 * s**2 + 15 * s**4) / s**2)
    sg = (
        2 * s,
        2 / s**2,
        (2 * d**2 + 10 * s**2) / s**2,
        (2 * d**4 + 60 * d**2 * s**2 + 78 * s**4) / s**2,
    )
    return {"mu": mu, "sigma": sg}


def _closed_form_variance(kind, d=MU - K_TARGET, s=SIGMA, b=None, k=None):
    c = 2 * s + 1 / s
    if kind == "path":
        return {"mu": 4 * s**2, "sigma": 4 * d**2 + 8 * s**2}
    if kind == "reparam":
        return {"mu": c**2, "sigma": 4 * d**2 + 2 * c**2}
    m, ef2 = d**2 + s**2, d**4 + 6 * d**2 * s**2 + 3 * s**4
    out = {}
    for name, (a, es2, es2f, es2f2) in _moments(d, s).items():
        if kind == "score":
            out[name] = es2f2 - 2 * b * es2f + b**2 * es2 - a**2
        elif kind == "loo":
            zeta1 = 0.25 * (es2f2 - 2 * m * es2f + m**2 * es2 - a**2)
            zeta2 = 0.5 * (es2f2 - 2 * m * es2f + es2 * ef2)
            out[name] = 2 / (k * (k - 1)) * (2 * (k - 2) * zeta1 + zeta2)
    return out


def _draws(loss, guide=_guide, warmup=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    pyro.poutine.block(_guide)()  # create the parameters
    for _ in range(warmup):
        loss.loss_and_grads(_model, guide)
    params = {name: pyro.param(name).unconstrained() for name in ("mu", "sigma")}
    for p in params.values():
        p.grad = None
    loss.loss_and_grads(_model, guide)
    return {name: p.grad.clone() for name, p in params.items()}


def _check(draws, variance=None):
    exact_mean = {"mu": 2 * (MU - K_TARGET), "sigma": 2 * SIGMA}
    for name, g in draws.items():
        g = g.double()
        mean, var = g.mean().item(), g.var().item()
        m4 = ((g - mean) ** 4).mean().item()
        assert abs(mean - exact_mean[name]) < 4 * math.sqrt(var / R), (name, mean)
        if variance is not None:
            se = math.sqrt((m4 - var**2) / R)
            assert abs(var - variance[name]) < 4 * se, (name, var, variance[name], se)


def test_closed_forms_match_gauss_hermite_quadrature():
    """The algebra above, checked by exact Gauss-Hermite quadrature of the per-sample formulas."""
    eps, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    d, s, b = MU - K_TARGET, SIGMA, 1.7
    f = (d + s * eps) ** 2
    scores = {"mu": eps / s, "sigma": (eps**2 - 1) / s}
    paths = {"mu": 2 * (d + s * eps), "sigma": 2 * (d + s * eps) * eps}

    def var(g):
        return float(w @ g**2 - (w @ g) ** 2)

    for name in ("mu", "sigma"):
        assert var(scores[name] * f) == pytest.approx(
            _closed_form_variance("score", b=0.0)[name], rel=1e-9
        )
        assert var(scores[name] * (f - b)) == pytest.approx(
            _closed_form_variance("score", b=b)[name], rel=1e-9
        )
        assert var(paths[name]) == pytest.approx(_closed_form_variance("path")[name], rel=1e-9)
        assert var(paths[name] + scores[name]) == pytest.approx(
            _closed_form_variance("reparam")[name], rel=1e-9
        )
    # Leave-one-out, K = 3: brute-force the U-statistic over a 3-d tensor-product grid.
    e1, e2, e3 = np.meshgrid(eps, eps, eps, indexing="ij")
    ww = w[:, None, None] * w[None, :, None] * w[None, None, :]
    for name, score in (("mu", lambda e: e / s), ("sigma", lambda e: (e**2 - 1) / s)):
        es, fs = [score(e) for e in (e1, e2, e3)], [(d + s * e) ** 2 for e in (e1, e2, e3)]
        g = sum(es[i] * (fs[i] - sum(fs[j] for j in range(3) if j != i) / 2) for i in range(3)) / 3
        v = float((ww * g**2).sum() - (ww * g).sum() ** 2)
        assert v == pytest.approx(_closed_form_variance("loo", k=3)[name], rel=1e-9)


def test_score_function_estimator_closed_form():
    _check(_draws(ELBO(estimator="score")), _closed_form_variance("score", b=0.0))


def test_score_constant_baseline_closed_form():
    b = (MU - K_TARGET) ** 2 + SIGMA**2  # = E_q[f]; Pyro's baselines are in units of
    baseline = {"baseline_value": torch.full((R,), -b)}  # the ELBO's cost log p - log q = -f
    loss = TraceGraph_ELBO()
    draws = _draws(loss, guide=score_function(_guide, baseline=baseline))
    _check(draws, _closed_form_variance("score", b=b))


@pytest.mark.parametrize("k", [2, 4])
def test_score_leave_one_out_baseline_closed_form(k):
    draws = _draws(ELBO(estimator="score", baseline="loo", num_particles=k))
    _check(draws, _closed_form_variance("loo", k=k))


def test_score_decaying_average_baseline_is_unbiased_and_reduces_variance():
    draws = _draws(ELBO(estimator="score", baseline="decaying_avg"), warmup=40)
    _check(draws)
    plain = _closed_form_variance("score", b=0.0)
    for name, g in draws.items():
        assert g.var().item() < 0.75 * plain[name]


def test_reparameterized_estimator_closed_form():
    _check(_draws(ELBO(estimator="reparam")), _closed_form_variance("reparam"))


@pytest.mark.parametrize(
    "loss", [STL_ELBO(), ELBO(estimator="reparam", kl="analytic")], ids=["stl", "analytic_kl"]
)
def test_path_derivative_estimator_closed_form(loss):
    _check(_draws(loss), _closed_form_variance("path"))


@pytest.mark.parametrize(
    "estimator, kind", [("standard", "reparam"), ("stl", "path"), ("dreg", "path")]
)
def test_iwae_with_one_particle_closed_form(estimator, kind):
    """With K = 1 the normalized weight is 1: IWAE is the ELBO, its standard gradient the
    reparameterized one, and STL / DReG (weight and squared weight 1) the path derivative."""
    _check(_draws(IWAE(num_particles=1, estimator=estimator)), _closed_form_variance(kind))


def test_auto_reparameterizes_a_normal_guide():
    _check(_draws(ELBO(estimator="auto")), _closed_form_variance("reparam"))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"estimator": "reinforce"}, "estimator"),
        ({"kl": "exact"}, "kl"),
        ({"estimator": "score", "baseline": "mean"}, "baseline"),
        ({"estimator": "score", "kl": "analytic"}, "kl='mc'"),
        ({"estimator": "reparam", "baseline": "decaying_avg"}, "score"),
        ({"estimator": "score", "baseline": "loo", "num_particles": 1}, "num_particles >= 2"),
        ({"num_particles": 0}, "num_particles"),
        ({"num_particles": 1.5}, "num_particles"),
        ({"estimator": "score", "baseline": "decaying_avg", "baseline_beta": 1.0}, "beta"),
    ],
)
def test_elbo_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ELBO(**kwargs)


def test_multi_sample_losses_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"estimator in \('standard', 'stl', 'dreg'\)"):
        IWAE(num_particles=2, estimator="vimco")
    for bad in (0, -3):
        with pytest.raises(ValueError, match="num_particles"):
            IWAE(num_particles=bad)
        with pytest.raises(ValueError, match="num_particles"):
            STL_ELBO(num_particles=bad)


def test_get_objective_names_and_errors():
    assert OBJECTIVES == ("reparam", "score", "iwae", "stl", "dreg")
    assert isinstance(get_objective("reparam"), ELBO) and get_objective("reparam").kl == "analytic"
    assert get_objective("score").baseline == "decaying_avg"
    assert get_objective("iwae", 5).estimator == "standard"
    assert get_objective("dreg", 5).estimator == "dreg"
    assert isinstance(get_objective("stl", 3), STL_ELBO)
    with pytest.raises(ValueError, match="reparam, score, iwae, stl, dreg"):
        get_objective("elbo")
    with pytest.raises(ValueError, match="num_particles"):
        get_objective("iwae", 0)


def _one_site_model():
    pyro.sample("z", dist.Normal(0.0, 1.0))


def _guide_with_extra_site():
    pyro.sample("z", dist.Normal(pyro.param("loc", torch.tensor(0.0)), 1.0))
    pyro.sample("w", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize(
    "loss",
    [
        ELBO(estimator="reparam"),
        ELBO(estimator="reparam", kl="analytic"),
        ELBO(estimator="score"),
        ELBO(estimator="auto"),
        ELBO(estimator="score", baseline="loo", num_particles=2),
        IWAE(num_particles=3),
        IWAE(num_particles=3, estimator="dreg"),
        STL_ELBO(),
    ],
)
def test_guide_site_missing_from_model_is_a_clear_error(loss):
    pyro.clear_param_store()
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=r"'w'.*latent sites are \['z'\]"),
    ):
        loss.differentiable_loss(_one_site_model, _guide_with_extra_site)


def test_reparam_estimator_rejects_non_reparameterizable_guide():
    def model():
        pyro.sample("c", dist.Bernoulli(0.3))

    def guide():
        pyro.sample("c", dist.Bernoulli(pyro.param("p", torch.tensor(0.5))))

    pyro.clear_param_store()
    with pytest.raises(ValueError, match="'c'.*estimator='score'"):
        ELBO(estimator="reparam").differentiable_loss(model, guide)
    assert math.isfinite(ELBO(estimator="auto").loss(model, guide))


# ------------------------------------------------------------- the CLI's VAE-shaped model


class TinyVAE(PyroModule):
    """Same sites as pyrogen's VAE: linear encoder/decoder, data plate at dim -1, subsampled."""

    def __init__(self, num_data, x_dim=4, z_dim=2):
        super().__init__()
        self.num_data, self.z_dim = num_data, z_dim
        self.encoder = torch.nn.Linear(x_dim, 2 * z_dim)
        self.decoder = torch.nn.Linear(z_dim, x_dim)

    def _plate(self, x):
        return pyro.plate("data", self.num_data, subsample=torch.arange(len(x)), dim=-1)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with self._plate(x):
            prior = dist.Normal(x.new_zeros(self.z_dim), 1.0).expand([len(x), self.z_dim])
            z = pyro.sample("z", prior.to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with self._plate(x):
            loc, log_scale = self.encoder(x).chunk(2, dim=-1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def _vae_data(n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    return z @ torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, 1.0, -2.0]]) + 0.3 * torch.randn(
        n, 4, generator=g
    )


@pytest.mark.parametrize("num_particles", [1, 3])
@pytest.mark.parametrize("name", OBJECTIVES)
def test_objectives_train_the_vae_shaped_model(name, num_particles):
    """Every CLI objective runs on mini-batches of varying size (last batch smaller) and learns."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = _vae_data()
    vae = TinyVAE(num_data=len(data))
    loss = get_objective(name, num_particles)
    svi = SVI(vae.model, vae.guide, Adam({"lr": 0.02}), loss)
    evaluate = get_objective("iwae", 1)

    def full_loss():
        with torch.no_grad():
            return sum(evaluate.loss(vae.model, vae.guide, data) for _ in range(20)) / 20

    before = full_loss()
    for _ in range(12):
        for batch in torch.split(data[torch.randperm(len(data))], 10):  # sizes 10, 10, 4
            assert math.isfinite(svi.step(batch))
    after = full_loss()
    assert after < before, (name, before, after)
