"""``pyrogen vae``: train a VAE, evaluate it on the test set, write figures and metrics;
``--conditional`` trains a conditional VAE p(x | z, y) on the data set's labels instead, and
``--model vae-gan|aae`` an auto-encoder with a critic (:mod:`pyrogen.cli.autoencoders`)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrogen import plot
from pyrogen.cli import autoencoders
from pyrogen.cli.common import (
    add_common_arguments,
    add_long_run_arguments,
    check_conv_images,
    resolve_device,
    resolve_out,
    run_dir_options,
    trainer_options,
)
from pyrogen.cli.runs import FORMAT_VERSION
from pyrogen.data import load_dataset
from pyrogen.evaluate import elbo_and_log_likelihood
from pyrogen.infer import OBJECTIVES, get_objective
from pyrogen.models import CVAE, VAE
from pyrogen.models.latent import interpolate, random_walk
from pyrogen.models.likelihoods import LIKELIHOODS
from pyrogen.models.vae import ARCHS
from pyrogen.nn.mlp import ACTIVATIONS
from pyrogen.train import SVIStep, Trainer, TrainingInterrupted, distributed, set_seed
from pyrogen.train.files import save_state, write_json
from pyrogen.train.presets import VAE_DEFAULTS, VAE_PRESETS
from pyrogen.train.rundir import RunDir, prepare_run_dir
from pyrogen.train.schedule import LRScheduler, StagewiseLR, stagewise_adam

HELP = (
    "Train a variational auto-encoder and write samples, figures and test metrics. --model"
    " vae-gan adds a critic on data vs. reconstructions (ELBO + λ·GAN loss); --model aae trains"
    " an adversarial autoencoder whose codes a critic matches to a prior; --conditional trains"
    " a conditional VAE on the labels."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_data="digits")
    parser.add_argument(
        "--preset",
        choices=sorted(VAE_PRESETS),
        default=None,
        help="published settings; flags given explicitly win. burda2016: Burda et al. 2016,"
        " Table 1 — 2 x 200 tanh units, 50 latent units, batch 20, Adam (0.9, 0.999, eps 1e-4),"
        " lr 1e-3*10^(-i/7) for 3^i of 3280 epochs (i = 0..7; fewer --epochs scale the stages),"
        " dynamic binarization, K = 5000",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="passes over the training set (default: 50)"
    )
    parser.add_argument("--likelihood", choices=sorted(LIKELIHOODS), default="bernoulli")
    parser.add_argument("--latent-dim", type=int, default=None, help="size of z (default: 10)")
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="hidden layer sizes, e.g. 200 200 (default: 400)",
    )
    parser.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        default=None,
        help="of the hidden layers (default: relu)",
    )
    parser.add_argument(
        "--arch",
        choices=list(ARCHS),
        default="mlp",
        help="encoder/decoder: mlp (--hidden) or conv, the convolutional ConvEncoder /"
        " ConvDecoder of pyrogen.nn.conv (two stride-2 convolutions, --base-channels; images"
        " whose height and width are multiples of 4; one fully connected layer of --hidden"
        " units after the encoder's convolutions) (default: mlp)",
    )
    parser.add_argument(
        "--base-channels",
        type=int,
        default=None,
        help="--arch conv: channels of the encoder's first and the decoder's last convolution"
        " (default: 32)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="(default: 128)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--adam-eps", type=float, default=None, help="Adam's ε (default: 1e-8)")
    parser.add_argument(
        "--lr-schedule",
        choices=["constant", "burda2016"],
        default=None,
        help="burda2016: lr·10^(-i/7) in stage i = 0..7, stage i lasting 3^i/3280 of --epochs"
        " (default: constant)",
    )
    parser.add_argument(
        "--estimator",
        choices=list(OBJECTIVES),
        default="reparam",
        help="gradient estimator: reparam (analytic KL), score (score function + baseline),"
        " iwae / dreg (importance-weighted bound), stl (sticking the landing)",
    )
    parser.add_argument(
        "--num-particles", type=int, default=1, help="samples K per example and step"
    )
    parser.add_argument(
        "--binarize",
        choices=["auto", "dynamic", "none"],
        default=None,
        help="dynamic: resample binary pixels every batch; auto: dynamic for bernoulli, none for"
        " gaussian (default: auto)",
    )
    parser.add_argument(
        "--num-is-samples",
        type=int,
        default=None,
        help="importance samples K per test image for log p(x) (default: 5000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="train a conditional VAE p(x | z, y) q(z | x, y) (Sohn et al., 2015) on the data"
        " set's class labels y (the data set must have labels); test ELBO / log p(x | y) use"
        " the test labels, samples.png shows one row per class and style.png decodes test"
        " images' z as every class (no interpolation / random-walk figures)",
    )
    autoencoders.add_arguments(parser)
    add_long_run_arguments(parser)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    return shape if len(shape) == 2 else (1, int(torch.tensor(shape).prod()))


def _write_figures(vae: VAE, dataset, losses: list[float], out: Path, seed: int) -> None:
    device = next(vae.parameters()).device
    shape = _image_shape(dataset.shape)
    generator = torch.Generator().manual_seed(seed)
    test = dataset.test_x.to(device)
    plot.image_grid(
        vae.sample(100, generator=generator).cpu(),
        shape,
        out / "samples.png",
        10,
        "samples from the prior (decoder means)",
    )
    plot.reconstructions(
        test[:30].cpu(), vae.reconstruct(test[:30]).cpu(), shape, out / "reconstructions.png"
    )
    codes = vae.encode(test)[0]
    if len(test) >= 12:
        pairs = torch.randperm(len(test), generator=generator)[:12].view(6, 2).to(device)
    else:  # a tiny test set: pairs drawn with repeats
        pairs = torch.randint(len(test), (6, 2), generator=generator).to(device)
    lines = interpolate(codes[pairs[:, 0]], codes[pairs[:, 1]], steps=10)  # (10, 6, L)
    frames = vae.decode(lines).transpose(0, 1)  # (6, 10, D)
    plot.interpolation(frames.cpu(), shape, out / "interpolation.png")
    starts = torch.randn(6, vae.latent_dim, generator=generator).to(device)
    walks = random_walk(starts, steps=12, step_size=0.35, generator=generator)  # (12, 6, L)
    plot.random_walk(vae.decode(walks).transpose(0, 1).cpu(), shape, out / "random_walk.png")
    plot.latent_scatter(codes.cpu(), dataset.test_y, out / "latent.png")
    plot.loss_curve(  # SVIStep(loss_scale=1 / N) already records nats per example
        losses, out / "loss.png", "−ELBO per training example (nats)", "training loss"
    )


def _write_conditional_figures(cvae: CVAE, dataset, history, out: Path, seed: int) -> None:
    """samples.png (row c: class c), reconstructions, style.png, latent map, loss curve."""
    device = next(cvae.parameters()).device
    shape = _image_shape(dataset.shape)
    generator = torch.Generator().manual_seed(seed)
    test, labels = dataset.test_x.to(device), dataset.test_y.to(device)
    classes = torch.arange(cvae.num_classes, device=device)
    samples = cvae.sample(10, y=classes, generator=generator).cpu()  # 10 per class, by class
    title = "samples of each class (row c: class c)"
    plot.image_grid(samples, shape, out / "samples.png", 10, title, range(cvae.num_classes))
    plot.reconstructions(
        test[:30].cpu(),
        cvae.reconstruct(test[:30], labels[:30]).cpu(),
        shape,
        out / "reconstructions.png",
    )
    codes = cvae.encode(test, labels)[0]
    style = codes[:6, None].expand(-1, cvae.num_classes, -1)  # (6, C, L)
    decoded = cvae.decode(style, classes)  # (6, C, D): row r, column c = z_r as class c
    frames = torch.cat([test[:6, None], decoded], 1)  # (6, 1 + C, D)
    title = "a test image, then its z (style) decoded as class 0, 1, ..."
    plot.frame_rows(frames.cpu(), shape, out / "style.png", title)
    plot.latent_scatter(codes.cpu(), dataset.test_y, out / "latent.png")
    plot.loss_curve(
        history.losses, out / "loss.png", "−ELBO per training example (nats)", "training loss"
    )


#: flags a preset sets, and what a plain run's config.json leaves out at their defaults
_PRESET_FLAGS = (
    "epochs",
    "latent_dim",
    "hidden",
    "activation",
    "batch_size",
    "lr",
    "adam_eps",
    "lr_schedule",
    "binarize",
    "num_is_samples",
)
_NEW_FLAGS = ("preset", "activation", "adam_eps", "lr_schedule")  # not in earlier config.json


def _resolve_settings(args: argparse.Namespace) -> None:
    """Fill the flags not given from ``--preset`` (or ``pyrogen vae``'s defaults) and refuse
    settings the chosen model cannot use."""
    settings = VAE_PRESETS[args.preset] if args.preset else VAE_DEFAULTS
    for name in _PRESET_FLAGS:
        if getattr(args, name) is None:
            value = getattr(settings, name)
            setattr(args, name, list(value) if isinstance(value, tuple) else value)
    other = "--conditional" if args.conditional else f"--model {args.model}"
    if args.conditional or args.model != "vae":
        if args.preset:
            raise ValueError(
                f"--preset {args.preset} is for the plain VAE; drop {other} or the preset."
            )
        if args.activation != VAE_DEFAULTS.activation:
            raise ValueError(
                f"--activation {args.activation} is for the plain VAE ({other} uses relu);"
                " drop one of them."
            )
    _resolve_arch(args, other)
    if args.model != "vae" and (
        args.adam_eps != VAE_DEFAULTS.adam_eps or args.lr_schedule != "constant"
    ):
        raise ValueError(
            f"--adam-eps / --lr-schedule set the VAE's Adam; --model {args.model} builds its"
            " own optimizers. Drop them or use --model vae."
        )


_CONV_BASE_CHANNELS = 32  # --base-channels of --arch conv
_PRESET_PAPERS = {"burda2016": "Burda et al. 2016"}  # --preset: the paper of its (MLP) VAE


def _resolve_arch(args: argparse.Namespace, other: str) -> None:
    """Refuse ``--arch conv`` where it has no conv networks (``--conditional``, ``--model``,
    ``--preset``), ``--base-channels`` without it."""
    if args.arch == "mlp":
        if args.base_channels is not None:
            raise ValueError(
                "--base-channels sets the convolutional networks; add --arch conv or drop it."
            )
        return
    if args.conditional or args.model != "vae":
        raise ValueError(
            f"--arch conv is for the plain VAE; {other} has MLP networks only. Drop --arch conv"
            f" or {other}."
        )
    if args.preset:
        paper = _PRESET_PAPERS.get(args.preset, "its paper")
        raise ValueError(
            f"--preset {args.preset} is the MLP VAE of {paper}, not a convolutional one; use"
            " --arch mlp (the default) or drop the preset."
        )
    if len(args.hidden) != 1:
        raise ValueError(
            "--arch conv has one fully connected layer after the encoder's convolutions; give"
            f" one --hidden size (e.g. --hidden 256), got {' '.join(map(str, args.hidden))}."
        )
    if args.activation != "relu":
        raise ValueError(f"--arch conv uses relu; drop --activation {args.activation}.")
    if args.base_channels is None:
        args.base_channels = _CONV_BASE_CHANNELS
    if args.base_channels < 1:
        raise ValueError(f"--base-channels must be >= 1, got {args.base_channels}.")


def _check_labels(dataset) -> None:
    if dataset.train_y is None or dataset.test_y is None:
        raise ValueError(
            f"--conditional needs class labels, but data set {dataset.name!r} has none; drop"
            " --conditional or use a labelled data set (digits, fashion-mnist, an MNIST idx"
            " directory)."
        )


@dataclass
class _Run:
    """Everything a ``pyrogen vae`` run needs, built and checked before its directory is
    touched."""

    ctx: distributed.Context
    device: torch.device
    out: Path
    dataset: Any
    binarize: str
    vae: VAE
    trainer: Trainer
    train_labels: tuple[torch.Tensor, ...]
    test_labels: tuple[torch.Tensor, ...]
    config: dict


def run(args: argparse.Namespace) -> int:
    """Build the run (every check), prepare ``--out`` (refuses another run unless ``--resume``
    or ``--overwrite``, locks it, writes config.json), then train, evaluate and report."""
    r = _build(args)
    run_dir = prepare_run_dir(
        r.out,
        command="vae",
        config=r.config,
        data=(r.dataset.train_x, *r.train_labels),
        is_main=r.ctx.is_main,
        **run_dir_options(args),
    )
    with run_dir:
        return _train_and_report(args, r, run_dir)


def _build(args: argparse.Namespace) -> _Run:
    _resolve_settings(args)
    ctx, device = distributed.setup(resolve_device(args.device))
    out = resolve_out(args, "runs/vae")
    binarize = args.binarize
    if binarize == "auto":
        binarize = "dynamic" if args.likelihood == "bernoulli" else "none"
    get_objective(args.estimator, args.num_particles)  # fail on bad settings before loading data
    autoencoders.check(args)
    options = trainer_options(args, out, device)
    dataset = load_dataset(args.data, binarize=binarize)
    if args.arch == "conv":
        check_conv_images(dataset, "--arch conv")
    if args.conditional:
        _check_labels(dataset)
    set_seed(args.seed)
    pyro.clear_param_store()  # a fresh model: no parameters of an earlier run in this process
    # labels: the extra data tensors of model(x, *labels) (none for the unconditional VAE)
    train_labels, test_labels = (), ()
    if args.conditional:
        train_labels, test_labels = (dataset.train_y.long(),), (dataset.test_y.long(),)
        num_classes = int(max(train_labels[0].max(), test_labels[0].max())) + 1
        sizes = (args.latent_dim, args.hidden, args.likelihood, len(dataset.train_x))
        vae = CVAE(dataset.dim, num_classes, *sizes)
    elif args.model != "vae":
        vae = autoencoders.build(args, dataset.dim, len(dataset.train_x))
    else:
        sizes = (args.latent_dim, args.hidden, args.likelihood, len(dataset.train_x))
        conv = (
            {"arch": "conv", "image_shape": dataset.shape, "base_channels": args.base_channels}
            if args.arch == "conv"
            else {}
        )
        vae = VAE(dataset.dim, *sizes, activation=args.activation, **conv)
    vae.validate(dataset.train_x, *train_labels)
    vae.validate(dataset.test_x, *test_labels)
    vae.to(device)
    config = {"command": "vae", **vars(args), "binarize": binarize, "out": str(out)}
    config["format_version"] = FORMAT_VERSION  # of config.json + model.pt, read by load_run
    for name in ("run", "debug", "overwrite", "force_resume"):
        config.pop(name, None)  # how to run, not what: a resume may change them
    if not args.conditional:  # unconditional runs keep the config.json they always had
        config.pop("conditional")
    for name in ("model", "adv_weight", "adv_loss", "critic_hidden", "prior"):
        config.pop(name)  # plain VAE runs keep their config.json; the others record them below
    if args.arch == "mlp":  # MLP runs keep the config.json they always had
        config.pop("arch")
        config.pop("base_channels")
    for name in _NEW_FLAGS:  # recorded when they change something
        if config[name] == getattr(VAE_DEFAULTS, name, None):
            config.pop(name)
    callbacks = []
    if args.model != "vae":
        adv = autoencoders.settings(args, len(dataset.train_x))
        config.update(model_type=args.model, **adv)
        step = autoencoders.step(vae, args, adv)
    else:
        loss = get_objective(args.estimator, args.num_particles)
        schedule = StagewiseLR(args.epochs) if args.lr_schedule == "burda2016" else None
        betas = VAE_PRESETS[args.preset].betas if args.preset else VAE_DEFAULTS.betas
        optim = stagewise_adam(args.lr, schedule, betas, args.adam_eps)
        n = len(dataset.train_x)
        step = SVIStep(vae.model, vae.guide, loss, optim=optim, loss_scale=1 / n)
        if schedule is not None:
            callbacks.append(LRScheduler(every="epoch"))
    config["model"] = vae.config()
    trainer = Trainer(
        step,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        transform=dataset.train_transform,
        progress=not args.no_progress,
        config=config,
        callbacks=callbacks,
        **options,
    )
    return _Run(
        ctx, device, out, dataset, binarize, vae, trainer, train_labels, test_labels, config
    )


def _train_and_report(args: argparse.Namespace, r: _Run, run_dir: RunDir) -> int:
    dataset, vae, out, adversarial = r.dataset, r.vae, r.out, args.model != "vae"
    if r.ctx.is_main:
        print(
            f"pyrogen vae: {dataset.name} ({len(dataset.train_x)} train / {len(dataset.test_x)}"
            f" test, {dataset.dim} features, binarize={r.binarize}) on {r.device}"
            + (f" x {r.ctx.world_size} processes" if r.ctx.world_size > 1 else "")
            + f" -> {out}/"
        )
    start = time.perf_counter()
    try:
        history = r.trainer.fit(
            dataset.train_x.to(r.device), *(y.to(r.device) for y in r.train_labels)
        )
    except TrainingInterrupted as stop:
        if r.ctx.is_main:
            print(f"pyrogen vae: {stop}", file=sys.stderr)
        return 130
    train_seconds = time.perf_counter() - start
    if not r.ctx.is_main:  # rank 0 evaluates and writes the results
        return 0
    run_dir.ensure()
    save_state(out / "model.pt", vae.state_dict())
    if adversarial:
        history.save(out)  # every column: loss, neg_elbo / reconstruction, generator, critic_loss
    else:
        write_json(out / "history.json", {"loss": history.losses, "skipped": history.skipped})
    if args.model == "aae":
        return _finish_aae(vae, dataset, history, out, args, train_seconds)
    return _evaluate_and_report(args, r, history, train_seconds)


def _evaluate_and_report(args: argparse.Namespace, r: _Run, history, train_seconds: float) -> int:
    dataset, vae, out, adversarial = r.dataset, r.vae, r.out, args.model != "vae"
    print(
        f"evaluating on {len(dataset.test_x)} test examples with K={args.num_is_samples}"
        " importance samples ..."
    )
    if len(dataset.test_x) * args.num_is_samples * dataset.dim > 1e10:
        print(
            "  (a large evaluation: minutes on a CPU; --num-is-samples 500 gives a ~10x faster,"
            " slightly looser estimate)"
        )
    set_seed(args.seed)
    start = time.perf_counter()
    test_elbo, test_ll = elbo_and_log_likelihood(
        vae,
        dataset.test_x,
        *r.test_labels,
        num_samples=args.num_is_samples,
        progress=not args.no_progress,
    )
    losses = history.column("neg_elbo") if adversarial else history.losses
    metrics = {
        "test_elbo": test_elbo,
        "test_log_likelihood": test_ll,
        "num_is_samples": args.num_is_samples,
        "final_train_loss_per_example": losses[-1],
        "steps": len(history),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "units": "nats per example",
    }
    if args.conditional:
        metrics["conditional"] = True  # test_elbo and test_log_likelihood bound log p(x | y)
    if adversarial:
        metrics.update(_adversarial_finals(history), model_type=args.model)
    write_json(out / "metrics.json", metrics)
    if args.conditional:
        _write_conditional_figures(vae, dataset, history, out, args.seed)
    else:
        _write_figures(vae, dataset, losses, out, args.seed)
    given = " | y" if args.conditional else ""
    print(
        f"test ELBO {test_elbo:.3f} nats, test log p(x{given}) >= {test_ll:.3f} nats (IS, K ="
        f" {args.num_is_samples}); {len(history)} steps in {train_seconds:.1f} s"
    )
    figures = 5 if args.conditional else 6
    print(
        f"wrote model.pt, config.json, metrics.json, history.json and {figures} figures to {out}/"
    )
    return 0


def _adversarial_finals(history) -> dict[str, float]:
    """The adversarial game's last values (generator term, critic loss)."""
    return {
        "final_generator_loss": history.column("generator")[-1],
        "final_critic_loss": history.column("critic_loss")[-1],
    }


def _finish_aae(aae, dataset, history, out: Path, args, train_seconds: float) -> int:
    """Metrics (test reconstruction error, sliced W1 of test codes to the prior) and figures."""
    set_seed(args.seed)
    start = time.perf_counter()
    device = next(aae.parameters()).device
    metrics = {
        **autoencoders.aae_metrics(aae, dataset.test_x.to(device), args.seed),
        "final_train_reconstruction_per_example": history.column("reconstruction")[-1],
        **_adversarial_finals(history),
        "model_type": "aae",
        "steps": len(history),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "units": "nats per example (test_reconstruction = -log p(x | z = f(x)))",
    }
    write_json(out / "metrics.json", metrics)
    shape = _image_shape(dataset.shape)
    autoencoders.aae_figures(aae, dataset, history, out, args.seed, shape)
    print(
        f"test reconstruction {metrics['test_reconstruction']:.3f} nats, sliced W1 of test codes"
        f" to the prior {metrics['sliced_w1_codes_to_prior']:.3f}; {len(history)} steps in"
        f" {train_seconds:.1f} s"
    )
    print(f"wrote model.pt, config.json, metrics.json, history.json and 4 figures to {out}/")
    return 0
