"""Train a VAE-GAN on scikit-learn's 8x8 digits and compare its reconstructions with a VAE's.

A template to copy: VAEGAN (a VAE recording its decoded mean at "x_rec", plus a critic) ->
``vae_gan_step`` (critic: data vs. reconstructions; encoder/decoder: -ELBO + λ · nsgan) with the
Trainer -> both terms from start to end, and the Fréchet classifier distance (FCD, lower is
sharper / more data-like) of test reconstructions to the test set, against a plain VAE trained for
the same number of steps.

    python examples/vae_gan.py --steps 1500 --out runs/vae-gan-example
"""

import argparse
from pathlib import Path

import numpy as np
import pyro
import torch

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.evaluate.fid import frechet_classifier_distance, train_feature_classifier
from pyrogen.models import VAE, VAEGAN
from pyrogen.train import SVIStep, Trainer, set_seed, vae_gan_step


def main(args: argparse.Namespace) -> None:
    data = load_dataset("digits")  # 1437 train / 360 test, grey levels in [0, 1]
    n, window = len(data.train_x), max(args.steps // 6, 1)
    set_seed(args.seed)
    vaegan = VAEGAN(data.dim, args.latent_dim, [args.hidden], num_data=n, critic_hidden=(64,))
    # adv_weight is on the ELBO's scale, a sum over the N training images: N * (λ per image)
    step = vae_gan_step(vaegan, adv_weight=args.adv_weight * n)
    history = Trainer(step, batch_size=128, steps=args.steps, seed=args.seed, progress=False).fit(
        data.train_x
    )
    e, g = np.array(history.column("neg_elbo")), np.array(history.column("generator"))
    print(f"VAE-GAN -ELBO per image: {e[:window].mean():.2f} -> {e[-window:].mean():.2f}")
    print(f"VAE-GAN generator term (nsgan): {g[:window].mean():.3f} -> {g[-window:].mean():.3f}")

    pyro.clear_param_store()
    set_seed(args.seed)
    vae = VAE(data.dim, args.latent_dim, [args.hidden], num_data=n)
    svi = SVIStep(vae.model, vae.guide, lr=1e-3, loss_scale=1 / n)
    Trainer(svi, batch_size=128, steps=args.steps, seed=args.seed, progress=False).fit(data.train_x)

    # Sharpness: FCD of the reconstructions of the test set to the test set itself.
    classifier = train_feature_classifier(data, epochs=args.classifier_epochs)
    test = data.test_x
    fcd = {
        name: frechet_classifier_distance(model.reconstruct(test), test, classifier)
        for name, model in (("VAE-GAN", vaegan), ("VAE", vae))
    }
    print(
        f"FCD of test reconstructions to the test set: VAE-GAN {fcd['VAE-GAN']:.3f},"
        f" VAE {fcd['VAE']:.3f} (same {args.steps} steps; lower is better)"
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = torch.cat([test[:10], vaegan.reconstruct(test[:10]), vae.reconstruct(test[:10])])
    title = "test digits / VAE-GAN reconstructions / VAE reconstructions"
    plot.image_grid(rows, data.shape, out / "reconstructions.png", 10, title)
    print(f"figure in {out}/reconstructions.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--adv-weight", type=float, default=7.0, help="λ per training image")
    parser.add_argument("--classifier-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/vae-gan-example")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings, for tests")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps, args.classifier_epochs = 300, 10
    main(args)
