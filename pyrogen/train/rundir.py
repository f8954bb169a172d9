"""The run directory contract: one run per directory, checked before anything is written.

``prepare_run_dir(out, command=..., config=...)`` checks, writing nothing, that ``out`` can hold
this run: it is (or can become) a writable directory; it holds no other run (``config.json``,
``model.pt`` or checkpoints) unless ``resume`` (continue it: its checkpoints must load and match
``config`` and the data) or ``overwrite`` (replace it: only the files a pyrogen run writes are
deleted, never foreign files). Entering the returned :class:`RunDir` takes a lock
(``out/.pyrogen.lock``: pid, host, start time; a lock whose process is gone on this host is taken
over with a note) that refuses a second concurrent run, checks again under the lock, and only then
writes ``config.json`` atomically. The lock is released on exit, also on exceptions and SIGTERM::

    with prepare_run_dir(out, command="vae", config=config, resume=False, data=(x,)) as run:
        trainer.fit(x)
        run.ensure()                      # out/ and config.json still there (recreated if not)
        save_state(out / "model.pt", ...)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from pyrogen.train.checkpoint import check_resumable, list_checkpoints, settings_differences
from pyrogen.train.files import write_json

__all__ = ["LOCK_NAME", "RUN_FILES", "RunDir", "RunDirError", "prepare_run_dir"]

LOCK_NAME = ".pyrogen.lock"
#: Files a pyrogen run writes in its directory (``--overwrite`` deletes these and no others).
RUN_FILES = (
    "config.json",
    "model.pt",
    "metrics.json",
    "history.json",
    "samples.npy",
    "samples.png",
    "reconstructions.png",
    "interpolation.png",
    "random_walk.png",
    "latent.png",
    "loss.png",
    "style.png",
)
#: Sub-directories a run writes, and the file name patterns it writes there.
RUN_SUBDIRS = {
    "checkpoints": ("step-*.pt", "history.csv", "history.json", ".step-*.pt.*.tmp"),
    "tensorboard": ("events.out.tfevents.*",),
}


class RunDirError(ValueError):
    """The output directory cannot take this run (another run, not writable, locked)."""


def _holds_run(out: Path) -> list[str]:
    """The files showing that ``out`` holds a run."""
    found = [name for name in ("config.json", "model.pt") if (out / name).exists()]
    checkpoints = list_checkpoints(out / "checkpoints")
    if checkpoints:
        found.append(f"{len(checkpoints)} checkpoint(s) in checkpoints/")
    return found


def _check_writable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a directory; give a directory path.")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"--out {out}: {existing} is a file, not a directory.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(
            f"--out {out}: {existing} is not writable; give a directory you can write to."
        )


def _read_config(out: Path) -> dict[str, Any] | None:
    path = out / "config.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunDirError(
            f"{path} cannot be read ({err}); it is not a pyrogen run's config. Use --overwrite"
            " to replace the run, or another --out."
        ) from err


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunDir:
    """A checked run directory; a context manager holding its lock (see the module doc).

    :ivar path: the directory.
    :ivar resume_from: the checkpoint a resume continues from (``None``: starts at step 0).
    """

    def __init__(
        self,
        path: Path,
        command: str,
        config: dict[str, Any],
        resume: bool,
        overwrite: bool,
        force_resume: bool,
        data: tuple[torch.Tensor, ...] | None,
        is_main: bool,
    ) -> None:
        self.path, self.command, self.config = path, command, config
        self.resume, self.overwrite, self.force_resume = resume, overwrite, force_resume
        self.data, self.is_main = data, is_main
        self.resume_from: Path | None = None
        self._token = uuid.uuid4().hex
        self._locked = False
        self._created: list[Path] = []
        self._previous_sigterm: Any = None

    # --- checks (no writes) ------------------------------------------------------------------
    def check(self) -> None:
        """Every check, writing nothing; raises :class:`RunDirError` / ``ValueError``."""
        out = self.path
        _check_writable(out)
        if self.is_main:
            self._check_lock()
        found = _holds_run(out) if out.is_dir() else []
        if not found or self.overwrite:
            return
        if not self.resume:
            raise RunDirError(
                f"--out {out} holds another run ({', '.join(found)}). Continue it with --resume,"
                " replace it with --overwrite, or choose another --out."
            )
        saved = _read_config(out)
        if saved is not None and saved.get("command", self.command) != self.command:
            raise RunDirError(
                f"--out {out} holds a `pyrogen {saved['command']}` run; `pyrogen {self.command}"
                " --resume` cannot continue it. Use another --out."
            )
        self.resume_from = check_resumable(  # the Checkpointer warns when it restores
            out / "checkpoints", self.config, self.data, force=self.force_resume, warn=False
        )
        if self.resume_from is None and saved is not None:  # no checkpoint: compare config.json
            diffs = settings_differences(saved, self.config)
            if diffs and not self.force_resume:
                raise RunDirError(
                    f"Cannot resume the run in {out}: it was made with {'; '.join(diffs)}. Use"
                    " the same settings, --force-resume to continue anyway, or --overwrite."
                )

    # --- the lock ------------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def _lock_content(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": self.command,
            "token": self._token,
        }
        return (json.dumps(info) + "\n").encode()

    def _try_lock(self) -> bool:
        """Create the lock file with its content in one step (a hard link of a complete temp
        file); ``False`` if it exists."""
        tmp = self.path / f".pyrogen.lock.{self._token}.tmp"
        tmp.write_bytes(self._lock_content())
        try:
            os.link(tmp, self.lock_path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: exclusive create
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(self._lock_content())
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _check_lock(self) -> bool:
        """Refuse if another live run holds the lock; ``True`` if a stale lock is there."""
        try:
            holder = json.loads(self.lock_path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid, host = {}, -1, "?"
        if holder.get("token") == self._token:
            return False
        if host == socket.gethostname() and not _pid_alive(pid):
            return True
        raise RunDirError(
            f"--out {self.path} is in use by another run (process {pid} on {host}, started"
            f" {holder.get('started', '?')}). Wait for it to finish, or choose another --out; if"
            f" that run is gone, delete {self.lock_path}."
        )

    def _acquire(self) -> None:
        for _ in range(3):
            if self._try_lock():
                self._locked = True
                return
            if self._check_lock():
                print(
                    f"pyrogen: note: taking over the stale lock {self.lock_path} (its process is"
                    " no longer running).",
                    file=sys.stderr,
                )
                self.lock_path.unlink(missing_ok=True)
        raise RunDirError(f"Could not take the lock {self.lock_path}; try again.")

    def _release(self) -> None:
        if not self._locked:
            return
        self._locked = False
        try:
            if json.loads(self.lock_path.read_text()).get("token") == self._token:
                self.lock_path.unlink()
        except (OSError, ValueError):
            pass

    # --- writing ---------------------------------------------------------------------------------
    def _delete_run_files(self) -> None:
        """Delete what a pyrogen run writes in ``path`` (for ``overwrite``), nothing else."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for sub, patterns in RUN_SUBDIRS.items():
            directory = self.path / sub
            if not directory.is_dir():
                continue
            for pattern in patterns:
                for file in directory.glob(pattern):
                    if file.is_file():
                        file.unlink()
            if not any(directory.iterdir()):
                directory.rmdir()

    def _mkdir(self) -> None:
        missing = []
        for parent in [self.path, *self.path.parents]:
            if parent.exists():
                break
            missing.append(parent)
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first

    def __enter__(self) -> RunDir:
        if not self.is_main:
            return self
        self._mkdir()
        try:
            self._acquire()
            self.check()  # again, under the lock: another run may have finished meanwhile
            if self.overwrite:
                self._delete_run_files()
            write_json(self.path / "config.json", self.config)
        except BaseException:
            self._release()
            for directory in self._created:  # leave no empty directories behind
                try:
                    directory.rmdir()
                except OSError:
                    break
            raise
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        self._release()

    def ensure(self) -> None:
        """Before writing results: recreate ``path``, ``config.json`` and the lock if they were
        deleted during the run (with a warning), so the run's files stay together."""
        if not self.is_main:
            return
        missing = [p.name for p in (self.path, self.path / "config.json") if not p.exists()]
        if not missing:
            return
        print(
            f"pyrogen: warning: {self.path}/ lost {' and '.join(missing)} during the run;"
            " writing them again.",
            file=sys.stderr,
        )
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "config.json", self.config)
        if self._locked and not self.lock_path.exists():
            self._locked = self._try_lock()


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM outside training: unwind (releasing the lock) and exit with 128 + 15."""
    raise SystemExit(128 + signum)


def prepare_run_dir(
    out: str | os.PathLike,
    *,
    command: str,
    config: dict[str, Any],
    resume: bool = False,
    overwrite: bool = False,
    force_resume: bool = False,
    data: tuple[torch.Tensor, ...] | None = None,
    is_main: bool = True,
) -> RunDir:
    """Check that ``out`` can take this run, writing nothing; enter the result to lock it and
    write ``config.json`` (see the module doc).

    :param command: the subcommand (``"vae"``, ``"gan"``); a resume refuses another's run.
    :param config: the run's JSON-like settings, written as ``config.json``; a resume refuses
        other values except :data:`~pyrogen.train.checkpoint.RUN_CONTROL_KEYS`.
    :param resume: continue the run in ``out`` (its newest valid checkpoint).
    :param overwrite: replace the run in ``out`` (only files a pyrogen run writes are deleted).
    :param force_resume: resume even with other settings or data (a warning names them).
    :param data: the training tensors, to refuse a resume on other data before writing.
    :param is_main: ``False`` on the other ranks of a distributed run: check only, no lock, no
        writes.
    :raises RunDirError: ``out`` holds another run, is not writable, or is locked.
    :raises ValueError: a resume with other settings or data (each named).
    """
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite replaces it; give one.")
    run = RunDir(
        Path(out),
        command,
        config,
        bool(resume or force_resume),
        overwrite,
        force_resume,
        data,
        is_main,
    )
    run.check()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank checked before rank 0 writes config.json
    return run
