"""The callback protocol: hooks in order, stop requests, stateful callbacks, errors, signals."""

import os
import signal

import pytest
import torch

from pyrogen.train import (
    Callback,
    NonFiniteError,
    Trainer,
    TrainingInterrupted,
)
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint

X = torch.arange(10.0).unsqueeze(1)  # batch 4: batches of 4, 4, 2 rows per epoch


class Sum:
    """A step without Pyro: reports the batch's sum; fails (NonFiniteError) on call ``fail_at``."""

    def __init__(self, fail_at=None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise NonFiniteError("the loss is nan")
        return {"loss": float(batch.sum())}

    def state_dict(self):
        return {"calls": torch.tensor(self.calls)}

    def load_state_dict(self, state):
        self.calls = int(state["calls"])


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, trainer, state):
        self.events.append(("begin", state.step, state.total))

    def on_step_end(self, trainer, state, record):
        self.events.append(("step", state.step, state.epoch, record and record["loss"]))

    def on_train_end(self, trainer, state):
        self.events.append(("end", state.step, type(state.error).__name__))


def test_hooks_run_in_order_with_the_state_and_each_record():
    recorder = Recorder()
    history = Trainer(Sum(), batch_size=4, epochs=2, progress=False, callbacks=[recorder]).fit(X)
    assert recorder.events[0] == ("begin", 0, 6) and recorder.events[-1] == ("end", 6, "NoneType")
    steps = recorder.events[1:-1]
    assert [e[1] for e in steps] == [1, 2, 3, 4, 5, 6]
    assert [e[2] for e in steps] == [0, 0, 1, 1, 1, 2]  # completed epochs after each step
    assert [e[3] for e in steps] == history.losses and sum(history.losses) == 2 * X.sum()


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, state, record):
        if state.step == self.step:
            state.request_stop(f"reached step {self.step}")


def test_a_stop_request_ends_training_with_a_final_checkpoint(tmp_path):
    trainer = Trainer(
        Sum(),
        batch_size=4,
        steps=100,
        progress=False,
        checkpoint_dir=tmp_path,
        callbacks=[StopAt(3)],
    )
    history = trainer.fit(X)
    assert len(history) == 3 and trainer.last_checkpoint.name == "step-00000003.pt"
    assert load_checkpoint(trainer.last_checkpoint)["step_state"]["calls"] == 3


class Counter(Callback):
    """A stateful callback: counts the steps it saw; its count is saved and restored."""

    def __init__(self):
        self.count = 0

    def on_step_end(self, trainer, state, record):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_callback_state_is_saved_and_restored(tmp_path):
    def run(steps, callbacks, resume=False):
        trainer = Trainer(
            Sum(),
            batch_size=4,
            steps=steps,
            progress=False,
            checkpoint_dir=tmp_path,
            resume=resume,
            callbacks=callbacks,
        )
        return trainer.fit(X)

    run(4, [Counter()])
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["callbacks"] == {"Counter": {"count": 4}}
    counter = Counter()
    run(7, [counter], resume=True)
    assert counter.count == 7
    with pytest.raises(ValueError, match="no state of the callback Counter#2"):
        run(9, [Counter(), Counter()], resume=True)


def test_on_train_end_sees_the_error_and_no_final_checkpoint_is_written(tmp_path):
    recorder = Recorder()
    trainer = Trainer(
        Sum(fail_at=3),
        batch_size=4,
        steps=5,
        progress=False,
        checkpoint_dir=tmp_path,
        checkpoint_every=1,
        callbacks=[recorder],
    )
    with pytest.raises(NonFiniteError, match="Step 3: the loss is nan.*step-00000002.pt"):
        trainer.fit(X)
    assert recorder.events[-1] == ("end", 2, "NonFiniteError")
    assert list_checkpoints(tmp_path)[-1].name == "step-00000002.pt"


def test_skipped_steps_reach_callbacks_as_none():
    recorder = Recorder()
    trainer = Trainer(
        Sum(fail_at=2),
        batch_size=4,
        steps=3,
        progress=False,
        nonfinite="skip",
        callbacks=[recorder],
    )
    history = trainer.fit(X)
    assert [e[3] for e in recorder.events[1:-1]] == [history.losses[0], None, history.losses[1]]
    assert history.skipped == 1


class SendSignal(Callback):
    def on_step_end(self, trainer, state, record):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_checkpoints_then_raises_and_restores_the_handlers(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    trainer = Trainer(
        Sum(),
        batch_size=4,
        steps=50,
        progress=False,
        checkpoint_dir=tmp_path,
        callbacks=[SendSignal()],
    )
    with pytest.raises(TrainingInterrupted, match="Interrupted by SIGTERM at step 2/50") as err:
        trainer.fit(X)
    assert err.value.step == 2 and err.value.path == list_checkpoints(tmp_path)[-1]
    assert load_checkpoint(err.value.path)["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_object_without_the_hooks_is_refused():
    class OnlyStepEnd:
        def on_step_end(self, trainer, state, record):
            pass

    with pytest.raises(TypeError, match=r"OnlyStepEnd lacks \['on_train_begin', 'on_train_end'\]"):
        Trainer(Sum(), steps=1, callbacks=[OnlyStepEnd()])
