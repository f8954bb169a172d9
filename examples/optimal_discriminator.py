"""The optimal discriminator d*(x) = p_r(x) / (p_r(x) + p_g(x)) and vanishing generator gradients.

1. Train a GAN discriminator (the critic part of ``MinimaxGAN``) between p_r = N(0, 1) and a fixed
   "generator" p_g = N(1, 0.5²) and compare sigmoid(d(x)) with d*(x).
2. Vanishing gradients: for a generator x = z + θ, z ~ N(0, 0.5²), far from p_r = N(0, 0.5²),
   train each critic near its optimum and measure |∂ loss_g / ∂θ| for the minimax loss
   E log(1 − D(g(z))), the non-saturating loss −E log D(g(z)) and the WGAN-GP loss −E d(g(z)).
   The minimax gradient vanishes as the supports separate; the non-saturating and Wasserstein
   ones do not.

Run: ``python examples/optimal_discriminator.py [--steps 400] [--out DIR] [--smoke-test]``.
"""

import argparse
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

from pyrogen.infer import WGAN_GP, MinimaxGAN, NonSaturatingGAN
from pyrogen.nn.adversarial import Critic
from pyrogen.plot.adversarial import plot_density_1d


def shifted(theta: torch.Tensor, scale: float):
    """Pyro program x = z + θ, z ~ N(0, scale²), x recorded at site "x"."""

    def model(n):
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(0.0, scale))
            return pyro.deterministic("x", (z + theta).unsqueeze(-1), event_dim=1)

    return model


def train_critic(loss, model, real_dist, steps, lr=1e-2):
    optim = torch.optim.Adam(loss.critic.parameters(), lr=lr, betas=(0.5, 0.9))
    for _ in range(steps):
        optim.zero_grad()
        loss.critic_loss(model, None, real=real_dist.sample((512, 1))).backward()
        optim.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="critic updates per fit")
    parser.add_argument("--out", default="optimal_discriminator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-test", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    steps = 20 if args.smoke_test else args.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    # 1. the optimal discriminator
    p_r, p_g = dist.Normal(0.0, 1.0), dist.Normal(1.0, 0.5)
    disc = Critic(1, hidden=(32, 32), activation="tanh")
    train_critic(MinimaxGAN(disc), shifted(torch.tensor(1.0), 0.5), p_r, steps)
    grid = torch.linspace(-3, 3, 400)
    d_star = p_r.log_prob(grid).exp() / (p_r.log_prob(grid).exp() + p_g.log_prob(grid).exp())
    with torch.no_grad():
        d = torch.sigmoid(disc(grid.unsqueeze(-1)))
    inside = (grid > -1.5) & (grid < 2.0)
    err = float((d - d_star)[inside].abs().max())
    print(f"max |D(x) − D*(x)| on [−1.5, 2] = {err:.3f}")
    plot_density_1d(
        p_r.sample((20000,)),
        p_g.sample((20000,)),
        d,
        d_star,
        grid,
        "trained D = sigmoid(d) vs D* = p_r / (p_r + p_g)",
        "trained D",
        path=out / "optimal_discriminator.png",
    )

    # 2. vanishing gradients
    real = dist.Normal(0.0, 0.5)
    print(f"{'θ':>5} {'minimax':>12} {'non-saturating':>15} {'wgan-gp':>10}")
    rows = []
    for theta_value in (0.5, 1.0, 2.0, 4.0, 8.0):
        theta = torch.tensor(theta_value, requires_grad=True)
        model = shifted(theta, 0.5)
        gan_critic = Critic(1, hidden=(32, 32), activation="tanh")
        gan = MinimaxGAN(gan_critic)
        train_critic(gan, model, real, steps)
        wgan = WGAN_GP(Critic(1, hidden=(32, 32)))
        train_critic(wgan, model, real, steps, lr=1e-3)
        norms = []
        for loss in (gan, NonSaturatingGAN(gan_critic), wgan):
            theta.grad = None
            loss.generator_loss(model, None, 4096).backward()
            norms.append(abs(float(theta.grad)))
        rows.append((theta_value, *norms))
        print(f"{theta_value:5.1f} {norms[0]:12.2e} {norms[1]:15.2e} {norms[2]:10.3f}")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    thetas = [r[0] for r in rows]
    for i, label in enumerate(
        ("minimax  E log(1 − D)", "non-saturating  −E log D", "WGAN-GP  −E d")
    ):
        ax.semilogy(thetas, [max(r[i + 1], 1e-12) for r in rows], "o-", label=label)
    ax.set_xlabel("θ (distance between p_g and p_r)")
    ax.set_ylabel("|∂ generator loss / ∂θ|")
    ax.set_title("Generator gradient under a near-optimal critic")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "vanishing_gradients.png", dpi=110)
    print(f"wrote {out}/optimal_discriminator.png and {out}/vanishing_gradients.png")


if __name__ == "__main__":
    main()
