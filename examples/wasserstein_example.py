"""The lecture's Wasserstein-1 example, solved three ways, and JSD vs W1 on parallel lines.

1. p = ¼U[1,2] + ¼U[3,4] + ½U[9,10], q = U[5,7]: exact W1 = 3 (``wasserstein_1d``).
2. A WGAN-GP critic trained on samples of p and q: its dual estimate E_p f − E_q f approaches 3
   (slightly above: the gradient penalty is a soft constraint), and divided by the critic's
   measured Lipschitz constant it is a certified lower bound ≤ 3.
3. P_0 = (0, U[0,1]) and P_θ = (θ, U[0,1]) (Arjovsky et al., 2017, Example 1): JSD = log 2 for
   every θ ≠ 0, while W1 = |θ| shrinks smoothly as θ → 0.

Run: ``python examples/wasserstein_example.py [--steps 2000] [--out DIR] [--smoke-test]``.
"""

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from pyrogen.data.toy import (  # noqa: E402
    LECTURE_P,
    LECTURE_Q,
    sample_uniform_mixture,
    uniform_mixture_quantiles,
)
from pyrogen.evaluate import wasserstein_1d  # noqa: E402
from pyrogen.infer import WGAN_GP  # noqa: E402
from pyrogen.nn.adversarial import Critic  # noqa: E402


class Standardized(nn.Module):
    """Critic on (x − 5.5) / 3: inputs of order 1, so ReLU kinks can land inside [1, 10]."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, x):
        return self.critic((x - 5.5) / 3.0)


def q_model(n):
    """The 'generator' q = U[5, 7] as a Pyro program with the generated value at site "x"."""
    with pyro.plate("data", n):
        u = pyro.sample("u", dist.Uniform(5.0, 7.0))
        return pyro.deterministic("x", u.unsqueeze(-1), event_dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="critic updates")
    parser.add_argument("--out", default="wasserstein_example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke-test", action="store_true", help="tiny run for CI")
    args = parser.parse_args()
    steps = 50 if args.smoke_test else args.steps
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    # 1. exact
    exact = wasserstein_1d(
        uniform_mixture_quantiles(LECTURE_P, 4000), uniform_mixture_quantiles(LECTURE_Q, 4000)
    )
    print(f"exact W1(p, q) = {exact:.6f}  (lecture: 4·¼ + 2·¼ + 3·½ = 3)")

    # 2. dual estimate by a WGAN-GP critic
    critic = Standardized(Critic(1, hidden=(64, 64)))
    loss = WGAN_GP(critic, penalty=10.0)
    optim = torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for i in range(steps):
        optim.zero_grad()
        terms = loss.critic_terms(q_model, None, real=sample_uniform_mixture(LECTURE_P, 512))
        terms["critic_loss"].backward()
        optim.step()
        if (i + 1) % max(1, steps // 5) == 0:
            print(f"  critic step {i + 1:5d}: dual estimate {float(terms['w1']):.3f}")
    grid = torch.linspace(0.5, 10.5, 2001).unsqueeze(-1)
    with torch.no_grad():
        f = critic(grid)
        p, q = sample_uniform_mixture(LECTURE_P, 200_000), 5 + 2 * torch.rand(200_000, 1)
        dual = float(critic(p).mean() - critic(q).mean())
    lipschitz = float((f.diff() / grid.squeeze(-1).diff()).abs().max())
    print(
        f"trained critic: E_p f − E_q f = {dual:.3f}, Lipschitz constant on [0.5, 10.5] ="
        f" {lipschitz:.3f}, certified lower bound {dual / lipschitz:.3f} ≤ W1 = 3"
    )
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(p.squeeze().numpy(), bins=200, density=True, alpha=0.4, label="p")
    ax.hist(q.squeeze().numpy(), bins=200, density=True, alpha=0.4, label="q")
    twin = ax.twinx()
    twin.plot(grid.squeeze().numpy(), (f - f[1000]).numpy(), "g", label="critic f (shifted)")
    twin.legend(loc="upper center")
    ax.legend(loc="upper left")
    ax.set_title(f"W1 = {exact:.3f} exact; critic's dual estimate {dual:.3f}")
    fig.tight_layout()
    fig.savefig(out / "lecture_w1_critic.png", dpi=110)

    # 3. JSD vs W1 on parallel lines
    thetas = torch.linspace(-1, 1, 41)
    # The y-marginals are identical, so pairing equal y's is optimal: W1 equals the W1 of the
    # x-marginals (a projection can only shrink W1, and this pairing attains it).
    x0 = torch.zeros(5000)
    w1 = [wasserstein_1d(x0, x0 + float(t)) for t in thetas]
    jsd = [0.0 if abs(float(t)) < 1e-9 else math.log(2) for t in thetas]
    print(f"parallel lines: θ = 0.5 → JSD = {math.log(2):.4f} (= log 2), W1 = {w1[30]:.3f}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(thetas, jsd, "o-", ms=3, label="JSD(P0, Pθ)")
    ax.plot(thetas, w1, "s-", ms=3, label="W1(P0, Pθ)")
    ax.set_xlabel("θ")
    ax.legend()
    ax.set_title("Parallel lines: JSD is stuck at log 2, W1 = |θ|")
    fig.tight_layout()
    fig.savefig(out / "jsd_vs_w1.png", dpi=110)
    print(f"wrote {out}/lecture_w1_critic.png and {out}/jsd_vs_w1.png")


if __name__ == "__main__":
    main()
