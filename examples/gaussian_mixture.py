r"""A two-component Gaussian mixture with a *sampled* discrete assignment per datum.

Model: component means :math:`\mu \sim \mathcal N(0, 10^2 I_2)` (global, continuous),
:math:`c_i \sim \text{Categorical}(\pi)` (local, discrete), :math:`x_i \mid c_i, \mu \sim
\mathcal N(\mu_{c_i}, 1)`, :math:`i = 1..N`. Guide: :math:`q(\mu) = \mathcal N(m, s^2)` and an
amortized :math:`q(c_i \mid x_i) = \text{Categorical}(\text{softmax}(f(x_i)))` (a small MLP).

Estimators compared (all with ``num_particles=4``):

- ``auto+decaying_avg`` / ``auto+loo``: :class:`pyrogen.infer.ELBO` with ``estimator="auto"``,
  pathwise gradients for :math:`\mu` and the score function with a baseline only at :math:`c`;
- ``score+decaying_avg``: the score function forced at every site (including :math:`\mu`);
- ``enumerated``: Pyro's :class:`~pyro.infer.TraceEnum_ELBO` with :math:`c` marginalised
  (``config_enumerate``), the reference.

The table reports :math:`\log p(x \mid \mathbb E_q[\mu])` (assignments summed out), the accuracy
of the most probable assignment, and the variance of the gradient of the loss with respect to the
component means :math:`m` at the end of training (``pyrogen.infer.gradient_variance``, summed over
the two components) and on the assignment network's parameters (where the baselines act).

Run: ``python examples/gaussian_mixture.py`` (add ``--smoke-test`` for a quick run).
"""

import argparse
import logging
import os

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
from pyro.ops.indexing import Vindex
from pyro.optim import Adam

from pyrogen.infer import ELBO, gradient_variance

WEIGHTS = torch.tensor([0.4, 0.6])
TRUE_LOCS = torch.tensor([-3.0, 3.0])


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, c)``: ``n`` draws of the mixture at the true means and their assignments."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.multinomial(WEIGHTS, n, replacement=True, generator=gen)
    return TRUE_LOCS[c] + torch.randn(n, generator=gen), c


def model(x: torch.Tensor) -> None:
    locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    with pyro.plate("data", len(x)):
        c = pyro.sample("c", dist.Categorical(WEIGHTS))
        pyro.sample("x", dist.Normal(Vindex(locs)[..., c], 1.0), obs=x)


def locs_guide(x: torch.Tensor) -> None:
    m = pyro.param("m", torch.tensor([-1.0, 1.0]))
    s = pyro.param("s", torch.full((2,), 0.5), constraint=dist.constraints.positive)
    pyro.sample("locs", dist.Normal(m, s).to_event(1))


def make_guide(hidden: int = 16):
    """Mean-field guide: Normal means and an amortized categorical assignment."""
    net = torch.nn.Sequential(
        torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2)
    )

    def guide(x: torch.Tensor) -> None:
        locs_guide(x)
        pyro.module("assign", net)
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Categorical(logits=net(x.unsqueeze(-1))))

    guide.net = net
    return guide


def log_lik_at(x: torch.Tensor, locs: torch.Tensor) -> float:
    """:math:`\\sum_i \\log \\sum_c \\pi_c \\mathcal N(x_i; \\mu_c, 1)`."""
    comp = dist.Normal(locs, 1.0).log_prob(x.unsqueeze(-1)) + WEIGHTS.log()
    return torch.logsumexp(comp, -1).sum().item()


def responsibilities(x: torch.Tensor, locs: torch.Tensor) -> torch.Tensor:
    comp = dist.Normal(locs, 1.0).log_prob(x.unsqueeze(-1)) + WEIGHTS.log()
    return comp.softmax(-1)


def fit(name: str, x: torch.Tensor, c: torch.Tensor, steps: int, lr: float, var_samples: int):
    """Train one estimator from a fixed start; returns the table row."""
    pyro.clear_param_store()
    pyro.set_rng_seed(1)
    if name == "enumerated":
        loss = TraceEnum_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
        guide = locs_guide
        fit_model = config_enumerate(model)
    else:
        kinds = {
            "auto+decaying_avg": dict(estimator="auto", baseline="decaying_avg"),
            "auto+loo": dict(estimator="auto", baseline="loo"),
            "score+decaying_avg": dict(estimator="score", baseline="decaying_avg"),
        }
        loss = ELBO(**kinds[name], num_particles=4, vectorize_particles=True)
        guide, fit_model = make_guide(), model
    svi = SVI(fit_model, guide, Adam({"lr": lr}), loss)
    history = [svi.step(x) for _ in range(steps)]
    locs = pyro.param("m").detach()
    with torch.no_grad():
        if name == "enumerated":
            probs = responsibilities(x, locs)
        else:
            probs = guide.net(x.unsqueeze(-1)).softmax(-1)
    accuracy = (probs.argmax(-1) == c).float().mean().item()
    stats = gradient_variance(loss, fit_model, guide, x, num_samples=var_samples)
    variance = stats["m"].variance.sum().item()
    net = [v.variance.sum().item() for k, v in stats.items() if k.startswith("assign")]
    net_variance = sum(net) if net else float("nan")
    return name, log_lik_at(x, locs), accuracy, variance, net_variance, history


def main(argv=None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-data", type=int, default=500)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--var-samples", type=int, default=200)
    parser.add_argument("--out", default=".", help="directory for gaussian_mixture.png")
    parser.add_argument("--smoke-test", action="store_true", help="tiny settings (seconds)")
    args = parser.parse_args(argv)
    logging.getLogger("pyro").setLevel(logging.WARNING)  # no "Guessed max_plate_nesting"
    if args.smoke_test:
        args.num_data, args.steps, args.var_samples = 100, 100, 10
    x, c = make_data(args.num_data)
    print(f"N = {args.num_data}, true means {TRUE_LOCS.tolist()}, {args.steps} steps")
    print(f"log p(x | true means) = {log_lik_at(x, TRUE_LOCS):.1f}")
    names = ("enumerated", "auto+decaying_avg", "auto+loo", "score+decaying_avg")
    rows = [fit(n, x, c, args.steps, args.lr, args.var_samples) for n in names]
    header = f"{'estimator':<20} {'log p(x | E[mu])':>17} {'accuracy':>9} {'grad var (m)':>13}"
    print(f"{header} {'grad var (net)':>15}")
    for name, log_p, acc, var, net_var, _ in rows:
        print(f"{name:<20} {log_p:>17.1f} {acc:>9.3f} {var:>13.3g} {net_var:>15.3g}")
    plot(rows, args.out)
    return rows


def plot(rows: list[tuple], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, *_, history in rows:
        ax.plot(history, label=name, lw=1)
    ax.set(xlabel="step", ylabel="loss (-ELBO estimate)", yscale="symlog")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out, "gaussian_mixture.png")
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
