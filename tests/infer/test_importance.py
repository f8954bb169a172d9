r"""Log importance weights: per-example shapes, unscaled values, the returned scale, and agreement
with Pyro's ``vectorized_importance_weights``.

Model (plain functions with ``pyro.param``): :math:`z_i \sim \mathcal N(0, 1)`,
:math:`x_i \mid z_i \sim \mathcal N(z_i + b, 1)`; guide
:math:`q(z_i \mid x_i) = \mathcal N(a (x_i - b) + c, \sigma^2)`. At :math:`a = 1/2, c = 0,
\sigma^2 = 1/2` the guide is the posterior, so every weight equals
:math:`p(x_i) = \mathcal N(x_i; b, 2)` exactly.
"""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer.importance import vectorized_importance_weights

from pyrogen.infer import LogWeights, log_importance_weights

X = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.4, 1.1])
N = len(X)
B = 0.4


def model(idx, size=N):
    b = pyro.param("b", torch.tensor(B))
    with pyro.plate("data", size, subsample=idx):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + b, 1.0), obs=X[idx])


def guide(idx, size=N, a=0.5, c=0.0, var=0.5):
    with pyro.plate("data", size, subsample=idx):
        pyro.sample("z", dist.Normal(a * (X[idx] - B) + c, var**0.5))


def log_evidence(idx):
    return dist.Normal(B, 2**0.5).log_prob(X[idx])


ALL = torch.arange(N)


def test_exact_posterior_gives_per_example_log_evidence():
    log_w, scale = log_importance_weights(model, guide, ALL, num_samples=5)
    assert log_w.shape == (5, N) and scale == 1.0
    torch.testing.assert_close(log_w, log_evidence(ALL).expand(5, N))
    joint = log_importance_weights(model, guide, ALL, num_samples=5, per_example=False)
    assert isinstance(joint, LogWeights) and joint.log_weights.shape == (5,)
    torch.testing.assert_close(joint.log_weights, log_evidence(ALL).sum().expand(5))


def test_subsampled_plate_weights_are_unscaled_and_the_scale_is_returned():
    """Pyro's site log_prob carries size / subsample_size = 3; the weights must not."""
    idx = torch.tensor([1, 4])
    log_w, scale = log_importance_weights(model, guide, idx, num_samples=4)
    assert scale == pytest.approx(N / 2)
    torch.testing.assert_close(log_w, log_evidence(idx).expand(4, 2))
    # a poutine.scale on the whole program multiplies the scale, not the weights
    log_w, scale = log_importance_weights(
        poutine.scale(model, 0.5), poutine.scale(guide, 0.5), idx, num_samples=4
    )
    assert scale == pytest.approx(N / 4)
    torch.testing.assert_close(log_w, log_evidence(idx).expand(4, 2))


def test_mixed_scales_give_no_scale():
    def tempered_model(idx):
        with pyro.plate("data", N, subsample=idx):
            with poutine.scale(scale=0.25):  # e.g. a beta-VAE's down-weighted prior
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z + B, 1.0), obs=X[idx])

    log_w, scale = log_importance_weights(tempered_model, guide, ALL, num_samples=3)
    assert scale is None
    torch.testing.assert_close(log_w, log_evidence(ALL).expand(3, N))  # still unscaled


def test_matches_pyro_vectorized_importance_weights_on_the_same_draws():
    """Off the posterior, with a global latent and a masked observation, the joint weights are
    Pyro's (which sums scaled log-densities; the scale is 1 here)."""

    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            with poutine.mask(mask=torch.arange(len(x)) != 2):
                pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def global_guide(x):
        mu = pyro.sample("mu", dist.Normal(0.3, 0.7))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x * 0.8 + mu * 0.1, 0.6))

    pyro.set_rng_seed(1)
    ours, scale = log_importance_weights(
        global_model, global_guide, X, num_samples=50, max_plate_nesting=1
    )
    pyro.set_rng_seed(1)
    theirs = vectorized_importance_weights(
        global_model, global_guide, X, num_samples=50, max_plate_nesting=1
    )[0]
    assert ours.shape == (50,) and scale == 1.0
    torch.testing.assert_close(ours, theirs)
    assert ours.std() > 1.0  # the guide is far from the posterior: a meaningful comparison
    with pytest.raises(ValueError, match=r"\['mu'\] are not inside the data plate"):
        log_importance_weights(global_model, global_guide, X, num_samples=2, per_example=True)


def test_guessed_plate_nesting_and_deeper_plates():
    """Sites inside a second plate at dim -2 are summed into their example's weight."""

    def deep_model(x):
        with pyro.plate("data", x.shape[-1], dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            with pyro.plate("reps", x.shape[0], dim=-2):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def deep_guide(x):
        with pyro.plate("data", x.shape[-1], dim=-1):
            pyro.sample("z", dist.Normal(x.sum(0) / 3, (1 / 3) ** 0.5))  # posterior, 2 reps

    x = torch.stack([X, X.flip(0)])
    log_w, _ = log_importance_weights(deep_model, deep_guide, x, num_samples=3)
    cov = torch.eye(2) + 1.0  # (x_1i, x_2i) ~ N(0, I + 11^T)
    expected = dist.MultivariateNormal(torch.zeros(2), cov).log_prob(x.T)
    torch.testing.assert_close(log_w, expected.expand(3, N))


def test_bad_num_samples():
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            log_importance_weights(model, guide, ALL, num_samples=bad)


def test_weights_are_differentiable():
    """A point-mass guide z_i = x_i / 2 + c makes the gradient deterministic:
    d/dc log w = sum_i [-z_i + (x_i - z_i - b)] per particle."""

    def delta_guide(idx):
        c = pyro.param("c", torch.tensor(0.3))
        with pyro.plate("data", N, subsample=idx):
            pyro.sample("z", dist.Delta(X[idx] / 2 + c))

    log_w, _ = log_importance_weights(model, delta_guide, ALL, num_samples=2)
    log_w.sum().backward()
    z = X / 2 + 0.3
    expected = 2 * (-z + (X - z - B)).sum()
    assert pyro.param("c").unconstrained().grad.item() == pytest.approx(expected.item(), abs=1e-5)


def test_guessing_the_plate_nesting_leaves_the_random_stream_alone():
    """A seeded evaluation must draw the same particles whether or not the nesting is guessed
    first (the guess runs the guide, which samples)."""
    from pyrogen.infer.importance import guess_max_plate_nesting

    torch.manual_seed(1)
    before = torch.get_rng_state()
    assert guess_max_plate_nesting(model, guide, ALL) == 1
    assert torch.equal(torch.get_rng_state(), before)


def test_one_particle_at_a_time_gives_the_same_weights():
    """``vectorized=False`` (for programs that cannot broadcast over a particle dim) runs the
    guide and the model once per particle, without the outer plate."""
    torch.manual_seed(0)
    loop = log_importance_weights(model, guide, ALL, num_samples=3, vectorized=False)
    torch.manual_seed(0)
    vec = log_importance_weights(model, guide, ALL, num_samples=3)
    assert loop.log_weights.shape == vec.log_weights.shape == (3, N)
    assert torch.allclose(loop.log_weights, log_evidence(ALL).expand(3, N), atol=1e-5)
    assert loop.scale == vec.scale == 1.0


def test_a_program_that_cannot_broadcast_falls_back_to_one_particle_at_a_time():
    """``torch.cat([z, x], -1)`` fails under the particle plate; the default path says so once
    and computes the same weights particle by particle."""

    def cat_model(idx):
        b = pyro.param("b", torch.tensor(B))
        with pyro.plate("data", N, subsample=idx):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            both = torch.cat([z.unsqueeze(-1), X[idx].unsqueeze(-1)], -1)  # (B, 2): no particles
            pyro.sample("x", dist.Normal(both[..., 0] + b, 1.0), obs=both[..., 1])

    with pytest.raises(RuntimeError):
        log_importance_weights(cat_model, guide, ALL, num_samples=3, vectorized=True)
    with pytest.warns(UserWarning, match="one particle at a time"):
        log_w, _ = log_importance_weights(cat_model, guide, ALL, num_samples=3)
    assert torch.allclose(log_w, log_evidence(ALL).expand(3, N), atol=1e-5)
