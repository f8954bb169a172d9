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
        "--arch",
        "mlp",
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


def test_gan_conditional_digits(tmp_path, monkeypatch):
    from pyrogen.cli import gan as gan_cli
    from pyrogen.evaluate.fid import train_feature_classifier

    grids = []
    image_grid = gan_cli.plot.image_grid

    def record(images, shape, path=None, ncol=10, title=None, row_labels=None):
        grids.append((np.asarray(images), ncol, row_labels))
        return image_grid(images, shape, path, ncol, title, row_labels)

    monkeypatch.setattr(gan_cli.plot, "image_grid", record)
    out = tmp_path / "cgan"
    argv = ["gan", "--data", "digits", "--conditional", "--steps", "5", "--arch", "mlp"]
    argv += ["--hidden", "32"]
    argv += ["--num-samples", "250", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    samples, metrics = _check_outputs(out, 250, 64)
    labels = np.load(out / "sample_labels.npy")
    np.testing.assert_array_equal(labels, np.arange(250) % 10)  # labels cycle over the classes
    # samples.png: one row per class, labelled 0..9, row c = the first ten samples of class c
    ((images, ncol, row_labels),) = grids
    assert ncol == 10 and list(row_labels) == list(range(10)) and images.shape == (100, 64)
    for c in range(10):
        np.testing.assert_array_equal(images[10 * c : 10 * c + 10], samples[labels == c][:10])
    # class_accuracy: the feature classifier's verdict on the samples against their labels
    data = load_dataset("digits")
    clf = train_feature_classifier(data, seed=0)
    with torch.no_grad():
        hit = (clf(torch.as_tensor(samples)).argmax(-1).numpy() == labels).astype(float)
    assert metrics["class_accuracy"] == pytest.approx(hit.mean())
    per_class = [hit[labels == c].mean() for c in range(10)]
    assert metrics["class_accuracy_per_class"] == pytest.approx(per_class)
    config = json.loads((out / "config.json").read_text())
    assert config["conditional"] is True and config["model"]["num_classes"] == 10
    state = torch.load(out / "model.pt", weights_only=True)
    pack = config["model"]["pack"]  # the critic sees y one-hot next to each packed example
    assert state["critic"]["net.0.weight"].shape[1] == (64 + 10) * pack


def test_gan_conditional_refuses_unlabelled_data(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["gan", "--data", "ring8", "--conditional", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--conditional needs class labels" in err and "'ring8'" in err
    assert not out.exists()  # refused before writing anything
    path = tmp_path / "points.npy"
    np.save(path, np.zeros((50, 2), np.float32))
    assert main(["gan", "--data", str(path), "--conditional", "--out", str(out)]) == 2
    assert "--conditional needs class labels" in capsys.readouterr().err and not out.exists()
    argv = ["gan", "--data", "digits", "--conditional", "--num-samples", "5", "--out", str(out)]
    assert main(argv) == 2
    assert "fewer than the 10 classes" in capsys.readouterr().err and not out.exists()


def test_gan_unconditional_config_has_no_conditional_keys(tmp_path):
    out = tmp_path / "plain"
    argv = ["gan", "--data", "digits", "--arch", "mlp", "--steps", "2", "--hidden", "8"]
    argv += ["--num-samples", "100"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "conditional" not in config and "num_classes" not in config["model"]
    assert not (out / "sample_labels.npy").exists()
    assert "class_accuracy" not in json.loads((out / "metrics.json").read_text())


def test_gan_help_explains_conditional(capsys):
    with pytest.raises(SystemExit):
        main(["gan", "--help"])
    assert "--conditional" in capsys.readouterr().out


def test_gan_projection_critic(tmp_path, capsys):
    out = tmp_path / "proj"
    base = ["gan", "--data", "digits", "--arch", "mlp", "--steps", "3", "--hidden", "16"]
    base += ["--num-samples", "20"]
    assert main([*base, "--critic", "projection", "--out", str(out)]) == 2
    assert "add --conditional" in capsys.readouterr().err and not out.exists()
    argv = [*base, "--conditional", "--critic", "projection", "--pack", "2", "--out", str(out)]
    assert main(argv) == 2
    assert "drop --pack 2" in capsys.readouterr().err and not out.exists()
    argv = [*base, "--conditional", "--critic", "projection", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["critic"] == "projection" and config["model"]["pack"] == 1
    state = torch.load(out / "model.pt", weights_only=True)
    assert "embed.weight" in state["critic"]  # the projection's label embedding was trained


def test_gan_arch_conv_refused_on_toy_data_and_with_mlp_options(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["gan", "--data", "ring8", "--arch", "conv", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--arch conv needs image data" in err and "'ring8'" in err and not out.exists()
    base = ["gan", "--data", "digits", "--steps", "2", "--out", str(out)]
    assert main([*base, "--hidden", "8"]) == 2  # conv is the image default: --hidden is MLP-only
    assert "--hidden sets the MLP sizes" in capsys.readouterr().err
    assert main([*base, "--pack", "2"]) == 2
    assert "packing is an option of the MLP critic" in capsys.readouterr().err
    assert main([*base, "--arch", "mlp", "--spectral-norm"]) == 2
    assert "add --arch conv" in capsys.readouterr().err and not out.exists()


def test_gan_conv_digits_default_arch_and_image_metrics(tmp_path):
    """No --arch on images: the DCGAN networks, and metrics.json holds coverage/precision/recall
    computed as pyrogen.evaluate does on the written samples."""
    from pyrogen.evaluate.coverage import class_coverage
    from pyrogen.evaluate.fid import train_feature_classifier
    from pyrogen.evaluate.precision_recall import classifier_precision_recall

    out = tmp_path / "conv"
    argv = ["gan", "--data", "digits", "--steps", "3", "--base-channels", "4", "--no-progress"]
    assert main([*argv, "--spectral-norm", "--num-samples", "300", "--out", str(out)]) == 0
    samples, metrics = _check_outputs(out, 300, 64)
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "conv" and config["spectral_norm"] is True
    assert config["model"]["base_channels"] == 4 and config["model"]["pack"] == 1
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["critic"]["net.0.parametrizations.weight.original"].shape == (4, 1, 4, 4)
    data = load_dataset("digits")
    clf = train_feature_classifier(data, seed=0)
    cov = class_coverage(torch.as_tensor(samples), clf, real_labels=data.train_y)
    assert metrics["class_histogram"] == pytest.approx(cov["histogram"])
    assert metrics["class_kl"] == pytest.approx(cov["kl"])
    assert metrics["classes_in_band"] == round(cov["in_band"] * cov["num_classes"])
    assert metrics["classes_covered"] == cov["covered"]
    pr = classifier_precision_recall(torch.as_tensor(samples), data.test_x[:300], clf)
    assert metrics["precision"] == pytest.approx(pr["precision"])
    assert metrics["recall"] == pytest.approx(pr["recall"])


def test_gan_conv_conditional_digits(tmp_path):
    out = tmp_path / "cconv"
    argv = ["gan", "--data", "digits", "--conditional", "--steps", "2", "--base-channels", "4"]
    assert main([*argv, "--num-samples", "50", "--no-progress", "--out", str(out)]) == 0
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["critic"]["net.0.weight"].shape == (4, 1 + 10, 4, 4)  # image + 10 label maps
    assert "class_accuracy" in json.loads((out / "metrics.json").read_text())
