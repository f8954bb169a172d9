"""Gaps found by ``benchmarks/mutate.py`` in :mod:`pyrogen.train` (SVIStep, Trainer, callbacks,
checkpoints), each on a user's own Pyro program."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.train import SVIStep

X = torch.tensor([0.5, -1.0, 2.0])


@pytest.fixture(autouse=True)
def _fresh():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)


def model(x):
    b = pyro.param("b", torch.tensor(0.3))
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z + b, 1.0), obs=x)


def guide(x):
    loc = pyro.param("loc", torch.tensor(0.2))
    scale = pyro.param("scale", torch.tensor(0.9), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(loc, scale))


def _values():
    return {k: v.unconstrained().detach().clone() for k, v in pyro.get_param_store().items()}


def test_default_optimizer_is_adam_with_lr_1e_3():
    """Adam's first update moves every parameter by lr * g / (|g| + eps), i.e. by lr = 1e-3."""
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO())
    step.setup(X)
    before = _values()
    step(X)
    for name, value in _values().items():
        assert (value - before[name]).abs().item() == pytest.approx(1e-3, rel=1e-3), name


def test_a_program_reading_a_param_without_an_init_value():
    """``pyro.param(name)`` with no initial value fetches a stored parameter: the step's check
    for shadowed parameters must accept it (Pyro passes no second argument then)."""

    def reading_guide(x):
        guide(x)
        pyro.param("loc")  # read back the value guide() created

    step = SVIStep(model, reading_guide, pyro.infer.Trace_ELBO(), lr=0.01)
    step.setup(X)
    before = _values()
    step(X)
    assert all(not torch.equal(v, before[k]) for k, v in _values().items())


def test_validate_runs_each_owner_module_once():
    """A module owning both model and guide (as a VAE does) is validated once per batch, and its
    error reaches the caller."""

    class Owner(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def model(self, x):
            model(x)

        def guide(self, x):
            guide(x)

        def validate(self, batch):
            self.seen.append(batch)
            if batch.abs().max() > 10:
                raise ValueError("values above 10")

    owner = Owner()
    step = SVIStep(owner.model, owner.guide, pyro.infer.Trace_ELBO())
    step.validate(X)
    assert len(owner.seen) == 1 and owner.seen[0] is X
    with pytest.raises(ValueError, match="above 10"):
        step.validate(X * 100)


def test_state_dict_skips_a_trained_parameter_removed_from_the_store():
    """The optimizer remembers every parameter it updated (and, after a resume, the restored
    states not used yet); one the user has since deleted from the param store is not part of the
    step's state and does not break saving it."""
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO(), lr=0.01)
    step(X)
    saved = step.state_dict()
    del pyro.get_param_store()["b"]
    state = step.state_dict()
    assert set(state["params"]) == set(state["constraints"]) == {"loc", "scale"}
    pyro.clear_param_store()
    resumed = SVIStep(model, guide, pyro.infer.Trace_ELBO(), lr=0.01)
    resumed.load_state_dict(saved)  # optimizer states wait for the next update
    del pyro.get_param_store()["b"]
    state = resumed.state_dict()
    assert set(state["params"]) == set(state["constraints"]) == {"loc", "scale"}


# ---------------------------------------------------------------------------- AdversarialStep


class UserGenerator(torch.nn.Module):
    """A user's generator: a Pyro program x = A z + c at site "x"."""

    data_dim = 2

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def model(self, n):
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            return pyro.deterministic("x", self.lin(z), event_dim=1)


class UserCritic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, x):
        return self.lin(x).squeeze(-1)


def _adversarial(**kwargs):
    from pyrogen.train import AdversarialStep

    torch.manual_seed(0)
    return AdversarialStep(UserGenerator(), UserCritic(), "gan", **kwargs)


def test_adversarial_step_validates_learning_rates_and_decay_length():
    for kwargs in ({"lr": 0.0}, {"critic_lr": 0.0}, {"lr": -1e-3}):
        with pytest.raises(ValueError, match="learning rate"):
            _adversarial(**kwargs)
    with pytest.raises(ValueError, match="needs total_steps >= 1"):
        _adversarial(lr_decay=0.5, total_steps=0)
    one = _adversarial(lr_decay=0.5, total_steps=1)  # a one-step run may decay too
    assert one.lr_factor(0) == 1.0  # the decay starts at step 0.5
    assert one.lr_factor(1) == 0.0


def test_no_decay_keeps_the_rate_even_past_total_steps():
    """lr_decay = 0 with total_steps given: the factor is 1 at every step, also after the planned
    end (a run extended by resuming with more steps)."""
    step = _adversarial(lr_decay=0.0, total_steps=10)
    assert [step.lr_factor(s) for s in (0, 9, 10, 25)] == [1.0] * 4
    decaying = _adversarial(lr_decay=0.5, total_steps=10)
    assert [decaying.lr_factor(s) for s in (4, 5, 6, 10, 12)] == [1.0, 1.0, 0.8, 0.0, 0.0]


def test_adversarial_validate_refuses_batches_not_shaped_n_by_data_dim():
    step = _adversarial()
    step.validate(torch.zeros(4, 2))
    for bad in (torch.zeros(4, 2, 1), torch.zeros(4, 3), torch.zeros(8)):
        with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
            step.validate(bad)
    with pytest.raises(ValueError, match="NaN or infinite"):
        step.validate(torch.tensor([[0.0, float("nan")]]))


# ---------------------------------------------------------------------------- Trainer


def test_iterate_minibatches_applies_transform_with_the_generator():
    from pyrogen.train import iterate_minibatches

    data = torch.arange(10.0)[:, None]
    seen = []

    def transform(batch, generator):
        seen.append(generator)
        return batch * 2

    g = torch.Generator().manual_seed(4)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    batches = list(iterate_minibatches(data, 4, g, transform))
    assert [len(b) for b in batches] == [4, 4, 2] and all(s is g for s in seen)
    torch.testing.assert_close(torch.cat(batches), 2 * data[order])
    assert [len(b) for b in iterate_minibatches(data, 4, g, drop_last=True)] == [4, 4]


def test_epoch_orders_differ_between_epochs_and_seeds():
    from pyrogen.train import epoch_order

    orders = {tuple(epoch_order(20, seed, e).tolist()) for seed in (0, 1) for e in range(4)}
    assert len(orders) == 8
    assert torch.equal(epoch_order(20, 3, 2), epoch_order(20, 3, 2))


def test_nonfinite_data_error_names_the_rows_of_the_data():
    from pyrogen.train import Trainer

    data = torch.zeros(6, 2)
    data[4, 1] = float("nan")
    step = SVIStep(model, guide, pyro.infer.Trace_ELBO())
    with pytest.raises(ValueError, match=r"tensor 0, rows \[4\] of 6\)"):
        Trainer(step, batch_size=6, steps=1, progress=False).fit(data)


def test_checkpoint_every_or_resume_without_a_directory_is_refused():
    from pyrogen.train import Trainer

    step = SVIStep(model, guide, pyro.infer.Trace_ELBO())
    for kwargs in ({"checkpoint_every": 5}, {"resume": True}):
        with pytest.raises(ValueError, match="need a checkpoint_dir"):
            Trainer(step, steps=1, progress=False, **kwargs)


# ---------------------------------------------------------------------------- callbacks


class _FixedLosses:
    """A training step reporting the losses 4, 2, 1, ... and a "w1" on even steps only."""

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        record = {"loss": 8.0 / 2**self.calls}
        if self.calls % 2 == 0:
            record["w1"] = float(self.calls)
        return record


def test_history_columns_csv_and_the_progress_bars_running_loss(tmp_path):
    from pyrogen.train import Trainer
    from pyrogen.train.callbacks import ProgressBar

    trainer = Trainer(_FixedLosses(), batch_size=2, steps=3, progress=True)
    history = trainer.fit(torch.zeros(4, 1))
    assert history.losses == [4.0, 2.0, 1.0] and history.column("w1") == [2.0]
    bar = next(c for c in trainer.callbacks if isinstance(c, ProgressBar))
    running = 4.0
    for loss in (2.0, 1.0):  # beta = 0.95 by default
        running = 0.95 * running + 0.05 * loss
    assert bar.running == pytest.approx(running, rel=1e-12)
    history.save(tmp_path)
    rows = (tmp_path / "history.csv").read_text().splitlines()
    assert rows == ["step,loss,w1", "1,4.0,", "2,2.0,2.0", "3,1.0,"]


# ---------------------------------------------------------------------------- checkpoints


class _Payload:
    """An arbitrary pickled object: a checkpoint holding one must not be unpickled."""


def test_a_checkpoint_with_pickled_objects_is_refused_not_unpickled(tmp_path):
    from pyrogen.train import checkpoint as ckpt

    path = tmp_path / "step-00000001.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "obj": _Payload()}, path)
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        ckpt.load_checkpoint(path)


def test_restore_from_an_empty_directory_says_false(tmp_path, capsys):
    from pyrogen.train.callbacks import TrainState
    from pyrogen.train.checkpoint import Checkpointer

    state = TrainState(total=3, num_data=4, batches_per_epoch=2, generator=torch.Generator())
    assert Checkpointer(tmp_path).restore(None, state) is False
    assert state.step == 0 and "starting from step 0" in capsys.readouterr().out


class _FakeWriter:
    """Stands in for ``torch.utils.tensorboard.SummaryWriter`` (tensorboard is optional)."""

    made: list = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        _FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def close(self):
        self.closed = True


def test_tensorboard_logs_every_reported_scalar_skips_skipped_steps_and_closes(
    tmp_path, monkeypatch
):
    import sys
    import types

    from pyrogen.train import NonFiniteError, Trainer

    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=_FakeWriter)
    )
    _FakeWriter.made.clear()

    class SkipSecond(_FixedLosses):
        def __call__(self, batch):
            if self.calls == 1:
                self.calls += 1
                raise NonFiniteError("the loss is nan")
            return super().__call__(batch)

    Trainer(
        SkipSecond(),
        batch_size=2,
        steps=3,
        progress=False,
        nonfinite="skip",
        tensorboard=tmp_path / "tb",
    ).fit(torch.zeros(4, 1))
    (writer,) = _FakeWriter.made
    assert writer.log_dir == str(tmp_path / "tb") and writer.closed
    assert writer.scalars == [("train/loss", 4.0, 1), ("train/loss", 1.0, 3)]
