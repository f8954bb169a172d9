r"""Test NLL of a VAE / IWAE / DReG-trained model in the setting of Burda et al. (2016), Table 1,
for pyrogen and a plain-PyTorch implementation of the same objective, trained with the same
budget in the same run and evaluated with the same importance-sampled estimate.

Setting (``pyrogen.train.presets.VAE_PRESETS["burda2016"]``): dynamic binarization, encoder and
decoder with two deterministic layers of 200 tanh units, 50 latent units, Bernoulli decoder,
batch 20, Adam (β = 0.9, 0.999, ε = 1e-4), learning rate 1e-3·10^(−i/7) in stage i = 0…7 of
3^i / 3280 of the passes (the stages scaled to ``--passes``, :class:`pyrogen.train.StagewiseLR`).

Evaluation: :math:`-\log p(x) \approx -\log \frac1K \sum_k p(x, z_k) / q(z_k|x)`,
:math:`z_k \sim q(z|x)`, on the first ``--test-size`` test images (binarized once, seed 0, as
``pyrogen.data.load_dataset(..., binarize="dynamic")`` does), the same code for both models.

    python benchmarks/vae_nll.py --objective iwae --k 5 --passes 30 --eval-k 5000 --test-size 1000

Burda et al. report on MNIST after 3280 passes (K = 5000 on all 10 000 test images): VAE 86.76,
IWAE k = 5 85.54, IWAE k = 50 84.78 nats.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import pyro
import torch
from torch import nn
from torch.nn import functional as F

import pyrogen
from pyrogen.data import load_dataset
from pyrogen.infer import get_objective
from pyrogen.models import VAE
from pyrogen.train import SVIStep, Trainer, set_seed
from pyrogen.train.callbacks import Callback
from pyrogen.train.presets import VAE_PRESETS
from pyrogen.train.schedule import LRScheduler, StagewiseLR, stagewise_adam

PRESET = VAE_PRESETS["burda2016"]
PYROGEN_ESTIMATOR = {"elbo": "reparam", "iwae": "iwae", "dreg": "dreg"}


class TimeLimit(Callback):
    """Stops training after ``seconds`` of wall time (``--minutes``)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def on_step_end(self, trainer, state, record) -> None:
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            state.request_stop(f"time budget of {self.seconds:.0f} s used")


# --- pyrogen ---------------------------------------------------------------------------------
def train_pyrogen(data, args) -> tuple[VAE, dict]:
    set_seed(args.seed)
    pyro.clear_param_store()
    n = len(data.train_x)
    vae = VAE(
        data.dim, PRESET.latent_dim, PRESET.hidden, "bernoulli", n, activation=PRESET.activation
    )
    optim = stagewise_adam(PRESET.lr, StagewiseLR(args.passes), PRESET.betas, PRESET.adam_eps)
    loss = get_objective(PYROGEN_ESTIMATOR[args.objective], args.k)
    step = SVIStep(vae.model, vae.guide, loss, optim=optim, loss_scale=1 / n)
    timer = TimeLimit(args.minutes * 60 if args.minutes else None)
    trainer = Trainer(
        step,
        batch_size=PRESET.batch_size,
        epochs=args.passes,
        seed=args.seed,
        transform=data.train_transform,
        progress=False,
        callbacks=[LRScheduler(every="epoch"), timer],
    )
    start, cpu = time.perf_counter(), time.process_time()
    history = trainer.fit(data.train_x)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    steps = len(history)
    last = history.losses[-(n // PRESET.batch_size) :]
    info = {
        "steps": steps,
        "passes": steps * PRESET.batch_size / n,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu,
    }
    info["final_train_loss"] = sum(last) / len(last)
    return vae, info


# --- plain PyTorch ---------------------------------------------------------------------------
def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class PlainVAE(nn.Module):
    def __init__(self, dim: int, latent: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = mlp([dim, *hidden, 2 * latent])
        self.decoder = mlp([latent, *hidden[::-1], dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_var = self.encoder(x).split(self.latent, -1)
        return loc, torch.exp(0.5 * log_var)


def log_weights(vae, x: torch.Tensor, k: int, stop_q: bool = False) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x), z_k ~ q (reparameterized), shape (k, batch); ``stop_q``:
    q's parameters detached in log q (DReG)."""
    loc, scale = vae.encode(x)
    z = loc + scale * torch.randn(k, *loc.shape)
    log_px = -F.binary_cross_entropy_with_logits(
        vae.decoder(z), x.expand(k, -1, -1), reduction="none"
    ).sum(-1)
    log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    if stop_q:
        loc, scale = loc.detach(), scale.detach()
    log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    return log_px + log_pz - log_qz


def plain_loss(vae: PlainVAE, x: torch.Tensor, objective: str, k: int) -> torch.Tensor:
    """Mean negative bound per example; for dreg a surrogate whose gradient is DReG's (encoder:
    Σ w̃² ∂log w/∂z ∂z/∂φ; decoder: Σ w̃ ∂log w/∂θ; Tucker et al. 2019)."""
    if objective == "elbo":  # analytic KL, k samples
        loc, scale = vae.encode(x)
        z = loc + scale * torch.randn(k, *loc.shape)
        rec = -F.binary_cross_entropy_with_logits(
            vae.decoder(z), x.expand(k, -1, -1), reduction="none"
        ).sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * torch.log(scale)).sum(-1)
        return (kl - rec.mean(0)).mean()
    if objective == "iwae":
        lw = log_weights(vae, x, k)
        return -(torch.logsumexp(lw, 0) - math.log(k)).mean()
    lw = log_weights(vae, x, k, stop_q=True)
    w = torch.softmax(lw, 0).detach()
    # the decoder sees Σ w̃ log w, the encoder Σ w̃² log w (through z only)
    dec = -(w * lw).sum(0).mean()
    enc = -(w**2 * lw).sum(0).mean()
    enc_params = list(vae.encoder.parameters())
    dec_params = list(vae.decoder.parameters())
    enc_grads = torch.autograd.grad(enc, enc_params, retain_graph=True)
    dec_grads = torch.autograd.grad(dec, dec_params)
    for p, g in zip(enc_params + dec_params, enc_grads + dec_grads, strict=True):
        p.grad = g
    return -(torch.logsumexp(lw.detach(), 0) - math.log(k)).mean()


def plain_lr_factor(epoch: int, passes: int) -> float:
    """10^(-i/7) in stage i; stage i starts at round(passes * (3^i - 1) / 2 / 3280)."""
    starts = [round(passes * (3**i - 1) / 2 / 3280) for i in range(8)]
    stage = max(i for i, s in enumerate(starts) if s <= epoch)
    return 10 ** (-stage / 7)


def train_plain(data, args) -> tuple[PlainVAE, dict]:
    torch.manual_seed(args.seed)
    vae = PlainVAE(data.dim, PRESET.latent_dim, PRESET.hidden)
    opt = torch.optim.Adam(vae.parameters(), PRESET.lr, betas=PRESET.betas, eps=PRESET.adam_eps)
    n, b = len(data.train_x), PRESET.batch_size
    limit = args.minutes * 60 if args.minutes else math.inf
    start, cpu, steps, losses = time.perf_counter(), time.process_time(), 0, []
    for epoch in range(args.passes):
        for group in opt.param_groups:
            group["lr"] = PRESET.lr * plain_lr_factor(epoch, args.passes)
        order = torch.randperm(n)
        for i in range(0, n, b):  # a last partial batch too, as the Trainer does
            x = torch.bernoulli(data.train_x[order[i : i + b]])  # dynamic binarization
            opt.zero_grad()
            loss = plain_loss(vae, x, args.objective, args.k)
            if args.objective != "dreg":
                loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
            if time.perf_counter() - start > limit:
                break
        if time.perf_counter() - start > limit:
            break
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    last = losses[-(n // b) :]
    info = {
        "steps": steps,
        "passes": steps * b / n,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu,
    }
    info["final_train_loss"] = sum(last) / len(last)
    return vae, info


# --- the shared evaluation -------------------------------------------------------------------
@torch.no_grad()
def test_nll(encode, decoder, x: torch.Tensor, k: int, seed: int, rows: int = 20_000) -> float:
    """Mean of -log (1/K Σ_k p(x, z_k) / q(z_k | x)) over the rows of x, K samples per image,
    drawn in chunks of about ``rows`` decoder rows."""
    gen = torch.Generator().manual_seed(seed)
    chunk = max(1, min(k, rows))
    total = 0.0
    for xi in x.split(max(1, rows // chunk)):
        loc, scale = encode(xi)
        parts = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            z = loc + scale * torch.randn(m, *loc.shape, generator=gen)
            log_px = -F.binary_cross_entropy_with_logits(
                decoder(z), xi.expand(m, -1, -1), reduction="none"
            ).sum(-1)
            log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
            parts.append(log_px + log_pz - log_qz)
        total += -(torch.logsumexp(torch.cat(parts), 0) - math.log(k)).sum().item()
    return total / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist", help="name or MNIST idx directory")
    parser.add_argument("--objective", choices=["elbo", "iwae", "dreg"], default="elbo")
    parser.add_argument("--k", type=int, default=None, help="training samples (1 elbo, 5 else)")
    parser.add_argument("--passes", type=int, default=3280, help="passes; the schedule's scale")
    parser.add_argument("--minutes", type=float, default=None, help="cap on training wall time")
    parser.add_argument("--eval-k", type=int, default=5000, help="importance samples K")
    parser.add_argument("--test-size", type=int, default=None, help="first N test images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["pyrogen", "plain"], default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    args.k = args.k or (1 if args.objective == "elbo" else 5)
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, binarize="dynamic")
    test = data.test_x[: args.test_size]
    print(
        f"{data.name}: {len(data.train_x)} train, {len(test)} test; objective {args.objective}"
        f" k={args.k}; {args.passes} passes (cap {args.minutes} min); eval K={args.eval_k};"
        f" torch {torch.__version__}, pyro {pyro.__version__}, pyrogen"
        f" {getattr(pyrogen, '__version__', '?')}, {torch.get_num_threads()} thread(s)",
        flush=True,
    )
    results = {"args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    results["versions"] = {"torch": torch.__version__, "pyro": pyro.__version__}
    results["python"] = platform.python_version()
    for name, train in (("pyrogen", train_pyrogen), ("plain", train_plain)):
        if args.only not in (None, name):
            continue
        model, info = train(data, args)
        start = time.perf_counter()
        encode = model.encoder if name == "pyrogen" else model.encode
        info["test_nll"] = test_nll(encode, model.decoder, test, args.eval_k, args.seed + 1)
        info["eval_seconds"] = time.perf_counter() - start
        results[name] = info
        print(
            f"{name:8s} test NLL {info['test_nll']:.2f} nats (K={args.eval_k}, {len(test)} images);"
            f" final train loss {info['final_train_loss']:.2f}; {info['steps']} steps ="
            f" {info['passes']:.2f} passes in {info['train_seconds']:.0f} s"
            f" ({info.get('train_cpu_seconds', 0):.0f} s CPU); eval"
            f" {info['eval_seconds']:.0f} s",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
