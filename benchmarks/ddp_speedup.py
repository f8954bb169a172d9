"""Data-parallel speed-up: 1 vs 2 CPU processes (gloo), same global batch, VAE on digits.

Run: ``python benchmarks/ddp_speedup.py``. Each configuration trains the same number of steps on
the same global batches; prints wall-clock time per step and the ratio, measured in one run.
One thread per process, so two processes use the two cores; the one-process run is also timed
with two threads (the fair baseline on a 2-core machine).
"""

from __future__ import annotations

import os
import tempfile
import time

import pyro
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.train import SVIStep, Trainer

STEPS, BATCH = 80, 512


def _warm_up() -> None:
    """Pay one-time costs (the first torch.optim.Adam imports torch._dynamo, ~1-2 s) before
    any timing, so they are not charged to whichever configuration runs first."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _fit() -> float:
    _warm_up()
    pyro.clear_param_store()
    data = load_dataset("digits", binarize="dynamic")
    torch.manual_seed(0)
    vae = VAE(data.dim, 10, (400,), num_data=len(data.train_x))
    step = SVIStep(vae.model, vae.guide, lr=1e-3)
    trainer = Trainer(
        step, batch_size=BATCH, steps=STEPS, transform=data.train_transform, progress=False
    )
    start = time.perf_counter()
    trainer.fit(data.train_x)
    return (time.perf_counter() - start) / STEPS


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rdv", rank=rank, world_size=world)
    seconds = _fit()
    if rank == 0:
        with open(f"{tmp}/time", "w") as f:
            f.write(str(seconds))
    dist.destroy_process_group()


def _distributed(world: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, tmp), nprocs=world, join=True)
        with open(f"{tmp}/time") as f:
            return float(f.read())


def main() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    one_thread = _fit()
    torch.set_num_threads(2)
    two_threads = _fit()
    two_procs = _distributed(2)
    print(f"global batch {BATCH}, {STEPS} steps, {os.cpu_count()} cores")
    print(f"1 process, 1 thread : {1e3 * one_thread:.1f} ms/step")
    print(f"1 process, 2 threads: {1e3 * two_threads:.1f} ms/step")
    print(f"2 processes (gloo)  : {1e3 * two_procs:.1f} ms/step")
    print(f"speed-up vs 1 thread : {one_thread / two_procs:.2f}x")
    print(f"speed-up vs 2 threads: {two_threads / two_procs:.2f}x")


if __name__ == "__main__":
    main()
