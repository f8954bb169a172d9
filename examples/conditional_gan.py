"""Train a conditional GAN on scikit-learn's 8x8 digits and draw digits of each requested class.

A template to copy (Mirza & Osindero, 2014): data and labels -> Generator g(z, y) and Critic
d(x, y) with num_classes -> AdversarialStep with the Trainer (``fit(x, y)``: each batch calls
``model(n, y=y)`` and ``critic(x, y)``) -> samples per class, checked by a classifier of the
real digits.

    python examples/conditional_gan.py --steps 3000 --out runs/conditional-gan-example
"""

import argparse
import time
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic
from pyrogen.train import AdversarialStep, Trainer, set_seed


def main(args: argparse.Namespace) -> None:
    set_seed(args.seed)
    data = load_dataset("digits")  # 1437 train / 360 test, pixels in [0, 1], labels 0..9
    classes = int(data.train_y.max()) + 1
    hidden = [args.hidden, args.hidden]
    # The label enters both networks one-hot: x = g(z, y), score d(x, y).
    gen = Generator(args.latent_dim, data.dim, hidden, num_classes=classes, output="sigmoid")
    critic = Critic(data.dim, hidden, num_classes=classes, activation="leaky_relu")
    step = AdversarialStep(gen, critic, args.loss, lr=args.lr)
    trainer = Trainer(
        step, batch_size=64, steps=args.steps, seed=args.seed, progress=not args.smoke_test
    )
    start = time.perf_counter()
    history = trainer.fit(data.train_x, data.train_y)  # batches (x, y): real digits and labels
    print(
        f"{args.loss}: {len(history)} generator steps in {time.perf_counter() - start:.1f} s,"
        f" final critic loss {history.column('critic_loss')[-1]:.3f}"
    )

    # Does the generator draw the class it is asked for? A classifier of the real digits decides.
    classifier = LogisticRegression(max_iter=2000).fit(data.train_x, data.train_y)
    real = classifier.score(data.test_x, data.test_y)
    print(f"classifier accuracy on the real test digits: {real:.3f}")
    y = torch.arange(classes).repeat_interleave(args.per_class)  # per_class of 0, then of 1, ...
    samples = gen.sample(len(y), y=y)
    predicted = torch.as_tensor(classifier.predict(samples.numpy()))
    per_class = (predicted == y).float().view(classes, args.per_class).mean(1)
    print("samples recognised as the requested class:")
    print("  " + "  ".join(f"{c}: {a:.2f}" for c, a in enumerate(per_class.tolist())))
    print(f"overall class accuracy of samples: {per_class.mean():.3f} (chance {1 / classes:.1f})")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = samples.view(classes, args.per_class, -1)[:, :10].reshape(-1, data.dim)
    title = f"conditional {args.loss} GAN, row c: samples of class c"
    plot.image_grid(grid, data.shape, out / "samples.png", 10, title, range(classes))
    print(f"figure in {out}/samples.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="nsgan", help="nsgan, hinge, wgan-gp, ...")
    parser.add_argument("--steps", type=int, default=3000, help="generator updates")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam rate of both networks")
    parser.add_argument("--per-class", type=int, default=100, help="samples per class to classify")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/conditional-gan-example")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings, for tests")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps, args.per_class = 2000, 20
    main(args)
