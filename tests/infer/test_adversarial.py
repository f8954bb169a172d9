import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from pyrogen.data import load_dataset
from pyrogen.evaluate import mode_coverage, wasserstein_1d
from pyrogen.infer import (
    LOSSES,
    WGAN,
    WGAN_GP,
    HingeGAN,
    MinimaxGAN,
    NonSaturatingGAN,
    adversarial_loss,
    gradient_penalty,
)
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import AdversarialStep, NonFiniteError, Trainer
from pyrogen.train.presets import PRESETS


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small networks: one thread is faster than two fighting over a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Linear(nn.Module):
    """d(x) = w·x + b, one score per example."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.lin = nn.Linear(len(w), 1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([w]))
            self.lin.bias.fill_(b)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


def fixed_model(fake):
    """A Pyro program whose site "x" is ``fake[:n]`` (plus a latent site "z")."""

    def model(n):
        with pyro.plate("data", n):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            return pyro.deterministic("x", fake[:n], event_dim=1)

    return model


# -- gradient penalty and clipping ---------------------------------------------------------------


def test_gradient_penalty_linear_critic_by_hand():
    w = [3.0, -4.0]  # ||w|| = 5
    critic = Linear(w, b=0.7)
    real, fake = torch.randn(64, 2), torch.randn(64, 2) + 3
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2, rel=1e-6)
    gp.backward()  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    expected = 2 * (5 - 1) * torch.tensor([w]) / 5
    assert torch.allclose(critic.lin.weight.grad, expected, atol=1e-5)


def test_wgan_gp_critic_loss_by_hand():
    critic = Linear([0.6, 0.0])  # ||w|| = 0.6
    real, fake = torch.randn(32, 2), torch.randn(32, 2) - 1
    loss = WGAN_GP(critic, penalty=10.0)
    terms = loss.critic_terms(fixed_model(fake), None, real=real)
    w1 = 0.6 * (real[:, 0].mean() - fake[:, 0].mean())
    assert terms["w1"].item() == pytest.approx(w1.item(), rel=1e-5)
    assert terms["penalty"].item() == pytest.approx(0.16, rel=1e-5)
    assert terms["critic_loss"].item() == pytest.approx(-w1.item() + 10 * 0.16, rel=1e-5)


def test_clipping_bounds_every_critic_weight():
    torch.manual_seed(0)
    gen, critic = Generator(2, 2, hidden=(16,)), Critic(2, hidden=(32, 32))
    assert max(p.abs().max() for p in critic.parameters()) > 0.01  # init is not clipped
    step = AdversarialStep(gen, critic, "wgan")
    assert step.critic_steps == 5 and isinstance(step.critic_optim, torch.optim.RMSprop)
    record = step(*(torch.randn(16, 2) for _ in range(step.batches_per_step)))
    for p in critic.parameters():
        assert p.abs().max() <= 0.01 + 1e-12
    assert float(max(p.detach().abs().max() for p in critic.parameters())) == pytest.approx(0.01)
    assert "w1" in record and math.isfinite(record["w1"])


# -- nonlinear critics: closed forms and transcriptions of the papers ------------------------------


class Quadratic(nn.Module):
    """d(x) = a ‖x‖² / 2 (x flattened per example): ∇_x d(x) = a x, so ‖∇d(x̂)‖ = a ‖x̂‖ differs
    from point to point. Records its inputs."""

    def __init__(self, a=1.0):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x)
        return self.a * x.reshape(len(x), -1).pow(2).sum(1) / 2


def _pairs(n=256, shape=(2,)):
    """Real and fake points whose interpolates have norms on both sides of 1 (so that a one-sided
    penalty differs from the two-sided one)."""
    torch.manual_seed(0)
    real = torch.randn(n, *shape, dtype=torch.float64)
    fake = 0.2 * torch.randn(n, *shape, dtype=torch.float64) + 0.3
    return real, fake


def _eps_of(x_hat, real, fake):
    """ε_i such that x̂_i = ε_i x_i + (1 - ε_i) x̃_i, and the distance of x̂_i to that line."""
    x_hat, real, fake = (t.reshape(len(t), -1) for t in (x_hat, real[: len(x_hat)], fake))
    d = real - fake[: len(x_hat)]
    eps = ((x_hat - fake[: len(x_hat)]) * d).sum(1) / (d * d).sum(1)
    off = (x_hat - fake[: len(x_hat)] - eps[:, None] * d).norm(dim=1)
    return eps, off


def test_gradient_penalty_of_a_quadratic_critic_is_the_closed_form():
    """‖∇d(x̂)‖ = a‖x̂‖: GP = E(a‖x̂‖ − 1)², dGP/da = E 2(a‖x̂‖ − 1)‖x̂‖, at x̂ = εx + (1 − ε)x̃
    with one ε ~ U[0, 1] per example, drawn from the given generator (image-shaped examples)."""
    real, fake = _pairs(200, shape=(1, 2, 2))
    fake = fake[:150]  # the first min(len(real), len(fake)) pairs are used
    critic = Quadratic(a=1.3)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    eps = torch.rand((150, 1, 1, 1), generator=torch.Generator().manual_seed(3))
    x_hat = eps * real[:150] + (1 - eps) * fake
    (seen,) = critic.inputs
    torch.testing.assert_close(seen, x_hat, rtol=0, atol=1e-12)
    r = x_hat.flatten(1).norm(dim=1)
    assert (1.3 * r < 1).any() and (1.3 * r > 1).any()
    assert gp.item() == pytest.approx(((1.3 * r - 1) ** 2).mean().item(), rel=1e-12)
    gp.backward()  # differentiable in the critic's parameters
    assert critic.a.grad.item() == pytest.approx((2 * (1.3 * r - 1) * r).mean().item(), rel=1e-12)


def test_wgan_gp_evaluates_the_penalty_on_random_interpolates():
    """Inside WGAN_GP: every x̂_i lies on the segment [x̃_i, x_i], ε_i differs per example and
    looks U[0, 1], and the terms match the closed form at those x̂."""
    real, fake = _pairs(512)
    critic = Quadratic()
    terms = WGAN_GP(critic, penalty=10.0).critic_terms(fixed_model(fake), None, real=real)
    (x_hat,) = [x for x in critic.inputs if x.requires_grad]
    eps, off = _eps_of(x_hat, real, fake)
    assert off.max() < 1e-12 and eps.min() >= 0 and eps.max() <= 1
    # per-example U[0, 1]: mean 1/2, sd 1/sqrt(12) = 0.289 (a shared ε has sd 0)
    assert eps.mean().item() == pytest.approx(0.5, abs=0.05)
    assert eps.std().item() == pytest.approx(12**-0.5, abs=0.03)
    gp = ((x_hat.norm(dim=1) - 1) ** 2).mean()
    w1 = (real.pow(2).sum(1) / 2).mean() - (fake.pow(2).sum(1) / 2).mean()
    assert terms["penalty"].item() == pytest.approx(gp.item(), rel=1e-12)
    assert terms["w1"].item() == pytest.approx(w1.item(), rel=1e-12)
    assert terms["critic_loss"].item() == pytest.approx((-w1 + 10 * gp).item(), rel=1e-12)


class ScaledMLP(nn.Module):
    """A fixed nonlinear critic (tanh MLP, float64); scores of N(0, 2²) data span about [-4, 3]."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1)).double()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x)
        return 5 * self.net(x).squeeze(-1)


def _paper_losses(name, d, real, fake, x_hat=None):
    """The papers' formulas, transcribed literally (D = sigmoid(d)): critic loss and
    diagnostics, generator loss."""
    if name in ("gan", "nsgan"):  # Goodfellow et al. (2014), eq. 1 and Sec. 3
        D = lambda x: torch.sigmoid(d(x))  # noqa: E731
        V = torch.log(D(real)).mean() + torch.log(1 - D(fake)).mean()
        gen = torch.log(1 - D(fake)).mean() if name == "gan" else -torch.log(D(fake)).mean()
        return {"critic_loss": -V, "value": V}, gen
    if name == "hinge":  # Lim & Ye (2017); Miyato et al. (2018), eq. 16-17
        critic = torch.clamp(1 - d(real), min=0).mean() + torch.clamp(1 + d(fake), min=0).mean()
        return {"critic_loss": critic}, -d(fake).mean()
    w1 = d(real).mean() - d(fake).mean()  # Arjovsky et al. (2017), Algorithm 1
    if name == "wgan":
        return {"critic_loss": -w1, "w1": w1}, -d(fake).mean()
    x_hat = x_hat.detach().requires_grad_(True)  # Gulrajani et al. (2017), Algorithm 1
    (grad,) = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
    gp = ((grad.norm(dim=1) - 1) ** 2).mean()
    return {"critic_loss": -w1 + 10 * gp, "w1": w1, "penalty": gp}, -d(fake).mean()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_match_the_papers_formulas_on_a_nonlinear_critic(name):
    """Values and gradients (in the critic's parameters, and in the generated points) of each
    loss equal a literal transcription of its paper's formula."""
    critic = ScaledMLP()
    torch.manual_seed(0)
    real = 2 * torch.randn(64, 2, dtype=torch.float64)
    fake = 2 * torch.randn(64, 2, dtype=torch.float64) + 1
    with torch.no_grad():  # every regime of every loss occurs: D near 0 and 1, both hinges
        s_real, s_fake = critic(real), critic(fake)
    assert (s_real < 1).any() and (s_real > 1).any() and (s_fake < -1).any() and (s_fake > -1).any()
    assert (s_real < -1).any() and (s_fake > 1).any()
    critic.inputs.clear()
    loss = adversarial_loss(name, critic)
    terms = loss.critic_terms(fixed_model(fake), None, real=real)
    x_hat = next((x for x in critic.inputs if x.requires_grad), None)
    expected, _ = _paper_losses(name, critic, real, fake, x_hat)
    assert terms.keys() == expected.keys()
    for key in terms:
        assert terms[key].item() == pytest.approx(expected[key].item(), rel=1e-10), key
    params = list(critic.parameters())
    got = torch.autograd.grad(terms["critic_loss"], params)
    want = torch.autograd.grad(expected["critic_loss"], params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
    # generator part: value and gradient in the generated points
    fake_g = fake.clone().requires_grad_(True)
    gen = loss.generator_loss(fixed_model(fake_g), None, 64)
    _, gen_expected = _paper_losses(name, critic, real, fake_g, x_hat)
    assert gen.item() == pytest.approx(gen_expected.item(), rel=1e-10)
    (got,) = torch.autograd.grad(gen, fake_g)
    (want,) = torch.autograd.grad(gen_expected, fake_g)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_weight_clipping_is_elementwise_clamp_to_plus_minus_c():
    critic = ScaledMLP()
    with torch.no_grad():
        for p in critic.parameters():
            p.mul_(50)
    expected = [p.detach().clamp(-0.01, 0.01) for p in critic.parameters()]
    assert any((e == -0.01).any() and (e == 0.01).any() for e in expected)
    WGAN(critic, clip=0.01).after_critic_step()
    for e, p in zip(expected, critic.parameters(), strict=True):
        assert torch.equal(p.detach(), e)


# -- sign conventions ----------------------------------------------------------------------------


def _separating():
    """Critic d(x) = 5 x_0; real at x_0 = +1, fake at x_0 = -1: the critic is right."""
    real = torch.tensor([[1.0, 0.0]]).expand(8, 2)
    fake = torch.tensor([[-1.0, 0.0]]).expand(8, 2).clone()
    return Linear([5.0, 0.0]), real, fake


def test_sign_conventions_when_critic_wins():
    critic, real, fake = _separating()
    model = fixed_model(fake)
    sp = nn.functional.softplus
    values = {}
    for name in LOSSES:
        loss = adversarial_loss(name, critic)
        values[name] = (
            loss.critic_loss(model, None, real=real).item(),
            loss.generator_loss(model, None, 8).item(),
        )
    # minimax: critic loss -V ≈ 0 (V ≤ 0 always); generator loss log(1 - D) ≈ 0⁻ (saturated)
    assert values["gan"][0] == pytest.approx(2 * sp(torch.tensor(-5.0)).item())
    assert -0.01 < values["gan"][1] < 0
    # non-saturating: large generator loss -log D(fake) ≈ 5
    assert values["nsgan"][1] == pytest.approx(sp(torch.tensor(5.0)).item())
    # Wasserstein: critic loss = -(E_r d - E_g d) = -10, generator loss = -E_g d = 5
    assert values["wgan"] == pytest.approx((-10.0, 5.0))
    assert values["hinge"] == pytest.approx((0.0, 5.0))  # both margins satisfied


def test_critic_losses_at_chance():
    critic = Linear([0.0, 0.0])  # D = 1/2 everywhere
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    model = fixed_model(fake)
    assert MinimaxGAN(critic).critic_loss(model, None, real=real).item() == pytest.approx(
        2 * math.log(2)
    )
    assert HingeGAN(critic).critic_loss(model, None, real=real).item() == pytest.approx(2.0)
    terms = WGAN_GP(critic).critic_terms(model, None, real=real)
    assert terms["penalty"].item() == pytest.approx(1.0)  # (0 - 1)^2


def test_generator_gradients_vanish_for_minimax_only():
    critic, real, fake = _separating()
    fake = fake.clone().requires_grad_(True)
    grads = {}
    for cls in (MinimaxGAN, NonSaturatingGAN, WGAN):
        fake.grad = None
        cls(critic).generator_loss(fixed_model(fake), None, 8).backward()
        grads[cls.name] = fake.grad.norm().item()
    assert grads["gan"] < 0.05 * grads["nsgan"]
    assert grads["wgan"] == pytest.approx(5 / math.sqrt(8))
    # and the generator's descent direction moves fake samples towards the real ones (+x_0)
    fake.grad = None
    NonSaturatingGAN(critic).generator_loss(fixed_model(fake), None, 8).backward()
    assert (fake.grad[:, 0] < 0).all()


# -- optimal discriminator -------------------------------------------------------------------------


def test_optimal_discriminator_recovered_on_1d_pair():
    """p_r = N(0, 1), p_g = N(1, 0.5²): D*(x) = p_r / (p_r + p_g)."""
    torch.manual_seed(0)
    critic = Critic(1, hidden=(32, 32), activation="tanh")
    p_r, p_g = dist.Normal(0.0, 1.0), dist.Normal(1.0, 0.5)

    def traced(n):  # site "x" must be (n, 1): record it as deterministic
        with pyro.plate("data", n):
            z = pyro.sample("z", p_g)
            return pyro.deterministic("x", z.unsqueeze(-1), event_dim=1)

    loss = MinimaxGAN(critic)
    optim = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(200):
        optim.zero_grad()
        loss.critic_loss(traced, None, real=p_r.sample((512, 1))).backward()
        optim.step()
    grid = torch.linspace(-1.5, 2.0, 50)
    expected = p_r.log_prob(grid).exp() / (p_r.log_prob(grid).exp() + p_g.log_prob(grid).exp())
    with torch.no_grad():
        got = torch.sigmoid(critic(grid.unsqueeze(-1)))
    assert (got - expected).abs().max() < 0.06


# -- composition with Pyro -----------------------------------------------------------------------


def test_guide_replay_and_sum_with_elbo():
    torch.manual_seed(0)
    gen = Generator(latent_dim=2, data_dim=3, hidden=(8,))
    critic = Critic(3, hidden=(8,))
    z_guide = torch.randn(4, 2)

    def guide(n):
        with pyro.plate("data", n):
            pyro.sample("z", dist.Delta(z_guide).to_event(1))

    loss = NonSaturatingGAN(critic)
    x = loss.generated(gen.model, guide, 4)
    assert torch.allclose(x, gen.net(z_guide))
    # the generator part is a plain differentiable Pyro loss: add it to an ELBO and backprop
    total = Trace_ELBO().differentiable_loss(gen.model, guide, 4) + loss(gen.model, guide, 4)
    total.backward()
    assert all(p.grad is not None for p in gen.parameters())
    assert isinstance(loss.loss(gen.model, None, 4), float)


def test_conditional_losses_pass_labels_to_critic():
    gen = Generator(2, 2, hidden=(8,), num_classes=3)
    critic = Critic(2, hidden=(8,), num_classes=3)
    y = torch.tensor([0, 1, 2, 1])
    for name in LOSSES:
        loss = adversarial_loss(name, critic)
        c = loss.critic_loss(gen.model, None, 4, y=y, real=torch.randn(4, 2))
        g = loss.generator_loss(gen.model, None, 4, y=y)
        assert torch.isfinite(c) and torch.isfinite(g)


# -- training ------------------------------------------------------------------------------------


def test_presets_match_papers():
    assert PRESETS["gan"].lr == 2e-4 and PRESETS["gan"].betas == (0.5, 0.999)
    assert PRESETS["gan"].critic_steps == 1
    assert PRESETS["wgan"].optim == "rmsprop" and PRESETS["wgan"].lr == 5e-5
    assert PRESETS["wgan"].critic_steps == 5 and PRESETS["wgan"].loss_kwargs == {"clip": 0.01}
    gp = PRESETS["wgan-gp"]
    assert (gp.optim, gp.lr, gp.betas, gp.critic_steps) == ("adam", 1e-4, (0.0, 0.9), 5)
    step = AdversarialStep(Generator(2, 2, hidden=(8,)), Critic(2, hidden=(8,)), "wgan-gp")
    assert step.loss.penalty == 10.0 and step.batches_per_step == 6
    step.setup(torch.randn(4, 2))  # the generator's parameters are found by tracing its program
    assert step.generator_optim.defaults["betas"] == (0.0, 0.9)
    assert step.critic_optim is not step.generator_optim


def test_trainer_records_both_losses_and_w1(tmp_path):
    gen, critic = Generator(2, 2, hidden=(16,)), Critic(2, hidden=(16,))
    step = AdversarialStep(gen, critic, "wgan-gp", critic_steps=2)
    data = load_dataset("ring8").train_x[:500]
    history = Trainer(step, batch_size=32, steps=4, seed=0, progress=False).fit(data)
    assert len(history) == 4
    assert len(history.column("w1")) == 4 and len(history.column("critic_loss")) == 4
    assert len(history.column("penalty")) == 4
    # state round trip through a weights_only checkpoint
    path = tmp_path / "state.pt"
    torch.save(step.state_dict(), path)
    state = torch.load(path, weights_only=True)
    gen2, critic2 = Generator(2, 2, hidden=(16,)), Critic(2, hidden=(16,))
    step2 = AdversarialStep(gen2, critic2, "wgan-gp", critic_steps=2)
    step2.load_state_dict(state)
    assert step2.num_steps == 4
    for a, b in zip(gen.parameters(), gen2.parameters(), strict=True):
        assert torch.equal(a, b)
    batches = [torch.randn(8, 2) for _ in range(3)]
    torch.manual_seed(1)
    r1 = step(*batches)
    torch.manual_seed(1)
    r2 = step2(*batches)
    assert r1 == r2  # resumes identically (optimizer moments restored)


def test_short_wgan_gp_run_tracks_w1():
    """Fast check (Adam, β = (0, 0.9), k = 5, λ = 10, generator lr 1e-4, critic lr 1e-3): the
    generator moves to N(3, 0.5²) and the critic's dual estimate follows the exact W1."""
    torch.manual_seed(0)
    real = 3 + 0.5 * torch.randn(20_000, 1)
    gen, critic = Generator(1, 1, hidden=(64, 64)), Critic(1, hidden=(64, 64))
    step = AdversarialStep(gen, critic, "wgan-gp", critic_lr=1e-3)
    start = wasserstein_1d(gen.sample(4000), real)
    history = Trainer(step, batch_size=128, steps=300, seed=0, progress=False).fit(real)
    exact = wasserstein_1d(gen.sample(4000), real)
    assert exact < 0.5 * start
    assert history.column("w1")[-1] == pytest.approx(exact, rel=0.3, abs=0.1)


@pytest.mark.slow
def test_wgan_gp_on_ring8_covers_six_modes():
    data = load_dataset("ring8")
    gen, critic = Generator(2, 2, hidden=(128, 128, 128)), Critic(2, hidden=(128, 128, 128))
    step = AdversarialStep(gen, critic, "wgan-gp", critic_lr=1e-3)
    Trainer(step, batch_size=256, steps=3000, seed=0, progress=False).fit(data.train_x)
    assert mode_coverage(gen.sample(2500), data.centers, data.sigma)["modes"] >= 6


# -- bad input -------------------------------------------------------------------------------------


def test_unknown_loss_name():
    critic = Critic(2, hidden=(4,))
    with pytest.raises(ValueError, match="Unknown adversarial loss 'wgangp'.*wgan-gp"):
        adversarial_loss("wgangp", critic)
    with pytest.raises(ValueError, match="Unknown adversarial loss"):
        AdversarialStep(Generator(2, 2, hidden=(4,)), critic, "lsgan")


def test_critic_output_of_wrong_shape():
    class Wide(nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 2)

    with pytest.raises(ValueError, match=r"shape \(8, 2\).*one score per example"):
        WGAN_GP(Wide()).critic_loss(fixed_model(torch.zeros(8, 2)), None, real=torch.zeros(8, 2))


def test_missing_site_lists_existing_sites():
    gen = Generator(2, 2, hidden=(4,))
    loss = HingeGAN(Critic(2, hidden=(4,)), site="img")
    with pytest.raises(ValueError, match=r"'img' is not in the trace.*: \['z', 'x'\]"):
        loss.generator_loss(gen.model, None, 4)


def test_data_dimension_differs_from_generator_output():
    gen = Generator(2, 3, hidden=(4,))
    step = AdversarialStep(gen, Critic(3, hidden=(4,)), "gan")
    with pytest.raises(ValueError, match=r"shape \(3,\) but real data have shape \(2,\)"):
        step(torch.randn(8, 2), torch.randn(8, 2))


def test_constructor_validation():
    critic = Critic(2, hidden=(4,))
    gen = Generator(2, 2, hidden=(4,))
    with pytest.raises(ValueError, match="clip"):
        WGAN(critic, clip=0.0)
    with pytest.raises(ValueError, match="penalty"):
        WGAN_GP(critic, penalty=-1.0)
    with pytest.raises(ValueError, match="critic_steps"):
        AdversarialStep(gen, critic, "gan", critic_steps=0)
    with pytest.raises(ValueError, match="lr"):
        AdversarialStep(gen, critic, "gan", lr=-1.0)
    with pytest.raises(TypeError, match="must be a Pyro program"):
        AdversarialStep(object(), critic)
    with pytest.raises(ValueError, match="2 real batches"):
        AdversarialStep(gen, critic, "gan")(torch.randn(4, 2))
    with pytest.raises(ValueError, match="another critic"):
        AdversarialStep(gen, critic, WGAN_GP(Critic(2, hidden=(4,))))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_adversarial_step_on_cuda():
    gen, critic = Generator(2, 2, hidden=(8,)).cuda(), Critic(2, hidden=(8,)).cuda()
    step = AdversarialStep(gen, critic, "wgan-gp", critic_steps=1)
    record = step(torch.randn(8, 2), torch.randn(8, 2))  # CPU batches are moved to the GPU
    assert math.isfinite(record["w1"])
    real = torch.randn(8, 2, device="cuda")
    assert gradient_penalty(critic, real, real + 1).is_cuda
    traced = poutine.trace(gen.model).get_trace(3)
    assert traced.nodes["x"]["value"].is_cuda


def test_nonfinite_loss_raises_before_update_and_can_be_skipped():
    class NaNCritic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.w * x[:, 0] * float("nan")

    gen, critic = Generator(2, 2, hidden=(4,)), NaNCritic()
    step = AdversarialStep(gen, critic, "hinge")
    with pytest.raises(
        NonFiniteError,
        match=r"Critic update 1 of 1: the critic loss is not finite \(critic_loss = nan\)",
    ):
        step(torch.randn(4, 2), torch.randn(4, 2))
    assert torch.equal(critic.w.detach(), torch.ones(1))  # no update was applied
    history = Trainer(step, batch_size=4, steps=3, progress=False, nonfinite="skip").fit(
        torch.randn(16, 2)
    )
    assert history.skipped == 3 and len(history) == 0


def test_generator_ema_is_the_hand_computed_average():
    torch.manual_seed(0)
    gen, critic = Generator(2, 2, (4,)), Critic(2, (4,))
    step = AdversarialStep(gen, critic, "nsgan", ema=0.9)
    assert step.sampler is step.ema_generator and step.ema_generator is not gen
    expected = [p.detach().clone() for p in gen.parameters()]  # θ_ema starts at θ_0
    x = torch.randn(8, 2)
    for _ in range(2):
        step(x, x)
        expected = [0.9 * e + 0.1 * p.detach() for e, p in zip(expected, gen.parameters())]
    for e, avg in zip(expected, step.ema_generator.parameters(), strict=True):
        assert torch.allclose(e, avg, atol=1e-7)
        assert not avg.requires_grad
    assert not torch.equal(expected[0], next(gen.parameters()))
    state = step.state_dict()
    assert "generator_ema" in state
    other = AdversarialStep(Generator(2, 2, (4,)), Critic(2, (4,)), "nsgan", ema=0.9)
    other.load_state_dict(state)
    for a, b in zip(other.ema_generator.parameters(), step.ema_generator.parameters()):
        assert torch.equal(a, b)
    plain = AdversarialStep(Generator(2, 2, (4,)), Critic(2, (4,)), "nsgan")
    plain.setup(x)
    assert plain.sampler is plain.generator and "generator_ema" not in plain.state_dict()
    with pytest.raises(ValueError, match="generator_ema"):
        other.load_state_dict(plain.state_dict())


def test_linear_lr_decay_follows_the_schedule():
    gen, critic = Generator(2, 2, (4,)), Critic(2, (4,))
    step = AdversarialStep(gen, critic, "nsgan", lr=1e-3, lr_decay=0.5, total_steps=8)
    assert [step.lr_factor(t) for t in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    x = torch.randn(8, 2)
    lrs = []
    for _ in range(8):
        step(x, x)
        lrs.append(step.generator_optim.param_groups[0]["lr"])
        assert step.critic_optim.param_groups[0]["lr"] == lrs[-1]
    assert lrs == pytest.approx([1e-3] * 5 + [7.5e-4, 5e-4, 2.5e-4])
    with pytest.raises(ValueError, match="total_steps"):
        AdversarialStep(gen, critic, "nsgan", lr_decay=0.5)
    with pytest.raises(ValueError, match="lr_decay"):
        AdversarialStep(gen, critic, "nsgan", lr_decay=1.5, total_steps=8)
    with pytest.raises(ValueError, match="EMA"):
        AdversarialStep(gen, critic, "nsgan", ema=1.0)


# -- site semantics: observed sites are refused ----------------------------------------------------


def _user_vae(decoder):
    """A user's VAE-like program: observed "x", generated mean recorded at "x_rec"."""

    def model(x):
        pyro.module("decoder", decoder)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            mean = pyro.deterministic("x_rec", decoder(z), event_dim=1)
            pyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=x)

    return model


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_observed_site_is_refused_naming_the_site_and_the_fix(name):
    torch.manual_seed(0)
    model, x = _user_vae(nn.Linear(2, 3)), torch.randn(4, 3)
    loss = adversarial_loss(name, Linear([1.0, -1.0, 0.5]))  # default site="x": observed here
    with pytest.raises(ValueError, match=r"Site 'x' is observed.*pyro\.deterministic.*x_rec"):
        loss(model, None, x)
    with pytest.raises(ValueError, match="Site 'x' is observed"):
        loss.critic_loss(model, None, x, real=x)


def test_deterministic_site_gives_the_decoder_gradients():
    torch.manual_seed(0)
    decoder = nn.Linear(2, 3)
    model, x = _user_vae(decoder), torch.randn(4, 3)
    loss = NonSaturatingGAN(Linear([1.0, -1.0, 0.5]), site="x_rec")
    loss(model, None, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())
    # and a conditioned latent site is refused too: its value is data, not generated
    conditioned = poutine.condition(model, data={"z": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="Site 'z' is observed"):
        NonSaturatingGAN(Linear([1.0, -1.0]), site="z")(conditioned, None, x)
