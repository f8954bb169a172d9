"""Issue 14 findings 1 and 4 at the library level: pruning keeps only this run's good
checkpoints, a resume refuses unusable checkpoints and other settings (each named)."""

import warnings

import pyro
import pytest
import torch

from pyrogen.models import VAE
from pyrogen.train import SVIStep, Trainer
from pyrogen.train import checkpoint as ckpt

DATA = torch.rand(40, 6)


def _run(steps, directory, resume=False, keep=3, every=2, latent=2, lr=1e-2, config=None):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(6, latent, (8,), num_data=len(DATA))
    trainer = Trainer(
        SVIStep(vae.model, vae.guide, lr=lr),
        batch_size=16,
        steps=steps,
        seed=3,
        progress=False,
        checkpoint_dir=directory,
        checkpoint_every=every,
        keep_checkpoints=keep,
        resume=resume,
        config={"lr": lr, "model": {"latent_dim": latent}} if config is None else config,
    )
    return trainer, trainer.fit(DATA)


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_junk_high_step_files_are_neither_kept_nor_deleted(tmp_path):
    """Before: pruning kept the 3 highest step numbers, i.e. the junk, and deleted the run's."""
    junk = [ckpt.checkpoint_path(tmp_path, s) for s in (900, 901, 902)]
    for path in junk:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not a checkpoint")
    _run(8, tmp_path, keep=2)
    names = sorted(p.name for p in ckpt.list_checkpoints(tmp_path))
    assert names == ["step-00000006.pt", "step-00000008.pt", *(p.name for p in junk)]


def test_corrupt_checkpoints_make_resume_refuse_and_list_them(tmp_path):
    """Before: resume restarted at step 0 (exit 0) and pruning then deleted the new checkpoints."""
    _run(6, tmp_path, keep=3)
    files = ckpt.list_checkpoints(tmp_path)
    for path in files:
        _corrupt(path)
    with warnings.catch_warnings(), pytest.raises(ckpt.CheckpointError) as err:
        warnings.simplefilter("ignore")
        _run(8, tmp_path, resume=True)
    message = str(err.value)
    assert f"holds {len(files)} checkpoint file(s) but none loads" in message
    assert all(p.name in message for p in files) and "corrupt" in message
    assert ckpt.list_checkpoints(tmp_path) == files  # nothing deleted, nothing written


def test_another_runs_checkpoints_are_not_pruned(tmp_path):
    """A valid checkpoint of another run (other run_id) is not counted and not deleted."""
    _run(20, tmp_path, keep=1, every=None)  # the other run: step-20 only
    other = ckpt.list_checkpoints(tmp_path)
    assert [p.name for p in other] == ["step-00000020.pt"]
    _run(4, tmp_path, keep=1, every=2)  # a fresh run in the same directory (no resume)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000004.pt", other[0].name]


def test_the_checkpoint_resumed_from_is_never_pruned(tmp_path):
    _run(2, tmp_path, keep=1)
    trainer, _ = _run(6, tmp_path, resume=True, keep=1, every=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-00000002.pt", "step-00000006.pt"]
    assert trainer.checkpointer.resumed_from.name == "step-00000002.pt"


def test_resume_names_each_differing_setting_and_force_overrides(tmp_path):
    """Before: another learning rate (in config) resumed silently."""
    _run(2, tmp_path, config={"lr": 0.01, "estimator": "reparam", "epochs": 1})
    other = {"lr": 0.1, "estimator": "iwae", "epochs": 5}  # epochs may change
    with pytest.raises(ValueError) as err:
        _run(4, tmp_path, resume=True, config=other)
    message = str(err.value)
    assert "lr=0.01, this run has lr=0.1" in message
    assert "estimator=reparam, this run has estimator=iwae" in message
    assert "epochs" not in message and "--force-resume" in message
    with pytest.warns(UserWarning, match="estimator=reparam, this run has estimator=iwae"):
        _, history = _run(4, tmp_path, resume="force", config=other)
    assert len(history) == 4


def test_another_model_size_is_one_clear_error(tmp_path):
    """Before: a size-mismatch traceback from load_state_dict (RuntimeError)."""
    _run(2, tmp_path, config={})
    with pytest.raises(ckpt.CheckpointError, match="do not fit this model") as err:
        _run(4, tmp_path, resume=True, latent=3, config={})
    assert "\n" not in str(err.value)


def test_a_checkpoint_past_the_requested_total_warns(tmp_path):
    """Before: fewer steps than already done gave no word."""
    _run(6, tmp_path)
    with pytest.warns(UserWarning, match="step 6, already at or past the requested total of 4"):
        _run(4, tmp_path, resume=True)


def test_check_resumable_refuses_other_data_before_anything_is_written(tmp_path):
    _run(2, tmp_path, config={"lr": 0.01})
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    path = ckpt.check_resumable(tmp_path, {"lr": 0.01}, (DATA,))
    assert path == ckpt.list_checkpoints(tmp_path)[-1]
    with pytest.raises(ValueError, match="trained on other data"):
        ckpt.check_resumable(tmp_path, {"lr": 0.01}, (DATA.flip(0),))
    with pytest.raises(ValueError, match="lr=0.01, this run has lr=0.5"):
        ckpt.check_resumable(tmp_path, {"lr": 0.5}, (DATA,))
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
