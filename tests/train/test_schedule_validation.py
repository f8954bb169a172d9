"""LRScheduler and Validation callbacks on a user's own Pyro program (functions with pyro.param):
exact learning rates, early stopping with the best parameters back, RNG untouched, exact resume."""

import math
import os
import signal

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch
from torch import nn

from pyrogen.train import (
    AdversarialStep,
    Callback,
    LRScheduler,
    SVIStep,
    Trainer,
    TrainingInterrupted,
    Validation,
)

D = 2


def model(x):
    """x_i = w z_i + b + noise, z_i ~ N(0, 1): a linear Gaussian model with closed-form ELBO."""
    w = pyro.param("w", torch.full((D,), 0.5))
    b = pyro.param("b", torch.zeros(D))
    s = pyro.param("s", torch.ones(()), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(w * z.unsqueeze(-1) + b, s).to_event(1), obs=x)


def guide(x):
    a = pyro.param("a", torch.full((D,), 0.1))
    c = pyro.param("c", torch.zeros(()))
    sd = pyro.param("sd", torch.ones(()), constraint=dist.constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x @ a + c, sd))


def exact_elbo(x):
    """E_q[log p(x, z) - log q(z | x)] per example, in closed form."""
    store = pyro.get_param_store()
    w, b, s = store["w"], store["b"], store["s"]
    a, c, sd = store["a"], store["c"], store["sd"]
    m, v = x @ a + c, sd**2
    sq = ((x - w * m.unsqueeze(-1) - b) ** 2).sum(-1) + (w**2).sum() * v
    lik = -0.5 * D * math.log(2 * math.pi) - D * torch.log(s) - sq / (2 * s**2)
    prior = -0.5 * math.log(2 * math.pi) - (m**2 + v) / 2
    entropy = 0.5 * torch.log(2 * math.pi * math.e * v)
    return float((lik + prior + entropy).mean().detach())


def data(n, shift, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g)
    return z * torch.tensor([1.0, -2.0]) + shift + 0.3 * torch.randn(n, D, generator=g)


X = data(40, 1.0, 0)


def scheduled_step(gamma=0.5, lr=0.01):
    pyro.clear_param_store()
    optim = pyro.optim.ExponentialLR(
        {"optimizer": torch.optim.Adam, "optim_args": {"lr": lr}, "gamma": gamma}
    )
    return SVIStep(model, guide, optim=optim)


class LearningRates(Callback):
    """Records the learning rate of every per-parameter optimizer after each step."""

    def __init__(self):
        self.lrs = []

    def on_step_end(self, trainer, state, record):
        scheds = trainer.step.optim.optim_objs.values()
        self.lrs.append({s.optimizer.param_groups[0]["lr"] for s in scheds})


class Params(Callback):
    """Snapshots of the param store after each step."""

    def __init__(self):
        self.snapshots = []

    def on_step_end(self, trainer, state, record):
        self.snapshots.append(store_values())


def store_values():
    return {k: v.detach().clone() for k, v in pyro.get_param_store().items()}


@pytest.mark.parametrize("every", ["epoch", "step"])
def test_the_learning_rate_changes_by_exactly_gamma_per_epoch_or_step(every):
    rates = LearningRates()  # batch 10 of 40: 4 steps per epoch
    trainer = Trainer(
        scheduled_step(), batch_size=10, epochs=3, progress=False,
        callbacks=[LRScheduler(every=every), rates],
    )  # fmt: skip
    trainer.fit(X)
    expected = [0.01 * 0.5 ** (k // 4 if every == "epoch" else k) for k in range(1, 13)]
    assert rates.lrs == [{lr} for lr in expected]  # one rate shared by all 6 parameters


def test_a_step_without_a_pyro_scheduler_is_refused_with_advice():
    pyro.clear_param_store()
    trainer = Trainer(SVIStep(model, guide), steps=1, progress=False, callbacks=[LRScheduler()])
    with pytest.raises(ValueError, match="pyro.optim.ExponentialLR"):
        trainer.fit(X)
    with pytest.raises(ValueError, match="every='epoch'"):
        LRScheduler(every="batch")


class Critic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(D, 1)

    def forward(self, x):
        return self.net(x).squeeze(-1)


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(D, D)

    def model(self, n):
        pyro.module("generator", self)
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(D), 1.0).to_event(1))
            return pyro.deterministic("x", self.net(z), event_dim=1)


def test_torch_schedulers_of_an_adversarial_step():
    torch.manual_seed(0)
    step = AdversarialStep(Generator(), Critic(), "gan", lr=0.01, critic_steps=1)
    sched = torch.optim.lr_scheduler.StepLR(step.critic_optim, step_size=2, gamma=0.5)
    callback = LRScheduler(every="step", schedulers=[sched])
    Trainer(step, batch_size=10, steps=5, progress=False, callbacks=[callback]).fit(X)
    assert step.critic_optim.param_groups[0]["lr"] == 0.01 * 0.5**2  # after steps 2 and 4
    assert step.generator_optim.param_groups[0]["lr"] == 0.01
    assert callback.state_dict()["schedulers"][0]["last_epoch"] == 5


def test_validation_elbo_is_the_exact_elbo_and_recorded_in_history():
    pyro.clear_param_store()
    x_val = data(30, 1.0, 1)
    val = Validation(x_val, every=3, num_samples=4000, restore_best=False)
    step = SVIStep(model, guide, lr=0.05)
    history = Trainer(step, batch_size=10, steps=9, progress=False, callbacks=[val]).fit(X)
    assert len(history.column("val_elbo")) == 3 and [s for s, _ in val.values] == [3, 6, 9]
    assert history.column("val_elbo")[-1] == val.evaluate(step)  # same draws every time
    assert val.evaluate(step) == pytest.approx(exact_elbo(x_val), abs=0.02)


def test_validation_leaves_training_bit_identical():
    def run(callbacks):
        pyro.clear_param_store()
        step = SVIStep(model, guide, lr=0.05)
        history = Trainer(step, batch_size=10, steps=8, progress=False, callbacks=callbacks)
        return history.fit(X).losses, store_values()

    losses, params = run([])
    val = Validation(data(30, 1.0, 1), every=1, num_samples=5, restore_best=False)
    losses_val, params_val = run([val])
    assert losses_val == losses and len(val.values) == 8
    assert all(torch.equal(params[k], params_val[k]) for k in params)


def test_early_stopping_stops_and_restores_the_best_parameters():
    # validation data from another distribution: the fit to X makes its ELBO worse after a while
    pyro.clear_param_store()
    val = Validation(data(30, -4.0, 1), every=2, patience=3, num_samples=20)
    snapshots = Params()
    step = SVIStep(model, guide, lr=0.05)
    history = Trainer(
        step, batch_size=10, steps=200, progress=False, callbacks=[val, snapshots]
    ).fit(X)
    values = history.column("val_elbo")
    best = max(range(len(values)), key=values.__getitem__)
    assert val.best_step == 2 * (best + 1) and val.best_value == values[best]
    assert len(values) == best + 1 + 3 and len(history) == val.best_step + 6 < 200
    assert all(v <= val.best_value for v in values[best + 1 :])
    final, at_best = store_values(), snapshots.snapshots[val.best_step - 1]
    assert all(torch.equal(final[k], at_best[k]) for k in at_best)
    assert not torch.equal(final["b"], snapshots.snapshots[-1]["b"])  # the last step's differ


class Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, state, record):
        if state.step == self.at:
            raise RuntimeError("crash")


def equal(a, b):
    """Nested dicts/lists of tensors and numbers, compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(equal(u, v) for u, v in zip(a, b, strict=True))
    return a == b


def test_resume_with_both_callbacks_is_bit_identical(tmp_path):
    x_val = data(30, -4.0, 1)  # best at step 8, early stop at step 14

    def run(directory, resume=False, crash=None):
        step = scheduled_step(gamma=0.9, lr=0.1)
        callbacks = [
            LRScheduler(every="epoch"),
            Validation(x_val, every=2, patience=3, num_samples=3),
        ]
        callbacks += [Crash(crash)] if crash else []
        trainer = Trainer(
            step, batch_size=10, steps=24, progress=False, checkpoint_dir=directory,
            checkpoint_every=3, resume=resume, callbacks=callbacks,
        )  # fmt: skip
        history = trainer.fit(X)
        return history.records, step.state_dict(), callbacks

    records, state, (sched, val) = run(tmp_path / "a")
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "b", crash=11)  # after the checkpoint of step 9
    records_b, state_b, (sched_b, val_b) = run(tmp_path / "b", resume=True)
    assert val.best_step == 8 and len(records) == 14  # the best is in the step-9 checkpoint
    assert records_b == records and (val_b.best_step, val_b.values) == (val.best_step, val.values)
    assert equal(state_b, state) and sched_b.count == sched.count == 3
    # restored with the best parameters: the scheduler state of step 8 (2 epochs done)
    lrs = {s["scheduler"]["_last_lr"][0] for s in state["optim"].values()}
    assert lrs == {0.1 * 0.9 * 0.9}


def test_several_validation_tensors_reach_the_model_and_guide():
    def cmodel(x, y):  # a conditional model: y shifts the mean
        model(x - y.unsqueeze(-1))

    def cguide(x, y):
        guide(x - y.unsqueeze(-1))

    pyro.clear_param_store()
    x, y = data(30, 0.0, 1), torch.linspace(-1, 1, 30)
    value = Validation(x, y, num_samples=7).evaluate(SVIStep(cmodel, cguide))
    assert value == Validation(x - y.unsqueeze(-1), num_samples=7).evaluate(SVIStep(model, guide))
    with pytest.raises(ValueError, match="first dimension"):
        Validation(x, y[:5])


def test_training_and_validation_on_two_tensors_end_to_end():
    """Trainer.fit(x, y) with Validation(x_val, y_val): the validation ELBO of the conditional
    model is the exact ELBO of the shifted data, recorded every 2 steps."""

    def cmodel(x, y):
        model(x - y.unsqueeze(-1))

    def cguide(x, y):
        guide(x - y.unsqueeze(-1))

    pyro.clear_param_store()
    x, y = data(40, 0.0, 1), torch.linspace(-1, 1, 40)
    xv, yv = data(30, 0.0, 2), torch.linspace(-2, 2, 30)
    val = Validation(xv, yv, every=2, num_samples=4000)
    step = SVIStep(cmodel, cguide, lr=0.05)
    history = Trainer(step, batch_size=10, steps=6, progress=False, callbacks=[val]).fit(x, y)
    values = history.column("val_elbo")
    assert len(values) == 3
    assert values[-1] == pytest.approx(exact_elbo(xv - yv.unsqueeze(-1)), abs=0.05)


class SendSignal(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, state, record):
        if state.step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_keeps_the_last_parameters_so_the_checkpoint_resumes_exactly(tmp_path):
    pyro.clear_param_store()
    val = Validation(data(30, -4.0, 1), every=1, num_samples=3)
    snapshots = Params()
    step = SVIStep(model, guide, lr=0.1)
    trainer = Trainer(
        step, batch_size=10, steps=40, progress=False, checkpoint_dir=tmp_path,
        callbacks=[val, snapshots, SendSignal(20)],
    )  # fmt: skip
    with pytest.raises(TrainingInterrupted):
        trainer.fit(X)
    assert val.best_step < 20  # the best was earlier, yet the last parameters stay
    assert equal(store_values(), snapshots.snapshots[-1])
