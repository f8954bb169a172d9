r"""Score-function vs reparameterized ELBO gradients on a model with a closed-form answer.

Model: :math:`z \sim \mathcal N(0, 1)`, :math:`x_i \mid z \sim \mathcal N(z, \tau^2)`,
:math:`i = 1..n`. Guide: :math:`q = \mathcal N(\mu, \sigma^2)`. The ELBO and its gradient are known
exactly:

.. math::

    \text{ELBO}(\mu, \sigma) = \sum_i \Big[-\tfrac12 \log 2\pi\tau^2
        - \frac{(x_i - \mu)^2 + \sigma^2}{2\tau^2}\Big] - \tfrac12\log 2\pi
        - \frac{\mu^2 + \sigma^2}{2} + \tfrac12 \log 2\pi e \sigma^2 ,

maximized at the posterior :math:`\mathcal N(\sum_i x_i / (\tau^2 + n), \tau^2 / (\tau^2 + n))`
where it equals :math:`\log p(x)`. The script prints the mean and variance of each gradient
estimator (``pyrogen.infer.gradient_variance``) next to the exact gradient, then trains with each
estimator and plots the exact ELBO against the step.

Run: ``python examples/score_vs_reparam.py --out figures`` (add ``--smoke-test`` for a quick run).
"""

import argparse
import math
import os

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyrogen.infer import ELBO, STL_ELBO, gradient_variance

TAU = 1.0
X = torch.tensor([1.3, 0.4, 2.1, 1.7, 0.9, 1.5, 0.2, 1.1, 1.9, 0.8])
MU0, SIGMA0 = -1.0, 1.0


def model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("obs", len(X)):
        pyro.sample("x", dist.Normal(z, TAU), obs=X)


def guide():
    mu = pyro.param("mu", torch.tensor(MU0))
    sigma = pyro.param("sigma", torch.tensor(SIGMA0), constraint=dist.constraints.positive)
    pyro.sample("z", dist.Normal(mu, sigma))


def exact_elbo(mu: float, sigma: float) -> float:
    n = len(X)
    ll = -0.5 * n * math.log(2 * math.pi * TAU**2)
    ll -= (((X - mu) ** 2).sum().item() + n * sigma**2) / (2 * TAU**2)
    prior = -0.5 * math.log(2 * math.pi) - (mu**2 + sigma**2) / 2
    entropy = 0.5 * math.log(2 * math.pi * math.e * sigma**2)
    return ll + prior + entropy


def exact_loss_grad(mu: float, sigma: float) -> tuple[float, float]:
    """d(-ELBO)/d mu and d(-ELBO)/d log sigma (Pyro optimizes the unconstrained log sigma)."""
    n = len(X)
    d_mu = (X - mu).sum().item() / TAU**2 - mu
    d_sigma = -n * sigma / TAU**2 - sigma + 1 / sigma
    return -d_mu, -d_sigma * sigma


def log_evidence() -> float:
    cov = TAU**2 * torch.eye(len(X)) + torch.ones(len(X), len(X))
    return dist.MultivariateNormal(torch.zeros(len(X)), cov).log_prob(X).item()


ESTIMATORS = {
    "score": lambda: ELBO(estimator="score"),
    "score+avg baseline": lambda: ELBO(estimator="score", baseline="decaying_avg"),
    "score+LOO (K=4)": lambda: ELBO(estimator="score", baseline="loo", num_particles=4),
    "reparam": lambda: ELBO(estimator="reparam"),
    "reparam+analytic KL": lambda: ELBO(estimator="reparam", kl="analytic"),
    "reparam STL": lambda: STL_ELBO(),
}


def gradient_table(num_samples: int, warmup: int) -> list[dict]:
    rows = []
    g_mu, g_ls = exact_loss_grad(MU0, SIGMA0)
    for name, make in ESTIMATORS.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        loss = make()
        for _ in range(warmup):  # let a decaying-average baseline settle (no parameter updates)
            loss.loss(model, guide)
            loss.loss_and_grads(model, guide)
        stats = gradient_variance(loss, model, guide, num_samples=num_samples)
        rows.append(
            {
                "estimator": name,
                "mu_mean": stats["mu"].mean.item(),
                "mu_exact": g_mu,
                "mu_var": stats["mu"].variance.item(),
                "ls_mean": stats["sigma"].mean.item(),
                "ls_exact": g_ls,
                "ls_var": stats["sigma"].variance.item(),
                "se_mu": math.sqrt(stats["mu"].variance.item() / num_samples),
                "se_ls": math.sqrt(stats["sigma"].variance.item() / num_samples),
            }
        )
    return rows


def train_curves(steps: int, lr: float) -> dict[str, list[float]]:
    curves = {}
    for name, make in ESTIMATORS.items():
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        svi = SVI(model, guide, Adam({"lr": lr}), make())
        curve = []
        for _ in range(steps):
            svi.step()
            curve.append(exact_elbo(pyro.param("mu").item(), pyro.param("sigma").item()))
        curves[name] = curve
    return curves


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=5000, help="gradient draws")
    parser.add_argument("--steps", type=int, default=300, help="SVI steps per estimator")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default=".", help="directory for score_vs_reparam.png")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings (seconds)")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.num_samples, args.steps = 200, 30

    rows = gradient_table(args.num_samples, warmup=0 if args.smoke_test else 50)
    reparam_var = next(r for r in rows if r["estimator"] == "reparam")
    print(f"Gradient of -ELBO at mu={MU0}, sigma={SIGMA0} ({args.num_samples} draws each)")
    header = (
        f"{'estimator':<21}{'d/dmu mean':>12}{'exact':>9}{'var':>10}"
        f"{'d/dlog s mean':>15}{'exact':>9}{'var':>10}{'var/reparam (mu)':>18}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['estimator']:<21}{r['mu_mean']:>12.3f}{r['mu_exact']:>9.3f}{r['mu_var']:>10.3g}"
            f"{r['ls_mean']:>15.3f}{r['ls_exact']:>9.3f}{r['ls_var']:>10.3g}"
            f"{r['mu_var'] / reparam_var['mu_var']:>18.1f}"
        )
    worst = max(
        max(
            abs(r["mu_mean"] - r["mu_exact"]) / r["se_mu"],
            abs(r["ls_mean"] - r["ls_exact"]) / r["se_ls"],
        )
        for r in rows
    )
    print(f"largest |mean - exact| / standard error over all estimators: {worst:.2f}")

    curves = train_curves(args.steps, args.lr)
    target = log_evidence()
    print(f"\nExact ELBO during SVI (Adam, lr={args.lr}); log p(x) = {target:.4f}")
    steps = sorted({min(10, args.steps), max(1, args.steps // 3), args.steps})
    print(f"{'estimator':<21}" + "".join(f"{'step ' + str(s):>11}" for s in steps))
    for name, curve in curves.items():
        print(f"{name:<21}" + "".join(f"{curve[s - 1]:>11.4f}" for s in steps))

    os.makedirs(args.out, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["estimator"] for r in rows]
    ax1.barh(names, [r["mu_var"] for r in rows])
    ax1.set_xscale("log")
    ax1.set_xlabel("variance of d(-ELBO)/dmu")
    for name, curve in curves.items():
        ax2.plot(range(1, len(curve) + 1), curve, label=name)
    ax2.axhline(target, color="k", ls="--", lw=1, label="log p(x)")
    ax2.set_ylim(target - 15, target + 1)
    ax2.set_xlabel("SVI step")
    ax2.set_ylabel("exact ELBO")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(args.out, "score_vs_reparam.png")
    fig.savefig(path, dpi=100)
    print(f"\nsaved {path}")
    return {"rows": rows, "curves": curves}


if __name__ == "__main__":
    main()
