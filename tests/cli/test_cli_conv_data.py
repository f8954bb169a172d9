"""Issue 13: ``pyrogen vae|gan --arch conv`` and ``pyrogen translate`` refuse data their
convolutional networks cannot take with one message (``cli.common.check_conv_images``): not
images, or sides that are not multiples of 4; nothing is written. Also: ``--preset burda2016
--arch conv`` is refused by name, and ``pyrogen translate --help`` states its task-dependent
defaults."""

import re

import numpy as np
import pytest
import torch

from pyrogen.cli import build_parser, main
from pyrogen.cli.common import check_conv_images
from pyrogen.cli.translate import _task_defaults
from pyrogen.data.dataset import Dataset
from pyrogen.data.idx import write_idx

NOT_IMAGES = (
    "{context} needs image data, but 'ring8' is not an image data set (its examples have shape"
    " (2,)); images are digits, fashion-mnist or a directory of MNIST-format idx files: {fix}."
)
BAD_SIDES = (
    "{context} halves the images' height and width twice (stride-2 convolutions), so both must"
    " be multiples of 4 (e.g. 8×8 digits, 28×28 MNIST); 'img10x6' has 10×6 images: {fix} or"
    " resize them (e.g. to 12×8)."
)
# command, its flags, the subject of the message, the fix it suggests
COMMANDS = {
    "vae": (["--arch", "conv"], "--arch conv", "use --arch mlp"),
    "gan": (["--arch", "conv"], "--arch conv", "use --arch mlp"),
    "gan-default-arch": ([], "--arch conv (the image default)", "use --arch mlp"),
    "translate": (["--task", "inpaint"], "--task inpaint", "give one of them as --data"),
}


@pytest.fixture(scope="module")
def images_10x6(tmp_path_factory):
    """An MNIST-format directory of 10×6 images (12 train, 6 test, 3 classes)."""
    directory = tmp_path_factory.mktemp("data") / "img10x6"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 6)):
        images = rng.integers(0, 256, (n, 10, 6), dtype=np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte", (np.arange(n) % 3).astype(np.uint8))
    return directory


def _error_line(capsys, argv, out) -> str:
    """The one-line error of a refused command (exit 2, nothing written to ``out``)."""
    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists()
    lines = [line for line in err.splitlines() if ": warning:" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("key", ["vae", "gan", "translate"])  # toy data default to mlp in gan
def test_conv_networks_refuse_data_that_are_not_images(key, tmp_path, capsys):
    flags, context, fix = COMMANDS[key]
    line = _error_line(capsys, [key, "--data", "ring8", *flags], tmp_path / "o")
    assert line == f"pyrogen {key}: error: {NOT_IMAGES.format(context=context, fix=fix)}"


@pytest.mark.parametrize("key", list(COMMANDS))
def test_conv_networks_refuse_sides_that_are_not_multiples_of_4(key, images_10x6, tmp_path, capsys):
    flags, context, fix = COMMANDS[key]
    fix = "pad" if key == "translate" else f"{fix}, or pad"
    command = key.split("-")[0]
    line = _error_line(capsys, [command, "--data", str(images_10x6), *flags], tmp_path / "o")
    assert line == f"pyrogen {command}: error: {BAD_SIDES.format(context=context, fix=fix)}"
    assert "stages=" not in line  # pyrogen.nn.conv's message names an argument the CLI lacks


@pytest.mark.parametrize("command", ["vae", "gan"])
def test_arch_mlp_takes_the_10x6_images_the_conv_networks_refuse(
    command, images_10x6, tmp_path, capsys
):
    """The suggested fix passes the check: with --arch mlp the run gets as far as the check of
    --epochs / --steps 0 (after the networks are built; nothing trains)."""
    zero = ["--epochs", "0"] if command == "vae" else ["--steps", "0"]
    argv = [command, "--data", str(images_10x6), "--arch", "mlp", *zero]
    line = _error_line(capsys, argv, tmp_path / "o")
    assert line.endswith(
        "Expected epochs >= 1, got 0." if command == "vae" else "--steps must be >= 1, got 0."
    )


@pytest.mark.parametrize(
    "shape, refused",
    [((8, 8), False), ((28, 12), False), ((4, 4), False), ((28, 30), True), ((6, 8), True)],
)
def test_check_conv_images_accepts_exactly_sides_that_are_multiples_of_4(shape, refused):
    x = torch.zeros(2, shape[0] * shape[1])
    dataset = Dataset("d", x, None, x, None, shape=shape)
    if refused:
        with pytest.raises(ValueError, match="must be multiples of 4"):
            check_conv_images(dataset, "--arch conv")
    else:
        check_conv_images(dataset, "--arch conv")


def test_burda2016_preset_with_arch_conv_is_refused_by_name(tmp_path, capsys):
    line = _error_line(capsys, ["vae", "--preset", "burda2016", "--arch", "conv"], tmp_path / "o")
    assert line == (
        "pyrogen vae: error: --preset burda2016 is the MLP VAE of Burda et al. 2016, not a"
        " convolutional one; use --arch mlp (the default) or drop the preset."
    )


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_translate_help_states_the_task_dependent_defaults_it_uses(capsys):
    text = _help("translate", capsys)
    assert "(default: None)" not in text
    assert "(default: digits for --task cycle, fashion-mnist otherwise)" in text
    assert "generator updates (default: 1000 for --task cycle, 1500 otherwise)" in text
    assert "(default: 16 for --task cycle, 32 otherwise)" in text
    # ... and run() fills exactly these values
    for task, expected in (
        ("cycle", ("digits", 1000, 16)),
        ("inpaint", ("fashion-mnist", 1500, 32)),
    ):
        args = build_parser().parse_args(["translate", "--task", task])
        _task_defaults(args)
        assert (args.data, args.steps, args.base_channels) == expected


@pytest.mark.parametrize("command, none", [("vae", 1), ("gan", 0), ("translate", 0)])
def test_help_states_each_default_once(command, none, capsys):
    """No "(default: None)" (or any second default) after a help that states its default;
    the one left: vae --preset, no preset by default."""
    text = _help(command, capsys)
    assert re.search(r"\(default: [^)]*\) \(default: ", text) is None
    assert text.count("(default: None)") == none
    if none:
        assert "K = 5000 (default: None)" in text  # the end of --preset's help
