"""``pyrogen vae --arch conv``: the convolutional VAE's run is written, reloaded and resumed like
the MLP's."""

import json

import pytest
import torch

import pyrogen
from pyrogen.cli import main
from pyrogen.models import VAE
from pyrogen.nn.conv import ConvDecoder, ConvEncoder

TINY = ["--hidden", "16", "--latent-dim", "2", "--num-is-samples", "5", "--no-progress"]
CONV = ["--arch", "conv", "--base-channels", "4"]


def _one_line_error(capsys, result) -> str:
    err = capsys.readouterr().err
    assert result == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("pyrogen vae: warning")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "conv"
    argv = ["vae", "--data", "digits", "--epochs", "1", *TINY, *CONV, "--out", str(out)]
    assert main(argv) == 0
    return out


def test_conv_run_records_its_arch_and_load_run_rebuilds_it(conv_run, capsys):
    config = json.loads((conv_run / "config.json").read_text())
    assert config["arch"] == "conv" and config["base_channels"] == 4
    assert config["model"]["arch"] == "conv" and config["model"]["image_shape"] == [8, 8]
    run = pyrogen.load_run(conv_run)
    assert isinstance(run.model.encoder, ConvEncoder)
    assert isinstance(run.model.decoder, ConvDecoder)
    saved = torch.load(conv_run / "model.pt", weights_only=True)
    assert all(torch.equal(v, run.model.state_dict()[k]) for k, v in saved.items())
    # samples: the decoder means of the same prior draws as a VAE rebuilt by hand
    by_hand = VAE(**config["model"])
    by_hand.load_state_dict(saved)
    expected = by_hand.sample(9, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(run.sample(9, seed=4), expected, rtol=0, atol=0)
    # pyrogen evaluate draws the run's own particles: its metrics, exactly
    capsys.readouterr()
    assert main(["evaluate", str(conv_run), "--json", str(conv_run.parent / "ev.json")]) == 0
    again = json.loads((conv_run.parent / "ev.json").read_text())
    assert again["test_elbo"] == run.metrics["test_elbo"]
    assert again["test_log_likelihood"] == run.metrics["test_log_likelihood"]
    assert -64 * 2 < run.metrics["test_elbo"] < 0


def test_resume_with_another_arch_is_refused(conv_run, tmp_path, capsys):
    before = (conv_run / "config.json").read_bytes()
    resume = ["vae", "--data", "digits", "--epochs", "2", "--resume", *TINY]
    capsys.readouterr()
    line = _one_line_error(capsys, main([*resume, "--out", str(conv_run)]))
    assert "arch=conv, this run has arch=<unset>" in line
    assert (conv_run / "config.json").read_bytes() == before
    mlp = tmp_path / "mlp"
    argv = ["vae", "--data", "digits", "--epochs", "1", *TINY, "--out", str(mlp)]
    assert main(argv) == 0
    assert "arch" not in json.loads((mlp / "config.json").read_text())  # as before --arch
    capsys.readouterr()
    line = _one_line_error(capsys, main([*resume, *CONV, "--out", str(mlp)]))
    assert "arch=<unset>, this run has arch=conv" in line


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--arch", "conv", "--conditional"], "--arch conv is for the plain VAE; --conditional"),
        (["--arch", "conv", "--model", "vae-gan"], "--model vae-gan has MLP networks only"),
        (["--arch", "conv", "--model", "aae"], "--model aae has MLP networks only"),
        (["--base-channels", "8"], "add --arch conv"),
        (["--arch", "conv", "--hidden", "8", "8"], "give one --hidden size"),
        (["--arch", "conv", "--activation", "tanh"], "uses relu"),
        (["--arch", "conv", "--data", "ring8"], "needs image data"),
    ],
)
def test_settings_conv_cannot_use_are_refused(extra, match, tmp_path, capsys):
    out = tmp_path / "r"
    line = _one_line_error(capsys, main(["vae", *TINY, *extra, "--out", str(out)]))
    assert match in line
    assert not out.exists()
