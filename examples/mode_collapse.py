"""Mode collapse on ring8 / grid25: the same generator and critic trained with each loss.

Trains gan, nsgan, nsgan with PacGAN packing (pack = 2), wgan and wgan-gp (paper optimizers,
``PRESETS``) for the same number of generator steps, then plots the samples over the true modes
and prints the VEEGAN/PacGAN metrics: modes covered, fraction of high-quality samples (within
3σ of a mode) and the reverse KL of the mode histogram to uniform.

Run: ``python examples/mode_collapse.py [--data ring8|grid25] [--steps 5000] [--out DIR]``.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyrogen.data import load_dataset  # noqa: E402
from pyrogen.evaluate import mode_coverage  # noqa: E402
from pyrogen.models.gan import Generator  # noqa: E402
from pyrogen.nn.adversarial import Critic  # noqa: E402
from pyrogen.plot.adversarial import plot_samples_2d  # noqa: E402
from pyrogen.train import (
    AdversarialStep,  # noqa: E402
    Trainer,  # noqa: E402
)

#: (label, loss, pack, extra AdversarialStep options)
RUNS = [
    ("gan", "gan", 1, {}),
    ("nsgan", "nsgan", 1, {}),
    ("nsgan, pack 2", "nsgan", 2, {}),
    ("wgan", "wgan", 1, {}),
    ("wgan-gp (critic lr 1e-3)", "wgan-gp", 1, {"critic_lr": 1e-3}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["ring8", "grid25"], default="ring8")
    parser.add_argument("--steps", type=int, default=5000, help="generator steps per loss")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128, 128])
    parser.add_argument("--out", default="mode_collapse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-test", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    steps = 10 if args.smoke_test else args.steps
    hidden = [16] if args.smoke_test else args.hidden
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data)
    fig, axes = plt.subplots(1, len(RUNS), figsize=(3.2 * len(RUNS), 3.4))
    print(f"{'loss':28s} {'modes':>7s} {'HQ':>7s} {'rev KL':>7s}")
    for ax, (label, loss, pack, extra) in zip(axes, RUNS, strict=True):
        torch.manual_seed(args.seed)
        gen, critic = Generator(2, 2, hidden), Critic(2, hidden, pack=pack)
        step = AdversarialStep(gen, critic, loss, **extra)
        Trainer(step, batch_size=256, steps=steps, seed=args.seed, progress=False).fit(data.train_x)
        samples = gen.sample(2500)
        m = mode_coverage(samples, data.centers, data.sigma)
        print(
            f"{label:28s} {m['modes']:4d}/{m['num_modes']:<2d} {m['high_quality']:7.1%}"
            f" {m['reverse_kl']:7.3f}"
        )
        plot_samples_2d(
            samples,
            data.centers,
            data.sigma,
            f"{label}\n{m['modes']}/{m['num_modes']} modes, HQ {m['high_quality']:.0%}",
            ax=ax,
        )
    fig.suptitle(f"{args.data}: {steps} generator steps per loss")
    fig.tight_layout()
    fig.savefig(out / f"mode_collapse_{args.data}.png", dpi=100)
    print(f"wrote {out}/mode_collapse_{args.data}.png")


if __name__ == "__main__":
    main()
