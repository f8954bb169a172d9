"""Eight schools (non-centred): ADVI and full-rank ADVI next to NUTS, with PSIS k-hat.

    python examples/advi_eight_schools.py                 # full run
    python examples/advi_eight_schools.py --smoke-test    # a few seconds

Prints a side-by-side table of posterior means and standard deviations, the k-hat of each
variational fit, and writes a forest plot ``eight_schools_forest.png`` into ``--out``.
"""

import argparse
import os
import time
import warnings
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

from pyrogen.infer import fit
from pyrogen.infer.advi import khat_reading, psis_khat, to_inference_data

SCHOOLS = ["A", "B", "C", "D", "E", "F", "G", "H"]
Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def model(sigma, y=None):
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("school", len(sigma)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))  # non-centred: theta = mu + tau * eta
        theta = pyro.deterministic("theta", mu + tau * eta)
        pyro.sample("obs", dist.Normal(theta, sigma), obs=y)


def main(args):
    os.environ.setdefault("MPLBACKEND", "Agg")
    import arviz as az
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)  # tiny model: one thread is fastest
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    coords = {"school": SCHOOLS}
    idatas = {}
    for method in ("advi", "fullrank"):
        start = time.perf_counter()
        result = fit(
            model,
            SIGMA,
            y=Y,
            method=method,
            num_steps=args.num_steps,
            seed=args.seed,
            progress_bar=not args.smoke_test,
        )
        khat = psis_khat(result, num_samples=args.num_samples)
        print(
            f"{method:>8}: {len(result.losses)} steps, converged={result.converged}, "
            f"{time.perf_counter() - start:.1f} s, k-hat {khat:.2f} ({khat_reading(khat)})"
        )
        idatas[method] = to_inference_data(result, num_samples=args.num_samples, coords=coords)

    start = time.perf_counter()
    pyro.set_rng_seed(args.seed)
    mcmc = MCMC(
        NUTS(model),
        num_samples=args.nuts_samples,
        warmup_steps=args.nuts_warmup,
        num_chains=1,
        disable_progbar=args.smoke_test,
    )
    mcmc.run(SIGMA, y=Y)
    print(
        f"    NUTS: {args.nuts_warmup} warmup + {args.nuts_samples} draws, "
        f"{time.perf_counter() - start:.1f} s"
    )
    draws = mcmc.get_samples()
    draws["theta"] = draws["mu"][:, None] + draws["tau"][:, None] * draws["eta"]
    idatas["NUTS"] = az.from_dict(
        posterior={k: v[None].numpy() for k, v in draws.items()},
        coords=coords,
        dims={"eta": ["school"], "theta": ["school"]},
    )

    print(f"\n{'':>10}" + "".join(f"{name:>20}" for name in idatas))
    print(f"{'':>10}" + "".join(f"{'mean':>10}{'sd':>10}" for _ in idatas))
    for var in ("mu", "tau"):
        row = "".join(
            f"{float(i.posterior[var].mean()):>10.2f}{float(i.posterior[var].std()):>10.2f}"
            for i in idatas.values()
        )
        print(f"{var:>10}{row}")
    for j, school in enumerate(SCHOOLS):
        row = "".join(
            f"{float(i.posterior['theta'][..., j].mean()):>10.2f}"
            f"{float(i.posterior['theta'][..., j].std()):>10.2f}"
            for i in idatas.values()
        )
        print(f"{'theta[' + school + ']':>10}{row}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_forest(
            list(idatas.values()),
            model_names=list(idatas),
            var_names=["mu", "tau", "theta"],
            combined=True,
            figsize=(7, 7),
        )
    path = out / "eight_schools_forest.png"
    plt.savefig(path, dpi=80, bbox_inches="tight")
    plt.close("all")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-steps", type=int, default=10000, help="max ADVI steps")
    parser.add_argument("--num-samples", type=int, default=4000, help="draws from each q")
    parser.add_argument("--nuts-samples", type=int, default=1000)
    parser.add_argument("--nuts-warmup", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="advi_eight_schools_out", help="directory for PNGs")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings (CI)")
    args = parser.parse_args()
    if args.smoke_test:
        args.num_steps, args.num_samples = 300, 200
        args.nuts_samples, args.nuts_warmup = 30, 30
    main(args)
