"""Train an adversarial autoencoder on scikit-learn's 8x8 digits with 2-D codes matched to 10
Gaussians on a circle (Makhzani et al., 2016, Fig. 4).

A template to copy: AdversarialAutoencoder (deterministic encoder, prior given as a sampler, a
critic on codes) -> ``aae_step`` (critic: prior samples vs. codes; encoder/decoder:
reconstruction + λ · nsgan) with the Trainer -> sliced W1 of the test codes to the prior, for the
trained encoder, the untrained one, and a VAE's guide means at the same budget.

    python examples/adversarial_autoencoder.py --steps 1500 --out runs/aae-example
"""

import argparse
from pathlib import Path

import pyro

from pyrogen import plot
from pyrogen.data import load_dataset
from pyrogen.evaluate import sliced_wasserstein
from pyrogen.models import VAE, AdversarialAutoencoder, gaussian_mixture_prior
from pyrogen.train import SVIStep, Trainer, aae_step, set_seed


def main(args: argparse.Namespace) -> None:
    data = load_dataset("digits")
    n = len(data.train_x)
    set_seed(args.seed)
    prior = gaussian_mixture_prior()  # 10 components, radius 4, scale 0.5
    reference = prior.sample((2000,))
    aae = AdversarialAutoencoder(
        data.dim, 2, hidden=[args.hidden], prior=prior, num_data=n, critic_hidden=(64, 64)
    )
    untrained = sliced_wasserstein(aae.encode(data.test_x), reference)
    # adv_weight is on the reconstruction's scale, a sum over the N training images
    step = aae_step(aae, adv_weight=args.adv_weight * n)
    history = Trainer(step, batch_size=128, steps=args.steps, seed=args.seed, progress=False).fit(
        data.train_x
    )
    codes = aae.encode(data.test_x)
    trained = sliced_wasserstein(codes, reference)
    recon = history.column("reconstruction")
    print(f"AAE reconstruction -log p(x | z) per image: {recon[0]:.2f} -> {recon[-1]:.2f}")

    pyro.clear_param_store()
    vae = VAE(data.dim, 2, hidden=[args.hidden], num_data=n)
    svi = SVIStep(vae.model, vae.guide, lr=1e-3, loss_scale=1 / n)
    Trainer(svi, batch_size=128, steps=args.steps, seed=args.seed, progress=False).fit(data.train_x)
    vae_w = sliced_wasserstein(vae.encode(data.test_x)[0], reference)
    print(
        f"sliced W1 of test codes to the prior: trained AAE {trained:.3f}, untrained"
        f" {untrained:.3f}, VAE {vae_w:.3f} ({args.steps} steps; lower is better)"
    )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot.plot_codes_over_prior(codes, data.test_y, reference, path=out / "codes.png")
    plot.image_grid(aae.sample(100), data.shape, out / "samples.png", 10, "prior samples decoded")
    print(f"figures in {out}/codes.png, {out}/samples.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--adv-weight", type=float, default=2.0, help="λ per training image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/aae-example")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings, for tests")
    args = parser.parse_args()
    if args.smoke_test:
        args.steps = 700
    main(args)
