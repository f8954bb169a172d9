"""Bayesian linear and logistic regression with ADVI: exact-posterior check, k-hat, PSIS-LOO.

    python examples/advi_regression.py                 # full run
    python examples/advi_regression.py --smoke-test    # a few seconds

Linear regression with known noise has a Gaussian posterior N(m, S),
S = (X^T X / s^2 + I / a^2)^-1, m = S X^T y / s^2, which full-rank ADVI should recover; mean-field
ADVI gets the means but shrinks the variances to 1 / diag(S^-1). Logistic regression has no
closed form: k-hat says whether the Gaussian q is trustworthy, az.loo scores the model. Data are
simulated (no downloads); figures go into ``--out``.
"""

import argparse
import os
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

from pyrogen.infer import fit
from pyrogen.infer.advi import khat_reading, psis_khat, to_inference_data

NOISE, PRIOR_SD = 1.0, 2.0


def linear(X, y=None):
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[-1]), PRIOR_SD).to_event(1))
    with pyro.plate("data", X.shape[0]):
        # (X * beta).sum(-1), not X @ beta: broadcasts over vectorized posterior draws
        return pyro.sample("y", dist.Normal((X * beta).sum(-1), NOISE), obs=y)


def logistic(X, y=None):
    alpha = pyro.sample("alpha", dist.Normal(0.0, 2.5))
    beta = pyro.sample("beta", dist.Normal(torch.zeros(X.shape[-1]), 2.5).to_event(1))
    with pyro.plate("data", X.shape[0]):
        logits = alpha + (X * beta).sum(-1)
        return pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


def simulate(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    X = 0.8 * torch.randn(n, 1, generator=g) + 0.6 * torch.randn(n, d, generator=g)
    beta = torch.linspace(1.0, -1.0, d)
    y_lin = X @ beta + NOISE * torch.randn(n, generator=g)
    y_bin = torch.bernoulli(torch.sigmoid(0.5 + X @ beta), generator=g)
    return X, y_lin, y_bin


def main(args):
    os.environ.setdefault("MPLBACKEND", "Agg")
    import arviz as az
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)  # small models: one thread is fastest
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    X, y_lin, y_bin = simulate(args.num_data, args.dim, args.seed)

    # --- linear regression: compare with the exact Gaussian posterior
    precision = X.T @ X / NOISE**2 + torch.eye(args.dim) / PRIOR_SD**2
    cov = torch.linalg.inv(precision)
    mean = cov @ X.T @ y_lin / NOISE**2
    print(
        "linear regression, exact posterior sd:", [round(v, 3) for v in cov.diag().sqrt().tolist()]
    )
    for method in ("advi", "fullrank"):
        result = fit(
            linear,
            X,
            y_lin,
            method=method,
            num_steps=args.num_steps,
            num_particles=4,
            seed=args.seed,
            progress_bar=not args.smoke_test,
        )
        draws = result.sample_posterior(args.num_samples)["beta"]
        err = ((draws.mean(0) - mean).abs() / cov.diag().sqrt()).max()
        print(
            f"  {method:>8}: {len(result.losses)} steps, converged={result.converged}, "
            f"max |mean error| / sd = {err:.2f}, sd / exact sd = "
            f"{[round(v, 2) for v in (draws.std(0) / cov.diag().sqrt()).tolist()]}, "
            f"k-hat {psis_khat(result, num_samples=args.num_samples):.2f}"
        )

    # --- logistic regression: no closed form; k-hat, LOO and a posterior predictive check
    result = fit(
        logistic,
        X,
        y_bin,
        method="fullrank",
        num_steps=args.num_steps,
        num_particles=4,
        seed=args.seed,
        progress_bar=not args.smoke_test,
    )
    khat = psis_khat(result, num_samples=args.num_samples)
    print(
        f"logistic regression (fullrank): {len(result.losses)} steps, k-hat {khat:.2f}, "
        f"{khat_reading(khat)}"
    )
    idata = to_inference_data(result, num_samples=args.num_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(az.loo(idata))
        print(az.summary(idata, var_names=["alpha", "beta"], kind="stats"))
    p_hat = result.predictive(args.num_samples)["y"].mean(0)
    accuracy = ((p_hat > 0.5).float() == y_bin).float().mean()
    print(f"in-sample accuracy of the posterior predictive mean: {accuracy:.2f}")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    axes[0].plot(result.losses, lw=0.5)
    axes[0].set(xlabel="step", ylabel="-ELBO", yscale="symlog", title="logistic regression fit")
    axes[1].scatter(X.sum(-1), y_bin, s=8, alpha=0.5, label="data")
    axes[1].scatter(X.sum(-1), p_hat, s=8, label="posterior predictive P(y=1)")
    axes[1].set(xlabel="sum of features", ylabel="y")
    axes[1].legend()
    path = out / "regression.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close("all")
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=int, default=200)
    parser.add_argument("--dim", type=int, default=4)
    parser.add_argument("--num-steps", type=int, default=10000, help="max ADVI steps")
    parser.add_argument("--num-samples", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="advi_regression_out", help="directory for PNGs")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings (CI)")
    args = parser.parse_args()
    if args.smoke_test:
        args.num_data, args.num_steps, args.num_samples = 50, 300, 300
    main(args)
