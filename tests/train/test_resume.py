"""Resume is bit-identical: N steps + resume to 2N == 2N steps straight (CPU, same seed)."""

import pyro
import pytest
import torch

from pyrogen.cli import main
from pyrogen.data.dataset import binarize_dynamic
from pyrogen.models import VAE
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import AdversarialStep, SVIStep, Trainer
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint

DATA = torch.rand(40, 6)  # 40 rows, batch 16: 3 batches per epoch, so step 5 is mid-epoch


def _vae_run(steps, ckpt_dir=None, resume=False, every=None):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(6, 2, (8,), num_data=len(DATA))
    step = SVIStep(vae.model, vae.guide, lr=1e-2)
    trainer = Trainer(
        step,
        batch_size=16,
        steps=steps,
        seed=3,
        transform=binarize_dynamic,
        progress=False,
        checkpoint_dir=ckpt_dir,
        checkpoint_every=every,
        resume=resume,
    )
    return vae, trainer.fit(DATA)


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_svi_resume_mid_epoch_is_bit_identical(tmp_path):
    straight, full = _vae_run(10)
    _vae_run(5, tmp_path)  # "interrupted" after 5 steps (mid-epoch 2)
    resumed, history = _vae_run(10, tmp_path, resume=True)
    _assert_same_state(straight.state_dict(), resumed.state_dict())
    assert history.losses == full.losses and len(history) == 10


def test_resume_runs_to_the_requested_total_not_more(tmp_path):
    _vae_run(6, tmp_path, every=2)
    _, history = _vae_run(6, tmp_path, resume=True)
    assert len(history) == 6  # nothing left to do
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 6


def test_resume_without_checkpoint_starts_fresh(tmp_path, capsys):
    _, history = _vae_run(3, tmp_path / "empty", resume=True)
    assert len(history) == 3 and "starting from step 0" in capsys.readouterr().out


def test_resume_with_other_settings_is_refused(tmp_path):
    _vae_run(2, tmp_path)
    vae = VAE(6, 2, (8,), num_data=len(DATA))
    step = SVIStep(vae.model, vae.guide, lr=1e-2)
    trainer = Trainer(step, batch_size=8, steps=4, seed=3, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="batch_size=16, this run has batch_size=8"):
        trainer.fit(DATA)


def _gan_run(steps, ckpt_dir=None, resume=False, **kwargs):
    torch.manual_seed(0)
    gen, critic = Generator(2, 2, (8,)), Critic(2, (8,))
    step = AdversarialStep(gen, critic, "wgan-gp", critic_steps=2, **kwargs)
    trainer = Trainer(
        step,
        batch_size=8,
        steps=steps,
        seed=1,
        progress=False,
        checkpoint_dir=ckpt_dir,
        resume=resume,
    )
    history = trainer.fit(torch.randn(20, 2))
    state = {**gen.state_dict(), **{f"c.{k}": v for k, v in critic.state_dict().items()}}
    if step.ema_generator is not None:
        state.update({f"ema.{k}": v for k, v in step.ema_generator.state_dict().items()})
    return state, history


def test_adversarial_resume_is_bit_identical(tmp_path):
    straight, full = _gan_run(6)
    _gan_run(3, tmp_path)
    resumed, history = _gan_run(6, tmp_path, resume=True)
    _assert_same_state(straight, resumed)
    assert history.column("w1") == full.column("w1")


def test_adversarial_resume_with_ema_and_lr_decay_is_bit_identical(tmp_path):
    options = {"ema": 0.9, "lr_decay": 0.5, "total_steps": 6}
    straight, full = _gan_run(6, **options)
    _gan_run(3, tmp_path, **options)
    resumed, history = _gan_run(6, tmp_path, resume=True, **options)
    assert any(k.startswith("ema.") for k in resumed)
    _assert_same_state(straight, resumed)
    assert history.column("w1") == full.column("w1")


TINY = ["--hidden", "8", "--latent-dim", "2", "--num-is-samples", "2", "--no-progress"]


def test_cli_resume_gives_the_same_model_file(tmp_path):
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    assert main(["vae", "--out", str(straight), "--epochs", "2", *TINY]) == 0
    first = ["--epochs", "1", "--checkpoint-every", "5"]
    assert main(["vae", "--out", str(parts), *first, *TINY]) == 0
    assert (parts / "checkpoints" / "history.csv").is_file()
    assert main(["vae", "--out", str(parts), "--epochs", "2", "--resume", *TINY]) == 0
    assert (straight / "model.pt").read_bytes() == (parts / "model.pt").read_bytes()
