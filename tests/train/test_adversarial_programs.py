"""AdversarialStep on the Pyro programs users write: functions with pyro.module, PyroModules whose
forward is the program, bound methods, guides, composed generator losses, labelled batches."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyrogen.infer import NonSaturatingGAN, WeightedLoss
from pyrogen.train import AdversarialStep, NonFiniteError, Trainer

D, Z = 3, 2


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, D))


def _critic(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))


def _draw(net, n):
    with pyro.plate("data", n):
        z = pyro.sample("z", dist.Normal(torch.zeros(Z), 1.0).to_event(1))
        return pyro.deterministic("x", net(z), event_dim=1)


def function_generator(net):
    def model(n):
        pyro.module("gen", net)
        return _draw(net, n)

    return model


class ForwardGenerator(PyroModule):
    """A PyroModule whose forward is the program."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        to_pyro_module_(self.net)

    def forward(self, n):
        return _draw(self.net, n)


class MethodGenerator(nn.Module):
    """A plain nn.Module; its bound .sample_program registers itself with pyro.module."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def sample_program(self, n):
        pyro.module("method_gen", self)
        return _draw(self.net, n)


def _three_forms():
    fn_net = _net()
    return {
        "function": (function_generator(fn_net), fn_net),
        "pyromodule": (ForwardGenerator(_net()), None),
        "bound method": (MethodGenerator(_net()).sample_program, None),
    }


def _weights(program, net):
    module = net if net is not None else getattr(program, "__self__", program)
    return [p.detach().clone() for p in module.parameters()]


def _reference(steps, batches, seed, lr=1e-2):
    """The same non-saturating GAN by hand in plain PyTorch, SGD on both (Adam's first steps are
    ±lr, which turns rounding noise in near-zero gradients into differences of 2 lr)."""
    gen, critic = _net(), _critic()
    torch.manual_seed(seed)
    g_opt = torch.optim.SGD(gen.parameters(), lr=lr)
    c_opt = torch.optim.SGD(critic.parameters(), lr=lr)
    softplus = nn.functional.softplus
    for real, gen_batch in batches[:steps]:
        with torch.no_grad():
            fake = gen(dist.Normal(torch.zeros(Z), 1.0).expand([len(real), Z]).rsample())
        c_loss = softplus(-critic(real)).mean() + softplus(critic(fake)).mean()
        c_opt.zero_grad()
        c_loss.backward()
        c_opt.step()
        fake = gen(dist.Normal(torch.zeros(Z), 1.0).expand([len(gen_batch), Z]).rsample())
        g_loss = softplus(-critic(fake)).mean()
        g_opt.zero_grad()
        g_loss.backward()
        g_opt.step()
    return [p.detach() for p in gen.parameters()], [p.detach() for p in critic.parameters()]


@pytest.mark.parametrize("form", ["function", "pyromodule", "bound method"])
def test_every_form_of_program_trains_exactly_like_plain_pytorch(form):
    program, net = _three_forms()[form]
    before = _weights(program, net)
    critic = _critic()
    step = AdversarialStep(
        program, critic, "nsgan", critic_steps=1,
        generator_optim=lambda params: torch.optim.SGD(params, lr=1e-2),
        critic_optim=torch.optim.SGD(critic.parameters(), lr=1e-2),
    )  # fmt: skip
    g = torch.Generator().manual_seed(5)
    batches = [(torch.randn(16, D, generator=g), torch.randn(16, D, generator=g)) for _ in range(3)]
    torch.manual_seed(3)
    for real, gen_batch in batches:
        step(real, gen_batch)
    want_gen, want_critic = _reference(3, batches, seed=3)
    got = _weights(program, net)
    assert len(got) == 4 and all(not torch.equal(a, b) for a, b in zip(before, got, strict=True))
    for a, b in zip(got, want_gen, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(critic.parameters(), want_critic, strict=True):
        torch.testing.assert_close(a.detach(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["function", "pyromodule"])
def test_user_programs_train_under_the_trainer_and_resume_bit_identically(form, tmp_path):
    def run(steps, resume=False):
        pyro.clear_param_store()
        program, net = _three_forms()[form]
        step = AdversarialStep(program, _critic(), "hinge", lr=1e-2, critic_steps=2)
        Trainer(
            step, batch_size=8, steps=steps, seed=0, progress=False,
            checkpoint_dir=tmp_path / form, checkpoint_every=2, resume=resume,
        ).fit(data)  # fmt: skip
        return _weights(program, net), step

    data = torch.randn(64, D, generator=torch.Generator().manual_seed(0))
    straight, _ = run(4)
    for f in (tmp_path / form).iterdir():  # keep the checkpoint of step 2 only
        if "000004" in f.name:
            f.unlink()
    resumed, step = run(4, resume=True)
    assert step.num_steps == 4
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)
    if form == "function":  # no module owns the parameters: saved by their Pyro names
        assert sorted(step.state_dict()["generator_params"]) == [
            "gen$$$0.bias", "gen$$$0.weight", "gen$$$2.bias", "gen$$$2.weight"
        ]  # fmt: skip


# -- a guide, a composed generator loss, the critic's real examples -------------------------
def _encoder_decoder():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(D, 8), nn.Tanh(), nn.Linear(8, 2 * Z))
    dec = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, D))
    nan_at = {"guide": False}

    def model(x):
        pyro.module("decoder", dec)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z), 1.0).to_event(1))
            mean = pyro.deterministic("x_rec", dec(z), event_dim=1)
            pyro.sample("x", dist.Normal(mean, 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.module("encoder", enc)
        scale = pyro.param("scale_boost", torch.ones(()))
        loc, log_scale = enc(x).chunk(2, -1)
        if nan_at["guide"]:  # same value, NaN gradient in scale_boost
            loc = loc + torch.sqrt(0 * scale)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, scale * log_scale.exp()).to_event(1))

    return model, guide, nan_at


def _vaegan_step(**kwargs):
    model, guide, nan_at = _encoder_decoder()
    critic = _critic()
    adv = NonSaturatingGAN(critic, site="x_rec")
    composed = WeightedLoss([(1.0, Trace_ELBO()), (0.5, adv)])
    step = AdversarialStep(
        model, critic, adv, guide=guide, generator_loss=composed, inputs="data", **kwargs
    )
    return step, model, guide, composed, nan_at


def test_a_guide_and_a_composed_loss_train_encoder_and_decoder_with_the_summed_gradient():
    step, model, guide, composed, _ = _vaegan_step(critic_steps=1)
    x = torch.randn(16, D)
    step.setup(x)
    assert sorted(n.split("$$$")[0] for n in step.generator_params) == [
        "decoder", "decoder", "decoder", "decoder",
        "encoder", "encoder", "encoder", "encoder", "scale_boost",
    ]  # fmt: skip
    params = list(step.generator_params.values())
    torch.manual_seed(7)
    want = torch.autograd.grad(composed.differentiable_loss(model, guide, x), params)
    seen = []
    step.gradient_hooks.append(lambda ps: seen.append([p.grad.clone() for p in ps]))
    torch.manual_seed(7)
    step.generator_update(x)
    assert len(seen) == 1
    for got, expected in zip(seen[0], want, strict=True):
        torch.testing.assert_close(got, expected)
    assert all(p.grad is None for p in step.critic.parameters())


def test_a_nan_gradient_in_the_guide_is_refused_and_changes_nothing():
    step, _, _, _, nan_at = _vaegan_step(critic_steps=2)
    x = torch.randn(16, D)
    for _ in range(2):
        step(x, x, x)
    before = copy.deepcopy(
        (step.state_dict(), {n: p.detach().clone() for n, p in step.generator_params.items()})
    )
    nan_at["guide"] = True
    with pytest.raises(NonFiniteError, match=r"Generator update: .*\['scale_boost'\]"):
        step(x, x, x)
    after = (step.state_dict(), {n: p.detach() for n, p in step.generator_params.items()})
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_real_examples_from_a_function_aae_style():
    """The critic compares the guide's codes (site "z") with prior samples given by real=."""
    model, guide, _ = _encoder_decoder()
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))
    seen = []
    critic.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    prior = torch.full((16, Z), 5.0)
    step = AdversarialStep(
        model, critic, "hinge", guide=guide, inputs="data", real=lambda x: prior, site="z",
        critic_steps=1,
    )  # fmt: skip
    x = torch.randn(16, D)
    step.setup(x)
    seen.clear()
    step(x, x)
    assert torch.equal(seen[0], prior)  # real: the prior samples
    assert seen[1].shape == (16, Z) and not torch.equal(seen[1], prior)  # fake: the codes


# -- refusals ------------------------------------------------------------------------------
def test_programs_it_cannot_train_are_refused_with_the_fix():
    critic = _critic()
    net = _net()

    def unregistered(n):
        return _draw(net, n)

    step = AdversarialStep(unregistered, critic, "hinge")
    with pytest.raises(ValueError, match=r"registers no trainable parameter.*pyro\.module"):
        step.setup(torch.randn(4, D))
    with pytest.raises(ValueError, match="ema= averages the generator module"):
        AdversarialStep(function_generator(net), critic, "hinge", ema=0.9)
    with pytest.raises(RuntimeError, match=r"call step\.setup\(\*batch\) first"):
        AdversarialStep(function_generator(net), critic, "hinge").generator_optim
    with pytest.raises(ValueError, match="inputs='count' takes a batch"):
        AdversarialStep(function_generator(net), critic, "hinge").setup(*[torch.ones(4, D)] * 3)
    with pytest.raises(TypeError, match=r"must return \(args, kwargs\)"):
        AdversarialStep(function_generator(net), critic, inputs=lambda x: x).setup(torch.ones(4, D))
    with pytest.raises(ValueError, match="Unknown inputs"):
        AdversarialStep(function_generator(net), critic, inputs="rows")
