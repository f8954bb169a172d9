"""Mode coverage of ``pyrogen gan``'s defaults on ring8 and grid25 (5 seeds, mean ± sd).

Metrics as in VEEGAN / PacGAN: modes with at least one sample within 3σ, the fraction of
high-quality samples (within 3σ of a mode), and the reverse KL of the mode histogram to uniform,
all on 2500 samples. Target (issue 5): 8/8 and 25/25 modes with ≥ 90 % high-quality samples
within 20 000 generator steps.

Every setting comes from ``pyrogen.train.presets.TOY_DEFAULTS``, the defaults of ``pyrogen gan``
on toy data (loss, steps, batch size, packing, network sizes, latent dimension, late learning-rate
decay, generator EMA); the options below only override them for experiments.

Run: ``python benchmarks/gan_modes.py [--data ring8 grid25] [--seeds 5] [--first-seed 0]``
(one seed of 20 000 steps takes ~4-6 min on a free CPU core).
"""

import argparse
import statistics
import time

import torch

from pyrogen.data import load_dataset
from pyrogen.evaluate import mode_coverage
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import AdversarialStep, Trainer
from pyrogen.train.presets import TOY_DEFAULTS


def run_one(name: str, args: argparse.Namespace, seed: int) -> dict:
    data = load_dataset(name)
    torch.manual_seed(seed)
    gen = Generator(args.latent_dim, 2, hidden=args.hidden)
    critic = Critic(2, hidden=args.hidden, pack=args.pack)
    step = AdversarialStep(
        gen,
        critic,
        args.loss,
        critic_lr=args.critic_lr,
        lr_decay=args.lr_decay,
        total_steps=args.steps,
        ema=args.ema or None,
    )
    start = time.perf_counter()
    Trainer(step, batch_size=args.batch_size, steps=args.steps, seed=seed, progress=False).fit(
        data.train_x
    )
    seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    out = mode_coverage(step.sampler.sample(2500), data.centers, data.sigma)
    out["seconds"] = seconds
    return out


def _fmt(values, pct=False):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f} %" if pct else f"{mean:.2f} ± {sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed+1…")
    toy = TOY_DEFAULTS
    parser.add_argument("--steps", type=int, default=toy.steps)
    parser.add_argument("--loss", default=toy.loss)
    parser.add_argument("--pack", type=int, default=toy.pack)
    parser.add_argument("--batch-size", type=int, default=toy.batch_size)
    parser.add_argument("--hidden", type=int, nargs="+", default=list(toy.hidden))
    parser.add_argument("--latent-dim", type=int, default=toy.latent_dim)
    parser.add_argument("--lr-decay", type=float, default=toy.lr_decay)
    parser.add_argument("--ema", type=float, default=toy.ema, help="0 = off")
    parser.add_argument("--critic-lr", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| data | loss | steps | modes | high quality | reverse KL | s / run |")
    print("|---|---|---|---|---|---|---|")
    for name in args.data:
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runs.append(run_one(name, args, seed))
            r = runs[-1]
            print(
                f"<!-- {name} seed {seed}: {r['modes']}/{r['num_modes']} modes,"
                f" HQ {r['high_quality']:.3f}, rev KL {r['reverse_kl']:.3f},"
                f" {r['seconds']:.0f} s -->",
                flush=True,
            )
        label = (
            f"{args.loss}"
            + (f" pack {args.pack}" if args.pack > 1 else "")
            + f", MLP {'-'.join(map(str, args.hidden))}, z ∈ R^{args.latent_dim}"
            + (f", lr decay last {args.lr_decay:g}" if args.lr_decay else "")
            + (f", EMA {args.ema:g}" if args.ema else "")
        )
        print(
            f"| {name} | {label} | {args.steps} | {_fmt([r['modes'] for r in runs])}"
            f" / {runs[0]['num_modes']} | {_fmt([r['high_quality'] for r in runs], True)} |"
            f" {_fmt([r['reverse_kl'] for r in runs])} |"
            f" {statistics.fmean(r['seconds'] for r in runs):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
