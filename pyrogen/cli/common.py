"""Pieces shared by the subcommands: common flags, devices, writing results atomically."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def add_common_arguments(parser: argparse.ArgumentParser, default_data: str) -> None:
    """``--data --out --seed --device`` as every subcommand spells them."""
    parser.add_argument(
        "--data",
        default=default_data,
        help="a data set name (digits, fashion-mnist, ...) or a directory of MNIST idx files",
    )
    parser.add_argument("--out", default=None, help="output directory (default: runs/<command>)")
    parser.add_argument("--seed", type=int, default=0, help="seeds torch, numpy, python and Pyro")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``, with an actionable error when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but CUDA is not available; use cpu.")
    return device


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a crash leaves
    either the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` atomically; ``state`` must hold only tensors, numbers, strings and
    containers so that it loads with ``torch.load(path, weights_only=True)``."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
