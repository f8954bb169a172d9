"""Train a DCGAN (Radford et al., 2016) on scikit-learn's 8x8 digits and check it draws every class.

A template to copy: data -> ConvGeneratorNet inside a Generator (the implicit Pyro model
z ~ N(0, I), x = g(z)) and a ConvCritic -> AdversarialStep with the Trainer -> samples judged by a
classifier trained on the real digits: the share of each class (a collapsed GAN draws a few
classes only), the Fréchet classifier distance (FCD) next to that of two halves of the test set,
and improved precision / recall (Kynkäänniemi et al., 2019).

    python examples/dcgan.py --steps 3000 --out runs/dcgan-example
"""

import argparse
import time
from pathlib import Path

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.evaluate.coverage import class_coverage
from pyrogen.evaluate.fid import frechet_classifier_distance, train_feature_classifier
from pyrogen.evaluate.precision_recall import classifier_precision_recall
from pyrogen.models.gan import Generator
from pyrogen.nn.conv import ConvCritic, ConvGeneratorNet
from pyrogen.train import AdversarialStep, Trainer, set_seed


def main(args: argparse.Namespace) -> None:
    set_seed(args.seed)
    data = load_dataset("digits")  # 1437 train / 360 test 8x8 images, pixels in [0, 1]
    # DCGAN: BatchNorm + ReLU transposed convolutions up from 2x2 maps; LeakyReLU critic.
    net = ConvGeneratorNet(args.latent_dim, data.shape, args.base_channels)
    gen = Generator(args.latent_dim, net=net)
    critic = ConvCritic(data.shape, args.base_channels)
    step = AdversarialStep(gen, critic, "nsgan", lr=2e-4, betas=(0.5, 0.999))
    trainer = Trainer(step, batch_size=64, steps=args.steps, seed=args.seed, progress=False)
    start = time.perf_counter()
    history = trainer.fit(data.train_x)
    print(f"{len(history)} generator steps in {time.perf_counter() - start:.1f} s")

    samples = gen.sample(args.num_samples)
    clf = train_feature_classifier(data, seed=args.seed)  # features and labels for the metrics
    print(f"feature classifier accuracy on the real test digits: {clf.accuracy:.3f}")
    cov = class_coverage(samples, clf, real_labels=data.train_y)
    print("share of samples per class: " + " ".join(f"{q:.3f}" for q in cov["histogram"]))
    print(f"classes drawn at least once: {cov['covered']}/10")
    print(f"classes holding 5-15% of the samples: {cov['in_band'] * 10:.0f}/10")
    print(f"KL(sample classes || data classes): {cov['kl']:.4f}")
    half = len(data.test_x) // 2
    floor = frechet_classifier_distance(data.test_x[:half], data.test_x[half:], clf)
    fcd = frechet_classifier_distance(samples, data.test_x, clf)
    print(f"Frechet classifier distance {fcd:.2f} (two halves of the test set: {floor:.2f})")
    n = len(data.test_x)
    pr = classifier_precision_recall(samples[:n], data.test_x, clf)
    print(f"precision {pr['precision']:.3f}, recall {pr['recall']:.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot.image_grid(samples[:100], data.shape, out / "samples.png", 10, "DCGAN on digits")
    print(f"figure in {out}/samples.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="generator updates")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/dcgan-example")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings, for tests")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps, args.num_samples = 1000, 2000
    main(args)
