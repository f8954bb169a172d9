"""pyrogen.infer.advi: Stan's ELBO rule, PSIS k-hat, ArviZ InferenceData."""

import math
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.infer import fit
from pyrogen.infer.advi import (
    ELBOConvergence,
    khat_reading,
    log_importance_weights,
    psis_khat,
    to_inference_data,
)


# ------------------------------------------------------------------------ ELBOConvergence
def _stan_rule(losses, tol, eval_elbo, num_steps):
    """Transcription of Stan's ``advi::stochastic_gradient_ascent`` convergence check: the
    step at which it stops (or None) and the relative changes, from the window means."""
    cb_size = int(max(0.1 * num_steps / eval_elbo, 2.0))
    elbo, diffs, rels = 0.0, [], []
    for it in range(1, len(losses) + 1):
        if it % eval_elbo:
            continue
        elbo_prev, elbo = elbo, -float(np.mean(losses[it - eval_elbo : it]))
        rels.append(abs((elbo_prev - elbo) / elbo))  # rel_difference(elbo, elbo_prev)
        diffs = (diffs + [rels[-1]])[-cb_size:]
        median = sorted(diffs)[len(diffs) // 2]  # nth_element(v.begin() + n / 2)
        if np.mean(diffs) < tol or median < tol:
            return it, rels
    return None, rels


def test_rule_uses_window_means_and_relative_change():
    rule = ELBOConvergence(0.01, eval_elbo=2, num_steps=100)
    losses = [10.0, 10.0, 5.0, 5.0, 4.99, 4.99, 4.98, 4.98, 4.98, 4.98]
    flags = [rule.update(x) for x in losses]
    # changes relative to the *current* value, the first one against Stan's initial ELBO of 0:
    # [1, 1, 0.002, 0.002] has upper median 1 (not converged); adding 0 makes it 0.002
    assert flags == [False] * 9 + [True]
    assert rule.rel_changes == pytest.approx([1.0, 1.0, 0.01 / 4.99, 0.01 / 4.98, 0.0])
    assert rule.median == pytest.approx(0.01 / 4.98) and rule.mean > 0.01
    assert _stan_rule(losses, 0.01, 2, 100) == (10, pytest.approx(rule.rel_changes))


def test_rule_mean_or_median_of_circular_buffer():
    # buffer of max(0.1 * 1000 / 10, 2) = 10 changes; one big change among small ones:
    # the mean is above tol but the median is below -> converged (Stan's MEDIAN rule).
    rule = ELBOConvergence(0.01, eval_elbo=10, num_steps=1000)
    assert rule.buffer.maxlen == 10
    levels = [100.0, 100.5, 101.0, 150.0, 150.3]
    out = [rule.update(level) for level in levels for _ in range(10)]
    assert rule.rel_changes[:4] == pytest.approx([1.0, 0.5 / 100.5, 0.5 / 101, 49 / 150])
    assert not any(out[:29]) and out[29]  # [1, .005, .005]: median .005 < 1 % at check 3
    assert rule.mean > 0.01 and rule.median < 0.01
    # geometric decay of the loss (and noisy losses): identical to the transcription of Stan
    for tol, eval_elbo, num_steps, losses in [
        (0.05, 1, 10, [100 * 0.8**k + 10 for k in range(40)]),
        (
            0.01,
            5,
            400,
            list(20 + 50 * 0.97 ** np.arange(400) + np.random.default_rng(0).normal(0, 0.3, 400)),
        ),
    ]:
        rule = ELBOConvergence(tol, eval_elbo=eval_elbo, num_steps=num_steps)
        stop = next((i + 1 for i, x in enumerate(losses) if rule.update(x)), None)
        expected_stop, rels = _stan_rule(losses, tol, eval_elbo, num_steps)
        assert stop == expected_stop is not None
        assert rule.rel_changes == pytest.approx(rels)


@pytest.mark.parametrize("kwargs", [{"tol_rel_obj": 0}, {"eval_elbo": 0}])
def test_rule_validates(kwargs):
    with pytest.raises(ValueError, match="Expected"):
        ELBOConvergence(**kwargs)


def test_khat_reading_thresholds():
    assert khat_reading(0.3).startswith("good")
    assert khat_reading(0.6).startswith("ok")
    assert khat_reading(0.9).startswith("unreliable")
    assert khat_reading(-math.inf).startswith("good")


# ---------------------------------------------------------------------------- PSIS k-hat
RHO = 0.95
COV = torch.tensor([[1.0, RHO], [RHO, 1.0]])


def correlated_gaussian():
    # The "posterior" is the prior itself: a correlated 2-D Gaussian with known covariance.
    pyro.sample("z", dist.MultivariateNormal(torch.zeros(2), COV))


def _set_fullrank(result, loc, cov):
    L = torch.linalg.cholesky(cov)
    with torch.no_grad():
        result.guide.loc.copy_(loc)  # an nn.Parameter shared with the param store
    with result.param_scope():
        store = pyro.get_param_store()
        store["AutoMultivariateNormal.scale"] = L.diagonal()
        store["AutoMultivariateNormal.scale_tril"] = L / L.diagonal()[:, None]


def test_khat_small_when_q_is_the_exact_posterior():
    result = fit(
        correlated_gaussian, method="fullrank", num_steps=1, tol_rel_obj=None, progress_bar=False
    )
    _set_fullrank(result, torch.zeros(2), COV)
    pyro.set_rng_seed(0)
    lw = log_importance_weights(result, num_samples=2000)
    assert lw.shape == (2000,)
    assert (lw - lw.mean()).abs().max() < 1e-4  # p(x, z) / q(z) = p(x) is constant
    assert psis_khat(result, num_samples=2000) == -math.inf  # constant weights: exact IS
    # a slightly wider q: bounded weights, still good
    _set_fullrank(result, torch.zeros(2), 1.2 * COV)
    pyro.set_rng_seed(0)
    assert psis_khat(result, num_samples=2000) < 0.5


def test_khat_large_for_meanfield_on_correlated_posterior():
    # Mean-field ADVI fits variances 1 - rho^2 ~ 0.1 instead of 1: far too narrow a q.
    result = fit(
        correlated_gaussian,
        method="advi",
        num_steps=500,
        tol_rel_obj=None,
        seed=0,
        num_particles=8,
        progress_bar=False,
        optim=pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.993}),
    )
    scales = result.guide.scales.z.detach()
    assert torch.allclose(scales, torch.full((2,), math.sqrt(1 - RHO**2)), rtol=0.1)
    pyro.set_rng_seed(0)
    khat = psis_khat(result, num_samples=2000)
    assert khat > 0.7
    assert "unreliable" in khat_reading(khat)


# ---------------------------------------------------------------------- InferenceData
SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", len(sigma)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        theta = pyro.deterministic("theta", mu + tau * eta)
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


@pytest.fixture(scope="module")
def schools_idata():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result = fit(
        eight_schools, SCHOOLS_SIGMA, y=SCHOOLS_Y, num_steps=600, seed=0, progress_bar=False
    )
    pyro.set_rng_seed(1)
    idata = to_inference_data(result, num_samples=400)
    torch.set_num_threads(threads)
    return result, idata


def test_inference_data_groups_names_and_shapes(schools_idata):
    result, idata = schools_idata
    assert set(idata.groups()) >= {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "observed_data",
        "sample_stats",
    }
    post = idata.posterior
    assert set(post.data_vars) == {"mu", "tau", "eta", "theta"}
    assert post["mu"].dims == ("chain", "draw") and post["mu"].shape == (1, 400)
    assert post["eta"].dims == ("chain", "draw", "school")  # named after the plate
    assert post["theta"].dims == ("chain", "draw", "school")  # deterministic site too
    assert (post["tau"].values > 0).all()  # constrained space
    np.testing.assert_allclose(
        post["theta"].values,
        post["mu"].values[..., None] + post["tau"].values[..., None] * post["eta"].values,
        rtol=1e-5,
        atol=1e-4,
    )
    assert idata.posterior_predictive["obs"].dims == ("chain", "draw", "school")
    assert idata.log_likelihood["obs"].shape == (1, 400, 8)
    np.testing.assert_array_equal(idata.observed_data["obs"].values, SCHOOLS_Y.numpy())
    assert idata.observed_data["obs"].dims == ("school",)
    attrs = idata.sample_stats.attrs
    assert len(attrs["loss"]) == len(result.losses) and attrs["method"] == "advi"


def test_log_likelihood_is_pointwise_closed_form(schools_idata):
    _, idata = schools_idata
    theta = torch.as_tensor(idata.posterior["theta"].values)
    expected = dist.Normal(theta, SCHOOLS_SIGMA).log_prob(SCHOOLS_Y)
    np.testing.assert_allclose(idata.log_likelihood["obs"].values, expected.numpy(), rtol=1e-5)
    # lp = log p(x, z) summed over all sites, per draw
    assert idata.sample_stats["lp"].shape == (1, 400)


def test_posterior_predictive_has_the_right_spread(schools_idata):
    _, idata = schools_idata
    theta = idata.posterior["theta"].values[0]
    rep = idata.posterior_predictive["obs"].values[0]
    resid = (rep - theta) / SCHOOLS_SIGMA.numpy()  # should be N(0, 1) draws
    assert abs(resid.mean()) < 4 / math.sqrt(resid.size)
    assert abs(resid.std() - 1) < 4 / math.sqrt(2 * resid.size)


def test_arviz_loo_summary_and_plots_work(schools_idata, tmp_path):
    _, idata = schools_idata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PSIS-LOO k warnings on 8 influential schools
        loo = az.loo(idata, pointwise=True)
        waic = az.waic(idata)
        summary = az.summary(idata, var_names=["mu", "tau"], kind="stats")
    assert np.isfinite(loo.elpd_loo) and loo.pareto_k.shape == (8,)
    assert np.isfinite(waic.elpd_waic)
    # elpd_loo cannot exceed the in-sample log predictive density
    lppd = np.log(np.exp(idata.log_likelihood["obs"].values[0]).mean(0)).sum()
    assert loo.elpd_loo <= lppd + 1e-6
    assert list(summary.index) == ["mu", "tau"]
    assert summary.loc["tau", "mean"] > 0
    import matplotlib

    matplotlib.use("Agg")
    az.plot_posterior(idata, var_names=["mu", "tau"])
    import matplotlib.pyplot as plt

    plt.savefig(tmp_path / "posterior.png")
    plt.close("all")
    assert (tmp_path / "posterior.png").stat().st_size > 0


def test_normal_normal_log_likelihood_enables_loo():
    y = torch.tensor([0.3, -0.2, 1.1, 0.8, 0.1])

    def model(y):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    result = fit(model, y, num_steps=400, seed=0, progress_bar=False)
    idata = to_inference_data(result, num_samples=1000)
    mu = torch.as_tensor(idata.posterior["mu"].values)
    np.testing.assert_allclose(
        idata.log_likelihood["y"].values,
        dist.Normal(mu[..., None], 1.0).log_prob(y).numpy(),
        rtol=1e-5,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata)
    # well-specified, no influential points: all Pareto k good
    assert loo.elpd_loo < 0 and (loo.pareto_k.values < 0.7).all()
