"""AdversarialStep is atomic: a NaN/Inf loss or gradient anywhere in a step changes nothing."""

import copy

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import nn

from pyrogen.train import AdversarialStep, NonFiniteError, Trainer
from pyrogen.train.steps.adversarial import _check_gradients

MARKER = 7.0  # a real example with x_0 = MARKER gives the critic a NaN gradient (finite loss)


class UserCritic(nn.Module):
    """A user's critic with a BatchNorm (buffers) and d(x) = net(x) + sqrt(|a (x_0 - MARKER)|): the
    score is finite everywhere, but its d/da is 0 · inf = NaN at x_0 = MARKER."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 1))
        self.a = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.net(x).squeeze(-1) + torch.sqrt((self.a * (x[:, 0] - MARKER)).abs())


class UserGenerator(nn.Module):
    """A user's Pyro program (not a pyrogen class) with a BatchNorm; its ``model`` calls listed
    in ``bad_calls`` add sqrt(0 · b): the same x, but a NaN gradient in b."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2))
        self.b = nn.Parameter(torch.ones(()))
        self.calls, self.bad_calls = 0, set()

    def model(self, n):
        pyro.module("user_generator", self)  # Pyro-visible, as a Pyro user writes it
        self.calls += 1  # one call per critic update, then one for the generator update
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            x = self.net(z)
            if self.calls in self.bad_calls:
                x = x + torch.sqrt(0 * self.b)
            return pyro.deterministic("x", x, event_dim=1)


def _step(loss="hinge", **kwargs):
    torch.manual_seed(0)
    kwargs = {
        "critic_steps": 5,
        "lr": 1e-2,
        "ema": 0.9,
        "lr_decay": 0.75,
        "total_steps": 4,
        **kwargs,
    }
    step = AdversarialStep(UserGenerator(), UserCritic(), loss, **kwargs)
    step.setup(torch.randn(16, 2))  # finds the generator's parameters by tracing its program
    return step


def _batches(step, bad=None):
    batches = [torch.randn(16, 2) for _ in range(step.batches_per_step)]
    if bad is not None:
        batches[bad][3, 0] = MARKER
    return batches


def _everything(step):
    """All a step can change, copied: its state_dict, the learning rates, every buffer."""
    state = copy.deepcopy(step.state_dict())
    state["lrs"] = [
        g["lr"] for opt in (step.generator_optim, step.critic_optim) for g in opt.param_groups
    ]
    modules = (step.generator, step.critic, step.ema_generator)
    state["buffers"] = [b.clone() for m in modules for b in m.buffers()]
    return state


def _assert_identical(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_identical(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_identical(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("loss", ["hinge", "nsgan", "wgan", "wgan-gp"])
@pytest.mark.parametrize("where", ["critic", "generator"])
def test_failing_step_changes_nothing_bit_for_bit(loss, where):
    step = _step(loss)
    for _ in range(2):  # optimizer moments exist; the call below sets the rates to 2/3
        step(*_batches(step))
    before = _everything(step)
    twin = copy.deepcopy(step)
    if where == "critic":  # update 3 of 5 fails, after two applied critic updates
        batches = _batches(step, bad=2)
        message = r"Critic update 3 of 5: non-finite gradient of critic parameter\(s\) \['a'\]"
    else:  # the generator update fails, after all 5 critic updates
        batches = _batches(step)
        step.generator.bad_calls = {step.generator.calls + 6}
        message = r"Generator update: non-finite gradient of generator parameter\(s\) \['b'\]"
    with pytest.raises(NonFiniteError, match=message + "; the step changed nothing"):
        step(*batches)
    _assert_identical(_everything(step), before)
    assert all(p.grad is None for p in (*step.critic.parameters(), *step.generator.parameters()))
    # and nothing hidden differs either: the next step is the one of a step that never failed
    step.generator.bad_calls = set()
    step.generator.calls = twin.generator.calls
    batches = _batches(step)
    torch.manual_seed(1)
    record = step(*batches)
    torch.manual_seed(1)
    assert twin(*batches) == record
    _assert_identical(_everything(step), _everything(twin))


def test_nonfinite_critic_loss_is_caught_before_its_update():
    step = _step("wgan", lr_decay=0.0, total_steps=None)
    before = _everything(step)
    batches = _batches(step)
    batches[3][0, 1] = float("inf")  # critic update 4: d(inf) is NaN or inf; W1 too
    with pytest.raises(
        NonFiniteError, match=r"Critic update 4 of 5: the critic loss is not finite"
    ):
        step(*batches)
    _assert_identical(_everything(step), before)
    assert step.num_steps == 0


def test_gradient_hooks_run_before_the_check_on_the_updated_parameters():
    step = _step("hinge", critic_steps=2)
    seen = []

    def hook(params):
        seen.append(params)
        if len(seen) == 3:  # the generator update: a rank sent a NaN gradient
            params[1].grad.fill_(float("nan"))

    step.gradient_hooks.append(hook)
    before = _everything(step)
    with pytest.raises(NonFiniteError, match=r"generator parameter\(s\) \['net.0.weight'\]"):
        step(*_batches(step))
    _assert_identical(_everything(step), before)
    critic, generator = list(step.critic.parameters()), list(step.generator.parameters())
    assert [[id(p) for p in ps] for ps in seen] == [
        [id(p) for p in ps] for ps in (critic, critic, generator)
    ]


def test_trainer_skips_and_counts_a_failed_step_and_continues():
    step = _step("hinge", critic_steps=1, ema=None, lr_decay=0.0, total_steps=None)
    # model calls: 1 = setup in _step, 2 = the Trainer's setup, then two per step: step 2 fails at
    # its generator update (call 6)
    step.generator.bad_calls = {6}
    data = torch.randn(64, 2)
    history = Trainer(step, batch_size=8, steps=4, progress=False, nonfinite="skip").fit(data)
    assert history.skipped == 1 and len(history) == 3 and step.num_steps == 3
    with pytest.raises(NonFiniteError, match="Step 1: Generator update"):
        step.generator.calls, step.generator.bad_calls = 0, {3}  # setup, critic, generator
        Trainer(step, batch_size=8, steps=4, progress=False).fit(data)


def test_gradient_check_names_parameters_and_ignores_an_overflowing_sum():
    module = nn.Linear(2, 2)
    params = list(module.parameters())
    module.weight.grad = torch.full((2, 2), 3e38)  # finite, but the sum overflows to inf
    module.bias.grad = torch.zeros(2)
    names = {id(p): n for n, p in module.named_parameters()}
    _check_gradients("critic", params, names)  # no error
    module.bias.grad[1] = float("-inf")
    with pytest.raises(NonFiniteError, match=r"critic parameter\(s\) \['bias'\]"):
        _check_gradients("critic", params, names)


def _ddp_worker(rank, world_size, tmp):
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        step = _step("hinge", critic_steps=1, ema=None, lr_decay=0.0, total_steps=None)
        data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
        data[::9, 0] = MARKER  # some critic batches give one of the ranks a NaN gradient
        trainer = Trainer(step, batch_size=16, steps=6, seed=0, progress=False, nonfinite="skip")
        history = trainer.fit(data)
        state = {"critic": step.critic.state_dict(), "generator": step.generator.state_dict()}
        torch.save({"state": state, "skipped": history.skipped}, f"{tmp}/rank{rank}.pt")
        torch_dist.barrier()  # no rank tears gloo down while the other is still in a collective
    finally:
        torch_dist.destroy_process_group()


def test_data_parallel_ranks_check_the_averaged_gradients_and_skip_together(tmp_path):
    """A NaN gradient on one rank reaches every rank through the average: all skip the step and
    stay in sync (checking before averaging would leave the other rank waiting in all_reduce)."""
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["skipped"] == ranks[1]["skipped"] >= 1
    _assert_identical(ranks[0]["state"], ranks[1]["state"])
