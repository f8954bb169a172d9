"""Estimators on mixed discrete/continuous programs: ELBO('auto', baseline=...), the per-datum
leave-one-out and neural baselines, and STL/IWAE/DReG under subsampling with global latents."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
from pyro.ops.indexing import Vindex
from pyro.optim import Adam

from pyrogen.infer import ELBO, IWAE, STL_ELBO, gradient_variance
from pyrogen.infer.score import with_baseline

WEIGHTS = torch.tensor([0.4, 0.6])
TRUE_LOCS = torch.tensor([-3.0, 3.0])


def _data(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = torch.multinomial(WEIGHTS, n, replacement=True, generator=gen)
    return TRUE_LOCS[c] + torch.randn(n, generator=gen), c


def model(x):
    locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Categorical(WEIGHTS))
        pyro.sample("x", dist.Normal(Vindex(locs)[..., c], 1.0), obs=x)


def locs_guide(x):
    m = pyro.param("m", torch.tensor([-1.0, 1.0]))
    s = pyro.param("s", torch.full((2,), 0.5), constraint=dist.constraints.positive)
    pyro.sample("locs", dist.Normal(m, s).to_event(1))


def make_guide():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def guide(x):
        locs_guide(x)
        pyro.module("assign", net)
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Categorical(logits=net(x.unsqueeze(-1))))

    return guide


def _log_lik(x, locs):
    comp = dist.Normal(locs, 1.0).log_prob(x.unsqueeze(-1)) + WEIGHTS.log()
    return torch.logsumexp(comp, -1).sum().item()


def _fit(loss, model_, guide, x, steps):
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    svi = SVI(model_, guide, Adam({"lr": 0.05}), loss)
    for _ in range(steps):
        svi.step(x)
    return _log_lik(x, pyro.param("m").detach())


@pytest.mark.parametrize("baseline", ["decaying_avg", "loo"])
def test_auto_with_a_baseline_fits_the_mixture_like_enumeration(baseline):
    x, _ = _data(60)
    enum = TraceEnum_ELBO(num_particles=2, vectorize_particles=True, max_plate_nesting=1)
    reference = _fit(enum, config_enumerate(model), locs_guide, x, 100)
    assert abs(reference - _log_lik(x, TRUE_LOCS)) < 5  # the reference itself is right
    elbo = ELBO("auto", baseline=baseline, num_particles=2, vectorize_particles=True)
    assert abs(_fit(elbo, model, make_guide(), x, 100) - reference) < 5


def test_auto_attaches_baselines_only_at_sites_without_rsample():
    x, _ = _data(10)
    guide = make_guide()
    for baseline in ("decaying_avg", "neural"):
        elbo = ELBO("auto", baseline=baseline)
        elbo.loss(model, guide, x)  # builds the neural network
        tr = poutine.trace(elbo._wrap(guide)).get_trace(x)
        assert "baseline" not in tr.nodes["locs"]["infer"], baseline
        assert tr.nodes["locs"]["fn"].has_rsample  # still reparameterized
        assert "baseline" in tr.nodes["c"]["infer"], baseline
    tr = poutine.trace(with_baseline(guide, {"use_decaying_avg_baseline": True})).get_trace(x)
    assert [n for n, s in tr.nodes.items() if "baseline" in s.get("infer", {})] == ["c"]
    # estimator='score' forces the score function everywhere, or only at sites=
    for sites, forced in ((None, {"locs", "c"}), (["c"], {"c"})):
        tr = poutine.trace(ELBO("score", sites=sites)._wrap(guide)).get_trace(x)
        assert {n for n in ("locs", "c") if not tr.nodes[n]["fn"].has_rsample} == forced
    with pytest.raises(ValueError, match="sites= .*estimator='score'"):
        ELBO("auto", sites=["c"])
    with pytest.raises(ValueError, match="estimator='reparam' has none"):
        ELBO("reparam", baseline="loo", num_particles=2)


def test_auto_loo_gradient_has_the_mean_of_the_no_baseline_estimator():
    """At fixed parameters 'auto'+loo (pathwise at the means, LOO score at c) and the plain
    Rao-Blackwellized score function at c agree in mean: the baseline adds no bias."""
    x, _ = _data(20)
    guide = make_guide()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    loo = gradient_variance(
        ELBO("auto", baseline="loo", num_particles=4), model, guide, x, num_samples=150
    )
    plain = gradient_variance(
        ELBO("score", sites=["c"], num_particles=4, vectorize_particles=True),
        model,
        guide,
        x,
        num_samples=150,
    )
    for name in ("m", "assign$$$0.weight"):
        se = ((loo[name].variance + plain[name].variance) / 150).sqrt()
        assert ((loo[name].mean - plain[name].mean).abs() < 5 * se + 1e-6).all(), name


def test_leave_one_out_is_per_datum_and_beats_no_baseline_with_global_latents():
    """Near a fit (costs far from 0, as in training) the per-datum leave-one-out baseline cuts
    the variance at the score-function site; a whole-data baseline (the old behaviour) with a
    global latent made it hundreds of times larger than no baseline."""
    x, _ = _data(100)
    guide = make_guide()
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    svi = SVI(model, guide, Adam({"lr": 0.05}), ELBO("auto", baseline="loo", num_particles=2))
    for _ in range(60):
        svi.step(x)
    loo = gradient_variance(
        ELBO("auto", baseline="loo", num_particles=2), model, guide, x, num_samples=40
    )
    plain = gradient_variance(
        ELBO("score", sites=["c"], num_particles=2, vectorize_particles=True),
        model,
        guide,
        x,
        num_samples=40,
    )
    for name in ("assign$$$0.weight", "assign$$$2.weight"):  # the score-function site's net
        assert loo[name].variance.sum() < 0.3 * plain[name].variance.sum(), name


def test_neural_baseline_takes_one_datum_and_any_batch_size():
    guide = make_guide()
    elbo = ELBO("auto", baseline="neural")
    pyro.clear_param_store()
    for n in (50, 17):
        x, _ = _data(n)
        elbo.loss_and_grads(model, guide, x)
        net = elbo.baseline_net
        assert net.net[0].in_features == 1 and net(x).shape == (n,)
        assert all(p.grad is not None for p in net.parameters())


# ------------------------------------------------ subsampling with a global latent: STL, IWAE

N, B = 12, 4
XS = torch.linspace(-2.0, 3.0, N)


def _sub_model(size):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", N, subsample_size=size) as idx:
        z = pyro.sample("z", dist.Normal(mu, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=XS[idx])


def _sub_guide(size):
    m = pyro.param("m", torch.tensor(0.3))
    s = pyro.param("s", torch.tensor(0.5), constraint=dist.constraints.positive)
    a = pyro.param("a", torch.tensor(0.2))
    mu = pyro.sample("mu", dist.Normal(m, s))
    with pyro.plate("data", N, subsample_size=size) as idx:
        pyro.sample("z", dist.Normal(a * XS[idx] + 0.5 * mu, 0.8))


def test_stl_under_subsampling_with_a_global_latent_matches_the_full_batch_gradient():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    sub = gradient_variance(STL_ELBO(), _sub_model, _sub_guide, B, num_samples=1000)
    full = gradient_variance(
        STL_ELBO(num_particles=200, vectorize_particles=True),
        _sub_model,
        _sub_guide,
        N,
        num_samples=30,
    )
    power = []
    for name in ("m", "s", "a"):
        se = (sub[name].variance / 1000 + full[name].variance / 30).sqrt()
        diff = (sub[name].mean - full[name].mean).abs()
        assert diff < 4 * se, (name, sub[name].mean, full[name].mean, se)
        power.append((full[name].mean.abs() / se).item())
    # the gradients are far from 0 in standard errors: a global term scaled by N / B (or a
    # local one left unscaled) would be detected
    assert min(power) > 4 and max(power) > 10, power


@pytest.mark.parametrize("estimator", ["standard", "dreg"])
def test_iwae_with_a_global_latent_under_subsampling_names_the_site(estimator):
    with pytest.raises(ValueError, match=r"global latent sites \['mu'\].*STL_ELBO"):
        IWAE(3, estimator=estimator).loss(_sub_model, _sub_guide, B)
    IWAE(3, estimator=estimator).loss(_sub_model, _sub_guide, N)  # full batch: fine
