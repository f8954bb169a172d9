r"""Step and epoch time of pyrogen's training paths against hand-written PyTorch (issue 15).

For each case (VAE 784-400-50 Bernoulli with analytic KL = ``SVIStep``'s default loss, VAE with a
Monte Carlo KL = ``Trace_ELBO``, IWAE K = 5, STL, a non-saturating GAN and WGAN-GP through
``AdversarialStep``) and batch size, one process builds pyrogen's step and a plain-PyTorch
reference on the same networks (same initial weights), checks that they compute the same loss on
the same batch and seed (and the same parameters after one update), then times them in
interleaved rounds (A B A B ...) on one thread and reports medians and the ratio
pyrogen / reference. Peak memory, each path in its own process: on CPU the growth of the peak
resident set size (``VmHWM`` of ``/proc/self/status``) over 20 steps, after building the model
and the data (``tracemalloc`` cannot see torch's allocations); on CUDA the peak of
``torch.cuda.max_memory_allocated`` over the same steps, above what was allocated before them.
Epoch time: ``Trainer.fit`` for one epoch against a plain
loop over the same shuffled batches with the reference step, and against the same ``SVIStep``
called in a loop (the Trainer's own overhead).

Usage::

    python benchmarks/step_time.py            # batch 16 and 128
    python benchmarks/step_time.py --full     # and 1024, more rounds
    python benchmarks/step_time.py --quick    # CI size: few rounds, batch 16 only, no memory
    python benchmarks/step_time.py --eval     # importance-sampled log-likelihood, K = 5000
    python benchmarks/step_time.py --device cuda   # on a GPU (wall clock, synchronized);
                                                   # exits cleanly where there is none
    python benchmarks/step_time.py --keep-freed-memory   # glibc keeps freed memory, as in the
                                                         # ``pyrogen`` commands (also in the
                                                         # memory children)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyrogen.cli.allocator import keep_freed_memory  # noqa: E402
from pyrogen.evaluate.likelihood import MAX_CHUNK_ELEMENTS, log_likelihood  # noqa: E402
from pyrogen.infer import IWAE, STL_ELBO  # noqa: E402
from pyrogen.models import VAE, Generator  # noqa: E402
from pyrogen.nn.adversarial import Critic, GeneratorNet  # noqa: E402
from pyrogen.train import AdversarialStep, SVIStep, Trainer  # noqa: E402

DATA_DIM, HIDDEN, LATENT = 784, 400, 50
DEVICE = torch.device("cpu")  # --device
KEEP_FREED_MEMORY = False  # --keep-freed-memory: glibc keeps freed blocks (as `pyrogen` commands)
REFERENCE_FOREACH = None  # --reference-foreach: the reference's Adam multi-tensor, as pyrogen's


# -- the references -------------------------------------------------------------------------------
class PlainVAE:
    """The VAE of ``pyrogen.models.VAE`` in plain PyTorch (its encoder/decoder weights copied)."""

    def __init__(self, vae: VAE, objective: str, k: int = 1) -> None:
        self.enc = _plain_mlp(vae.encoder.net).to(DEVICE)
        self.dec = _plain_mlp(vae.decoder).to(DEVICE)
        params = [*self.enc.parameters(), *self.dec.parameters()]
        self.params = params
        self.opt = torch.optim.Adam(params, lr=1e-3, foreach=REFERENCE_FOREACH)
        self.objective, self.k = objective, k

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, log_var = self.enc(x).split(LATENT, dim=-1)
        scale = torch.exp(0.5 * log_var)
        shape = (self.k, *loc.shape) if self.objective == "iwae" else loc.shape
        z = loc + scale * torch.empty(shape, device=loc.device).normal_()
        log_px = -F.binary_cross_entropy_with_logits(
            self.dec(z), x.expand(*z.shape[:-1], DATA_DIM), reduction="none"
        ).sum(-1)
        if self.objective == "analytic":
            kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * torch.log(scale)).sum(-1)
            return -(log_px - kl).sum()
        log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        q_loc, q_scale = (loc.detach(), scale.detach()) if self.objective == "stl" else (loc, scale)
        log_qz = (
            -(((z - q_loc) / q_scale) ** 2) / 2 - torch.log(q_scale) - 0.5 * math.log(2 * math.pi)
        ).sum(-1)
        log_w = log_px + log_pz - log_qz
        if self.objective == "iwae":
            return -(torch.logsumexp(log_w, 0) - math.log(self.k)).sum()
        return -log_w.sum()

    def __call__(self, x: torch.Tensor) -> dict[str, float]:
        loss = self.loss(x)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}


def _plain_mlp(module: torch.nn.Module) -> torch.nn.Sequential:
    """A plain ``nn.Sequential`` copy of an MLP (``Linear``/activation layers) of pyrogen."""
    layers = []
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            plain = torch.nn.Linear(layer.in_features, layer.out_features)
            plain.load_state_dict({k: v.detach().clone() for k, v in layer.state_dict().items()})
            layers.append(plain)
        else:
            layers.append(copy.deepcopy(layer))
    return torch.nn.Sequential(*layers)


class PlainGAN:
    """One critic update then one generator update in plain PyTorch (the same networks)."""

    def __init__(self, gen: Generator, critic: Critic, loss: str) -> None:
        net = gen.net
        self.g = GeneratorNet(net.latent_dim, net.data_dim, (512, 512), 0, net.output)
        self.g.load_state_dict({k: v.detach().clone() for k, v in net.state_dict().items()})
        self.g.to(DEVICE)
        self.d = copy.deepcopy(critic).to(DEVICE)
        self.loss_name = loss
        lr, betas = (1e-4, (0.0, 0.9)) if loss == "wgan-gp" else (2e-4, (0.5, 0.999))
        self.g_opt = torch.optim.Adam(self.g.parameters(), lr=lr, betas=betas)
        self.d_opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=betas)

    def _fake(self, n: int) -> torch.Tensor:
        return self.g(torch.empty(n, self.g.latent_dim, device=DEVICE).normal_())

    def __call__(self, *batches: torch.Tensor) -> dict[str, float]:
        for real in batches[:-1]:
            with torch.no_grad():
                fake = self._fake(len(real))
            s_real, s_fake = self.d(real), self.d(fake)
            if self.loss_name == "wgan-gp":
                w1 = s_real.mean() - s_fake.mean()
                eps = torch.rand(len(real), 1, device=real.device)
                x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(self.d(x_hat).sum(), x_hat, create_graph=True)
                d_loss = -w1 + 10.0 * ((grad.norm(dim=1) - 1) ** 2).mean()
            else:
                d_loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
            self.d_opt.zero_grad()
            d_loss.backward()
            self.d_opt.step()
        self.d.requires_grad_(False)
        s = self.d(self._fake(len(batches[-1])))
        g_loss = -s.mean() if self.loss_name == "wgan-gp" else F.softplus(-s).mean()
        self.g_opt.zero_grad()
        g_loss.backward()
        self.g_opt.step()
        self.d.requires_grad_(True)
        return {"loss": g_loss.item(), "critic_loss": d_loss.item()}


# -- the cases ------------------------------------------------------------------------------------
VAE_LOSSES = {
    "vae-analytic": ("analytic", lambda: None),  # SVIStep's default: TraceMeanField_ELBO
    "vae-mc": ("mc", pyro.infer.Trace_ELBO),
    "iwae-5": ("iwae", lambda: IWAE(num_particles=5)),
    "stl": ("stl", STL_ELBO),
}
CASES = [*VAE_LOSSES, "gan", "wgan-gp"]


def build(case: str, seed: int = 0) -> tuple[Callable, Callable, int, object]:
    """``(pyrogen_step, reference_step, batches_per_step, pyrogen_model)`` on equal weights."""
    pyro.clear_param_store()
    torch.manual_seed(seed)
    if case in VAE_LOSSES:
        objective, loss = VAE_LOSSES[case]
        vae = VAE(DATA_DIM, LATENT, (HIDDEN,)).to(DEVICE)
        k = 5 if objective == "iwae" else 1
        return SVIStep(vae.model, vae.guide, loss=loss()), PlainVAE(vae, objective, k), 1, vae
    name = "wgan-gp" if case == "wgan-gp" else "nsgan"
    gen = Generator(32, DATA_DIM, (512, 512), output="sigmoid")
    critic = Critic(DATA_DIM, (512, 512), activation="leaky_relu")
    ref = PlainGAN(gen, critic, name)  # copies the networks, then moves the copies
    gen.to(DEVICE)
    critic.to(DEVICE)
    step = AdversarialStep(gen, critic, loss=name, critic_steps=1)
    return step, ref, 2, gen


def data(batch: int, n: int = 1, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, DATA_DIM, generator=g).bernoulli().to(DEVICE) for _ in range(n)]


def check(case: str, batch: int) -> float:
    """Largest relative difference of loss, and of the first weight after one update, between
    pyrogen and the reference on the same batch and seed (raises above 1e-4)."""
    step, ref, per_step, model = build(case)
    xs = data(batch, per_step)
    if hasattr(step, "setup"):
        step.setup(xs[-1])
    torch.manual_seed(2)
    a = step(*xs)
    torch.manual_seed(2)
    b = ref(*xs)
    diffs = [abs(a[k] - b[k]) / max(1.0, abs(b[k])) for k in b]
    w_a = next(model.parameters()).detach()
    w_b = next(iter(ref.enc.parameters() if hasattr(ref, "enc") else ref.g.parameters())).detach()
    diffs.append(float((w_a - w_b.to(w_a.device)).abs().max()))
    if max(diffs) > 1e-4:
        raise AssertionError(f"{case} batch {batch}: pyrogen and reference differ: {a} vs {b}")
    return max(diffs)


#: ``time.thread_time`` (CPU time of this thread; torch runs on it with one thread), robust to
#: other processes sharing the cores; ``--wall`` switches to ``time.perf_counter``.
CLOCK = time.thread_time


def timed(fn: Callable, *args) -> float:
    t = CLOCK()
    fn(*args)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return CLOCK() - t


def step_times(case: str, batch: int, rounds: int, reps: int) -> dict:
    step, ref, per_step, _ = build(case)
    xs = data(batch, per_step)
    for _ in range(3):  # warm-up (and the SVIStep's first, standard, step)
        step(*xs)
        ref(*xs)
    a, b = [], []
    for _ in range(rounds):
        a.append(min(timed(step, *xs) for _ in range(reps)))
        b.append(min(timed(ref, *xs) for _ in range(reps)))
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {
        "pyrogen_ms": 1e3 * statistics.median(a),
        "ref_ms": 1e3 * statistics.median(b),
        "ratio": statistics.median(ratios),
    }


def breakdown(batch: int, rounds: int = 60) -> dict[str, float]:
    """Median ms per part of one default-VAE step: pyrogen's default path (``P``: the replayed
    graph of the program and loss with its checks, backward, the finiteness check, the merged
    optimizer step) and the reference (``R``), the same code as the steps run, in interleaved
    rounds with both whole steps (no profiler: its overhead would swamp the Python parts)."""
    from pyrogen.train.steps import fast  # noqa: PLC0415
    from pyrogen.train.steps.svi import _all_finite  # noqa: PLC0415

    step, ref, _, vae = build("vae-analytic")
    x = data(batch)[0]
    for _ in range(5):
        step(x)
        ref(x)
    store, clk = pyro.get_param_store(), CLOCK
    times: dict[str, list[float]] = {}

    def record(marks: list[tuple[str, float]]) -> None:
        for (_, a), (name, b) in zip(marks, marks[1:], strict=False):
            times.setdefault(name, []).append(b - a)

    for _ in range(rounds):
        t0 = clk()
        step(x)
        t1 = clk()
        ref(x)
        record([("", t0), ("P whole step", t1)])
        record([("", t1), ("R whole step", clk())])
        marks = [("", clk())]
        elbo, params = step._replay((x,))  # the default path: the recorded graph, its checks
        marks.append(("P forward (replayed graph)", clk()))
        fast.backward_elbo(elbo, True)
        marks.append(("P backward", clk()))
        params = sorted(params, key=store.param_name)
        del elbo
        _all_finite([p.grad for p in params])
        marks.append(("P finiteness check", clk()))
        step._apply(params)
        for p in params:
            p.grad = None
        marks.append(("P optimizer step", clk()))
        record(marks)
        marks = [("", clk())]
        loc, log_var = ref.enc(x).split(LATENT, dim=-1)
        scale = torch.exp(0.5 * log_var)
        z = loc + scale * torch.empty(loc.shape, device=loc.device).normal_()
        logits = ref.dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1 - 2 * torch.log(scale)).sum(-1)
        loss = -(log_px - kl).sum()
        loss.item()
        marks.append(("R forward", clk()))
        ref.opt.zero_grad()
        loss.backward()
        marks.append(("R backward", clk()))
        ref.opt.step()
        marks.append(("R optimizer step", clk()))
        record(marks)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def epoch_times(batch: int, rounds: int, steps_per_epoch: int = 40, epochs: int = 1) -> dict:
    """``epochs`` epochs (``steps_per_epoch`` batches each) of the default VAE: one
    ``Trainer.fit`` (no progress bar; its one-off data check and parameter set-up included) vs the
    same SVIStep in a plain loop vs the reference in a plain loop."""
    x = data(batch * steps_per_epoch)[0]
    step, ref, _, _ = build("vae-analytic")

    def trainer() -> None:
        Trainer(step, batch_size=batch, epochs=epochs, progress=False).fit(x)

    def loop(fn) -> Callable[[], None]:
        def run() -> None:
            for _ in range(epochs):
                order = torch.randperm(len(x))
                for i in range(0, len(x), batch):
                    fn(x[order[i : i + batch]])

        return run

    trainer()
    times: dict[str, list[float]] = {"trainer": [], "step_loop": [], "ref_loop": []}
    for _ in range(rounds):
        times["trainer"].append(timed(trainer))
        times["step_loop"].append(timed(loop(step)))
        times["ref_loop"].append(timed(loop(ref)))
    med = {k: statistics.median(v) for k, v in times.items()}
    pairs = zip(times["trainer"], times["step_loop"], times["ref_loop"], strict=True)
    over_ref, over_step = zip(*((t / r, t / s) for t, s, r in pairs), strict=True)
    return {
        "epochs": epochs,
        "trainer_s": med["trainer"],
        "step_loop_s": med["step_loop"],
        "ref_loop_s": med["ref_loop"],
        "trainer_vs_ref": statistics.median(over_ref),
        "trainer_vs_step_loop": statistics.median(over_step),
    }


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (``VmHWM``). Not ``ru_maxrss``: Linux
    carries that over from the parent through fork + exec, so a child of a larger benchmark
    process would report no growth at all."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (peak memory needs Linux)")


def peak_memory(case: str, batch: int, which: str, steps: int = 20) -> float:
    """MiB by which the peak memory grows over the first ``steps`` steps of one path (built model
    and data excluded), in a fresh process: peak RSS (:func:`peak_rss`) on CPU, peak
    ``torch.cuda.max_memory_allocated`` on CUDA."""
    code = (
        f"import sys; sys.argv = ['x']; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        f"import step_time as b; {KEEP_FREED_MEMORY} and b.keep_freed_memory();"
        "import torch; torch.set_num_threads(1);"
        f"b.DEVICE = torch.device({str(DEVICE)!r});"
        f"step, ref, n, _ = b.build({case!r}); xs = b.data({batch}, n);"
        f"fn = step if {which!r} == 'pyrogen' else ref;"
        "cuda = b.DEVICE.type == 'cuda';"
        "r0 = torch.cuda.memory_allocated(b.DEVICE) if cuda else b.peak_rss();"
        "cuda and torch.cuda.reset_peak_memory_stats(b.DEVICE);"
        f"[fn(*xs) for _ in range({steps})];"
        "r1 = torch.cuda.max_memory_allocated(b.DEVICE) if cuda else b.peak_rss();"
        "print((r1 - r0) / 2**20)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# -- evaluation -----------------------------------------------------------------------------------
def plain_log_likelihood(vae: VAE, x: torch.Tensor, k: int, batch: int = 100) -> torch.Tensor:
    r""":math:`\log \frac1K \sum_k p(x, z_k) / q(z_k|x)` per example in plain PyTorch: examples
    in batches, particles in chunks of the same memory budget as pyrogen's."""
    chunk = max(1, min(k, MAX_CHUNK_ELEMENTS // (batch * DATA_DIM)))
    out = []
    with torch.no_grad():
        for xb in x.split(batch):
            loc, scale = vae.encoder(xb)
            q = dist.Normal(loc, scale)
            lse = None
            for start in range(0, k, chunk):
                z = q.sample((min(chunk, k - start),))
                logits = vae.decoder(z)
                log_px = -F.binary_cross_entropy_with_logits(
                    logits, xb.expand_as(logits), reduction="none"
                ).sum(-1)
                log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
                part = torch.logsumexp(log_px + log_pz - q.log_prob(z).sum(-1), 0)
                lse = part if lse is None else torch.logaddexp(lse, part)
            out.append(lse - math.log(k))
    return torch.cat(out)


def eval_throughput(num: int, k: int, rounds: int) -> dict:
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = VAE(DATA_DIM, LATENT, (HIDDEN,))
    x = data(num)[0]
    torch.manual_seed(3)
    a = log_likelihood(vae, x, num_samples=k, reduction="none")
    torch.manual_seed(3)
    b = plain_log_likelihood(vae, x, k)
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(lambda: log_likelihood(vae, x, num_samples=k, reduction="none")))
        tb.append(timed(lambda: plain_log_likelihood(vae, x, k)))
    ratio = statistics.median(y / x_ for x_, y in zip(ta, tb, strict=True))
    return {
        "images": num,
        "K": k,
        "pyrogen_img_s": num / statistics.median(ta),
        "ref_img_s": num / statistics.median(tb),
        "throughput_ratio": ratio,
        "max_abs_diff_nats": float((a - b).abs().max()),
    }


# -- main -----------------------------------------------------------------------------------------
def environment() -> dict:
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cores": os.cpu_count(),
        "loadavg_1_5_15": load,
        "threads": torch.get_num_threads(),
        "clock": CLOCK.__name__,
        "device": str(DEVICE),
        "keep_freed_memory": KEEP_FREED_MEMORY,
        "gpu": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: batch 16, few rounds")
    parser.add_argument("--full", action="store_true", help="also batch 1024, more rounds")
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--batches", nargs="+", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-epoch", action="store_true")
    parser.add_argument(
        "--breakdown", action="store_true", help="ms per part of the default VAE step (no profiler)"
    )
    parser.add_argument("--eval", action="store_true", help="log-likelihood throughput, K=5000")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc keeps freed memory (pyrogen.cli.allocator, as the pyrogen commands do)",
    )
    parser.add_argument(
        "--reference-foreach",
        action="store_true",
        help="the VAE reference's Adam uses torch's multi-tensor update, as pyrogen's merged"
        " step does (default: torch's default, one tensor at a time on CPU)",
    )
    args = parser.parse_args(argv)
    global CLOCK, DEVICE, KEEP_FREED_MEMORY, REFERENCE_FOREACH
    REFERENCE_FOREACH = True if args.reference_foreach else None
    if args.keep_freed_memory:
        KEEP_FREED_MEMORY = keep_freed_memory()
        if not KEEP_FREED_MEMORY:
            print("--keep-freed-memory: not applied (not glibc, or MALLOC_*_THRESHOLD_ set)")
    torch.set_num_threads(args.threads)
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device here (torch {torch.__version__}); skipped.")
        return
    CLOCK = (
        time.perf_counter
        if args.wall or args.threads > 1 or DEVICE.type == "cuda"
        else time.thread_time
    )
    batches = args.batches or ([16] if args.quick else [16, 128, 1024] if args.full else [16, 128])
    rounds, reps = (5, 2) if args.quick else (41, 3) if args.full else (21, 3)
    results: dict = {"env": environment(), "steps": [], "epochs": [], "eval": None}
    print(json.dumps(results["env"]))
    print(
        f"{'case':14s} {'batch':>5s} {'pyrogen ms':>10s} {'torch ms':>9s} {'ratio':>6s}"
        f" {'check':>8s} {'mem MiB (pyrogen/torch)':>24s}"
    )
    for case in args.cases:
        for batch in batches:
            diff = check(case, batch)
            row = {"case": case, "batch": batch, "check": diff}
            row.update(step_times(case, batch, rounds, reps))
            mem = ""
            if not (args.quick or args.no_memory):
                row["mem_pyrogen"] = peak_memory(case, batch, "pyrogen")
                row["mem_ref"] = peak_memory(case, batch, "ref")
                mem = f"{row['mem_pyrogen']:.1f} / {row['mem_ref']:.1f}"
            results["steps"].append(row)
            print(
                f"{case:14s} {batch:5d} {row['pyrogen_ms']:10.2f} {row['ref_ms']:9.2f}"
                f" {row['ratio']:6.2f} {diff:8.1e} {mem:>24s}",
                flush=True,
            )
    if args.breakdown:
        results["breakdown"] = {batch: breakdown(batch) for batch in batches}
        for batch, parts in results["breakdown"].items():
            print(f"breakdown batch {batch}:", {k: round(v, 3) for k, v in parts.items()})
    if not args.no_epoch:
        for batch, epochs in ((b, e) for b in batches for e in ((1,) if args.quick else (1, 3))):
            row = {"batch": batch, **epoch_times(batch, 3 if args.quick else 9, epochs=epochs)}
            results["epochs"].append(row)
            print(
                f"{epochs} epoch(s) batch {batch}: Trainer {row['trainer_s']:.3f}s, SVIStep loop"
                f" {row['step_loop_s']:.3f}s, torch loop {row['ref_loop_s']:.3f}s; Trainer/torch"
                f" {row['trainer_vs_ref']:.3f}, Trainer/SVIStep loop"
                f" {row['trainer_vs_step_loop']:.3f}",
                flush=True,
            )
    if args.eval and DEVICE.type == "cpu":
        num = 8 if args.quick else 100  # one full chunk of examples (batch_size=100)
        results["eval"] = eval_throughput(num, 5000, 3)
        print("eval:", json.dumps(results["eval"]))
    print("load average after:", Path("/proc/loadavg").read_text().split()[:3])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
