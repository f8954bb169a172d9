"""Train a variational auto-encoder on scikit-learn's 8x8 digits and look at what it learned.

A template to copy: data -> Pyro model/guide -> SVI with the Trainer -> metrics and figures.

    python examples/vae.py --epochs 100 --latent-dim 2 --out runs/vae-example
"""

import argparse
from pathlib import Path

import torch

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.evaluate import elbo_and_log_likelihood
from pyrogen.models import VAE
from pyrogen.models.latent import interpolate
from pyrogen.train import SVIStep, Trainer, set_seed


def main(args: argparse.Namespace) -> None:
    set_seed(args.seed)
    data = load_dataset("digits", binarize="dynamic")  # 1437 train / 360 test, 64 pixels
    vae = VAE(data.dim, args.latent_dim, hidden=[args.hidden], num_data=len(data.train_x))

    # The ELBO: reparameterized gradients, analytic KL (Pyro's TraceMeanField_ELBO by default).
    step = SVIStep(vae.model, vae.guide, lr=args.lr, loss_scale=1 / len(data.train_x))
    trainer = Trainer(
        step,
        batch_size=128,
        epochs=args.epochs,
        seed=args.seed,
        transform=data.train_transform,
        progress=not args.smoke_test,
    )
    history = trainer.fit(data.train_x)

    test_elbo, test_ll = elbo_and_log_likelihood(vae, data.test_x, num_samples=args.is_samples)
    print(
        f"train -ELBO {history.losses[-1]:.2f} | test ELBO {test_elbo:.2f} | "
        f"test log p(x) >= {test_ll:.2f} nats per image (K = {args.is_samples})"
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot.image_grid(vae.sample(64), data.shape, out / "samples.png", ncol=8)
    codes, _ = vae.encode(data.test_x[:2])
    line = interpolate(codes[0], codes[1], steps=10)  # (10, latent_dim)
    plot.image_grid(vae.decode(line), data.shape, out / "interpolation.png", ncol=10)
    plot.latent_scatter(vae.encode(data.test_x)[0], data.test_y, out / "latent.png")
    plot.loss_curve(history.losses, out / "loss.png", "-ELBO per example (nats)")
    torch.save(vae.state_dict(), out / "model.pt")
    print(f"figures and model in {out}/")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--is-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/vae-example")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings, for tests")
    args = parser.parse_args()
    if args.smoke_test:
        args.epochs, args.hidden, args.is_samples = 2, 32, 10
    main(args)
