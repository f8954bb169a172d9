"""``pyrogen sample RUN``: new examples from a finished run, as an image grid and/or a ``.npy``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from pyrogen import plot
from pyrogen.cli.common import seed
from pyrogen.cli.runs import load_run

HELP = "Draw new examples from a finished run (no retraining): an image grid and/or a .npy file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN", help="the run directory (the --out of pyrogen vae / pyrogen gan)"
    )
    parser.add_argument("--num-samples", type=int, default=100, help="how many examples")
    parser.add_argument("--out", default=None, help="image grid to write (e.g. grid.png)")
    parser.add_argument("--npy", default=None, help="also write the examples to this .npy file")
    parser.add_argument(
        "--label", type=int, default=None, help="class to draw (conditional runs; default: all)"
    )
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def run(args: argparse.Namespace) -> int:
    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}.")
    if args.out is None and args.npy is None:
        raise ValueError("Say where to write the samples: --out grid.png and/or --npy FILE.")
    loaded = load_run(args.run_dir)
    samples = loaded.sample(args.num_samples, args.label, seed=args.seed)
    if args.npy is not None:
        np.save(args.npy, samples.numpy().astype(np.float32))
    if args.out is not None:
        shape = loaded.config.get("image_shape") or _shape(loaded)
        if shape is None:
            raise ValueError(
                f"{args.run_dir} holds {samples.shape[1]}-feature examples, not images; write them"
                " with --npy FILE instead of --out."
            )
        ncol = math.ceil(math.sqrt(args.num_samples))
        title = f"{args.num_samples} samples of {Path(args.run_dir).name}"
        plot.image_grid(samples, shape, args.out, ncol, title)
    written = " and ".join(p for p in (args.out, args.npy) if p)
    print(f"pyrogen sample: {args.num_samples} examples from {args.run_dir} -> {written}")
    return 0


def _shape(loaded) -> tuple[int, int] | None:
    """Height and width of square images (digits 8x8, MNIST 28x28), else None."""
    dim = int(loaded.config["model"]["data_dim"])
    side = math.isqrt(dim)
    return (side, side) if side * side == dim and side >= 4 else None
