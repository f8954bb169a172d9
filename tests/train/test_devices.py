"""Devices: CPU always; CUDA, AMP and NCCL only with a GPU (skipped otherwise, never deleted)."""

import pytest
import torch

from pyrogen.cli import main
from pyrogen.models import VAE
from pyrogen.train import SVIStep, Trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TINY = [
    "--epochs",
    "1",
    "--hidden",
    "8",
    "--latent-dim",
    "2",
    "--num-is-samples",
    "2",
    "--no-progress",
]


def test_amp_on_cpu_is_refused_with_advice(tmp_path, capsys):
    assert main(["vae", "--out", str(tmp_path), "--amp", *TINY]) == 2
    assert "--amp needs a CUDA device" in capsys.readouterr().err


def test_trainer_refuses_amp_on_cpu():
    vae = VAE(4, 2, (8,))
    trainer = Trainer(
        SVIStep(vae.model, vae.guide), batch_size=4, steps=1, amp=True, progress=False
    )
    with pytest.raises(ValueError, match="needs a CUDA device"):
        trainer.fit(torch.rand(8, 4).round())


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_training_checkpoints_and_resumes(tmp_path, amp):
    args = ["vae", "--out", str(tmp_path), "--device", "cuda", *TINY]
    assert main([*args, *(["--amp"] if amp else [])]) == 0
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state.values())
    assert main([*args, "--resume", "--epochs", "2"]) == 0
