"""Using a finished run without retraining: pyrogen.load_run, pyrogen sample / evaluate /
compare give what the run itself computed (same seed)."""

import json

import numpy as np
import pytest
import torch

import pyrogen
from pyrogen.cli import main
from pyrogen.models import CVAE, VAE, Generator

TINY_VAE = ["--hidden", "16", "--latent-dim", "2", "--num-is-samples", "20", "--no-progress"]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "vae"
    assert main(["vae", "--data", "digits", "--epochs", "2", *TINY_VAE, "--out", str(out)]) == 0
    return out


def test_load_run_rebuilds_the_model_and_evaluate_repeats_the_runs_metrics(vae_run, capsys):
    run = pyrogen.load_run(vae_run)
    assert isinstance(run.model, VAE) and run.command == "vae" and not run.model.training
    saved = torch.load(vae_run / "model.pt", weights_only=True)
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in saved.items())
    capsys.readouterr()
    assert main(["evaluate", str(vae_run), "--json", str(vae_run.parent / "ev.json")]) == 0
    again = json.loads((vae_run.parent / "ev.json").read_text())
    # the same K particles drawn from the same seed: the run's own numbers, exactly
    assert again["test_elbo"] == run.metrics["test_elbo"]
    assert again["test_log_likelihood"] == run.metrics["test_log_likelihood"]
    assert main(["evaluate", str(vae_run), "--num-is-samples", "40", "--seed", "3"]) == 0
    line = capsys.readouterr().out
    other = float(line.split("test_elbo=")[1].split(",")[0])
    assert other != run.metrics["test_elbo"] and abs(other - run.metrics["test_elbo"]) < 1.0


def test_sample_writes_a_grid_and_the_arrays_load_run_draws(vae_run, tmp_path):
    grid, npy = tmp_path / "grid.png", tmp_path / "s.npy"
    argv = ["sample", str(vae_run), "--num-samples", "9", "--out", str(grid), "--npy", str(npy)]
    assert main([*argv, "--seed", "4"]) == 0
    assert grid.stat().st_size > 1000
    drawn = pyrogen.load_run(vae_run).sample(9, seed=4)
    np.testing.assert_array_equal(np.load(npy), drawn.numpy())
    assert drawn.shape == (9, 64) and 0 <= drawn.min() and drawn.max() <= 1


def test_gan_run_samples_are_the_runs_own(tmp_path):
    out = tmp_path / "gan"
    argv = ["gan", "--data", "ring8", "--steps", "20", "--hidden", "16", "--num-samples", "300"]
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    run = pyrogen.load_run(out)
    assert isinstance(run.model, Generator)
    state = torch.load(out / "model.pt", weights_only=True)
    expected = state.get("generator_ema") or state["generator"]  # the EMA when it was kept
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in expected.items())
    np.testing.assert_array_equal(np.load(out / "samples.npy"), run.sample(300, seed=0).numpy())


def test_conditional_runs_sample_the_requested_class(tmp_path):
    out = tmp_path / "cvae"
    argv = ["vae", "--data", "digits", "--epochs", "1", "--conditional", *TINY_VAE]
    assert main([*argv, "--out", str(out)]) == 0
    run = pyrogen.load_run(out)
    assert isinstance(run.model, CVAE) and run.num_classes == 10
    torch.testing.assert_close(
        run.sample(4, labels=3, seed=1),
        run.model.sample(y=torch.full((4,), 3), generator=torch.Generator().manual_seed(1)),
    )
    with pytest.raises(ValueError, match=r"labels in \[0, 10\)"):
        run.sample(4, labels=12)


def test_compare_prints_a_table_and_overlays_losses(vae_run, tmp_path, capsys):
    other = tmp_path / "vae2"
    assert main(["vae", "--data", "digits", "--epochs", "1", *TINY_VAE, "--out", str(other)]) == 0
    capsys.readouterr()
    figure = tmp_path / "losses.png"
    assert main(["compare", str(vae_run), str(other), "--out", str(figure)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("test_elbo"))
    assert f"{json.loads((other / 'metrics.json').read_text())['test_elbo']:.4g}" in row
    assert figure.stat().st_size > 1000


def test_runs_it_cannot_use_are_refused_in_one_line(vae_run, tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--out", str(tmp_path / "g.png")]) == 2
    assert "no config.json" in capsys.readouterr().err
    broken = tmp_path / "future"
    broken.mkdir()
    config = json.loads((vae_run / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    (broken / "model.pt").write_bytes((vae_run / "model.pt").read_bytes())
    assert main(["evaluate", str(broken)]) == 2
    assert "format version 99" in capsys.readouterr().err
    (broken / "config.json").write_text(
        json.dumps({**config, "model": {**config["model"], "latent_dim": 3}})
    )
    with pytest.raises(ValueError, match="does not fit the model"):
        pyrogen.load_run(broken)


def test_a_conv_gan_run_reloads_and_evaluate_repeats_its_metrics(tmp_path):
    out = tmp_path / "dcgan"
    argv = ["gan", "--data", "digits", "--steps", "3", "--num-samples", "60", "--no-progress"]
    assert main([*argv, "--base-channels", "4", "--out", str(out)]) == 0
    run = pyrogen.load_run(out)
    np.testing.assert_array_equal(np.load(out / "samples.npy"), run.sample(60, seed=0).numpy())
    assert main(["evaluate", str(out), "--json", str(tmp_path / "ev.json")]) == 0
    again = json.loads((tmp_path / "ev.json").read_text())
    assert again["frechet_classifier_distance"] == run.metrics["frechet_classifier_distance"]


def test_gan_refuses_zero_sizes_instead_of_using_defaults(tmp_path, capsys):
    for flag in ("--latent-dim", "--pack"):
        out = tmp_path / flag.strip("-")
        assert main(["gan", "--data", "ring8", flag, "0", "--out", str(out)]) == 2
        assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err and not out.exists()
