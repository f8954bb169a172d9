"""CycleGAN (Zhu et al. 2017) between scikit-learn's 8x8 digits and *other* digits in bold.

A template to copy: the two generators G: A -> B and F: B -> A are one Pyro program
(``CycleGAN.model(x_a, x_b)`` records G(a), F(G(a)), F(b), G(F(b)) at deterministic sites); two
critics D_A, D_B; a CycleGANStep runs both critics' updates and one joint generator update on
L_GAN(G, D_B) + L_GAN(F, D_A) + λ (|F(G(a)) - a|_1 + |G(F(b)) - b|_1) with the Trainer on
``fit(x_a, x_b)``. The domains are disjoint halves of the training digits (unpaired): A as they
are, B with bolder strokes (each pixel the maximum of itself and its 4 neighbours). A classifier
of each domain's real images then says how often a translated digit keeps its source's label,
and the PSNR of G(a) against bold(a) says how close G is to the true transform.

The generators are ResnetTranslators: generic local conv nets (residual blocks, output
sigmoid(logit(x) + Δ(x))), CycleGAN's inductive bias for appearance changes that keep the
geometry. For a geometric pair (``--domains rotate``) use ``--translator dihedral``: generic
translators find another class-shuffling bijection there (docs/translate.md).
Measured (1000 steps, lr 1e-3): label preservation ~0.9 both ways (ceiling: the classifiers'
accuracy ~0.93-0.95; untranslated digits 0.64 / 0.70), PSNR of G(a) vs bold(a) ~24 dB (a: 7.5).

    python examples/cyclegan.py --steps 1000 --out runs/cyclegan-example
"""

import argparse
import time
from pathlib import Path

import torch

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.data.dataset import Dataset
from pyrogen.data.translation import DOMAIN_PAIRS, unpaired_domains
from pyrogen.evaluate.fid import train_feature_classifier
from pyrogen.evaluate.translation import label_preservation, psnr
from pyrogen.models.translation import CycleGAN
from pyrogen.nn.conv import ConvCritic
from pyrogen.train import Trainer, set_seed
from pyrogen.train.steps.cycle import CycleGANStep


def classifier(name, domain, labels, test, test_labels):
    """A classifier of one domain's real images (trained on its images and labels)."""
    data = Dataset(name, domain, labels, test, test_labels, (8, 8))
    return train_feature_classifier(data, epochs=60)


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    set_seed(args.seed)
    data = load_dataset("digits")
    pair = args.domains
    train = unpaired_domains(data.train_x, (8, 8), pair, data.train_y, seed=args.seed)
    test = unpaired_domains(data.test_x, (8, 8), pair, data.test_y, seed=args.seed)
    model = CycleGAN((8, 8), translator=args.translator)
    critic_a, critic_b = ConvCritic((8, 8), 64), ConvCritic((8, 8), 64)
    step = CycleGANStep(model, critic_a, critic_b, "nsgan", cycle_weight=10.0, lr=args.lr)
    start = time.perf_counter()
    history = Trainer(step, batch_size=64, steps=args.steps, seed=args.seed, progress=False).fit(
        train["a"], train["b"]
    )
    cycle = history.column("cycle_loss")
    k = max(1, len(cycle) // 10)
    print(f"CycleGAN: {len(history)} steps in {time.perf_counter() - start:.1f} s")
    first, last = sum(cycle[:k]) / k, sum(cycle[-k:]) / k
    print(f"cycle loss: first 10% of steps {first:.4f}, last 10% {last:.4f}")

    clf_a = classifier("A", train["a"], train["a_labels"], test["a"], test["a_labels"])
    clf_b = classifier("B", train["b"], train["b_labels"], test["b"], test["b_labels"])
    print(f"classifier accuracy on real domain A: {clf_a.accuracy:.3f}")
    print(f"classifier accuracy on real domain B: {clf_b.accuracy:.3f}")
    fake_b, fake_a = model.a_to_b(test["a"]), model.b_to_a(test["b"])
    a_to_b = label_preservation(clf_b, fake_b, test["a_labels"])
    b_to_a = label_preservation(clf_a, fake_a, test["b_labels"])
    same_a = label_preservation(clf_b, test["a"], test["a_labels"])
    same_b = label_preservation(clf_a, test["b"], test["b_labels"])
    print(f"label preservation A -> B: {a_to_b:.3f} (untranslated: {same_a:.3f})")
    print(f"label preservation B -> A: {b_to_a:.3f} (untranslated: {same_b:.3f}; chance 0.1)")
    true_b = DOMAIN_PAIRS[pair](test["a"], (8, 8))
    print(f"PSNR of G(a) vs {pair}(a): {psnr(fake_b, true_b):.2f} dB")
    print(f"PSNR of a vs {pair}(a): {psnr(test['a'], true_b):.2f} dB")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [test["a"][:10], fake_b[:10], true_b[:10], model.b_to_a(fake_b[:10]),
            test["b"][:10], fake_a[:10], model.a_to_b(fake_a[:10])]  # fmt: skip
    labels = ["A", "G(A)", f"{pair}(A)", "F(G(A))", "B", "F(B)", "G(F(B))"]
    plot.image_grid(torch.cat(rows), (8, 8), out / "cyclegan.png", 10,
                    f"CycleGAN: digits (A) <-> {pair} digits (B)", labels)  # fmt: skip
    print(f"wrote {out / 'cyclegan.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--domains", choices=tuple(DOMAIN_PAIRS), default="bold")
    parser.add_argument("--translator", choices=("resnet", "dihedral", "conv"), default="resnet")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/cyclegan-example")
    parser.add_argument("--smoke-test", action="store_true", help="150 steps (for the tests)")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps = 150
    main(args)
