"""Importance-sampled log-likelihood against a linear-Gaussian model with a closed-form evidence."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch

from pyrogen.evaluate import elbo, elbo_and_log_likelihood, log_likelihood, log_weights


class LinearGaussian:
    r"""z ~ N(0, I_L), x | z ~ N(W z + b, s^2 I_D)  =>  x ~ N(b, W W^T + s^2 I) exactly.

    The guide is the exact posterior N(m, C), C = (I + W^T W / s^2)^{-1},
    m = C W^T (x - b) / s^2, optionally shifted and widened to make it inexact.
    """

    def __init__(self, D=5, L=2, s=0.7, shift=0.0, widen=1.0):
        g = torch.Generator().manual_seed(3)
        self.W = torch.randn(D, L, generator=g, dtype=torch.float64)
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.s, self.shift, self.widen, self.L = s, shift, widen, L

    def evidence(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=x.dtype)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def model(self, x):
        with pyro.plate("data", len(x), dim=-1):
            prior = dist.Normal(x.new_zeros(self.L), 1.0).expand([len(x), self.L]).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x):
        eye = torch.eye(self.L, dtype=x.dtype)
        cov = torch.linalg.inv(eye + self.W.T @ self.W / self.s**2)
        mean = (x - self.b) @ self.W @ cov / self.s**2
        with pyro.plate("data", len(x), dim=-1):
            pyro.sample("z", dist.MultivariateNormal(mean + self.shift, cov * self.widen))


def _data(model, n=40):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(n, model.L, generator=g, dtype=torch.float64)
    return z @ model.W.T + model.b + model.s * torch.randn(n, len(model.b), generator=g)


def test_exact_posterior_gives_exact_evidence_with_zero_variance():
    m = LinearGaussian()
    x = _data(m)
    log_w = log_weights(m, x, num_samples=7)
    torch.testing.assert_close(log_w, m.evidence(x).expand(7, -1))
    got_elbo, got_ll = elbo_and_log_likelihood(m, x, num_samples=50)
    assert got_elbo == pytest.approx(float(m.evidence(x).mean()), abs=1e-6)
    assert got_ll == pytest.approx(float(m.evidence(x).mean()), abs=1e-6)


@pytest.mark.parametrize("tiny_chunks", [False, True])
def test_importance_sampling_matches_closed_form_within_monte_carlo_error(tiny_chunks, monkeypatch):
    if tiny_chunks:  # 1 example x 3 particles x 5 features per chunk: many logsumexp merges
        import pyrogen.evaluate.likelihood as lik

        monkeypatch.setattr(lik, "MAX_CHUNK_ELEMENTS", 3 * 5)
    m = LinearGaussian(shift=0.3, widen=1.6)
    x = _data(m, 20 if not tiny_chunks else 4)
    exact = m.evidence(x)
    K = 2000 if not tiny_chunks else 300
    ll = log_likelihood(
        m, x, num_samples=K, batch_size=16 if not tiny_chunks else 1, reduction="none"
    )
    # Delta-method standard error of log(mean w): sd(w) / (sqrt(K) mean(w)).
    w = log_weights(m, x, K).exp()
    se = w.std(0) / (math.sqrt(K) * w.mean(0))
    assert ((ll - exact).abs() <= 5 * se + 1e-3).all()
    per_example_elbo = elbo(m, x, num_samples=K, reduction="none")
    # The ELBO is below log p(x) by KL(q || posterior) > 0 here; IS sits in between.
    assert (per_example_elbo < exact - 0.01).all()
    assert (ll >= per_example_elbo).all()


def test_log_likelihood_tightens_with_K():
    m = LinearGaussian(shift=0.5, widen=2.0)
    x = _data(m)
    exact = float(m.evidence(x).mean())
    k1, k1000 = (float(log_likelihood(m, x, num_samples=k)) for k in (1, 1000))
    assert k1 < k1000 - 1.0  # K = 1 is a one-sample ELBO, far below
    assert k1000 == pytest.approx(exact, abs=0.05)


def test_bad_arguments():
    m = LinearGaussian()
    x = _data(m, 3)
    with pytest.raises(ValueError, match="num_samples >= 1"):
        log_likelihood(m, x, num_samples=0)
    with pytest.raises(ValueError, match="reduction"):
        elbo(m, x, reduction="sum")
    with pytest.raises(TypeError, match=r"\.model\(x\) and \.guide\(x\)"):
        log_likelihood(object(), x)


def test_global_latent_is_rejected_with_a_clear_message():
    class Global:
        def model(self, x):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            with pyro.plate("data", len(x), dim=-1):
                pyro.sample("x", dist.Normal(mu, 1.0), obs=x[:, 0])

        def guide(self, x):
            pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'mu'.*inside the data plate"):
        log_likelihood(Global(), torch.zeros(4, 1), num_samples=3)


def _spy_on_draws(monkeypatch):
    """Record every chunk of log weights that the evaluation draws: ``(x chunk, (k, b) log w)``."""
    import pyrogen.evaluate.likelihood as lik

    calls, real = [], lik.log_importance_weights

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args[2], out.log_weights))
        return out

    monkeypatch.setattr(lik, "log_importance_weights", spy)
    return calls


def _table(calls, data):
    """The (K, N) table of every drawn log weight, examples located by their rows in ``data``."""
    columns = {}
    for x, log_w in calls:
        start = int((data == x[0]).all(-1).nonzero()[0])
        torch.testing.assert_close(data[start : start + len(x)], x)
        columns.setdefault(start, []).append(log_w)
    return torch.cat([torch.cat(columns[s], 0) for s in sorted(columns)], 1)


def test_chunked_evaluation_equals_unchunked_on_the_same_draws(monkeypatch):
    """N = 7 examples in chunks of 3 (3, 3, 1) and K = 7 particles in chunks of 3 (3, 3, 1): the
    running log-sum-exp and sums must give exactly the unchunked estimates of the drawn weights.
    Averaging chunk means, or taking a log-sum-exp per chunk and averaging, would not."""
    import pyrogen.evaluate.likelihood as lik

    monkeypatch.setattr(lik, "MAX_CHUNK_ELEMENTS", 3 * 5 * 3)  # batch 3 x 5 features x 3 particles
    m = LinearGaussian(shift=0.4, widen=1.8)
    x = _data(m, 7)
    calls = _spy_on_draws(monkeypatch)
    got_elbo, got_ll = elbo_and_log_likelihood(m, x, num_samples=7, batch_size=3)
    sizes = [tuple(log_w.shape) for _, log_w in calls]
    assert sizes == [(3, 3), (3, 3), (1, 3)] * 2 + [(3, 1), (3, 1), (1, 1)]
    table = _table(calls, x)
    assert table.shape == (7, 7)
    assert table.std(0).min() > 0.05  # the weights vary over particles: chunking matters
    per_example_ll = table.logsumexp(0) - math.log(7)
    assert got_ll == pytest.approx(per_example_ll.mean().item(), abs=1e-6)
    assert got_elbo == pytest.approx(table.mean().item(), abs=1e-6)
    calls.clear()
    pyro.set_rng_seed(1)
    ll = log_likelihood(m, x, num_samples=7, batch_size=3, reduction="none")
    torch.testing.assert_close(ll, _table(calls, x).logsumexp(0) - math.log(7), atol=1e-6, rtol=0)


def test_per_example_log_likelihood_of_a_users_program_is_the_closed_form():
    """A user's own model/guide functions, the data plate subsampled with scale 100 / B: the
    evaluation ignores that scale and returns log N(x_i; b, W W^T + s^2 I) for each example."""
    m = LinearGaussian()
    x = _data(m, 9)

    def model(x):
        with poutine.scale(scale=100 / len(x)):  # as if x were a mini-batch of 100 examples
            m.model(x)

    def guide(x):
        with poutine.scale(scale=100 / len(x)):
            m.guide(x)

    ll = log_likelihood(model, x, num_samples=4, batch_size=4, reduction="none", guide=guide)
    torch.testing.assert_close(ll, m.evidence(x), atol=1e-6, rtol=0)
    per_example_elbo = elbo(model, x, num_samples=3, reduction="none", guide=guide)
    torch.testing.assert_close(per_example_elbo, m.evidence(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_weights(model, x, 2, guide=guide), m.evidence(x).expand(2, 9))


def test_inexact_guide_per_example_log_likelihood_converges_to_the_closed_form():
    m = LinearGaussian(shift=0.2, widen=1.3)
    x = _data(m, 5)
    ll = log_likelihood(m.model, x, num_samples=4000, reduction="none", guide=m.guide)
    w = log_weights(m, x, 4000).exp()
    se = w.std(0) / (math.sqrt(4000) * w.mean(0))
    assert ((ll - m.evidence(x)).abs() <= 5 * se + 1e-3).all()


def test_a_positional_guide_is_refused_with_advice():
    from pyrogen.evaluate import log_likelihood

    def model(x):
        pass

    with pytest.raises(TypeError, match=r"guide=guide"):
        log_likelihood(model, model, torch.zeros(3))


class ShiftedGaussian:
    r"""Two data tensors: z ~ N(0, 1), x | z, y ~ N(z + y, s^2) per column (D columns), so
    x | y ~ N(y, (1 + s^2)) per column is closed-form; the guide is the exact posterior
    q(z | x, y) = N((x - y) / (1 + s^2), s^2 / (1 + s^2)) or shifted by ``shift``."""

    def __init__(self, s=0.5, shift=0.0):
        self.s, self.shift = s, shift

    def model(self, x, y):
        with pyro.plate("data", len(x), dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[-1]), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + y, self.s).to_event(1), obs=x)

    def guide(self, x, y):
        v = self.s**2 / (1 + self.s**2)
        with pyro.plate("data", len(x), dim=-1):
            loc = (x - y) / (1 + self.s**2) + self.shift
            pyro.sample("z", dist.Normal(loc, v**0.5).to_event(1))

    def evidence(self, x, y):
        return dist.Normal(y, (1 + self.s**2) ** 0.5).log_prob(x).sum(-1)


def _pair(n=7, d=3):
    g = torch.Generator().manual_seed(2)
    y = torch.randn(n, d, generator=g, dtype=torch.float64)
    return y + 1.2 * torch.randn(n, d, generator=g, dtype=torch.float64), y


def test_two_data_tensors_exact_guide_gives_the_evidence_in_every_call_form():
    m = ShiftedGaussian()
    x, y = _pair()
    exact = m.evidence(x, y)
    forms = [
        elbo(m, x, y, num_samples=3, batch_size=3, reduction="none"),  # chunks of 3, 3, 1 rows
        elbo((m.model, m.guide), x, y, num_samples=3, reduction="none"),
        elbo(m.model, x, y, guide=m.guide, num_samples=3, reduction="none"),
        elbo(m, (x, y), 3, 2, "none"),  # the older positional options, data as one tuple
        log_likelihood(m, x, y, num_samples=5, batch_size=4, reduction="none"),
        log_weights(m, x, y, num_samples=2)[1],
    ]
    for got in forms:
        torch.testing.assert_close(got, exact)
    ll = elbo_and_log_likelihood(m, x, y, num_samples=4, batch_size=2)
    assert ll == pytest.approx((float(exact.mean()),) * 2)


def test_two_data_tensors_elbo_of_a_shifted_guide_matches_the_closed_form():
    r"""q shifted by a: E_q log w = log p(x|y) - KL(q || p(z|x,y)) = evidence - D a^2 / (2 v)."""
    m = ShiftedGaussian(shift=0.4)
    x, y = _pair(n=5)
    pyro.set_rng_seed(0)
    got = elbo(m, x, y, num_samples=20000, batch_size=2, reduction="none")
    v = m.s**2 / (1 + m.s**2)
    expected = m.evidence(x, y) - 3 * 0.4**2 / (2 * v)
    torch.testing.assert_close(got, expected, atol=0.05, rtol=0)


def test_data_after_options_and_mismatched_rows_are_refused():
    m = ShiftedGaussian()
    x, y = _pair()
    with pytest.raises(TypeError, match="data tensors first"):
        elbo(m, x, 10, y)
    with pytest.raises(ValueError, match="same examples"):
        elbo(m, x, y[:5])
    with pytest.raises(TypeError, match="both positionally and by keyword"):
        elbo(m, x, y, 10, num_samples=20)
    with pytest.raises(TypeError, match="guide by keyword"):
        elbo(m.model, m.guide)
