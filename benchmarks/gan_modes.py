"""Mode coverage of ``pyrogen gan``'s defaults on ring8 and grid25 (5 seeds, mean ± sd).

Metrics as in VEEGAN / PacGAN: modes with at least one sample within 3σ, the fraction of
high-quality samples (within 3σ of a mode), and the reverse KL of the mode histogram to uniform,
all on 2500 samples. Target (issue 5): 8/8 and 25/25 modes with ≥ 90 % high-quality samples
within 20 000 generator steps.

Run: ``python benchmarks/gan_modes.py [--data ring8 grid25] [--seeds 5] [--steps 20000]
[--loss nsgan] [--pack 2]`` (one seed of 20 000 nsgan steps takes ~3-5 min on a free CPU core).
"""

import argparse
import statistics
import time

import torch

from pyrogen.data import load_dataset
from pyrogen.evaluate import mode_coverage
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import Trainer
from pyrogen.train_adversarial import AdversarialStep


def run_one(name: str, loss: str, pack: int, steps: int, seed: int, critic_lr) -> dict:
    data = load_dataset(name)
    torch.manual_seed(seed)
    gen = Generator(2, 2, hidden=(128, 128, 128))
    critic = Critic(2, hidden=(128, 128, 128), pack=pack)
    step = AdversarialStep(gen, critic, loss, critic_lr=critic_lr)
    start = time.perf_counter()
    Trainer(step, batch_size=256, steps=steps, seed=seed, progress=False).fit(data.train_x)
    seconds = time.perf_counter() - start
    torch.manual_seed(seed)
    out = mode_coverage(gen.sample(2500), data.centers, data.sigma)
    out["seconds"] = seconds
    return out


def _fmt(values, pct=False):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f} %" if pct else f"{mean:.2f} ± {sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["ring8", "grid25"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--loss", default="nsgan")
    parser.add_argument("--pack", type=int, default=2)
    parser.add_argument("--critic-lr", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| data | loss | steps | modes | high quality | reverse KL | s / run |")
    print("|---|---|---|---|---|---|---|")
    for name in args.data:
        runs = []
        for seed in range(args.seeds):
            runs.append(run_one(name, args.loss, args.pack, args.steps, seed, args.critic_lr))
            r = runs[-1]
            print(
                f"<!-- {name} seed {seed}: {r['modes']}/{r['num_modes']} modes,"
                f" HQ {r['high_quality']:.3f}, rev KL {r['reverse_kl']:.3f},"
                f" {r['seconds']:.0f} s -->",
                flush=True,
            )
        label = f"{args.loss}" + (f" pack {args.pack}" if args.pack > 1 else "")
        print(
            f"| {name} | {label} | {args.steps} | {_fmt([r['modes'] for r in runs])}"
            f" / {runs[0]['num_modes']} | {_fmt([r['high_quality'] for r in runs], True)} |"
            f" {_fmt([r['reverse_kl'] for r in runs])} |"
            f" {statistics.fmean(r['seconds'] for r in runs):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
