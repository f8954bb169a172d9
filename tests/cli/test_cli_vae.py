import json

import pytest
import torch

from pyrogen.cli import main
from pyrogen.models import VAE

TINY = [
    "--epochs",
    "1",
    "--hidden",
    "16",
    "--latent-dim",
    "2",
    "--num-is-samples",
    "5",
    "--no-progress",
]
FILES = [
    "samples.png",
    "reconstructions.png",
    "interpolation.png",
    "random_walk.png",
    "latent.png",
    "loss.png",
    "model.pt",
    "config.json",
    "metrics.json",
]


def test_vae_command_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["vae", "--data", "digits", "--out", str(out), *TINY]) == 0
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_is_samples"] == 5
    assert metrics["test_log_likelihood"] >= metrics["test_elbo"]
    assert -64 * 2 < metrics["test_elbo"] < 0  # nats per 8x8 binary image
    config = json.loads((out / "config.json").read_text())
    assert config["hidden"] == [16] and config["binarize"] == "dynamic"
    state = torch.load(out / "model.pt", weights_only=True)
    vae = VAE(**config["model"])
    vae.load_state_dict(state)  # config.json is enough to rebuild the model
    assert "test ELBO" in capsys.readouterr().out


def test_hidden_takes_several_sizes_and_other_estimators(tmp_path):
    out = tmp_path / "run"
    args = [
        "vae",
        "--out",
        str(out),
        *TINY,
        "--hidden",
        "8",
        "8",
        "--estimator",
        "iwae",
        "--num-particles",
        "3",
        "--likelihood",
        "gaussian",
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["hidden"] == [8, 8] and config["model"]["likelihood"] == "gaussian"
    assert config["binarize"] == "none"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/no/such/dir"], "neither a known name"),
        (["--device", "cuda:7" if not torch.cuda.is_available() else "nonsense"], "--device"),
        (["--num-particles", "0"], "num_particles"),
    ],
)
def test_user_errors_print_a_message_not_a_traceback(tmp_path, capsys, args, message):
    assert main(["vae", "--out", str(tmp_path), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_loss_curve_shows_nats_per_example(tmp_path, monkeypatch):
    """loss.png plots history.json's values, which are −ELBO per example (tens of nats for 8x8
    binary digits), not divided by the training-set size a second time."""
    plotted = {}

    def loss_curve(values, path, *args, **kwargs):
        plotted["values"] = list(values)
        path.write_bytes(b"png")

    monkeypatch.setattr("pyrogen.plot.loss_curve", loss_curve)
    out = tmp_path / "run"
    assert main(["vae", "--out", str(out), *TINY]) == 0
    history = json.loads((out / "history.json").read_text())["loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert plotted["values"] == history
    late = sum(history[-3:]) / 3  # the per-example training loss ~ the per-example test -ELBO
    assert 0.7 < late / -metrics["test_elbo"] < 1.4, (late, metrics["test_elbo"])


def test_conditional_trains_a_cvae_and_draws_one_row_per_class(tmp_path, monkeypatch):
    """--conditional: a CVAE on (train_x, train_y), test bounds on log p(x | y), and samples.png
    whose row c a classifier of the real digits reads as class c."""
    from sklearn.linear_model import LogisticRegression

    from pyrogen import plot
    from pyrogen.data import load_dataset
    from pyrogen.models import CVAE

    grids = {}
    real_grid = plot.image_grid

    def image_grid(images, shape, path=None, ncol=10, title=None, row_labels=None):
        grids[title] = (images, ncol, row_labels)
        return real_grid(images, shape, path, ncol, title, row_labels)

    monkeypatch.setattr("pyrogen.plot.image_grid", image_grid)
    out = tmp_path / "run"
    fast = ["--epochs", "20", "--hidden", "64", "--latent-dim", "4", "--lr", "1e-2"]
    assert main(["vae", "--conditional", "--out", str(out), *TINY, *fast]) == 0
    files = set(FILES) - {"interpolation.png", "random_walk.png"} | {"style.png"}
    for name in files:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "interpolation.png").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["conditional"] is True and config["model"]["num_classes"] == 10
    cvae = CVAE(**config["model"])
    cvae.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["conditional"] and metrics["test_log_likelihood"] >= metrics["test_elbo"]
    assert -64 * 2 < metrics["test_elbo"] < 0
    (samples, ncol, row_labels), *_ = (v for k, v in grids.items() if k and "row c: class c" in k)
    assert samples.shape == (100, 64) and ncol == 10 and list(row_labels) == list(range(10))
    digits = load_dataset("digits")
    classifier = LogisticRegression(max_iter=2000).fit(digits.train_x, digits.train_y)
    rows = torch.arange(10).repeat_interleave(10)
    accuracy = float((torch.as_tensor(classifier.predict(samples.numpy())) == rows).float().mean())
    print(f"pyrogen vae --conditional: samples.png rows recognised as their class {accuracy:.0%}")
    assert accuracy >= 0.7


def test_conditional_refuses_a_data_set_without_labels(tmp_path, capsys):
    assert main(["vae", "--conditional", "--data", "ring8", "--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err
    assert "--conditional needs class labels" in err and "'ring8'" in err
    assert "Traceback" not in err and not (tmp_path / "config.json").exists()


def test_help_explains_conditional(capsys):
    with pytest.raises(SystemExit):
        main(["vae", "--help"])
    assert "--conditional" in capsys.readouterr().out


# --- --model vae-gan / aae ------------------------------------------------------------------


def test_vae_gan_model_writes_vae_metrics_and_figures(tmp_path):
    out = tmp_path / "run"
    args = ["vae", "--model", "vae-gan", "--out", str(out), *TINY, "--critic-hidden", "8"]
    assert main([*args, "--adv-weight", "0.5", "--adv-loss", "hinge"]) == 0
    for name in FILES + ["history.csv"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_type"] == "vae-gan" and -64 * 2 < metrics["test_elbo"] < 0
    assert metrics["test_log_likelihood"] >= metrics["test_elbo"]
    assert {"final_generator_loss", "final_critic_loss"} <= set(metrics)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "vae-gan" and config["adv_loss"] == "hinge"
    assert config["adv_weight"] == 0.5 and config["adv_weight_sum"] == 0.5 * 1437  # N * λ
    from pyrogen.models import VAEGAN

    VAEGAN(**config["model"]).load_state_dict(torch.load(out / "model.pt", weights_only=True))
    history = json.loads((out / "history.json").read_text())
    assert len(history["neg_elbo"]) == len(history["generator"]) == metrics["steps"]


def test_aae_model_with_mixture_prior(tmp_path):
    out = tmp_path / "run"
    args = ["vae", "--model", "aae", "--prior", "mixture", "--out", str(out), *TINY]
    assert main(args) == 0
    for name in ["samples.png", "reconstructions.png", "codes.png", "loss.png", "model.pt"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model_type"] == "aae" and 0 < metrics["test_reconstruction"] < 64 * 2
    assert 0 < metrics["sliced_w1_codes_to_prior"] < 10
    config = json.loads((out / "config.json").read_text())
    assert config["prior"] == "mixture" and config["adv_weight"] == 2.0
    assert config["model"]["latent_dim"] == 2 and config["adv_loss"] == "nsgan"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "aae", "--conditional"], "--conditional trains a CVAE"),
        (["--model", "vae-gan", "--estimator", "iwae"], "drop --estimator"),
        (["--model", "vae-gan", "--prior", "mixture"], "--prior applies to --model aae"),
        (["--model", "aae", "--prior", "mixture", "--latent-dim", "3"], "--latent-dim 2"),
        (["--adv-weight", "3"], "--adv-weight only apply to --model"),
        (["--prior", "gaussian", "--adv-loss", "wgan"], "--adv-loss, --prior only apply"),
        (["--model", "aae", "--adv-weight", "-1"], "--adv-weight must be >= 0"),
    ],
)
def test_combinations_that_do_not_apply_are_refused(args, message, tmp_path, capsys):
    assert main(["vae", "--out", str(tmp_path / "r"), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before writing anything


def test_help_explains_the_models(capsys):
    with pytest.raises(SystemExit):
        main(["vae", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "vae-gan" in text and "adversarial autoencoder" in text and "--adv-weight" in text


def _settings(argv):
    from pyrogen.cli import build_parser
    from pyrogen.cli.vae import _resolve_settings

    args = build_parser().parse_args(["vae", *argv])
    _resolve_settings(args)
    return args


def test_preset_burda2016_sets_the_papers_settings_and_given_flags_win():
    args = _settings(["--preset", "burda2016"])
    assert (args.hidden, args.latent_dim, args.activation, args.batch_size) == (
        [200, 200],
        50,
        "tanh",
        20,
    )
    assert (args.lr, args.adam_eps, args.lr_schedule, args.epochs) == (
        1e-3,
        1e-4,
        "burda2016",
        3280,
    )
    assert (args.binarize, args.num_is_samples) == ("dynamic", 5000)
    args = _settings(["--preset", "burda2016", "--epochs", "30", "--latent-dim", "3"])
    assert (args.epochs, args.latent_dim, args.hidden) == (30, 3, [200, 200])
    plain = _settings([])  # the defaults pyrogen vae always had
    assert (plain.epochs, plain.hidden, plain.latent_dim, plain.batch_size) == (50, [400], 10, 128)
    assert (plain.activation, plain.adam_eps, plain.lr_schedule) == ("relu", 1e-8, "constant")
    assert (plain.binarize, plain.num_is_samples, plain.lr) == ("auto", 5000, 1e-3)


@pytest.mark.slow
def test_preset_run_trains_tanh_with_the_schedule_and_records_it(tmp_path):
    out = tmp_path / "run"
    argv = ["vae", "--preset", "burda2016", "--epochs", "2", "--num-is-samples", "2"]
    assert main([*argv, "--hidden", "16", "16", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "burda2016" and config["lr_schedule"] == "burda2016"
    assert config["adam_eps"] == 1e-4 and config["batch_size"] == 20
    assert config["model"]["activation"] == "tanh" and config["model"]["latent_dim"] == 50
    vae = VAE(**config["model"])
    vae.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    assert isinstance(vae.decoder[1], torch.nn.Tanh) and isinstance(
        vae.encoder.net[3], torch.nn.Tanh
    )
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2 * 72  # digits: 1437 training images, batch 20


def test_activation_alone_and_plain_config_unchanged(tmp_path):
    out = tmp_path / "tanh"
    assert main(["vae", "--out", str(out), *TINY, "--activation", "tanh"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["activation"] == "tanh" and config["model"]["activation"] == "tanh"
    assert "preset" not in config and "lr_schedule" not in config and "adam_eps" not in config
    plain = tmp_path / "plain"
    assert main(["vae", "--out", str(plain), *TINY]) == 0
    config = json.loads((plain / "config.json").read_text())
    assert not {"preset", "activation", "adam_eps", "lr_schedule"} & set(config)
    assert "activation" not in config["model"]  # earlier runs' config.json stay as they were


@pytest.mark.parametrize(
    "args, message",
    [
        (["--activation", "tanh", "--conditional"], "--activation tanh is for the plain VAE"),
        (["--preset", "burda2016", "--model", "aae"], "--preset burda2016 is for the plain VAE"),
        (["--model", "vae-gan", "--adam-eps", "1e-4"], "--adam-eps / --lr-schedule"),
    ],
)
def test_settings_for_the_plain_vae_are_refused_elsewhere(args, message, tmp_path, capsys):
    assert main(["vae", "--out", str(tmp_path / "r"), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "r").exists()
