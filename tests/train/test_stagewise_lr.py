"""The stepwise schedule of Burda et al. (2016): lr 1e-3·10^(-i/7) for 3^i passes, i = 0…7,
scaled to fewer epochs; stepped by LRScheduler on a user's own Pyro program."""

import pyro
import pyro.distributions as dist
import pyro.optim
import pytest
import torch

from pyrogen.train import Callback, LRScheduler, StagewiseLR, SVIStep, Trainer, stagewise_adam
from pyrogen.train.presets import VAE_DEFAULTS, VAE_PRESETS


def test_the_full_schedule_is_3_to_the_i_passes_at_1e_3_times_10_to_the_minus_i_over_7():
    schedule = StagewiseLR(3280)
    factors = [schedule(e) for e in range(3280)]
    start = 0
    for i in range(8):
        stage = factors[start : start + 3**i]
        assert stage == [pytest.approx(10 ** (-i / 7), rel=1e-12)] * 3**i, i
        start += 3**i
    assert start == 3280 and schedule(3279) == pytest.approx(0.1)


def test_fewer_epochs_scale_every_stage():
    schedule = StagewiseLR(328)  # a tenth: stage i starts at round((3^i - 1) / 20)
    assert schedule.starts == [0, 0, 0, 1, 4, 12, 36, 109]
    assert schedule(0) == pytest.approx(10 ** (-2 / 7))  # stages 0, 1 are under half an epoch
    assert schedule(108) == pytest.approx(10 ** (-6 / 7))
    assert schedule(109) == schedule(327) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"epochs": 5, "gamma": 1.5}])
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError, match="Expected epochs >= 1"):
        StagewiseLR(**kwargs)


def model(x):
    loc = pyro.param("loc", torch.zeros(2))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(loc + z.unsqueeze(-1), 1.0).to_event(1), obs=x)


def guide(x):
    m = pyro.param("m", torch.zeros(()))
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(m, 1.0))


class Rates(Callback):
    def __init__(self):
        self.lrs, self.eps = [], set()

    def on_step_end(self, trainer, state, record):
        groups = [s.optimizer.param_groups[0] for s in trainer.step.optim.optim_objs.values()]
        self.lrs.append({g["lr"] for g in groups})
        self.eps |= {g["eps"] for g in groups}


def test_lr_at_each_stage_is_1e_3_times_10_to_the_minus_i_over_7_in_training():
    pyro.clear_param_store()
    schedule = StagewiseLR(13, stages=3)  # stages of 1, 3, 9 epochs, exactly
    step = SVIStep(model, guide, optim=stagewise_adam(1e-3, schedule, eps=1e-4))
    rates = Rates()
    trainer = Trainer(
        step, batch_size=4, epochs=13, progress=False, callbacks=[LRScheduler(), rates]
    )
    trainer.fit(torch.randn(4, 2))  # one step per epoch; lrs[k] is after k + 1 epochs
    stage = [0] * 1 + [1] * 3 + [2] * 9
    expected = [1e-3 * 10 ** (-stage[min(k + 1, 12)] / 7) for k in range(13)]
    assert all(len(r) == 1 for r in rates.lrs)  # one rate shared by both parameters
    assert [r.pop() for r in rates.lrs] == pytest.approx(expected, rel=1e-12)
    assert rates.eps == {1e-4}


def test_without_a_schedule_stagewise_adam_is_pyros_adam():
    optim = stagewise_adam(1e-3, eps=1e-4)
    assert optim.pt_optim_constructor is torch.optim.Adam
    assert optim.pt_optim_args == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-4}
    with pytest.raises(ValueError, match="lr > 0"):
        stagewise_adam(0.0)


def test_burda2016_preset_holds_the_papers_settings():
    p = VAE_PRESETS["burda2016"]
    assert (p.hidden, p.latent_dim, p.activation, p.batch_size) == ((200, 200), 50, "tanh", 20)
    assert (p.lr, p.betas, p.adam_eps, p.epochs) == (1e-3, (0.9, 0.999), 1e-4, 3280)
    assert (p.lr_schedule, p.binarize, p.num_is_samples) == ("burda2016", "dynamic", 5000)
    assert (VAE_DEFAULTS.hidden, VAE_DEFAULTS.epochs, VAE_DEFAULTS.adam_eps) == ((400,), 50, 1e-8)


class Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, trainer, state, record):
        if state.step == self.at:
            raise RuntimeError("crash")


def test_a_resumed_run_continues_the_schedule_exactly(tmp_path):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))

    def run(directory, resume=False, crash=None):
        pyro.clear_param_store()
        optim = stagewise_adam(1e-2, StagewiseLR(13, stages=3), eps=1e-4)
        step = SVIStep(model, guide, optim=optim)
        callbacks = [LRScheduler()] + ([Crash(crash)] if crash else [])
        trainer = Trainer(
            step, batch_size=4, epochs=13, seed=0, progress=False, checkpoint_dir=directory,
            checkpoint_every=5, resume=resume, callbacks=callbacks,
        )  # fmt: skip
        return trainer.fit(x).losses, {k: v.clone() for k, v in pyro.get_param_store().items()}

    losses, params = run(tmp_path / "a")
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "b", crash=12)  # after the checkpoint of step 10 (epoch 5, stage 2)
    losses_b, params_b = run(tmp_path / "b", resume=True)
    assert losses_b == losses
    assert all(torch.equal(params[k], params_b[k]) for k in params)
