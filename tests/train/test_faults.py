"""Faults never cost a run: NaN/Inf stops with names, bad data is refused, signals checkpoint."""

import os
import signal
import subprocess
import sys
import time

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyrogen.models import VAE
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import AdversarialStep, NonFiniteError, SVIStep, Trainer
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint, load_latest
from pyrogen.train.trainer import _check_finite, _Data

X = torch.randn(32, 1)  # 32 scalar examples (rows)


def _regression(bad_loss_at=None, bad_grad_at=None, once=False):
    calls = {"n": 0}

    def model(x):
        calls["n"] += 1  # the model runs once per SVI step (guide is empty)
        loc = pyro.param("loc", torch.tensor(0.0))
        if calls["n"] == bad_grad_at:
            loc = loc + torch.sqrt(0.0 * loc)  # value finite, d/dloc = 0 * inf = NaN
        bad = bad_loss_at is not None and (
            calls["n"] == bad_loss_at if once else calls["n"] >= bad_loss_at
        )
        scale = torch.tensor(float("nan") if bad else 1.0)
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(loc, scale), obs=x.squeeze(-1))

    return SVIStep(model, lambda x: None, lr=0.1)


def test_nan_loss_names_step_and_site_and_keeps_the_last_checkpoint(tmp_path):
    # setup runs the model twice (the programs, then the loss once), so call 6 is step 4
    trainer = Trainer(
        _regression(bad_loss_at=6),
        batch_size=32,
        steps=10,
        progress=False,
        checkpoint_dir=tmp_path,
        checkpoint_every=1,
    )
    with pytest.raises(
        NonFiniteError,
        match=r"Step 4: a distribution got invalid .*; non-finite: model site 'obs'",
    ) as err:
        trainer.fit(X)
    assert "step-00000003.pt" in str(err.value)
    path, state = load_latest(tmp_path)
    assert state["step"] == 3 and torch.isfinite(state["step_state"]["params"]["loc"])
    assert [p.name for p in list_checkpoints(tmp_path)][-1] == path.name


def test_nan_gradient_names_the_parameter_and_changes_nothing():
    step = _regression(bad_grad_at=4)  # step 2 (setup runs the model twice)
    trainer = Trainer(step, batch_size=32, steps=5, progress=False)
    with pytest.raises(
        NonFiniteError, match=r"Step 2: non-finite gradient of parameter\(s\) \['loc'\]"
    ):
        trainer.fit(X)
    assert torch.isfinite(pyro.param("loc"))


def test_skip_mode_drops_and_counts_bad_batches():
    trainer = Trainer(
        _regression(bad_loss_at=4, once=True),
        batch_size=32,
        steps=6,
        progress=False,
        nonfinite="skip",
    )
    history = trainer.fit(X)
    assert history.skipped == 1 and len(history) == 5
    assert torch.isfinite(pyro.param("loc")) and pyro.param("loc").item() != 0.0


def _vae_trainer(data_dim=6, **kwargs):
    vae = VAE(data_dim, 2, (8,))
    return Trainer(SVIStep(vae.model, vae.guide), batch_size=8, steps=1, progress=False, **kwargs)


@pytest.mark.parametrize(
    "data, message",
    [
        (torch.rand(16, 5).round(), "expects examples with 6 features"),
        (torch.rand(16, 6) * 255, r"needs data in \[0, 1\].*divide by 255"),
        (torch.full((16, 6), float("nan")), "NaN or infinite values"),
    ],
)
def test_bad_data_is_refused_before_training(data, message):
    with pytest.raises(ValueError, match=message):
        _vae_trainer().fit(data)


def test_bad_data_for_a_gan_is_refused():
    step = AdversarialStep(Generator(2, 3, (8,)), Critic(3, (8,)), "wgan-gp")
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        Trainer(step, batch_size=4, steps=1, progress=False).fit(torch.randn(10, 2))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_writes_a_final_checkpoint_and_exits_cleanly(tmp_path, signum):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "pyrogen",
        "vae",
        "--out",
        str(out),
        "--epochs",
        "10000",
        "--hidden",
        "8",
        "--latent-dim",
        "2",
        "--no-progress",
        "--checkpoint-every",
        "20",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.time() + 60
        while not list_checkpoints(out / "checkpoints") and time.time() < deadline:
            time.sleep(0.05)
        assert list_checkpoints(out / "checkpoints"), "no periodic checkpoint within 60 s"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"Interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    newest = list_checkpoints(out / "checkpoints")[-1]
    state = load_checkpoint(newest)
    assert state["step"] >= 20 and len(state["history"]) == state["step"]
    assert state["config"]["command"] == "vae"
    assert (out / "checkpoints" / "history.csv").read_text().count("\n") == state["step"] + 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_one_non_finite_entry_is_found_and_named_by_row(bad):
    data = torch.rand(16, 6)
    data[11, 3] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite values \(tensor 0, rows \[11\]"):
        _check_finite(_Data((data,)))


def test_finite_data_whose_sum_overflows_are_accepted():
    """The check sums each tensor first (one read); a sum that overflows sends it to the exact
    check, which accepts finite entries."""
    _check_finite(_Data((torch.full((16, 6), 3e38),)))
