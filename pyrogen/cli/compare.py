"""``pyrogen compare RUN...``: the runs' metrics side by side and their loss curves overlaid."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pyrogen import plot

HELP = "Compare finished runs: a table of their metrics and their training losses overlaid."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", default=None, help="figure of the loss curves (e.g. losses.png)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _read(path: Path, name: str) -> dict:
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; is {path} a finished pyrogen run?")
    return json.loads(file.read_text())


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.runs]
    metrics = [_read(p, "metrics.json") for p in paths]
    keys = sorted({k for m in metrics for k, v in m.items() if isinstance(v, int | float | str)})
    names = [p.name or str(p) for p in paths]
    width = max(len(k) for k in keys)
    print(" " * width + "  " + "  ".join(f"{n:>14}" for n in names))
    for key in keys:
        print(f"{key:<{width}}  " + "  ".join(f"{_cell(m.get(key)):>14}" for m in metrics))
    if args.out is not None:
        curves = {n: _read(p, "history.json")["loss"] for n, p in zip(names, paths, strict=True)}
        plot.loss_curves(curves, args.out)
        print(f"pyrogen compare: wrote {args.out}")
    return 0
