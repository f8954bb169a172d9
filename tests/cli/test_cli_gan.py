import json

import numpy as np
import pytest
import torch

from pyrogen.cli import main
from pyrogen.data import load_dataset
from pyrogen.evaluate import mode_coverage


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_outputs(out, rows, dim):
    for name in (
        "samples.png",
        "loss.png",
        "model.pt",
        "samples.npy",
        "metrics.json",
        "config.json",
    ):
        assert (out / name).is_file(), name
    samples = np.load(out / "samples.npy")
    assert samples.shape == (rows, dim) and samples.dtype == np.float32
    state = torch.load(out / "model.pt", weights_only=True)
    assert {"generator", "critic", "generator_optim", "critic_optim"} <= set(state)
    return samples, json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_gan_ring8_tiny(tmp_path, loss):
    out = tmp_path / "run"
    argv = [
        "gan",
        "--data",
        "ring8",
        "--loss",
        loss,
        "--steps",
        "20",
        "--critic-steps",
        "2",
        "--hidden",
        "16",
        "16",
        "--batch-size",
        "64",
        "--num-samples",
        "2500",
        "--out",
        str(out),
        "--seed",
        "3",
        "--no-progress",
    ]
    assert main(argv) == 0
    samples, metrics = _check_outputs(out, 2500, 2)
    data = load_dataset("ring8")
    expected = mode_coverage(samples, data.centers, data.sigma)
    assert metrics["modes"] == expected["modes"]
    assert metrics["high_quality"] == pytest.approx(expected["high_quality"])
    assert 0.0 <= metrics["high_quality"] <= 1.0
    assert "reverse_kl" in metrics and metrics["steps"] == 20
    config = json.loads((out / "config.json").read_text())
    assert config["loss"] == loss and config["model"]["critic_steps"] == 2


def test_gan_digits_tiny(tmp_path):
    out = tmp_path / "digits"
    argv = [
        "gan",
        "--data",
        "digits",
        "--steps",
        "5",
        "--hidden",
        "32",
        "--out",
        str(out),
        "--num-samples",
        "2500",
        "--no-progress",
    ]
    assert main(argv) == 0
    samples, metrics = _check_outputs(out, 2500, 64)
    assert ((samples >= 0) & (samples <= 1)).all()
    # an untrained generator is far from the data; two halves of the test set are close
    assert (
        metrics["frechet_classifier_distance"] > metrics["frechet_classifier_distance_test_halves"]
    )


def test_gan_npy_points(tmp_path):
    path = tmp_path / "points.npy"
    np.save(path, np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32))
    out = tmp_path / "npy"
    assert (
        main(
            [
                "gan",
                "--data",
                str(path),
                "--steps",
                "3",
                "--hidden",
                "8",
                "--out",
                str(out),
                "--num-samples",
                "2500",
                "--no-progress",
            ]
        )
        == 0
    )
    _, metrics = _check_outputs(out, 2500, 3)
    assert metrics["sliced_wasserstein_to_test"] > 0


def test_gan_bad_input(tmp_path, capsys):
    assert main(["gan", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "Unknown data set" in capsys.readouterr().err
    assert main(["gan", "--steps", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gan", "--loss", "lsgan"])


def test_gan_resume_continues_to_requested_steps(tmp_path):
    out = tmp_path / "resume"
    base = [
        "gan",
        "--data",
        "ring8",
        "--loss",
        "wgan",
        "--hidden",
        "8",
        "--batch-size",
        "32",
        "--num-samples",
        "2500",
        "--out",
        str(out),
        "--no-progress",
        "--checkpoint-every",
        "3",
    ]
    assert main([*base, "--steps", "6"]) == 0
    first = torch.load(out / "model.pt", weights_only=True)
    assert first["num_steps"] == 6
    assert main([*base, "--steps", "9", "--resume"]) == 0
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["num_steps"] == 9
    assert json.loads((out / "metrics.json").read_text())["steps"] == 9
    for p in state["critic"].values():  # WGAN clipping survived the resume
        assert p.abs().max() <= 0.01 + 1e-12
