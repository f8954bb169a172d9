"""``pyrogen vae --model vae-gan|aae``: the auto-encoders with a critic (flags, checks, model,
training step, evaluation and figures); ``pyrogen vae`` (:mod:`pyrogen.cli.vae`) drives them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from pyrogen import plot
from pyrogen.evaluate import sliced_wasserstein
from pyrogen.infer import LOSSES
from pyrogen.models import VAEGAN, AdversarialAutoencoder, gaussian_mixture_prior
from pyrogen.train import aae_step, vae_gan_step

MODELS = ("vae", "vae-gan", "aae")
#: Per-example adversarial weight λ₁ by model (the training loss is a sum over the data set, so
#: the step uses num_data × λ₁); measured on digits: both VAE-GAN terms decrease at 7, the AAE's
#: codes match the 10-Gaussian prior at 2.
DEFAULT_ADV_WEIGHT = {"vae-gan": 7.0, "aae": 2.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("adversarial auto-encoders (--model vae-gan / aae)")
    group.add_argument(
        "--model",
        choices=MODELS,
        default="vae",
        help="vae: ELBO only. vae-gan: VAE + a critic on data vs. reconstructions, trained on"
        " -ELBO + λ·GAN loss (Larsen et al., 2016); test ELBO / log p(x) as for the VAE."
        " aae: adversarial autoencoder (Makhzani et al., 2016), deterministic encoder whose codes"
        " a critic matches to --prior instead of a KL term; reports the test reconstruction"
        " error and the sliced W1 of test codes to the prior",
    )
    group.add_argument(
        "--adv-weight",
        type=float,
        default=None,
        metavar="λ",
        help="weight of the adversarial term per training example (the loss is a sum over the"
        f" training set, so the step uses N·λ); default {DEFAULT_ADV_WEIGHT}",
    )
    group.add_argument(
        "--adv-loss",
        choices=sorted(LOSSES),
        default=None,
        help="adversarial loss of the critic/generator game (default nsgan)",
    )
    group.add_argument(
        "--critic-hidden",
        type=int,
        nargs="+",
        default=None,
        help="hidden sizes of the critic (default: 256 256)",
    )
    group.add_argument(
        "--prior",
        choices=["gaussian", "mixture"],
        default=None,
        help="aae only: N(0, I) (default) or mixture = 10 Gaussians on a circle (needs"
        " --latent-dim 2)",
    )


def check(args: argparse.Namespace) -> None:
    """Refuse flag combinations that do not apply to ``--model`` (one actionable line each)."""
    model = args.model
    if model == "vae":
        given = [
            f for f in ("adv_weight", "adv_loss", "critic_hidden", "prior") if getattr(args, f)
        ]
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ValueError(f"{flags} only apply to --model vae-gan or aae; add --model.")
        return
    if args.conditional:
        raise ValueError(f"--conditional trains a CVAE; drop it or drop --model {model}.")
    if args.estimator != "reparam" or args.num_particles != 1:
        raise ValueError(
            f"--model {model} trains with the reparameterized ELBO / reconstruction and one"
            " particle; drop --estimator and --num-particles."
        )
    if args.prior is not None and model != "aae":
        raise ValueError(f"--prior applies to --model aae only; drop it for --model {model}.")
    if args.prior == "mixture" and args.latent_dim != 2:
        raise ValueError(
            f"--prior mixture is a 2-D prior; use --latent-dim 2 (got {args.latent_dim})."
        )
    if args.adv_weight is not None and not args.adv_weight >= 0:
        raise ValueError(f"--adv-weight must be >= 0, got {args.adv_weight}.")


def settings(args: argparse.Namespace, num_data: int) -> dict[str, Any]:
    """The adversarial settings recorded in config.json."""
    weight = DEFAULT_ADV_WEIGHT[args.model] if args.adv_weight is None else args.adv_weight
    out = {
        "adv_weight": weight,
        "adv_weight_sum": weight * num_data,
        "adv_loss": args.adv_loss or "nsgan",
    }
    if args.model == "aae":
        out["prior"] = args.prior or "gaussian"
    return out


def build(args: argparse.Namespace, dim: int, num_data: int) -> VAEGAN | AdversarialAutoencoder:
    critic = {} if args.critic_hidden is None else {"critic_hidden": args.critic_hidden}
    sizes = (dim, args.latent_dim, args.hidden, args.likelihood)
    if args.model == "vae-gan":
        return VAEGAN(*sizes, num_data=num_data, **critic)
    prior = gaussian_mixture_prior() if args.prior == "mixture" else None
    return AdversarialAutoencoder(*sizes, prior=prior, num_data=num_data, **critic)


def step(model, args: argparse.Namespace, adv: dict[str, Any]):
    build_step = vae_gan_step if args.model == "vae-gan" else aae_step
    return build_step(model, adv["adv_weight_sum"], adv["adv_loss"], lr=args.lr, critic_lr=args.lr)


@torch.no_grad()
def aae_metrics(aae: AdversarialAutoencoder, test: torch.Tensor, seed: int) -> dict[str, float]:
    """Test reconstruction error -log p(x | z = f(x)) per example and sliced W1 of the test codes
    to as many prior samples."""
    codes = aae.encode(test)
    recon = -aae.likelihood.distribution(aae.decoder(codes)).log_prob(test).mean()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    prior = aae.prior_sample(max(len(test), 2000))
    return {
        "test_reconstruction": float(recon),
        "sliced_w1_codes_to_prior": sliced_wasserstein(codes.cpu(), prior.cpu()),
    }


def aae_figures(aae, dataset, history, out: Path, seed: int, shape) -> None:
    """samples.png (prior samples decoded), reconstructions.png, codes.png (2-D codes over prior
    samples; latent.png, a PCA map, for other sizes) and loss.png."""
    device = next(aae.parameters()).device
    torch.manual_seed(seed)
    test = dataset.test_x.to(device)
    plot.image_grid(
        aae.sample(100).cpu(), shape, out / "samples.png", 10, "prior samples decoded (means)"
    )
    plot.reconstructions(
        test[:30].cpu(), aae.reconstruct(test[:30]).cpu(), shape, out / "reconstructions.png"
    )
    codes = aae.encode(test).cpu()
    if aae.latent_dim == 2:
        prior = aae.prior_sample(2000).cpu()
        plot.plot_codes_over_prior(codes, dataset.test_y, prior, path=out / "codes.png")
    else:
        plot.latent_scatter(codes, dataset.test_y, out / "latent.png")
    plot.loss_curve(
        history.column("reconstruction"),
        out / "loss.png",
        "reconstruction −log p(x | z) per training example (nats)",
        "training loss",
    )
