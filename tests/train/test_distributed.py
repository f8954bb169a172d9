"""Data-parallel training over 2 CPU processes (gloo) equals one process on the global batches."""

import os
import subprocess
import sys

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from pyrogen.train import SVIStep, Trainer
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint

N = 25  # batch 10: batches of 10, 10, 5 rows; the last one is split 3 / 2 over two ranks


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 + 0.1 * torch.randn(N, generator=g)
    return torch.cat([x, y.unsqueeze(-1)], -1)


def _model(data):
    r"""Linear regression with the data plate scaled by N / batch size (deterministic loss)."""
    w = pyro.param("w", torch.zeros(3))
    b = pyro.param("b", torch.tensor(0.0))
    prior_scale = pyro.param("prior", torch.tensor(1.0))  # a global (unplated) term
    pyro.factor("ridge", -(w**2).sum() / prior_scale)
    x, y = data[:, :3], data[:, 3]
    with pyro.plate("data", N, subsample=torch.arange(len(data))):
        pyro.sample("y", dist.Normal(x @ w + b, 1.0), obs=y)


def _train(steps=6, **kwargs):
    step = SVIStep(_model, lambda data: None, lr=0.05)
    trainer = Trainer(step, batch_size=10, steps=steps, seed=0, progress=False, **kwargs)
    history = trainer.fit(_data())
    params = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return params, history.losses


def _worker(rank, world_size, tmp, kwargs):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        params, losses = _train(**kwargs)
        torch.save({"params": params, "losses": losses}, f"{tmp}/rank{rank}.pt")
        torch_dist.barrier()  # no rank tears gloo down while the other is still in a collective
    finally:
        torch_dist.destroy_process_group()


def _spawn(tmp_path, **kwargs):
    mp.spawn(_worker, args=(2, str(tmp_path), kwargs), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_two_gloo_ranks_equal_one_process_on_the_global_batches(tmp_path):
    single, single_losses = _train()
    pyro.clear_param_store()
    ranks = _spawn(tmp_path, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=3)
    for name, value in single.items():
        assert torch.equal(ranks[0]["params"][name], ranks[1]["params"][name]), name  # in sync
        assert torch.allclose(ranks[0]["params"][name], value, atol=1e-5, rtol=1e-5), name
    assert ranks[0]["losses"] == pytest.approx(single_losses, rel=1e-5)
    state = load_checkpoint(list_checkpoints(tmp_path / "ckpt")[-1])  # written by rank 0 only
    assert state["step"] == 6 and len(state["rng"]) == 2 and state["trainer"]["world_size"] == 2


def _random_start(data):
    """Parameters drawn at random on first use: every rank draws others (seed + rank)."""
    w = pyro.param("w", lambda: torch.randn(3))
    with pyro.plate("data", N, subsample=torch.arange(len(data))):
        pyro.sample("y", dist.Normal(data[:, :3] @ w, 1.0), obs=data[:, 3])


def _sync_worker(rank, world_size, tmp, param_scope):
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world_size
    )
    try:
        step = SVIStep(_random_start, lambda data: None, lr=0.05, param_scope=param_scope)
        Trainer(step, batch_size=10, steps=2, seed=rank, progress=False).fit(_data())
        with step.param_scope():
            torch.save(pyro.param("w").detach(), f"{tmp}/rank{rank}.pt")
        torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


@pytest.mark.parametrize("param_scope", [False, True])
def test_ranks_start_from_rank_0s_parameters_in_either_store(tmp_path, param_scope):
    mp.spawn(_sync_worker, args=(2, str(tmp_path), param_scope), nprocs=2, join=True)
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert torch.equal(w0, w1)


@pytest.mark.slow
def test_torchrun_vae_trains_resumes_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    base = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "pyrogen",
        "vae",
        "--out",
        str(out),
        "--hidden",
        "8",
        "--latent-dim",
        "2",
        "--num-is-samples",
        "2",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*base, "--epochs", "1"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("pyrogen vae:") == 1  # rank 0 prints, rank 1 is silent
    again = subprocess.run(
        [*base, "--epochs", "2", "--resume"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    state = load_checkpoint(list_checkpoints(out / "checkpoints")[-1])
    assert state["trainer"]["world_size"] == 2 and state["epoch"] == 2
    assert (out / "model.pt").is_file()
