"""Issue 14 at the command line: one-line errors with exit codes, --debug, seed range, and the
run directory contract of prepare_run_dir."""

import json

import pytest

from pyrogen.cli import main
from pyrogen.train import checkpoint as ckpt

TINY = ["--hidden", "8", "--latent-dim", "2", "--num-is-samples", "2", "--no-progress"]


def _one_line_error(capsys, code, result):
    err = capsys.readouterr().err
    assert result == code, err
    lines = [line for line in err.splitlines() if not line.startswith("pyrogen vae: warning")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_seed_out_of_range_is_refused_by_argparse(capsys):
    """Before: --seed 2**70 gave 'Overflow when unpacking long long' (a traceback)."""
    with pytest.raises(SystemExit) as stop:
        main(["vae", "--seed", str(2**70)])
    assert stop.value.code == 2
    assert "out of range: give 0 to 4294967295" in capsys.readouterr().err


def test_a_nonfinite_loss_is_one_line_with_exit_1(tmp_path, capsys):
    """Before: a NonFiniteError traceback (--lr 1e6)."""
    args = ["vae", "--out", str(tmp_path / "r"), "--epochs", "3", "--lr", "1e6", *TINY]
    line = _one_line_error(capsys, 1, main(args))
    assert "training failed: Step " in line and "Last good checkpoint" in line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="Unknown data set"):
        main(["vae", "--data", "nope", "--out", str(tmp_path), "--debug"])


def test_an_os_error_is_one_line_with_the_path(tmp_path, capsys, monkeypatch):
    """Before: an OSError traceback (disk full while writing)."""
    import pyrogen.train.files as files

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "r" / "x"))

    monkeypatch.setattr(files.os, "fsync", full)
    line = _one_line_error(capsys, 1, main(["vae", "--out", str(tmp_path / "r"), *TINY]))
    assert f"No space left on device: {tmp_path / 'r' / 'x'}" in line


def test_an_empty_data_name_is_refused(tmp_path, capsys):
    """Before: load_dataset('') read the current directory."""
    line = _one_line_error(capsys, 2, main(["vae", "--data", "", "--out", str(tmp_path)]))
    assert "No data set given" in line


def test_a_fresh_run_into_a_finished_run_is_refused(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["vae", "--out", out, "--epochs", "1", *TINY]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    capsys.readouterr()
    line = _one_line_error(capsys, 2, main(["vae", "--out", out, "--epochs", "1", *TINY]))
    assert "holds another run" in line
    after = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert after == before


def test_a_refused_resume_keeps_the_run_loadable(tmp_path, capsys):
    """`--resume --latent-dim 3` on a latent-2 run: refused, config.json unchanged."""
    out = tmp_path / "r"
    assert main(["vae", "--out", str(out), "--epochs", "1", *TINY]) == 0
    config = (out / "config.json").read_bytes()
    capsys.readouterr()
    args = ["vae", "--out", str(out), "--epochs", "2", "--resume", *TINY, "--latent-dim", "3"]
    line = _one_line_error(capsys, 2, main(args))
    assert "latent_dim=2, this run has latent_dim=3" in line
    assert (out / "config.json").read_bytes() == config


def test_resume_with_corrupt_checkpoints_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["vae", "--out", str(out), "--epochs", "1", *TINY]) == 0
    for path in ckpt.list_checkpoints(out / "checkpoints"):
        path.write_bytes(path.read_bytes()[:100])
    capsys.readouterr()
    args = ["vae", "--out", str(out), "--epochs", "2", "--resume", *TINY]
    assert "but none loads" in _one_line_error(capsys, 2, main(args))


def test_overwrite_replaces_and_out_that_is_a_file_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["vae", "--out", str(out), "--epochs", "1", *TINY]) == 0
    assert (
        main(["vae", "--out", str(out), "--epochs", "1", "--overwrite", "--seed", "5", *TINY]) == 0
    )
    assert json.loads((out / "config.json").read_text())["seed"] == 5
    capsys.readouterr()
    line = _one_line_error(capsys, 2, main(["vae", "--out", str(out / "model.pt"), *TINY]))
    assert f"--out {out / 'model.pt'} is a file" in line


def test_force_resume_warns_once_naming_the_setting(tmp_path, capsys):
    """Before: the warning was printed twice (run directory check, then the restore)."""
    out = str(tmp_path / "r")
    assert main(["vae", "--out", out, "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    args = ["vae", "--out", out, "--epochs", "2", "--force-resume", "--lr", "0.002", *TINY]
    assert main(args) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "--force-resume" in line]
    assert len(warned) == 1 and "lr=0.001, this run has lr=0.002" in warned[0], err
