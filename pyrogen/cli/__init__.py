"""The ``pyrogen`` command line: ``pyrogen vae ...``, ``pyrogen gan ...``.

Each subcommand is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; add it to :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("vae", "gan", "translate")


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
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pyrogen`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as err:
        # Errors meant for the user: print the message, not a traceback.
        print(f"pyrogen {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pyrogen {args.command}: interrupted.", file=sys.stderr)
        return 130
