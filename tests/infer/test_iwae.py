r"""IWAE / STL / DReG on a conjugate linear-Gaussian model shaped like the CLI's VAE.

Model (per example :math:`i`, data plate at dim -1, subsampled):
:math:`z_i \sim \mathcal N(0, I_2)`, :math:`x_i \mid z_i \sim \mathcal N(z_i W + b, s^2 I_3)`.
With orthogonal rows of :math:`W` the posterior is diagonal Gaussian,
:math:`\Sigma = (I + W W^\top / s^2)^{-1}`, :math:`\mu_i = \Sigma W (x_i - b)^\top / s^2`, and
:math:`p(x_i) = \mathcal N(b, W^\top W + s^2 I)`. At :math:`q = p(z \mid x)` every importance
weight equals :math:`p(x)`, so every bound equals :math:`\log p(x)` *exactly* for any sample.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, RenyiELBO
from pyro.optim import ClippedAdam

from pyrogen.infer import ELBO, IWAE, STL_ELBO, gradient_variance, log_importance_weights

N, S = 6, 0.8
W = torch.tensor([[1.5, 0.0, 0.0], [0.0, 0.7, 0.5]])
B = torch.tensor([0.2, -0.1, 0.3])
X = torch.tensor(
    [
        [1.0, 0.5, -0.2],
        [-1.2, 0.3, 0.9],
        [0.4, -0.8, 0.1],
        [2.0, 1.1, 0.6],
        [-0.3, -0.4, -1.0],
        [0.7, 0.0, 0.5],
    ]
)
POST_VAR = 1.0 / (1.0 + (W**2).sum(1) / S**2)  # diagonal of Sigma
POST_LOC = ((X - B) @ W.T / S**2) * POST_VAR
LOG_PX = dist.MultivariateNormal(B, W.T @ W + S**2 * torch.eye(3)).log_prob(X)


def model(idx):
    b = pyro.param("b", B.clone())
    with pyro.plate("data", N, subsample=idx, dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).expand([len(idx), 2]).to_event(1))
        pyro.sample("x", dist.Normal(z @ W + b, S).to_event(1), obs=X[idx])


def guide(idx):
    loc = pyro.param("loc", POST_LOC.clone())
    scale = pyro.param("scale", POST_VAR.sqrt().expand(N, 2).clone(), dist.constraints.positive)
    with pyro.plate("data", N, subsample=idx, dim=-1):
        pyro.sample("z", dist.Normal(loc[idx], scale[idx]).to_event(1))


ALL = torch.arange(N)


def _set_guide(loc, scale):
    pyro.clear_param_store()
    pyro.param("loc", loc.clone())
    pyro.param("scale", scale.clone(), constraint=dist.constraints.positive)


def _analytic_elbo(loc, scale):
    """E_q[log p(x|z)] - KL(q || p) in closed form, per example."""
    resid = X - B - loc @ W
    trace_term = (scale**2 * (W**2).sum(1)).sum(-1)
    ll = -1.5 * math.log(2 * math.pi * S**2) - ((resid**2).sum(-1) + trace_term) / (2 * S**2)
    kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
    return ll - kl


@pytest.fixture(autouse=True)
def _seed():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


@pytest.mark.parametrize(
    "loss",
    [
        ELBO(estimator="reparam"),
        ELBO(estimator="score"),
        STL_ELBO(num_particles=3, vectorize_particles=True),
        IWAE(num_particles=1),
        IWAE(num_particles=7),
        IWAE(num_particles=7, estimator="stl"),
        IWAE(num_particles=7, estimator="dreg"),
        ELBO(estimator="score", baseline="loo", num_particles=3),
    ],
    ids=["reparam", "score", "stl", "iwae1", "iwae7", "iwae7-stl", "iwae7-dreg", "score-loo"],
)
def test_bound_equals_log_evidence_at_the_posterior(loss):
    assert -loss.loss(model, guide, ALL) == pytest.approx(LOG_PX.sum().item(), abs=1e-4)
    # subsampling: the data plate's scale N / batch multiplies the per-example bounds
    idx = torch.tensor([1, 4])
    expected = N / 2 * LOG_PX[idx].sum().item()
    assert -loss.loss(model, guide, idx) == pytest.approx(expected, abs=1e-4)
    assert -loss.differentiable_loss(model, guide, idx).item() == pytest.approx(expected, abs=1e-4)


def test_analytic_kl_elbo_at_the_posterior_is_log_evidence_in_expectation():
    loss = ELBO(estimator="reparam", kl="analytic", num_particles=4000, vectorize_particles=True)
    est = -loss.loss(model, guide, ALL)
    # per-sample sd of log p(x|z) - KL at the posterior, times sqrt(1 / 4000), is well below 0.05
    assert est == pytest.approx(LOG_PX.sum().item(), abs=0.05)


@pytest.mark.parametrize(
    "loss",
    [STL_ELBO(), IWAE(num_particles=5, estimator="stl"), IWAE(num_particles=5, estimator="dreg")],
    ids=["stl", "iwae-stl", "dreg"],
)
def test_path_derivative_gradients_have_zero_variance_at_the_posterior(loss):
    stats = gradient_variance(loss, model, guide, ALL, num_samples=20)
    standard = gradient_variance(ELBO(estimator="reparam"), model, guide, ALL, num_samples=20)
    for name in ("loc", "scale"):
        assert stats[name].variance.max() < 1e-9, name
        assert stats[name].mean.abs().max() < 1e-4, name
        assert standard[name].variance.min() > 1e-3, name
    # model parameter b still has a noisy (nonzero) gradient
    assert stats["b"].variance.max() > 1e-3


def test_leave_one_out_gradient_is_scaled_by_the_subsampling_factor():
    """At the posterior every particle's cost log p(x_i, z) - log q(z) equals log p(x_i): the
    leave-one-out baseline cancels it, so the guide gradient is exactly zero. The model
    parameter gets -(N / B) mean_k sum_{i in batch} (x_i - z_ki W - b) / s^2 (z_ki ~ q, Gaussian),
    of mean -(N / B) sum_i (x_i - mu_i W - b) / s^2 and variance
    (N / B)^2 B diag(W^T Sigma W) / (s^4 K); a subsampling scale missing from the surrogate would
    be off by N / B = 3.
    """
    idx, k, n = torch.tensor([1, 4]), 4, 400
    loss = ELBO(estimator="score", baseline="loo", num_particles=k)
    stats = gradient_variance(loss, model, guide, idx, num_samples=n)
    for name in ("loc", "scale"):
        assert stats[name].mean.abs().max() < 1e-4 and stats[name].variance.max() < 1e-9, name
    scale = N / len(idx)
    resid = (X[idx] - POST_LOC[idx] @ W - B).sum(0)
    mean = -scale * resid / S**2  # gradient of the loss, -ELBO
    variance = scale**2 * len(idx) * (POST_VAR[:, None] * W**2).sum(0) / (S**4 * k)
    assert torch.allclose(stats["b"].variance.float(), variance, rtol=4 * (2 / n) ** 0.5)
    assert ((stats["b"].mean.float() - mean).abs() < 4 * (variance / n).sqrt()).all()


def test_elbo_optimum_is_the_exact_posterior():
    _set_guide(torch.zeros(N, 2), torch.ones(N, 2))
    fixed_b = pyro.poutine.block(model, hide=["b"])  # learn the guide only
    svi = SVI(fixed_b, guide, ClippedAdam({"lr": 0.1, "lrd": 0.99}), STL_ELBO())
    for _ in range(400):
        svi.step(ALL)
    assert torch.allclose(pyro.param("loc"), POST_LOC, atol=5e-3)
    assert torch.allclose(pyro.param("scale"), POST_VAR.sqrt().expand(N, 2), atol=5e-3)
    assert -STL_ELBO().loss(model, guide, ALL) == pytest.approx(LOG_PX.sum().item(), abs=1e-3)


def test_iwae_bound_increases_with_k_and_stays_below_log_evidence():
    loc, scale = POST_LOC + 0.6, 1.6 * POST_VAR.sqrt().expand(N, 2)
    _set_guide(loc, scale)
    reps = 120
    means, ses = [], []
    for k in (1, 4, 32):
        loss = IWAE(num_particles=k)
        vals = torch.tensor([-loss.loss(model, guide, ALL) for _ in range(reps)])
        means.append(vals.mean().item())
        ses.append(vals.std().item() / math.sqrt(reps))
    exact_elbo = _analytic_elbo(loc, scale).sum().item()
    assert means[0] == pytest.approx(exact_elbo, abs=4 * ses[0])
    for lo, hi, se_lo, se_hi in zip(means, means[1:], ses, ses[1:], strict=False):
        assert hi - lo > 4 * math.hypot(se_lo, se_hi), means
    assert means[-1] < LOG_PX.sum().item() + 4 * ses[-1]
    assert LOG_PX.sum().item() - means[-1] < 0.5 * (LOG_PX.sum().item() - means[0])


def test_dreg_is_unbiased_with_lower_variance_than_standard_iwae():
    _set_guide(POST_LOC + 0.5, 1.5 * POST_VAR.sqrt().expand(N, 2))
    n = 200
    std = gradient_variance(IWAE(16), model, guide, ALL, num_samples=n)
    dreg = gradient_variance(IWAE(16, estimator="dreg"), model, guide, ALL, num_samples=n)
    for name in ("loc", "scale", "b"):
        se = ((std[name].variance + dreg[name].variance) / n).sqrt()
        assert ((std[name].mean - dreg[name].mean).abs() < 4.5 * se + 1e-6).all(), name
    for name in ("loc", "scale"):
        assert (dreg[name].variance < std[name].variance).all(), name
    # for the model parameter DReG *is* the standard estimator: same draws, same gradient
    grads = []
    for est in ("standard", "dreg"):
        pyro.set_rng_seed(3)
        pyro.param("b").unconstrained().grad = None
        IWAE(16, estimator=est).loss_and_grads(model, guide, ALL)
        grads.append(pyro.param("b").unconstrained().grad.clone())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_iwae_rejects_non_reparameterized_guides_and_mixed_scales():
    def bern_model():
        pyro.sample("c", dist.Bernoulli(0.3))

    def bern_guide():
        pyro.sample("c", dist.Bernoulli(0.5))

    with pytest.raises(ValueError, match="'c'.*reparameterized"):
        IWAE(3).loss(bern_model, bern_guide)

    def global_model(idx):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", N, subsample=idx):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=X[idx, 0])

    def global_guide(idx):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"global latent sites \['mu'\].*STL_ELBO"):
        IWAE(3).loss(global_model, global_guide, torch.tensor([0, 1]))
    # without subsampling, global latents are fine: the bound is over the whole log joint
    post = dist.Normal(X[:, 0].sum() / (N + 1), (1.0 / (N + 1)) ** 0.5)
    log_px = dist.MultivariateNormal(torch.zeros(N), torch.eye(N) + 1.0).log_prob(X[:, 0])

    def exact_guide(idx):
        pyro.sample("mu", post)

    assert -IWAE(4).loss(global_model, exact_guide, ALL) == pytest.approx(log_px.item(), abs=1e-4)


# ------------------------------------------------------------ against Pyro's RenyiELBO(alpha=0)


def _renyi(k):
    return RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)


def test_iwae_equals_pyro_renyi_alpha_zero_without_subsampling():
    """Pyro's Renyi bound keeps plates common to every site, so with all sites in the data plate
    its log-sum-exp is per example too: same draws, same value and same gradient."""
    _set_guide(POST_LOC + 0.5, 1.5 * POST_VAR.sqrt().expand(N, 2))
    params = ("loc", "scale", "b")
    results = []
    for loss in (IWAE(8, max_plate_nesting=1), _renyi(8)):
        pyro.set_rng_seed(7)
        value = loss.loss(model, guide, ALL)
        for name in params:
            pyro.param(name).unconstrained().grad = None
        pyro.set_rng_seed(7)
        assert loss.loss_and_grads(model, guide, ALL) == pytest.approx(value, rel=1e-6)
        results.append((value, [pyro.param(n).unconstrained().grad.clone() for n in params]))
    (ours, our_grads), (pyro_value, pyro_grads) = results
    assert ours == pytest.approx(pyro_value, rel=1e-6)
    assert abs(ours + LOG_PX.sum().item()) > 0.1  # off the posterior: weights are not constant
    for name, a, b in zip(params, our_grads, pyro_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_iwae_and_pyro_renyi_differ_under_subsampling():
    """With scale s = N / b, pyrogen's bound is s sum_i [logsumexp_k log w_ki - log K] (the
    scale outside the log-sum-exp); Pyro's Renyi uses the scaled site log_prob, i.e.
    sum_i [logsumexp_k s log w_ki - log K]. Both from the very same draws."""
    _set_guide(POST_LOC + 0.5, 1.5 * POST_VAR.sqrt().expand(N, 2))
    idx, k = torch.tensor([1, 4]), 8
    s = N / len(idx)
    pyro.set_rng_seed(3)
    log_w, scale = log_importance_weights(model, guide, idx, num_samples=k, max_plate_nesting=1)
    assert scale == pytest.approx(s)
    outside = s * (log_w.logsumexp(0) - math.log(k)).sum().item()
    inside = (torch.logsumexp(s * log_w, 0) - math.log(k)).sum().item()
    for loss, expected in ((IWAE(k, max_plate_nesting=1), outside), (_renyi(k), inside)):
        pyro.set_rng_seed(3)
        assert -loss.loss(model, guide, idx) == pytest.approx(expected, rel=1e-6)
    assert abs(outside - inside) > 1.0


# ------------------------------------------------- gradients under a subsampled data plate
#
# An amortized linear guide q(z_i | x_i) = N((x_i - B) A + c, diag(sigma^2)) whose noise comes from
# a fixed table EPS[k, i] (a reparameterized Normal with given standard-normal draws): then the
# per-example terms of every estimator are the same function of (example, particle) in the
# full batch and in any mini-batch, so the mini-batch gradient averaged over a partition of the
# data must equal the full-batch gradient *exactly*. A subsampling scale dropped, applied twice or
# moved inside the log-sum-exp changes the average by a factor ~3 (N / b = 3).

A_STAR = W.T / S**2 * POST_VAR  # the posterior mean is (x - b) A_STAR
PARTITION = [torch.tensor([0, 3]), torch.tensor([4, 1]), torch.tensor([2, 5])]
EPS = torch.randn(5, N, 2, generator=torch.Generator().manual_seed(11))


class _FixedNoiseNormal(dist.Normal):
    """``Normal(loc, scale)`` whose reparameterized sample is ``loc + scale * noise``."""

    def __init__(self, loc, scale, noise):
        self.noise = noise
        super().__init__(loc, scale)

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape)
        return type(self)(
            self.loc.expand(shape), self.scale.expand(shape), self.noise.expand(shape)
        )

    def rsample(self, sample_shape=torch.Size()):
        assert sample_shape == torch.Size()
        return self.loc + self.scale * self.noise


def linear_guide(idx, k=None):
    a = pyro.param("A", A_STAR + 0.3)
    c = pyro.param("c", torch.tensor([0.2, -0.1]))
    sigma = pyro.param("sigma", 1.5 * POST_VAR.sqrt(), dist.constraints.positive)
    noise = EPS[0, idx] if k is None else EPS[:k, idx]  # (b, 2) or (K, b, 2)
    loc = ((X[idx] - B) @ a + c).expand(noise.shape)
    with pyro.plate("data", N, subsample=idx, dim=-1):
        pyro.sample("z", _FixedNoiseNormal(loc, sigma.expand(noise.shape), noise).to_event(1))


def amortized_model(idx, k=None):
    model(idx)


def _grads(loss, idx, k):
    for name in ("A", "c", "sigma", "b"):
        if name in pyro.get_param_store():
            pyro.param(name).unconstrained().grad = None
    loss.loss_and_grads(amortized_model, linear_guide, idx, k)
    return {n: pyro.param(n).unconstrained().grad.clone() for n in ("A", "c", "sigma", "b")}


@pytest.mark.parametrize(
    "loss, k",
    [
        (STL_ELBO(), None),
        (IWAE(5, estimator="stl", max_plate_nesting=1), 5),
        (IWAE(5, estimator="dreg", max_plate_nesting=1), 5),
        (IWAE(5, max_plate_nesting=1), 5),
    ],
    ids=["stl", "iwae-stl", "dreg", "iwae"],
)
def test_minibatch_gradients_average_to_the_full_batch_gradient(loss, k):
    full = _grads(loss, ALL, k)
    parts = [_grads(loss, idx, k) for idx in PARTITION]
    for name, g in full.items():
        mean = sum(p[name] for p in parts) / len(parts)
        assert g.abs().max() > 0.1, name  # off the posterior: a nonzero gradient to compare
        torch.testing.assert_close(mean, g, rtol=1e-4, atol=1e-5, msg=name)


def _analytic_elbo_of(a, c, log_sigma, b):
    loc, scale = (X - B) @ a + c, log_sigma.exp().expand(N, 2)
    resid = X - b - loc @ W
    trace_term = (scale**2 * (W**2).sum(1)).sum(-1)
    ll = -1.5 * math.log(2 * math.pi * S**2) - ((resid**2).sum(-1) + trace_term) / (2 * S**2)
    kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
    return (ll - kl).sum()


def test_stl_gradient_with_random_subsample_is_unbiased_for_the_full_batch_elbo():
    """Pyro draws the mini-batch (subsample_size=2) and the guide a fresh z: the average of the
    STL gradient must be the gradient of the closed-form full-batch ELBO."""

    def sub_model(batch):
        b = pyro.param("b", B.clone())
        with pyro.plate("data", N, subsample_size=batch, dim=-1) as idx:
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).expand([batch, 2]).to_event(1))
            pyro.sample("x", dist.Normal(z @ W + b, S).to_event(1), obs=X[idx])

    def sub_guide(batch):
        a = pyro.param("A", A_STAR + 0.3)
        c = pyro.param("c", torch.tensor([0.2, -0.1]))
        sigma = pyro.param("sigma", 1.5 * POST_VAR.sqrt(), dist.constraints.positive)
        with pyro.plate("data", N, subsample_size=batch, dim=-1) as idx:
            pyro.sample("z", dist.Normal((X[idx] - B) @ a + c, sigma).to_event(1))

    n = 400
    stats = gradient_variance(STL_ELBO(), sub_model, sub_guide, 2, num_samples=n)
    exact = [A_STAR + 0.3, torch.tensor([0.2, -0.1]), (1.5 * POST_VAR.sqrt()).log(), B.clone()]
    exact = [t.requires_grad_() for t in exact]
    (-_analytic_elbo_of(*exact)).backward()
    for name, p in zip(("A", "c", "sigma", "b"), exact, strict=True):
        se = (stats[name].variance / n).sqrt()
        assert ((stats[name].mean - p.grad).abs() < 4.5 * se).all(), name
        # power: a scale dropped (x1/3) or squared (x3) moves the mean by >= 2/3 |grad|
        assert 4.5 * se.norm() < 2 / 3 * p.grad.norm(), name
