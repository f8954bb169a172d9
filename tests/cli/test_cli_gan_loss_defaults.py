"""Per-loss image defaults of ``pyrogen gan`` (IMAGE_LOSS_DEFAULTS): applied when no flag is
given, a flag always wins, and config.json records what ran."""

import argparse
from dataclasses import replace

import pytest
import torch

from pyrogen.cli import gan
from pyrogen.train import presets


def _build(argv, tmp_path):
    parser = argparse.ArgumentParser()
    gan.add_arguments(parser)
    args = parser.parse_args([*argv, "--out", str(tmp_path / "run"), "--no-progress"])
    return gan._build(args)


def _spectral(critic: torch.nn.Module) -> bool:
    return any("parametrizations" in name for name, _ in critic.named_parameters())


@pytest.mark.parametrize(
    "loss, k, lr, betas, sn",
    [
        ("nsgan", 1, 2e-4, (0.5, 0.999), False),
        ("hinge", 2, 2e-4, (0.0, 0.9), True),
        ("wgan-gp", 5, 1e-4, (0.0, 0.9), False),
    ],
)
def test_image_loss_defaults_apply_without_flags(tmp_path, loss, k, lr, betas, sn):
    r = _build(["--data", "digits", "--loss", loss, "--base-channels", "4"], tmp_path)
    assert r.step.critic_steps == k and r.step.betas == betas and _spectral(r.step.critic) is sn
    assert r.step.generator_optim.defaults["lr"] == lr == r.step.critic_optim.defaults["lr"]
    assert r.step.critic_optim.defaults["betas"] == betas
    model = r.config["model"]
    assert model["critic_steps"] == k and model["betas"] == list(betas)
    assert r.config["spectral_norm"] is sn  # the effective k is model.critic_steps
    assert not (tmp_path / "run").exists()  # _build touches no directory


def test_flags_win_over_image_loss_defaults(tmp_path):
    argv = ["--data", "digits", "--loss", "hinge", "--base-channels", "4"]
    flags = ["--critic-steps", "1", "--no-spectral-norm", "--critic-lr", "4e-4"]
    r = _build([*argv, *flags], tmp_path)
    assert r.step.critic_steps == 1 and not _spectral(r.step.critic)
    assert r.step.critic_optim.defaults["lr"] == 4e-4 and r.step.betas == (0.0, 0.9)
    assert r.config["model"]["critic_lr"] == 4e-4


def test_image_loss_defaults_stay_off_toy_data_and_mlp(tmp_path):
    r = _build(["--data", "ring8", "--loss", "hinge", "--hidden", "8"], tmp_path)
    assert r.step.critic_steps == 1 and r.step.betas == (0.5, 0.999)  # the paper's, as before
    r = _build(["--data", "digits", "--loss", "hinge", "--arch", "mlp", "--hidden", "8"], tmp_path)
    assert not _spectral(r.step.critic) and "spectral_norm" not in r.config


def test_image_defaults_of_another_loss_drop_the_default_loss_optimizer(monkeypatch):
    tuned = replace(presets.IMAGE_DEFAULTS, lr=5e-4, betas=(0.2, 0.99))
    monkeypatch.setattr(presets, "IMAGE_DEFAULTS", tuned)
    assert presets.image_defaults(tuned.loss) == tuned  # the default loss keeps its own
    hinge = presets.image_defaults("hinge")
    assert hinge.loss == "hinge" and hinge.lr is None and hinge.betas == (0.0, 0.9)
    assert hinge.critic_steps == 2 and hinge.spectral_norm
    gp = presets.image_defaults("wgan-gp")
    assert (gp.lr, gp.betas, gp.critic_steps) == (None, None, None)  # WGAN-GP's paper values
    assert presets.image_defaults("wgan") == replace(tuned, loss="wgan", lr=None, betas=None)
