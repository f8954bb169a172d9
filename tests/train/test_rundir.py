"""The run directory contract (issue 14 findings 2 and 3): one run per directory, every check
before any write, a lock against concurrent runs, config.json written atomically and last."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from pyrogen.train import checkpoint as ckpt
from pyrogen.train.rundir import LOCK_NAME, RunDirError, prepare_run_dir

CONFIG = {"command": "vae", "lr": 0.01, "epochs": 2, "model": {"latent_dim": 10}}


def _finished_run(out):
    """A finished run's files, a checkpoint and a foreign file."""
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(CONFIG))
    (out / "model.pt").write_bytes(b"weights")
    (out / "samples.png").write_bytes(b"png")
    (out / "notes.txt").write_text("mine")
    state = {"trainer": {"batch_size": 8, "seed": 0, "num_data": 3, "data_sha256": "x"}}
    ckpt.save_checkpoint(out / "checkpoints", 4, {**state, "config": CONFIG}, keep=None)
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _snapshot(out):
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_a_fresh_run_into_another_run_is_refused_and_writes_nothing(tmp_path):
    """Before: the fresh run started and pruning deleted the finished run's checkpoints."""
    before = _finished_run(tmp_path / "run")
    with pytest.raises(RunDirError, match="holds another run .*--resume.*--overwrite"):
        prepare_run_dir(tmp_path / "run", command="vae", config=CONFIG)
    assert _snapshot(tmp_path / "run") == before


def test_overwrite_deletes_only_what_a_run_writes(tmp_path):
    out = tmp_path / "run"
    _finished_run(out)
    (out / "checkpoints" / "mine.txt").write_text("keep")
    new = {**CONFIG, "lr": 0.5}
    with prepare_run_dir(out, command="vae", config=new, overwrite=True):
        assert json.loads((out / "config.json").read_text()) == new
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert names == ["checkpoints", "checkpoints/mine.txt", "config.json", "notes.txt"]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(RunDirError, match="give one"):
        prepare_run_dir(tmp_path, command="vae", config=CONFIG, resume=True, overwrite=True)


def test_a_refused_resume_leaves_config_json_as_it_was(tmp_path):
    """Before: `--resume --latent-dim 3` exited 2 but had rewritten config.json already."""
    out = tmp_path / "run"
    before = _finished_run(out)
    other = {**CONFIG, "model": {"latent_dim": 3}}
    with pytest.raises(ValueError, match="model.latent_dim=10, this run has model.latent_dim=3"):
        prepare_run_dir(out, command="vae", config=other, resume=True)
    assert _snapshot(out) == before


def test_resume_of_another_commands_run_is_refused(tmp_path):
    _finished_run(tmp_path / "run")
    with pytest.raises(RunDirError, match="holds a `pyrogen vae` run"):
        prepare_run_dir(tmp_path / "run", command="gan", config=CONFIG, resume=True)


def test_an_out_that_is_a_file_or_read_only_is_one_clear_error(tmp_path, monkeypatch):
    """Before: an OSError traceback (FileExistsError / PermissionError)."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match=f"--out {tmp_path / 'file'} is a file"):
        prepare_run_dir(tmp_path / "file", command="vae", config=CONFIG)
    with pytest.raises(RunDirError, match="file is a file, not a directory"):
        prepare_run_dir(tmp_path / "file" / "sub", command="vae", config=CONFIG)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root ignores chmod
    with pytest.raises(RunDirError, match=f"{tmp_path} is not writable"):
        prepare_run_dir(tmp_path / "new", command="vae", config=CONFIG)
    assert not (tmp_path / "new").exists()


def test_a_second_concurrent_run_is_refused(tmp_path):
    """Before: two runs on one --out mixed model.pt of one with config.json of the other."""
    out = tmp_path / "run"
    with prepare_run_dir(out, command="vae", config=CONFIG):
        lock = json.loads((out / LOCK_NAME).read_text())
        assert lock["pid"] == os.getpid() and lock["host"]
        with pytest.raises(RunDirError, match=f"in use by another run \\(process {os.getpid()}"):
            prepare_run_dir(out, command="vae", config={**CONFIG, "lr": 1.0}, overwrite=True)
        assert json.loads((out / "config.json").read_text()) == CONFIG
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    host = socket.gethostname()
    (out / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": host, "started": "t"}))
    with prepare_run_dir(out, command="vae", config=CONFIG):
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock {out / LOCK_NAME}" in capsys.readouterr().err


def test_the_lock_is_released_on_errors_and_sigterm(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), prepare_run_dir(out, command="vae", config=CONFIG):
        raise RuntimeError("boom")
    assert not (out / LOCK_NAME).exists()
    with pytest.raises(SystemExit) as stop:
        with prepare_run_dir(out, command="vae", config=CONFIG, overwrite=True):
            os.kill(os.getpid(), signal.SIGTERM)
    assert stop.value.code == 128 + signal.SIGTERM and not (out / LOCK_NAME).exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ensure_rewrites_a_deleted_directory(tmp_path, capsys):
    """Before: deleting --out mid-run lost config.json while the run reported it written."""
    out = tmp_path / "run"
    with prepare_run_dir(out, command="vae", config=CONFIG) as run:
        for p in out.iterdir():
            p.unlink()
        out.rmdir()
        run.ensure()
        assert json.loads((out / "config.json").read_text()) == CONFIG
        assert (out / LOCK_NAME).exists()
    assert "lost" in capsys.readouterr().err


def test_resume_checks_the_data_before_writing(tmp_path):
    from pyrogen.train.checkpoint import data_fingerprint

    out = tmp_path / "run"
    out.mkdir()
    x = torch.rand(5, 2)
    state = {"batch_size": 8, "seed": 0, "num_data": 5, "data_sha256": data_fingerprint(x)}
    ckpt.save_checkpoint(out / "checkpoints", 2, {"trainer": state, "config": CONFIG})
    (out / "config.json").write_text(json.dumps(CONFIG))
    run = prepare_run_dir(out, command="vae", config=CONFIG, resume=True, data=(x,))
    assert run.resume_from.name == "step-00000002.pt"
    with pytest.raises(ValueError, match="trained on other data"):
        prepare_run_dir(out, command="vae", config=CONFIG, resume=True, data=(x + 1,))
