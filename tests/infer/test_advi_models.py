"""ADVI on models as modellers write them (``X @ w``, ``alpha[group]``): every diagnostic works,
the looped and vectorized paths agree, the defaults recover an exact posterior, ``device=``."""

import math
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.infer import fit
from pyrogen.infer.advi import log_importance_weights, psis_khat, to_inference_data
from pyrogen.infer.advi._trace import guide_draws, run_model

NOISE, PRIOR_SD = 1.0, 2.0


def _data(n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = 0.9 * torch.randn(n, 1, generator=g) + 0.45 * torch.randn(n, 3, generator=g)
    y = X @ torch.tensor([1.0, -0.5, 0.3]) + NOISE * torch.randn(n, generator=g)
    return X, y


def matmul_regression(X, y=None):
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), PRIOR_SD).to_event(1))
    with pyro.plate("data", X.shape[0]):
        return pyro.sample("y", dist.Normal(X @ w, NOISE), obs=y)


def broadcast_regression(X, y=None):  # the same model, vectorizable
    w = pyro.sample("w", dist.Normal(torch.zeros(X.shape[1]), PRIOR_SD).to_event(1))
    with pyro.plate("data", X.shape[0]):
        mean = pyro.deterministic("mean", (X * w).sum(-1))
        return pyro.sample("y", dist.Normal(mean, NOISE), obs=y)


def exact_posterior(X, y):
    precision = X.T @ X / NOISE**2 + torch.eye(X.shape[1]) / PRIOR_SD**2
    cov = torch.linalg.inv(precision)
    return cov @ X.T @ y / NOISE**2, cov


GROUP = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 0])
Y_GROUP = torch.tensor([1.2, 0.8, -0.5, -0.1, -0.9, 2.0, 2.4, 0.1, 0.3, -0.2, 0.4, 1.1])


def varying_intercepts(group, n_groups, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("groups", n_groups):
        alpha = pyro.sample("alpha", dist.Normal(mu, sigma))
    with pyro.plate("obs", len(group)):
        pyro.sample("y", dist.Normal(alpha[group], 0.5), obs=y)


def _quiet_fit(model, *args, **kwargs):
    return fit(model, *args, num_steps=400, seed=0, progress_bar=False, **kwargs)


# ------------------------------------------------------- models that cannot be vectorized
@pytest.mark.parametrize("name", ["matmul", "group"])
def test_modeller_written_models_go_through_every_diagnostic(name):
    if name == "matmul":
        X, y = _data()
        result = _quiet_fit(matmul_regression, X, y, method="fullrank", convergence="stan")
        obs_shape, latent = (40,), "w"
    else:
        result = _quiet_fit(varying_intercepts, GROUP, 4, y=Y_GROUP, convergence="stan")
        obs_shape, latent = (12,), "alpha"
    with pytest.warns(UserWarning, match="runs once per draw"):
        idata = to_inference_data(result, num_samples=200)
    assert result.draws_path == "looped"
    with warnings.catch_warnings():  # said once per fit
        warnings.filterwarnings("error", message=".*once per draw")
        khat = psis_khat(result, num_samples=300)
        loo = az.loo(idata)
        table = az.summary(idata, kind="stats")
    assert idata.log_likelihood["y"].shape == (1, 200) + obs_shape
    assert idata.posterior_predictive["y"].shape == (1, 200) + obs_shape
    # the diagnostic runs on the looped path; this 400-step fit's k-hat is 0.6-0.75 by draws
    assert math.isfinite(khat) and khat < 1.0
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == obs_shape[0]
    assert any(row.startswith(latent) for row in table.index)


def test_looped_log_likelihood_is_the_closed_form():
    # log p(y_i | alpha) = Normal(alpha[group_i], 0.5).log_prob(y_i), per draw.
    result = _quiet_fit(varying_intercepts, GROUP, 4, y=Y_GROUP, convergence="stan")
    result.vectorize = False
    idata = to_inference_data(result, num_samples=50)
    alpha = torch.as_tensor(idata.posterior["alpha"].values[0])
    expected = dist.Normal(alpha[:, GROUP], 0.5).log_prob(Y_GROUP)
    got = torch.as_tensor(idata.log_likelihood["y"].values[0])
    assert torch.allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------- looped == vectorized, same draws
@pytest.fixture(scope="module")
def broadcast_fit():
    X, y = _data()
    return _quiet_fit(broadcast_regression, X, y, method="fullrank", convergence="stan")


def test_looped_and_vectorized_paths_agree_on_the_same_draws(broadcast_fit):
    result, n = broadcast_fit, 300
    pyro.set_rng_seed(0)
    draws, _ = guide_draws(result, n, result.args, result.kwargs)
    result.vectorize = True
    vec = run_model(result, draws, n, result.args, result.kwargs, "test")
    result.vectorize = False
    loop = run_model(result, draws, n, result.args, result.kwargs, "test")
    result.vectorize = None
    assert (vec.path, loop.path) == ("vectorized", "looped")
    assert torch.allclose(vec.log_joint, loop.log_joint, rtol=1e-5, atol=1e-5)
    for name in ("w", "y"):
        assert torch.allclose(vec.log_probs[name], loop.log_probs[name], rtol=1e-5, atol=1e-5)
    assert torch.allclose(vec.values["mean"], loop.values["mean"], atol=1e-5)
    # Posterior predictive: same draws of w, so replicated y ~ N(mean, 1) on both paths.
    for run in (vec, loop):
        z = (run.values["y"] - run.values["mean"]) / NOISE
        assert abs(z.mean()) < 4 / math.sqrt(z.numel()) and abs(z.std() - 1) < 0.02


def test_public_diagnostics_agree_across_paths(broadcast_fit):
    result = broadcast_fit
    out = {}
    for mode in (True, False):
        result.vectorize = mode
        pyro.set_rng_seed(3)
        # 5 draws of 3 numbers: torch draws fewer than 16 normals one by one, so both paths see
        # the same draws (a larger randn uses a vectorized sampler with another sequence)
        lw = log_importance_weights(result, num_samples=5)
        many = log_importance_weights(result, num_samples=2000)
        pyro.set_rng_seed(4)
        idata = to_inference_data(result, num_samples=100)
        out[mode] = lw, idata, many
    result.vectorize = None
    assert torch.allclose(out[True][0], out[False][0], rtol=1e-5, atol=1e-4)
    (a, b) = out[True][2], out[False][2]
    assert abs(a.mean() - b.mean()) < 4 * (a.var() / len(a) + b.var() / len(b)).sqrt()
    (_, vec, _), (_, loop, _) = out[True], out[False]
    for group, name in [("posterior", "w"), ("posterior", "mean"), ("log_likelihood", "y")]:
        np.testing.assert_allclose(vec[group][name].values, loop[group][name].values, atol=1e-5)
    np.testing.assert_allclose(vec.sample_stats["lp"], loop.sample_stats["lp"], rtol=1e-5)


def test_vectorized_path_is_checked_against_a_plain_run():
    # alpha[group] under the draws plate indexes the *draws*; with 4 draws, 4 groups and 4
    # observations it broadcasts without any shape error and computes the wrong thing.
    group, y = torch.tensor([2, 0, 3, 1]), torch.tensor([0.3, -1.0, 2.0, 0.5])
    result = _quiet_fit(varying_intercepts, group, 4, y=y, convergence="stan")
    with pytest.warns(UserWarning, match="differs from a run of the model on one draw"):
        idata = to_inference_data(result, num_samples=4)
    assert result.draws_path == "looped"
    alpha = torch.as_tensor(idata.posterior["alpha"].values[0])
    expected = dist.Normal(alpha[:, group], 0.5).log_prob(y)
    assert torch.allclose(torch.as_tensor(idata.log_likelihood["y"].values[0]), expected)


# --------------------------------------------------------- defaults recover the exact posterior
def test_default_fullrank_fit_recovers_conjugate_posterior():
    X, y = _data(n=100, seed=3)
    mean, cov = exact_posterior(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(matmul_regression, X, y, method="fullrank", seed=0, progress_bar=False)
    post = result.guide.get_posterior()
    assert (post.loc.detach() - mean).abs().max() < 0.05
    q_cov = post.covariance_matrix.detach()
    assert (q_cov - cov).norm() / cov.norm() < 0.15
    assert result.converged and result.anneal_steps == 1000


def test_stan_rule_by_name_stops_at_the_check():
    X, y = _data(n=100, seed=3)
    result = fit(
        matmul_regression, X, y, method="fullrank", convergence="stan", seed=0, progress_bar=False
    )
    assert result.converged and result.anneal_steps == 0
    assert len(result.losses) % 100 == 0 and len(result.losses) < 10000


@pytest.mark.parametrize(
    "kwargs, match",
    [({"convergence": "patience"}, "convergence"), ({"anneal_steps": -1}, "anneal_steps")],
)
def test_bad_convergence_settings_are_clear_errors(kwargs, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        fit(matmul_regression, X, y, progress_bar=False, **kwargs)


def test_summary_reports_khat_with_advice(capsys):
    X, y = _data()
    result = _quiet_fit(matmul_regression, X, y, method="fullrank", convergence="stan")
    with pytest.warns(UserWarning, match="once per draw"):
        result.summary(num_samples=300)
    out = capsys.readouterr().out
    assert "PSIS k-hat (300 draws)" in out and "w[2]" in out


# ---------------------------------------------------------------------------------- device
def test_device_cpu_and_invalid_device():
    X, y = _data()
    result = fit(
        broadcast_regression, X, y, num_steps=20, tol_rel_obj=None, device="cpu", progress_bar=0
    )
    assert result.device == torch.device("cpu") and result.args[0].device.type == "cpu"
    assert result.sample_posterior(5)["w"].shape == (5, 3)
    with pytest.raises(ValueError, match="device='gpu'"):
        fit(broadcast_regression, X, y, device="gpu", progress_bar=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_cuda_moves_data_and_guide():
    X, y = _data()
    result = fit(broadcast_regression, X, y, num_steps=50, device="cuda", progress_bar=False)
    assert result.args[0].is_cuda and result.args[1].is_cuda
    with result.param_scope():
        assert all(p.is_cuda for p in result.guide.parameters())
    assert result.sample_posterior(10)["w"].is_cuda
    assert math.isfinite(psis_khat(result, num_samples=100))
