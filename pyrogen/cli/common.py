"""Pieces shared by the subcommands: common flags, devices, output directories."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from pyrogen.data.dataset import Dataset


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``argparse``'s "(default: ...)" after each help, except where the help already states
    its default (as flags whose default depends on other flags do): no "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default" in help_text.lower():
            return help_text
        return super()._get_help_string(action)


def add_common_arguments(parser: argparse.ArgumentParser, default_data: str) -> None:
    """``--data --out --seed --device --threads`` as every subcommand spells them (a
    subcommand's ``run`` calls :func:`apply_threads`)."""
    parser.add_argument(
        "--data",
        default=default_data,
        help="a data set name (digits, fashion-mnist, ...) or a directory of MNIST idx files",
    )
    parser.add_argument("--out", default=None, help="output directory (default: runs/<command>)")
    parser.add_argument(
        "--seed", type=seed, default=0, help="seeds torch, numpy, python and Pyro (0 to 2**32-1)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--threads",
        type=threads,
        default=DEFAULT_THREADS,
        metavar="N",
        help="CPU threads torch computes with (default: 1, the fastest for these models;"
        " see benchmarks/README.md)",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


#: Threads of ``--threads`` by default: the CLI's models (MLPs up to 784-400-50 and 512-512) train
#: fastest on one thread; two were 1.3-5x slower per step at batch 128 on a 2-core machine, where
#: they contend with each other and with other processes (benchmarks/README.md, "Threads").
DEFAULT_THREADS = 1


def threads(text: str) -> int:
    """An ``argparse`` type: a number of threads >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} threads: give 1 or more")
    return value


def apply_threads(args: argparse.Namespace) -> int:
    """Make torch compute with ``--threads`` threads (intra-op); returns the number."""
    n = getattr(args, "threads", DEFAULT_THREADS)
    torch.set_num_threads(n)
    return n


#: The seeds numpy accepts (``pyro.set_rng_seed`` seeds numpy too); torch's range is wider.
MAX_SEED = 2**32 - 1


def seed(text: str) -> int:
    """An ``argparse`` type: an integer in ``[0, MAX_SEED]``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give 0 to {MAX_SEED} (2**32-1)")
    return value


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, with an actionable error when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but CUDA is not available; use cpu.")
    return device


def add_long_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Checkpoint, resume, fault and precision flags shared by the training subcommands."""
    group = parser.add_argument_group("long runs (checkpoints, resume, faults)")
    group.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        metavar="N",
        help="write OUT/checkpoints/step-*.pt every N steps (and always at the end, on Ctrl-C"
        " and on SIGTERM)",
    )
    group.add_argument(
        "--keep-checkpoints", type=int, default=3, metavar="K", help="keep the newest K"
    )
    group.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="DIR",
        help="continue the run in --out (or DIR) from its newest valid checkpoint, up to the"
        " requested total --epochs/--steps; refused if its settings or data differ",
    )
    group.add_argument(
        "--force-resume",
        action="store_true",
        help="resume even though settings or data differ from the saved run (each is named in"
        " a warning); implies --resume",
    )
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (deletes only the files a pyrogen run writes there)",
    )
    group.add_argument(
        "--skip-nonfinite",
        action="store_true",
        help="skip batches with a NaN/Inf loss or gradient (counted) instead of stopping",
    )
    group.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    group.add_argument(
        "--tensorboard", action="store_true", help="log to OUT/tensorboard (needs tensorboard)"
    )


def resolve_out(args: argparse.Namespace, default: str) -> Path:
    """The run directory: ``--out``, or the DIR of ``--resume DIR`` (which must agree)."""
    resume_dir = args.resume if isinstance(args.resume, str) else None
    if resume_dir and args.out and Path(resume_dir) != Path(args.out):
        raise ValueError(
            f"--resume {resume_dir} and --out {args.out} name different runs; give one of them."
        )
    return Path(resume_dir or args.out or default)


def trainer_options(args: argparse.Namespace, out: Path, device: torch.device) -> dict[str, Any]:
    """``Trainer`` keyword arguments from the long-run flags."""
    if args.amp and device.type != "cuda":
        raise ValueError(f"--amp needs a CUDA device, got --device {device}; drop --amp on CPU.")
    return {
        "checkpoint_dir": out / "checkpoints",
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep_checkpoints,
        "resume": "force" if args.force_resume else bool(args.resume),
        "nonfinite": "skip" if args.skip_nonfinite else "raise",
        "amp": args.amp,
        "tensorboard": out / "tensorboard" if args.tensorboard else None,
    }


def run_dir_options(args: argparse.Namespace) -> dict[str, bool]:
    """``prepare_run_dir`` keyword arguments from ``--resume --force-resume --overwrite``."""
    return {
        "resume": bool(args.resume) or args.force_resume,
        "overwrite": args.overwrite,
        "force_resume": args.force_resume,
    }


#: Stride-2 layers of the CLI's convolutional networks (``stages`` of :mod:`pyrogen.nn.conv`,
#: :class:`~pyrogen.models.translation.TranslatorNet`): each halves the height and width, so
#: these must be multiples of ``2**CONV_STAGES``.
CONV_STAGES = 2

#: What the CLI loads as images (``Dataset.is_image``), for the messages.
IMAGE_DATA = "digits, fashion-mnist or a directory of MNIST-format idx files"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def check_conv_images(dataset: Dataset, context: str, mlp: str | None = "--arch mlp") -> None:
    """Refuse data the CLI's convolutional networks cannot take: examples that are not images,
    and images whose height or width is not a multiple of ``2**CONV_STAGES``.

    :param context: what needs the images, the subject of the message (``"--arch conv"``).
    :param mlp: the flag that trains MLPs instead, suggested as the fix (None: there is none).
    """
    name = dataset.name
    if not dataset.is_image:
        fix = f"use {mlp}" if mlp else "give one of them as --data"
        raise ValueError(
            f"{context} needs image data, but {name!r} is not an image data set (its examples"
            f" have shape {tuple(dataset.shape)}); images are {IMAGE_DATA}: {fix}."
        )
    h, w = dataset.shape
    factor = 2**CONV_STAGES
    if h % factor or w % factor:
        up = (-(-h // factor) * factor, -(-w // factor) * factor)
        fix = f"use {mlp}, or pad" if mlp else "pad"
        raise ValueError(
            f"{context} halves the images' height and width {_times(CONV_STAGES)} (stride-2"
            f" convolutions), so both must be multiples of {factor} (e.g. 8×8 digits, 28×28"
            f" MNIST); {name!r} has {h}×{w} images: {fix} or resize them (e.g. to"
            f" {up[0]}×{up[1]})."
        )
