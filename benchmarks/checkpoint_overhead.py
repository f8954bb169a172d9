"""Checkpoint overhead as a percentage of step time (VAE on digits, default CLI sizes).

Run: ``python benchmarks/checkpoint_overhead.py``. Times the same training with and without a
checkpoint after every step, in the same process, and prints the cost of one checkpoint relative
to one step, and the overhead at ``--checkpoint-every 500`` (the CLI default).
"""

from __future__ import annotations

import tempfile
import time

import pyro
import torch

from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.train import SVIStep, Trainer

STEPS = 150


def _time(checkpoint_dir=None) -> float:
    pyro.clear_param_store()
    data = load_dataset("digits", binarize="dynamic")
    vae = VAE(data.dim, 10, (400,), num_data=len(data.train_x))
    step = SVIStep(vae.model, vae.guide, lr=1e-3)
    trainer = Trainer(
        step,
        batch_size=128,
        steps=STEPS,
        transform=data.train_transform,
        progress=False,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=1 if checkpoint_dir else None,
    )
    start = time.perf_counter()
    trainer.fit(data.train_x)
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    _time()  # warm-up
    plain = min(_time() for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        with_ckpt = min(_time(tmp) for _ in range(3))
    step = plain / STEPS
    per_ckpt = (with_ckpt - plain) / STEPS
    print(f"step {1e3 * step:.2f} ms, checkpoint {1e3 * per_ckpt:.2f} ms")
    print(f"one checkpoint = {100 * per_ckpt / step:.0f}% of one step")
    for every in (1, 100, 500):
        print(f"overhead at --checkpoint-every {every}: {100 * per_ckpt / (every * step):.2f}%")


if __name__ == "__main__":
    main()
