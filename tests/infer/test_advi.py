"""fit(): ADVI against closed-form posteriors, the convergence rule, errors and the result API."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.infer import ADVIResult, ConvergenceWarning, fit

# ---------------------------------------------------------------- conjugate Normal–Normal
Y = torch.tensor([1.3, 0.4, 2.1, 1.7, 0.9, 1.1, 1.8, 0.2, 1.5, 1.0])
PRIOR_LOC, PRIOR_SCALE, NOISE = 0.0, 2.0, 1.0


def normal_normal(y):
    mu = pyro.sample("mu", dist.Normal(PRIOR_LOC, PRIOR_SCALE))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, NOISE), obs=y)


def normal_normal_posterior(y):
    precision = 1 / PRIOR_SCALE**2 + len(y) / NOISE**2
    mean = (PRIOR_LOC / PRIOR_SCALE**2 + y.sum() / NOISE**2) / precision
    return float(mean), precision**-0.5


@pytest.mark.parametrize("method", ["advi", "fullrank"])
def test_normal_normal_recovers_exact_posterior(method):
    mean, sd = normal_normal_posterior(Y)
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.993})
    result = fit(
        normal_normal,
        Y,
        method=method,
        num_steps=500,
        tol_rel_obj=None,
        seed=0,
        optim=optim,
        num_particles=8,
        progress_bar=False,
    )
    # The fitted Gaussian itself (optimisation error only): mean within 0.1 sd, sd within 5 %.
    if method == "advi":
        loc, scale = result.guide.locs.mu.item(), result.guide.scales.mu.item()
    else:
        post = result.guide.get_posterior()
        loc, scale = post.loc.item(), post.scale_tril.item()
    assert abs(loc - mean) < 0.1 * sd
    assert abs(scale / sd - 1) < 0.05
    # Draws from it (Monte Carlo error): 4 standard errors of mean and of sd.
    n = 20000
    draws = result.sample_posterior(n)["mu"]
    assert draws.shape == (n,)
    assert abs(draws.mean() - loc) < 4 * scale / math.sqrt(n)
    assert abs(draws.std() - scale) < 4 * scale / math.sqrt(2 * n)


# ------------------------------------------------- Bayesian linear regression, known noise
def _regression_data(n=40, d=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(n, 1, generator=g)
    X = 0.9 * shared + 0.45 * torch.randn(n, d, generator=g)  # correlated columns
    y = X @ torch.tensor([1.0, -0.5, 0.3]) + torch.randn(n, generator=g)
    return X, y


PRIOR_SD = 2.0


def regression(X, y=None):
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[1]), PRIOR_SD).to_event(1))
    with pyro.plate("data", X.shape[0]):
        return pyro.sample("y", dist.Normal((X * beta).sum(-1), NOISE), obs=y)


def _regression_posterior(X, y):
    precision = X.T @ X / NOISE**2 + torch.eye(X.shape[1]) / PRIOR_SD**2
    cov = torch.linalg.inv(precision)
    return cov @ X.T @ y / NOISE**2, cov, precision


def _fit_regression(method, X, y, steps=500):
    optim = pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.993})
    return fit(
        regression,
        X,
        y,
        method=method,
        num_steps=steps,
        tol_rel_obj=None,
        seed=0,
        optim=optim,
        num_particles=8,
        progress_bar=False,
    )


def test_fullrank_regression_recovers_mean_and_covariance():
    X, y = _regression_data()
    mean, cov, _ = _regression_posterior(X, y)
    sd = cov.diagonal().sqrt()
    result = _fit_regression("fullrank", X, y)
    post = result.guide.get_posterior()
    assert ((post.loc.detach() - mean).abs() / sd).max() < 0.15
    q_cov = post.covariance_matrix.detach()
    assert (q_cov - cov).norm() / cov.norm() < 0.1
    # Strong posterior correlation is captured (the columns of X are correlated).
    corr = cov / torch.outer(sd, sd)
    q_corr = q_cov / torch.outer(q_cov.diagonal().sqrt(), q_cov.diagonal().sqrt())
    assert (q_corr - corr).abs().max() < 0.05
    # Monte Carlo check of the draws against the guide's own moments.
    n = 20000
    draws = result.sample_posterior(n)["beta"]
    assert draws.shape == (n, 3)
    se = q_cov.diagonal().sqrt() / math.sqrt(n)
    assert ((draws.mean(0) - post.loc.detach()).abs() < 4 * se).all()


def test_meanfield_regression_recovers_means_and_underestimates_variance():
    X, y = _regression_data()
    mean, cov, precision = _regression_posterior(X, y)
    sd = cov.diagonal().sqrt()
    result = _fit_regression("advi", X, y)
    loc = result.guide.locs.beta.detach()
    scale = result.guide.scales.beta.detach()
    assert ((loc - mean).abs() / sd).max() < 0.15
    # KL(q || p)-optimal factorized Gaussian: variance 1 / Lambda_ii, not Sigma_ii.
    meanfield_sd = precision.diagonal().rsqrt()
    assert ((scale / meanfield_sd - 1).abs() < 0.1).all()
    assert (scale < 0.7 * sd).all()  # here Sigma_ii is about 4x 1/Lambda_ii


def test_constrained_latent_poisson_gamma():
    # Gamma(a, b) prior, Poisson counts: posterior Gamma(a + sum y, b + n); q lives on log-rate.
    counts = torch.tensor([3.0, 5.0, 4.0, 6.0, 2.0, 4.0, 5.0, 3.0])
    a, b = 2.0, 1.0

    def model(y):
        rate = pyro.sample("rate", dist.Gamma(a, b))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Poisson(rate), obs=y)

    result = fit(
        model,
        counts,
        method="fullrank",
        num_steps=600,
        tol_rel_obj=None,
        seed=0,
        num_particles=8,
        progress_bar=False,
        optim=pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.995}),
    )
    exact = dist.Gamma(a + counts.sum(), b + len(counts))
    draws = result.sample_posterior(20000)["rate"]
    assert (draws > 0).all()
    # A log-normal matches this near-symmetric Gamma(36, 9) closely: mean and sd within 3 %.
    assert abs(draws.mean() / exact.mean - 1) < 0.03
    assert abs(draws.std() / exact.stddev - 1) < 0.05


# ---------------------------------------------------------------------- convergence rule
def test_converges_early_on_easy_problem():
    result = fit(normal_normal, Y, num_steps=5000, seed=0, progress_bar=False)
    assert result.converged
    assert len(result.losses) < 5000
    assert len(result.losses) % 100 == 0  # stops at a check (eval_elbo=100)
    assert result.rel_changes[-1] < 0.01 or sorted(result.rel_changes)[0] < 0.01
    mean, sd = normal_normal_posterior(Y)
    assert abs(result.sample_posterior(4000)["mu"].mean() - mean) < 0.5 * sd


def test_reports_non_convergence_on_hard_budget():
    # Far-away posterior (y ~ 300): Adam moves mu by ~lr = 0.1 per step, so after 300 steps
    # mu ~ 30 and the -ELBO (~ n (300 - mu)^2 / 2) still drops by ~7 % per 100 steps.
    y = Y + 300.0

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1000.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.warns(ConvergenceWarning, match="did not converge in 300 steps"):
        result = fit(model, y, num_steps=300, lr=0.1, seed=0, progress_bar=False)
    assert not result.converged
    assert len(result.losses) == 300
    assert all(r > 0.01 for r in result.rel_changes)


def test_tol_none_runs_full_budget_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = fit(normal_normal, Y, num_steps=150, tol_rel_obj=None, seed=0, progress_bar=False)
    assert len(result.losses) == 150 and not result.converged


def test_losses_are_negative_elbo_per_step_and_seeded():
    a = fit(normal_normal, Y, num_steps=50, tol_rel_obj=None, seed=3, progress_bar=False)
    b = fit(normal_normal, Y, num_steps=50, tol_rel_obj=None, seed=3, progress_bar=False)
    assert isinstance(a, ADVIResult)
    assert len(a.losses) == 50 and all(isinstance(x, float) for x in a.losses)
    assert a.losses == b.losses
    # -ELBO >= -log p(y): compare the late losses with the exact log evidence.
    n = len(Y)
    evidence = dist.MultivariateNormal(
        torch.full((n,), PRIOR_LOC), NOISE**2 * torch.eye(n) + PRIOR_SCALE**2
    ).log_prob(Y)
    c = fit(normal_normal, Y, num_steps=600, tol_rel_obj=None, seed=0, progress_bar=False)
    late = torch.tensor(c.losses[-200:]).mean()
    assert late > -evidence - 0.05  # Monte Carlo slack: mean of 200 noisy estimates
    assert late < -evidence + 0.3  # and the ELBO is nearly tight for this conjugate model


# ------------------------------------------------------------------------- result API
def test_predictive_at_new_inputs():
    X, y = _regression_data()
    mean, cov, _ = _regression_posterior(X, y)
    result = _fit_regression("fullrank", X, y, steps=300)
    X_new = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    n = 8000
    pred = result.predictive(n, X_new)
    assert pred["y"].shape == (n, 2) and pred["beta"].shape == (n, 3)
    # y_new ~ N(X_new m, X_new S X_new^T + noise^2)
    exact_mean = X_new @ mean
    exact_sd = ((X_new @ cov * X_new).sum(-1) + NOISE**2).sqrt()
    assert ((pred["y"].mean(0) - exact_mean).abs() < 4 * exact_sd / math.sqrt(n) + 0.05).all()
    assert ((pred["y"].std(0) / exact_sd - 1).abs() < 0.06).all()
    # Passing the observed data re-samples it (replicated data), it does not copy it.
    replicated = result.predictive(10)["y"]
    assert replicated.shape == (10, len(y)) and not torch.equal(replicated[0], y)


def test_summary_prints_khat_and_table(capsys):
    result = fit(normal_normal, Y, num_steps=400, seed=0, progress_bar=False)
    result.summary(num_samples=500)
    out = capsys.readouterr().out
    assert "PSIS k-hat" in out and "converged" in out
    assert any(r in out for r in ("good", "ok (", "unreliable"))
    assert "mu" in out and "mean" in out


def test_fit_leaves_global_param_store_alone():
    pyro.param("user_param", torch.tensor(1.5))
    result = fit(normal_normal, Y, num_steps=20, tol_rel_obj=None, seed=0, progress_bar=False)
    assert set(pyro.get_param_store().keys()) == {"user_param"}
    with result.param_scope():
        assert "AutoNormal.locs.mu" in pyro.get_param_store().keys()
    result.sample_posterior(5)
    assert set(pyro.get_param_store().keys()) == {"user_param"}


# ------------------------------------------------------------------------- bad input
def test_discrete_latent_site_is_a_clear_error():
    def mixture(y):
        z = pyro.sample("z", dist.Bernoulli(0.5))
        pyro.sample("y", dist.Normal(3.0 * z, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"discrete latent site\(s\) 'z' \(Bernoulli\)") as e:
        fit(mixture, torch.tensor(1.0), progress_bar=False)
    assert "enumerate" in str(e.value) and "MCMC" in str(e.value)


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown method 'nuts'.*'advi'.*'fullrank'"):
        fit(normal_normal, Y, method="nuts")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": 0}, "num_steps"),
        ({"tol_rel_obj": 0.0}, "tol_rel_obj"),
        ({"lr": -1}, "lr"),
        ({"num_particles": 0}, "num_particles"),
        ({"num_particles": 2.5}, "num_particles"),
        ({"eval_elbo": 0}, "eval_elbo"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit(normal_normal, Y, **kwargs)


def test_model_without_latents_is_a_clear_error():
    def no_latents(y):
        pyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="no latent sample sites"):
        fit(no_latents, torch.tensor(0.3))


def test_unvectorizable_model_runs_once_per_draw_and_says_so():
    X, y = _regression_data()

    def matmul_model(X, y=None):
        beta = pyro.sample("beta", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal(X @ beta, 1.0), obs=y)

    result = fit(matmul_model, X, y, num_steps=5, tol_rel_obj=None, progress_bar=False)
    with pytest.warns(UserWarning, match=r"once per draw.*\(X \* beta\).sum\(-1\)"):
        pred = result.predictive(10)
    assert pred["y"].shape == (10, 40) and result.draws_path == "looped"
    with warnings.catch_warnings():  # said once per fit
        warnings.simplefilter("error")
        result.predictive(10)
    result.vectorize = True  # the fast path or an error with advice
    with pytest.raises(ValueError, match=r"\(X \* beta\).sum\(-1\)"):
        result.predictive(10)
