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

:class:`Checkpointer` saves and restores a :class:`~pyrogen.train.Trainer`'s run with these: the
step's ``state_dict()`` (which holds every tensor it trains, once), the position, history, RNG
states, stateful callbacks and the run's settings, and refuses to resume with other settings or
other data (:func:`data_fingerprint`).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import re
import uuid
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from torch.distributions import constraints

from pyrogen.train import distributed
from pyrogen.train.files import atomic_write_bytes

if TYPE_CHECKING:
    from pyrogen.train.callbacks import TrainState

__all__ = [
    "FORMAT",
    "RUN_CONTROL_KEYS",
    "VERSION",
    "CheckpointError",
    "Checkpointer",
    "checkpoint_path",
    "checksum",
    "check_resumable",
    "data_fingerprint",
    "get_param_store_state",
    "get_rng_state",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest",
    "prune_checkpoints",
    "save_checkpoint",
    "set_param_store_state",
    "set_rng_state",
    "set_seed",
    "settings_differences",
]

Trainer = Any  # pyrogen.train.Trainer (not imported: it imports this module)

FORMAT = "pyrogen-checkpoint"
VERSION = 2  # 2: the step's state holds each tensor once, no param store; data fingerprint
_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (truncated, corrupt, or from another program)."""


# --- RNG states as tensors -------------------------------------------------------------------
def set_seed(seed: int) -> None:
    """Seed python, numpy, torch (CPU and CUDA) and Pyro from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    pyro.set_rng_seed(seed)  # also seeds torch (all devices)


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


def get_param_store_state(names: Iterable[str] | None = None) -> dict[str, Any]:
    """Unconstrained values of Pyro's param store (or of its params ``names``) and their
    constraints (by name, e.g. ``"GreaterThan(lower_bound=0.0)"``), without pickled objects."""
    state = pyro.get_param_store().get_state()
    names = sorted(state["params"]) if names is None else list(names)
    return {
        "params": {k: state["params"][k].detach().clone() for k in names},
        "constraints": {k: repr(state["constraints"][k]) for k in names},
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
    directory: str | os.PathLike,
    step: int,
    state: dict[str, Any],
    keep: int | None = 3,
    protect: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write ``state`` (plus format, step and checksum) atomically as ``step-NNNNNNNN.pt``, then
    :func:`prune_checkpoints` down to the newest ``keep`` of this run (``None``: keep all), never
    deleting the file just written nor those in ``protect``."""
    if keep is not None and keep < 1:
        raise ValueError(f"Expected keep >= 1 checkpoints, got {keep}.")
    path = checkpoint_path(directory, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, "step": int(step), **state}
    state["checksum"] = checksum(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    _OWNERS[_file_key(path)] = state.get("run_id")
    if keep is not None:
        prune_checkpoints(directory, keep, state.get("run_id"), protect=[path, *protect])
    return path


_OWNERS: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime) -> run_id, verified


def _file_key(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return str(path.resolve()), info.st_size, info.st_mtime_ns


def _owner(path: Path) -> tuple[bool, str | None]:
    """``(loads, run_id)`` of a checkpoint file, verified once per file version."""
    try:
        key = _file_key(path)
    except OSError:
        return False, None
    if key not in _OWNERS:
        try:
            _OWNERS[key] = load_checkpoint(path).get("run_id")
        except CheckpointError:
            return False, None
    return True, _OWNERS[key]


def prune_checkpoints(
    directory: str | os.PathLike,
    keep: int,
    run_id: str | None,
    protect: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Delete this run's older checkpoints so that its newest ``keep`` remain; return them.

    Only files that load and verify and carry ``run_id`` are counted or deleted: a corrupt file,
    a stray high-step file or another run's checkpoint never takes the place of a good one and
    is never deleted. Files in ``protect`` (the one just written, the one resumed from) stay."""
    kept = {Path(p).resolve() for p in protect}
    ours = [p for p in list_checkpoints(directory) if _owner(p) == (True, run_id)]
    deleted = []
    for old in ours[:-keep] if keep else ours:
        if old.resolve() not in kept:
            old.unlink(missing_ok=True)
            deleted.append(old)
    return deleted


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and verify one checkpoint with ``torch.load(weights_only=True)``; raise
    :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, unpickling refused, I/O error
        reason = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path} cannot be read ({type(err).__name__}: {reason})") from err
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


# --- a Trainer's runs ----------------------------------------------------------------------
def data_fingerprint(*data: torch.Tensor, max_bytes: int = 2**28) -> str:
    """SHA-256 of the tensors' dtypes, shapes and bytes (above ``max_bytes`` per tensor, of every
    k-th element so that at most ``max_bytes`` are hashed): ~0.1 s for MNIST, once per run.
    Several tensors: the SHA-256 of their fingerprints in order (one tensor: its own)."""
    if len(data) == 2 and isinstance(data[1], int):  # the older data_fingerprint(x, max_bytes)
        data, max_bytes = data[:1], data[1]
    if len(data) != 1:
        joined = "".join(data_fingerprint(t, max_bytes=max_bytes) for t in data)
        return hashlib.sha256(f"{len(data)}:{joined}".encode()).hexdigest()
    data = data[0]
    flat = data.detach().reshape(-1)
    digest = hashlib.sha256(f"{flat.dtype}{tuple(data.shape)}".encode())
    stride = math.ceil(flat.numel() * flat.element_size() / max_bytes)
    if stride > 1:
        flat = flat[::stride]
    digest.update(flat.cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


def _callback_states(callbacks: list[Any]) -> dict[str, Any]:
    """``{name: callback.state_dict()}`` of the callbacks that have one (name: class name, with
    ``#2``, ``#3`` … for repeats)."""
    states, seen = {}, {}
    for cb in callbacks:
        if callable(getattr(cb, "state_dict", None)):
            name = type(cb).__name__
            seen[name] = seen.get(name, 0) + 1
            states[name if seen[name] == 1 else f"{name}#{seen[name]}"] = cb
    return states


#: Config keys that may change when a run is resumed (how long, where, how it is shown); every
#: other key of the config (model sizes, objective, learning rate, ...) must match.
RUN_CONTROL_KEYS = frozenset(
    {
        "amp",
        "checkpoint_every",
        "command_line",
        "data",
        "debug",
        "device",
        "epochs",
        "force_resume",
        "format_version",
        "keep_checkpoints",
        "no_progress",
        "num_is_samples",
        "num_samples",
        "out",
        "overwrite",
        "resume",
        "run",
        "skip_nonfinite",
        "steps",
        "tensorboard",
        "threads",
    }
)
_TRAINER_KEYS = ("batch_size", "seed")  # world_size may change (reproducible, not identical)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def settings_differences(
    saved: dict[str, Any], current: dict[str, Any], ignore: Iterable[str] = RUN_CONTROL_KEYS
) -> list[str]:
    """``"key=saved, this run has key=current"`` for each setting (nested keys dotted, e.g.
    ``model.latent_dim``) that differs between two configs, top-level keys in ``ignore``
    skipped."""
    ignore = set(ignore)
    old, new = _flatten(saved), _flatten(current)
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key.split(".")[0] in ignore or old.get(key, "<unset>") == new.get(key, "<unset>"):
            continue
        diffs.append(
            f"{key}={old.get(key, '<unset>')}, this run has {key}={new.get(key, '<unset>')}"
        )
    return diffs


def _data_difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    if (saved["num_data"], saved["data_sha256"]) == (current["num_data"], current["data_sha256"]):
        return None
    return (
        f"it was trained on other data ({saved['num_data']} examples, sha256"
        f" {saved['data_sha256'][:12]}…; this run has {current['num_data']} examples, sha256"
        f" {current['data_sha256'][:12]}…)"
    )


def compatibility_problems(
    saved: dict[str, Any], config: dict[str, Any], trainer: dict[str, Any] | None = None
) -> list[str]:
    """What keeps the checkpoint ``saved`` from being resumed by a run with ``config`` (and
    the Trainer settings ``trainer``: batch size, seed, data fingerprint); empty if nothing."""
    problems = []
    settings = []
    if trainer is not None:
        old = {k: saved["trainer"].get(k) for k in _TRAINER_KEYS}
        settings += settings_differences(old, {k: trainer.get(k) for k in _TRAINER_KEYS}, ())
    ignore = RUN_CONTROL_KEYS | (set(_TRAINER_KEYS) if trainer is not None else set())
    settings += settings_differences(saved.get("config") or {}, config, ignore)
    if settings:
        problems.append("it was trained with " + "; ".join(settings))
    if trainer is not None and (data := _data_difference(saved["trainer"], trainer)):
        problems.append(data)
    return problems


def _refusal(path: Path, problems: list[str]) -> str:
    return (
        f"Cannot resume from {path}: {'; and '.join(problems)}. Resume with the same settings"
        " and the same training data and preprocessing, give --force-resume (force_resume=True)"
        " to continue anyway, or train afresh (--overwrite, or a new output directory)."
    )


def _no_valid_checkpoint(directory: Path, paths: list[Path]) -> CheckpointError:
    reasons = []
    for path in paths:
        try:
            load_checkpoint(path)
        except CheckpointError as err:
            reasons.append(f"{path.name}: {str(err).removeprefix(str(path)).strip()}")
    return CheckpointError(
        f"Cannot resume: {directory}/ holds {len(paths)} checkpoint file(s) but none loads ("
        + "; ".join(reasons)
        + "). Restore a good checkpoint, or train afresh (--overwrite, or a new output"
        " directory)."
    )


def check_resumable(
    directory: str | os.PathLike,
    config: dict[str, Any],
    data: tuple[torch.Tensor, ...] | None = None,
    force: bool = False,
    warn: bool = True,
) -> Path | None:
    """What :meth:`Checkpointer.restore` will check, without a Trainer and before anything is
    written: the newest valid checkpoint in ``directory`` (``None``: no checkpoint file at all),
    whose config (and, given ``data``, training data) must match; ``force`` turns a mismatch
    into a warning (``warn=False``: silently, for a caller whose ``Checkpointer`` will warn
    when it restores).

    :raises CheckpointError: checkpoint files exist but none loads.
    :raises ValueError: a setting or the data differ (each named), unless ``force``.
    """
    directory = Path(directory)
    paths = list_checkpoints(directory)
    path, saved = load_latest(directory)
    if saved is None:
        if paths:
            raise _no_valid_checkpoint(directory, paths)
        return None
    trainer = None
    if data is not None:
        trainer = {
            **saved["trainer"],
            "num_data": len(data[0]),
            "data_sha256": data_fingerprint(*data),
        }
    problems = compatibility_problems(saved, config, trainer)
    if problems and not force:
        raise ValueError(_refusal(path, problems))
    if problems and warn:
        warnings.warn(
            f"--force-resume: resuming from {path} although {'; and '.join(problems)}.",
            stacklevel=2,
        )
    return path


class Checkpointer:
    """Saves a :class:`~pyrogen.train.Trainer`'s run in ``directory`` and restores it.

    A checkpoint holds ``trainer.step.state_dict()`` (every tensor the step trains, once), the
    position (step, batches drawn, epoch), the history, every rank's RNG states, the transform's
    generator, the states of callbacks with a ``state_dict()``, the run's settings, ``config``
    and the run's id. Under ``torchrun``, :meth:`save` must be called on every rank (it gathers
    their RNG states); only rank 0 writes. Only this run's checkpoints that load are pruned
    (:func:`prune_checkpoints`), never the one resumed from.

    :param directory: where ``step-*.pt``, ``history.csv`` and ``history.json`` go.
    :param keep: how many of the newest checkpoints to keep.
    :param config: JSON-like settings stored in each checkpoint; a resume refuses other values
        (except the :data:`RUN_CONTROL_KEYS`: epochs, steps, output, device, ...).
    :param resume: :meth:`start` continues from the newest valid checkpoint; ``"force"`` (or
        ``force_resume=True``): even with other settings or data (a warning names them).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        keep: int = 3,
        config: dict[str, Any] | None = None,
        resume: bool | str = False,
        force_resume: bool = False,
    ) -> None:
        if keep < 1:
            raise ValueError(f"Expected keep >= 1 checkpoints, got {keep}.")
        if resume not in (True, False, "force"):
            raise ValueError(f"Expected resume=True, False or 'force', got {resume!r}.")
        self.directory, self.keep = Path(directory), keep
        self.config, self.resume = dict(config or {}), bool(resume)
        self.force_resume = force_resume or resume == "force"
        self.last_path: Path | None = None  # newest checkpoint written or restored
        self.last_step: int | None = None  # its step
        self.resumed_from: Path | None = None
        self.run_id = uuid.uuid4().hex
        self._data: dict[str, Any] = {}

    def start(self, trainer: Trainer, state: TrainState, data: Any) -> None:
        """Fingerprint the training data (a tensor, a tuple of tensors, or an object with
        ``fingerprint()``), then restore the newest checkpoint if ``resume``."""
        if callable(getattr(data, "fingerprint", None)):
            sha = data.fingerprint()
        else:
            sha = data_fingerprint(*(data if isinstance(data, (tuple, list)) else (data,)))
        num = len(data[0]) if isinstance(data, (tuple, list)) else len(data)
        self._data = {"num_data": num, "data_sha256": sha}
        self.last_path, self.last_step, self.resumed_from = None, None, None
        self.run_id = uuid.uuid4().hex
        if self.resume:
            self.restore(trainer, state)

    def settings(self, trainer: Trainer, state: TrainState) -> dict[str, Any]:
        """What a resumed run must share with the saved one (and the number of processes)."""
        return {
            "batch_size": trainer.batch_size,
            "seed": trainer.seed,
            **self._data,
            "world_size": state.ctx.world_size,
        }

    def save(self, trainer: Trainer, state: TrainState) -> Path:
        """Write a checkpoint of ``state.step`` (and ``history.csv``/``.json``); return its
        path."""
        rngs = distributed.gather(get_rng_state(), state.ctx)
        self.last_path = checkpoint_path(self.directory, state.step)
        self.last_step = state.step
        if not state.ctx.is_main:
            return self.last_path
        callbacks = _callback_states(trainer.callbacks)
        payload = {
            "step_state": trainer.step.state_dict(),
            "batches": state.batches,
            "epoch": state.epoch,
            "skipped": state.history.skipped,
            "history": state.history.records,
            "rng": rngs,
            "data_rng": state.generator.get_state(),
            "callbacks": {name: cb.state_dict() for name, cb in callbacks.items()},
            "trainer": self.settings(trainer, state),
            "config": self.config,
            "run_id": self.run_id,
        }
        protect = [self.resumed_from] if self.resumed_from is not None else []
        save_checkpoint(self.directory, state.step, payload, self.keep, protect=protect)
        state.history.save(self.directory)
        return self.last_path

    def restore(self, trainer: Trainer, state: TrainState) -> bool:
        """Load the newest valid checkpoint into ``trainer.step``, ``state``, the RNGs and the
        callbacks; ``False`` if there is no checkpoint file.

        :raises CheckpointError: checkpoint files exist but none loads (each listed with the
            reason), or the saved tensors do not fit the model.
        :raises ValueError: the run's settings or data differ (each named), unless forced.
        """
        paths = list_checkpoints(self.directory)
        path, saved = load_latest(self.directory)
        if saved is None:
            if paths:
                raise _no_valid_checkpoint(self.directory, paths)
            if state.ctx.is_main:
                print(f"resume: no checkpoint in {self.directory}/; starting from step 0.")
            return False
        self.check_compatible(
            path, saved, self.settings(trainer, state), self.config, force=self.force_resume
        )
        try:
            trainer.step.load_state_dict(saved["step_state"])
        except (RuntimeError, KeyError) as err:
            first = str(err).strip().splitlines()
            detail = " ".join(line.strip() for line in first[:3])
            raise CheckpointError(
                f"Cannot resume from {path}: its tensors do not fit this model ({detail}). Use"
                " the settings of the saved run, or train afresh (--overwrite, or a new output"
                " directory)."
            ) from err
        state.history.records = list(saved["history"])
        state.history.skipped = int(saved["skipped"])
        state.step, state.batches = int(saved["step"]), int(saved["batches"])
        state.generator.set_state(saved["data_rng"])
        if len(saved["rng"]) == state.ctx.world_size:
            set_rng_state(saved["rng"][state.ctx.rank])
        else:  # another number of processes: reproducible, but not bit-identical
            set_seed(trainer.seed + state.ctx.rank + 7919 * state.step)
        for name, cb in _callback_states(trainer.callbacks).items():
            if name not in saved["callbacks"]:
                raise ValueError(
                    f"Cannot resume from {path}: it holds no state of the callback {name} (it"
                    f" was saved with {sorted(saved['callbacks']) or 'none'}). Use the same"
                    " callbacks, or a new output directory."
                )
            cb.load_state_dict(saved["callbacks"][name])
        self.last_path, self.last_step, self.resumed_from = path, state.step, path
        self.run_id = saved.get("run_id") or self.run_id
        if state.ctx.is_main:
            print(f"resume: continuing from {path} (step {state.step}).")
            if state.step >= state.total:
                warnings.warn(
                    f"{path} is at step {state.step}, already at or past the requested total of"
                    f" {state.total} steps: nothing is trained. Ask for more --epochs/--steps to"
                    " continue training.",
                    stacklevel=2,
                )
        return True

    @staticmethod
    def check_compatible(
        path: Path,
        saved: dict[str, Any],
        current: dict[str, Any],
        config: dict[str, Any] | None = None,
        force: bool = False,
    ) -> None:
        """Refuse (``ValueError``) a resume with another batch size, seed, data set or config
        setting, naming each; ``force``: warn instead. ``saved`` is a loaded checkpoint (or,
        as before, its ``"trainer"`` settings)."""
        if "trainer" not in saved:  # the older check_compatible(path, saved_settings, current)
            saved = {"trainer": saved, "config": {}}
            config = {}
        problems = compatibility_problems(saved, config or {}, current)
        if problems and not force:
            raise ValueError(_refusal(path, problems))
        if problems:
            warnings.warn(
                f"--force-resume (force_resume): resuming from {path} although"
                f" {'; and '.join(problems)}.",
                stacklevel=2,
            )
