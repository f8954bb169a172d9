"""pix2pix super-resolution (Isola et al. 2017) on scikit-learn's 8x8 digits: 4x4 -> 8x8.

A template to copy: the translator x_out = G(x_in, z) is a Pyro program (``Translator.model(n,
y=x_in)`` records its output at the site "x"), the critic d(x_out, x_in) sees the pair, and the
generator's objective is ``WeightedLoss([(1, adversarial), (100, L1)])``, trained by an
AdversarialStep with the Trainer on ``fit(inputs, targets)``. The input is the 2x2-block average
upsampled back to 8x8 with bicubic interpolation, which is also the baseline to beat; the same
budget with ``adv_weight=0`` is the L1-only model.

    python examples/super_resolution.py --steps 600 --out runs/super-resolution-example
"""

import argparse
import time
from pathlib import Path

import torch

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.data.translation import superres_pairs
from pyrogen.evaluate.translation import psnr
from pyrogen.models.translation import PairCritic, Translator
from pyrogen.train import Trainer, pix2pix_step, set_seed


def train(x_in, x_target, adv_weight: float, args) -> Translator:
    set_seed(args.seed)
    translator = Translator((8, 8), noise_dim=4, base_channels=16, residual=True)
    critic = PairCritic((8, 8), base_channels=16)
    # a batch (inputs, targets) -> translator(n, y=inputs, target=targets); the critic's real
    # examples are the targets, scored as critic(target, inputs)
    step = pix2pix_step(translator, critic, l1_weight=100.0, adv_weight=adv_weight, lr=1e-3)
    Trainer(step, batch_size=64, steps=args.steps, seed=args.seed, progress=False).fit(
        x_in, x_target
    )
    return translator


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = load_dataset("digits")
    x_in, x_target = superres_pairs(data.train_x, (8, 8), factor=2)
    test_in, test_target = superres_pairs(data.test_x, (8, 8), factor=2)
    start = time.perf_counter()
    pix2pix = train(x_in, x_target, adv_weight=1.0, args=args)
    l1_only = train(x_in, x_target, adv_weight=0.0, args=args)
    print(f"trained pix2pix and the L1-only model, {args.steps} steps each, in"
          f" {time.perf_counter() - start:.1f} s")  # fmt: skip
    set_seed(args.seed)
    outputs = [pix2pix.translate(test_in) for _ in range(3)]
    results = {
        "bicubic": psnr(test_in, test_target),
        "L1 only": psnr(l1_only.translate(test_in), test_target),
        "pix2pix": psnr(outputs[0], test_target),
    }
    print(f"held-out PSNR (dB) on {len(test_in)} test digits:")
    for name, value in results.items():
        print(f"  {name:8s} {value:.2f}")
    print(f"pix2pix gain over bicubic: {results['pix2pix'] - results['bicubic']:.2f} dB")
    print(f"mean pixel std over 3 draws of z: {torch.stack(outputs).std(0).mean():.4f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [test_in[:10], l1_only.translate(test_in[:10]), *[o[:10] for o in outputs]]
    rows.append(test_target[:10])
    labels = ["bicubic", "L1 only", "z1", "z2", "z3", "truth"]
    plot.image_grid(torch.cat(rows), (8, 8), out / "super_resolution.png", 10,
                    "pix2pix super-resolution 4x4 -> 8x8", labels)  # fmt: skip
    print(f"wrote {out / 'super_resolution.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/super-resolution-example")
    parser.add_argument("--smoke-test", action="store_true", help="150 steps (for the tests)")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps = 150
    main(args)
