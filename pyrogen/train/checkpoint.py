r"""Checkpoints that survive crashes: atomic writes, checksums, safe loading, every RNG state.

A checkpoint is one ``torch.save`` file ``OUT/checkpoints/step-00000100.pt`` holding only tensors,
numbers, strings and containers, so it loads with ``torch.load(path, weights_only=True)`` (no
pickled code runs). It is written through a temporary file and ``os.replace`` (a crash leaves the
old file or the new one, never half of one) and carries a SHA-256 checksum of its content, so a
truncated or bit-flipped file is detected and the previous checkpoint is used instead::

    save_checkpoint(directory, step=100, state={...}, keep=3)
    path, state = load_latest(directory)   # newest valid checkpoint, or (None, None)

RNG states (python, numpy, torch CPU and CUDA; Pyro draws from these) are converted to tensors by
:func:`get_rng_state` and restored by :func:`set_rng_state`.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from torch.distributions import constraints

from pyrogen.train.files import atomic_write_bytes

FORMAT = "pyrogen-checkpoint"
VERSION = 1
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (truncated, corrupt, or from another program)."""


# --- RNG states as tensors -------------------------------------------------------------------
def get_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA RNG states, as tensors and numbers only."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {
            "version": version,
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- Pyro's param store --------------------------------------------------------------------
def _constraint_by_repr() -> dict[str, constraints.Constraint]:
    return {repr(c): c for c in vars(constraints).values() if isinstance(c, constraints.Constraint)}


def get_param_store_state() -> dict[str, Any]:
    """Unconstrained values of Pyro's param store and their constraints (by name, e.g.
    ``"GreaterThan(lower_bound=0.0)"``), without pickled objects."""
    state = pyro.get_param_store().get_state()
    return {
        "params": {k: v.detach().clone() for k, v in state["params"].items()},
        "constraints": {k: repr(c) for k, c in state["constraints"].items()},
    }


def set_param_store_state(state: dict[str, Any]) -> None:
    """Copy saved values into the param store: in place for parameters that exist (so modules and
    optimizers keep pointing at them), created for the others."""
    store = pyro.get_param_store()
    current = store.get_state()["params"]
    known = _constraint_by_repr()
    for name, value in state["params"].items():
        if name in current:
            with torch.no_grad():
                current[name].copy_(value)
            continue
        spec = state["constraints"].get(name, "Real()")
        if spec not in known:
            raise CheckpointError(
                f"Cannot restore param {name!r} with constraint {spec}: create it (run the model"
                " once) before resuming so that its constraint is known."
            )
        with torch.no_grad():
            constrained = torch.distributions.transform_to(known[spec])(value)
        pyro.param(name, constrained.clone(), constraint=known[spec])


# --- checksums -----------------------------------------------------------------------------
def _leaves(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _leaves(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _leaves(item, f"{prefix}/{i}")
    else:
        yield prefix, obj


def checksum(state: dict[str, Any]) -> str:
    """SHA-256 of every key, tensor (dtype, shape, bytes) and number in ``state`` (except a
    top-level ``"checksum"``)."""
    digest = hashlib.sha256()
    for key, leaf in _leaves({k: v for k, v in state.items() if k != "checksum"}):
        digest.update(key.encode())
        if isinstance(leaf, torch.Tensor):
            t = leaf.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(leaf).encode())
    return digest.hexdigest()


# --- files ---------------------------------------------------------------------------------
def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    return Path(directory) / f"step-{step:08d}.pt"


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    directory: str | os.PathLike, step: int, state: dict[str, Any], keep: int | None = 3
) -> Path:
    """Write ``state`` (plus format, step and checksum) atomically as ``step-NNNNNNNN.pt`` and
    delete all but the newest ``keep`` checkpoints (``None``: keep all)."""
    if keep is not None and keep < 1:
        raise ValueError(f"Expected keep >= 1 checkpoints, got {keep}.")
    path = checkpoint_path(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, "step": int(step), **state}
    state["checksum"] = checksum(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    if keep is not None:
        for old in list_checkpoints(directory)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and verify one checkpoint with ``torch.load(weights_only=True)``; raise
    :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, unpickling refused, I/O error
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyrogen checkpoint.")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has format version {state.get('version')}, not {VERSION}.")
    if state.get("checksum") != checksum(state):
        raise CheckpointError(f"{path} is corrupt: its checksum does not match its content.")
    match = _NAME.match(path.name)
    if match and int(match.group(1)) != state["step"]:
        raise CheckpointError(f"{path} holds step {state['step']}, not the one in its name.")
    return state


def load_latest(directory: str | os.PathLike) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint in ``directory`` that loads and verifies; broken ones are skipped
    with a warning naming the file and the reason. ``(None, None)`` if there is none."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"Skipping checkpoint: {err}; trying the previous one.", stacklevel=2)
    return None, None
