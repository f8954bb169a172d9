"""The ``pyrogen`` command line: ``pyrogen vae ...``, ``pyrogen gan ...``.

Each subcommand is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; add it to :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from pyrogen.cli.common import HelpFormatter, apply_threads

SUBCOMMANDS = ("vae", "gan", "translate", "sample", "evaluate", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrogen", description="Deep generative models for Pyro: VAEs and GANs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"pyrogen.cli.{name}")
        sub_parser = sub.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            formatter_class=HelpFormatter,
        )
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def _one_line(err: BaseException) -> str:
    """The error's message on one line; an ``OSError`` as ``reason: path``."""
    if isinstance(err, OSError) and err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else err.filename
        text = f"{err.strerror or type(err).__name__}: {where}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyrogen`` console script.

    Every expected failure is one line on stderr: exit 2 for bad input (arguments, data, an
    output directory that cannot take the run, a refused resume), 1 for a training failure (a
    NaN/Inf with its step and site, an OS error with its path), 130 on Ctrl-C. ``--debug``
    shows the traceback instead."""
    args = build_parser().parse_args(argv)
    prefix = f"pyrogen {args.command}"
    debug = getattr(args, "debug", False)
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = lambda message, *_, **__: print(
                f"{prefix}: warning: {' '.join(str(message).split())}", file=sys.stderr
            )
        try:
            if hasattr(args, "threads"):
                apply_threads(args)  # before any torch work of the command
            return args.run(args)
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted.", file=sys.stderr)
            return 130
        except (ValueError, FileNotFoundError) as err:
            if debug:
                raise
            print(f"{prefix}: error: {_one_line(err)}", file=sys.stderr)
            return 2
        except (FloatingPointError, OSError) as err:  # NonFiniteError is a FloatingPointError
            if debug:
                raise
            what = "training failed" if isinstance(err, FloatingPointError) else "error"
            print(f"{prefix}: {what}: {_one_line(err)}", file=sys.stderr)
            return 1
