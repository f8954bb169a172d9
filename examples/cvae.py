"""Train a conditional VAE on scikit-learn's 8x8 digits and draw digits of each requested class.

A template to copy: data and labels -> CVAE model(x, y) / guide(x, y) -> SVI with the Trainer
(``fit(x, y)``) -> samples per class, checked by a classifier of the real digits.

    python examples/cvae.py --steps 1000 --out runs/cvae-example
"""

import argparse
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.evaluate import elbo_and_log_likelihood
from pyrogen.models import CVAE
from pyrogen.train import SVIStep, Trainer, set_seed


def main(args: argparse.Namespace) -> None:
    set_seed(args.seed)
    data = load_dataset("digits", binarize="dynamic")  # 1437 train / 360 test, labels 0..9
    cvae = CVAE(data.dim, 10, args.latent_dim, hidden=[args.hidden], num_data=len(data.train_x))

    # The conditional ELBO E_q[log p(x | z, y)] - KL(q(z | x, y) || N(0, I)); the Trainer passes
    # each batch as model(x, y), guide(x, y).
    step = SVIStep(cvae.model, cvae.guide, lr=args.lr, loss_scale=1 / len(data.train_x))
    trainer = Trainer(
        step,
        batch_size=128,
        steps=args.steps,
        seed=args.seed,
        transform=data.train_transform,  # dynamic binarization of x only
        progress=not args.smoke_test,
    )
    history = trainer.fit(data.train_x, data.train_y)
    test_elbo, test_ll = elbo_and_log_likelihood(
        cvae, data.test_x, data.test_y, num_samples=args.is_samples
    )
    print(
        f"train -ELBO {history.losses[-1]:.2f} | test ELBO {test_elbo:.2f} | "
        f"test log p(x | y) >= {test_ll:.2f} nats per image (K = {args.is_samples})"
    )

    # Does the model draw the class it is asked for? A classifier of the real digits decides.
    plain = load_dataset("digits")
    classifier = LogisticRegression(max_iter=2000).fit(plain.train_x, plain.train_y)
    real = classifier.score(plain.test_x, plain.test_y)
    print(f"classifier accuracy on the real test digits: {real:.3f}")
    classes = torch.arange(10)
    samples = cvae.sample(args.per_class, y=classes)  # per_class of class 0, then of class 1, ...
    predicted = torch.as_tensor(classifier.predict(samples.numpy())).view(10, args.per_class)
    per_class = (predicted == classes[:, None]).float().mean(1)
    print("samples recognised as the requested class:")
    print("  " + "  ".join(f"{c}: {a:.2f}" for c, a in enumerate(per_class.tolist())))
    print(f"overall class accuracy of samples: {per_class.mean():.3f} (chance 0.1)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = cvae.sample(10, y=classes)  # row c: ten samples of class c
    plot.image_grid(grid, data.shape, out / "samples.png", 10, "row c: samples of class c")
    print(f"figure in {out}/samples.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--is-samples", type=int, default=500)
    parser.add_argument("--per-class", type=int, default=100, help="samples per class to classify")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/cvae-example")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings, for tests")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps, args.hidden, args.is_samples, args.per_class = 200, 64, 10, 20
    main(args)
