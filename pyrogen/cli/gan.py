"""``pyrogen gan``: train a GAN / WGAN on toy mixtures or images, write samples, figures, metrics.

Defaults are :data:`pyrogen.train.presets.TOY_DEFAULTS` for toy data (non-saturating GAN,
PacGAN packing of 2, Adam 2e-4, β = (0.5, 0.999), k = 1, batch 256, 20 000 generator steps, plus
the network sizes, the late learning-rate decay and the generator EMA listed there;
``benchmarks/gan_modes.py`` measures exactly these) and ``IMAGE_DEFAULTS`` for images: the DCGAN
generator and critic of :mod:`pyrogen.nn.conv` (``--arch conv``, base 32 channels), non-saturating
loss, Adam 2e-4, β = (0.5, 0.999), batch 64, 15 000 steps (``benchmarks/image_gan.py``), changed
per loss by ``IMAGE_LOSS_DEFAULTS`` (hinge: spectral norm, k = 2, β = (0, 0.9), 6000 steps;
WGAN-GP: 3000 steps); a flag always wins.
``--arch mlp`` on images uses MLPs of ``--hidden`` units instead. Image runs add class coverage,
precision and recall in classifier features to metrics.json.
``--loss wgan|wgan-gp`` switches to the papers' optimizers. ``--conditional`` trains the
conditional GAN of Mirza & Osindero (2014), ``g(z, y)`` against ``d(x, y)``, on the data set's
class labels.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyrogen import plot
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
from pyrogen.data.dataset import Dataset
from pyrogen.evaluate import mode_coverage, sliced_wasserstein, wasserstein_1d
from pyrogen.infer.adversarial import LOSSES
from pyrogen.models.gan import Generator
from pyrogen.nn.adversarial import Critic, ProjectionCritic
from pyrogen.nn.conv import ConvCritic, ConvGeneratorNet
from pyrogen.train import AdversarialStep, Trainer, TrainingInterrupted, distributed, set_seed
from pyrogen.train.files import save_state, write_json
from pyrogen.train.presets import (
    IMAGE_DEFAULTS,
    IMAGE_LOSS_DEFAULTS,
    TOY_DEFAULTS,
    GANDefaults,
    image_defaults,
)
from pyrogen.train.rundir import RunDir, prepare_run_dir

HELP = "Train a generative adversarial network and write samples, figures and sample metrics."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_data="ring8")
    toy, image = TOY_DEFAULTS, IMAGE_DEFAULTS
    parser.add_argument(
        "--arch",
        choices=["mlp", "conv"],
        default=None,
        help=f"networks: mlp (--hidden) or conv, the DCGAN generator and critic of"
        f" pyrogen.nn.conv (--base-channels; images only) (default: {toy.arch} toy,"
        f" {image.arch} images)",
    )
    parser.add_argument(
        "--loss",
        choices=sorted(LOSSES),
        default=None,
        help=f"default: {toy.loss} toy, {image.loss} images",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"generator updates (default: {toy.steps} toy, {image.steps} images)",
    )
    parser.add_argument(
        "--critic-steps",
        type=int,
        default=None,
        help="critic updates per generator update k (default: the loss's paper value: 1 for"
        " gan/nsgan/hinge, 5 for wgan/wgan-gp; on images "
        + ", ".join(f"{k} {v}" for k, v in _image_loss_settings("critic_steps").items())
        + ")",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"default: {toy.batch_size} toy, {image.batch_size} images",
    )
    parser.add_argument("--lr", type=float, default=None, help="generator lr (default: paper's)")
    parser.add_argument(
        "--critic-lr",
        type=float,
        default=None,
        help="critic lr (default: --lr); a faster critic, e.g. 1e-3, keeps wgan-gp from"
        " following a wrongly initialised critic on toy data (see docs/gan.md)",
    )
    parser.add_argument(
        "--pack",
        type=int,
        default=None,
        help=f"PacGAN packing of the critic (default: {toy.pack} for gan/nsgan/hinge,"
        " 1 for wgan/wgan-gp)",
    )
    parser.add_argument(
        "--latent-dim",
        type=int,
        default=None,
        help=f"default: {toy.latent_dim} toy, {image.latent_dim} images",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="hidden sizes of generator and critic (default:"
        f" {' '.join(map(str, toy.hidden))} toy, {' '.join(map(str, image.hidden))} images)",
    )
    parser.add_argument(
        "--base-channels",
        type=int,
        default=None,
        help=f"--arch conv: channels of the critic's first and the generator's last hidden"
        f" convolution (default: {image.base_channels})",
    )
    parser.add_argument(
        "--spectral-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--arch conv: spectral normalization of every critic layer (Miyato et al., 2018)"
        f" (default: {'on' if image.spectral_norm else 'off'}; on for --loss"
        f" {'/'.join(_image_defaults_with('spectral_norm', True))})",
    )
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        metavar="F",
        help="decay both learning rates linearly to 0 over the last fraction F of the steps"
        f" (default: {toy.lr_decay} toy, {image.lr_decay} images)",
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="BETA",
        help="sample from an exponential moving average of the generator weights with decay"
        f" BETA, 0 = off (default: {toy.ema} toy, {image.ema} images)",
    )
    parser.add_argument("--num-samples", type=int, default=10_000, help="rows of samples.npy")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="train a conditional GAN g(z, y) / d(x, y) (Mirza & Osindero, 2014) on the data"
        " set's class labels y, one-hot appended to z and x (the data set must have labels:"
        " digits, fashion-mnist, an MNIST idx directory); samples.npy then cycles over the"
        " classes (labels in sample_labels.npy), samples.png shows one row per class and"
        " metrics.json adds class_accuracy, the fraction of samples the feature classifier"
        " reads as their requested class",
    )
    parser.add_argument(
        "--critic",
        choices=["concat", "projection"],
        default="concat",
        help="how a conditional critic takes the label: concat appends the one-hot label to x;"
        " projection adds embed(y)^T phi(x) to the score (Miyato & Koyama, 2018; needs"
        " --conditional, no packing)",
    )
    add_long_run_arguments(parser)


def _image_loss_settings(name: str) -> dict[str, object]:
    """``{loss: value}`` of the losses whose image defaults set ``name`` (for the help)."""
    return {k: v[name] for k, v in IMAGE_LOSS_DEFAULTS.items() if name in v}


def _image_defaults_with(name: str, value: object) -> list[str]:
    return [k for k, v in _image_loss_settings(name).items() if v == value]


def _load(data: str) -> Dataset:
    if data.endswith(".npy"):
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"--data {data}: no such file.")
        x = torch.as_tensor(np.load(path), dtype=torch.float32)
        if x.dim() != 2 or len(x) < 10 or not torch.isfinite(x).all():
            raise ValueError(
                f"--data {data}: expected a finite float array of shape (n >= 10, d), one point"
                f" per row; got shape {tuple(x.shape)}."
            )
        split = max(1, len(x) // 10)
        return Dataset(path.stem, x[split:], None, x[:split], None, shape=(x.shape[1],))
    return load_dataset(data)


def _finite(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _check_labels(dataset: Dataset) -> int:
    """The number of classes K of a labelled data set (labels 0..K-1); refuses unlabelled data."""
    if dataset.train_y is None:
        raise ValueError(
            f"--conditional needs class labels, but data set {dataset.name!r} has none; drop"
            " --conditional or use a labelled data set (digits, fashion-mnist, an MNIST idx"
            " directory)."
        )
    return int(dataset.train_y.max()) + 1


def _default_lr(args: argparse.Namespace, defaults: GANDefaults) -> float | None:
    """The data's default learning rate for its default loss; else the loss's paper value."""
    return defaults.lr if args.loss == defaults.loss else None


def _default_betas(args: argparse.Namespace, defaults: GANDefaults) -> tuple[float, float] | None:
    return defaults.betas if args.loss == defaults.loss else None


def _projection_pack(args: argparse.Namespace) -> int:
    """The projection critic scores single examples: it needs labels and no packing."""
    if not args.conditional:
        raise ValueError("--critic projection conditions the critic on labels; add --conditional.")
    if args.pack not in (None, 1):
        raise ValueError(
            f"--critic projection scores single examples; drop --pack {args.pack} (or use"
            " --critic concat for PacGAN packing)."
        )
    return 1


def _resolve(args: argparse.Namespace, dataset: Dataset) -> GANDefaults:
    """Fill the unset ``--arch/--loss/--steps/--batch-size/--critic-steps/--critic-lr/
    --base-channels/--spectral-norm`` of ``args`` from the data's defaults, on images those of
    the loss (:func:`~pyrogen.train.presets.image_defaults`), so config.json records what ran;
    refuse mismatches, and data the convolutional networks cannot take."""
    image = dataset.is_image
    defaults = IMAGE_DEFAULTS if image else TOY_DEFAULTS
    arch_given = args.arch is not None
    for name in ("arch", "loss"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    if image:
        defaults = image_defaults(args.loss)
    for name in ("steps", "batch_size", "critic_steps", "critic_lr"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    if args.arch == "conv":
        check_conv_images(dataset, "--arch conv" + ("" if arch_given else " (the image default)"))
    conv_only = [f"--{n}" for n in ("base_channels", "spectral_norm") if getattr(args, n)]
    if args.arch == "mlp" and conv_only:
        raise ValueError(
            f"{' and '.join(conv_only).replace('_', '-')} set the convolutional networks; add"
            " --arch conv (image data) or drop them."
        )
    if args.arch == "conv":
        if args.hidden is not None:
            raise ValueError(
                "--hidden sets the MLP sizes; with --arch conv use --base-channels (or add"
                " --arch mlp)."
            )
        if args.pack not in (None, 1):
            raise ValueError(
                f"--pack {args.pack}: PacGAN packing is an option of the MLP critic; drop --pack"
                " or add --arch mlp."
            )
        if args.critic == "projection":
            raise ValueError("--critic projection is an MLP critic; add --arch mlp.")
        if args.base_channels is None:
            args.base_channels = defaults.base_channels
        if args.spectral_norm is None:
            args.spectral_norm = defaults.spectral_norm
    return defaults


def _networks(
    args: argparse.Namespace,
    dataset: Dataset,
    defaults: GANDefaults,
    latent_dim: int,
    num_classes: int,
    pack: int,
) -> tuple[Generator, torch.nn.Module]:
    """The generator and critic of ``--arch`` (convolutional: DCGAN, Radford et al. 2016)."""
    if args.arch == "conv":
        net = ConvGeneratorNet(
            latent_dim, dataset.shape, args.base_channels, num_classes, defaults.output
        )
        gen = Generator(latent_dim, num_classes=num_classes, net=net)
        critic = ConvCritic(dataset.shape, args.base_channels, num_classes, args.spectral_norm)
        return gen, critic
    hidden = args.hidden or list(defaults.hidden)
    gen = Generator(latent_dim, dataset.dim, hidden, num_classes, output=defaults.output)
    activation = defaults.critic_activation
    if args.critic == "projection":
        critic = ProjectionCritic(dataset.dim, num_classes, hidden, activation=activation)
    else:
        critic = Critic(dataset.dim, hidden, num_classes, pack=pack, activation=activation)
    return gen, critic


def _class_accuracy(clf, samples: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """The fraction of samples ``clf`` assigns their requested label, overall and per class."""
    with torch.no_grad():
        hit = (clf(samples.float()).argmax(-1) == labels).float()
    per_class = [float(hit[labels == c].mean()) for c in range(num_classes)]
    return {"class_accuracy": float(hit.mean()), "class_accuracy_per_class": per_class}


def _coverage_metrics(clf, samples: torch.Tensor, dataset: Dataset) -> dict:
    """Class coverage of ``samples`` (histogram of the classifier's labels, its KL to the training
    labels' frequencies, the fraction of classes holding 5-15 % of the samples) and improved
    precision/recall (Kynkäänniemi et al. 2019, k = 3) in the classifier's features against the
    test set, on equally many samples and test examples (the k-NN radii depend on set size)."""
    from pyrogen.evaluate.coverage import class_coverage
    from pyrogen.evaluate.precision_recall import classifier_precision_recall

    cov = class_coverage(samples, clf, real_labels=dataset.train_y)
    n = min(len(samples), len(dataset.test_x))
    pr = classifier_precision_recall(samples[:n], dataset.test_x[:n], clf) if n > 3 else {}
    return {
        "class_histogram": cov["histogram"],
        "class_kl": _finite(cov["kl"]),
        "classes_in_band": round(cov["in_band"] * cov["num_classes"]),  # a count, e.g. 10
        "classes_covered": cov["covered"],
        **pr,
    }


def sample_metrics(
    dataset: Dataset,
    samples: torch.Tensor,
    seed: int,
    labels: torch.Tensor | None = None,
    num_classes: int = 0,
) -> dict:
    """The sample-quality metrics of ``samples`` against ``dataset``'s test set: images with
    labels: Fréchet classifier distance (and its test-halves floor), class coverage, precision
    and recall, class accuracy of conditional samples; toy mixtures: mode coverage and (sliced)
    Wasserstein distance to the test set."""
    metrics: dict = {}
    if dataset.is_image:
        from pyrogen.evaluate.fid import frechet_classifier_distance, train_feature_classifier

        if dataset.train_y is None:
            return metrics
        clf = train_feature_classifier(dataset, seed=seed)
        metrics["frechet_classifier_distance"] = frechet_classifier_distance(
            samples, dataset.test_x, clf
        )
        half = len(dataset.test_x) // 2
        metrics["frechet_classifier_distance_test_halves"] = frechet_classifier_distance(
            dataset.test_x[:half], dataset.test_x[half:], clf
        )
        metrics["feature_classifier_test_accuracy"] = clf.accuracy
        metrics.update(_coverage_metrics(clf, samples, dataset))
        if labels is not None:
            metrics.update(_class_accuracy(clf, samples, labels, num_classes))
        return metrics
    centers, sigma = getattr(dataset, "centers", None), getattr(dataset, "sigma", 0.0)
    if centers is not None and sigma > 0:
        cov = mode_coverage(samples, centers, sigma)
        metrics.update({k: _finite(v) for k, v in cov.items()})
    if dataset.dim == 1:
        metrics["wasserstein_1d_to_test"] = wasserstein_1d(samples, dataset.test_x)
    else:
        metrics["sliced_wasserstein_to_test"] = sliced_wasserstein(samples, dataset.test_x)
    return metrics


@dataclass
class _Run:
    """Everything a ``pyrogen gan`` run needs, built and checked before its directory is
    touched."""

    ctx: distributed.Context
    device: torch.device
    out: Path
    dataset: Dataset
    step: AdversarialStep
    trainer: Trainer
    train: tuple[torch.Tensor, ...]
    num_classes: int
    pack: int
    config: dict


def _positive_or_default(args: argparse.Namespace, name: str, default):
    """``--name`` if given (refused below 1), else ``default``: 0 is not "use the default"."""
    value = getattr(args, name)
    if value is None:
        return default
    values = value if isinstance(value, list) else [value]
    if any(v < 1 for v in values):
        raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")
    return value


def run(args: argparse.Namespace) -> int:
    """Build the run (every check), prepare ``--out`` (refuses another run unless ``--resume``
    or ``--overwrite``, locks it, writes config.json), then train, sample and report."""
    r = _build(args)
    run_dir = prepare_run_dir(
        r.out,
        command="gan",
        config=r.config,
        data=tuple(t.cpu() for t in r.train),
        is_main=r.ctx.is_main,
        **run_dir_options(args),
    )
    with run_dir:
        return _train_and_report(args, r, run_dir)


def _build(args: argparse.Namespace) -> _Run:
    ctx, device = distributed.setup(resolve_device(args.device))
    out = resolve_out(args, "runs/gan")
    dataset = _load(args.data)
    defaults = _resolve(args, dataset)
    for name in ("steps", "batch_size", "num_samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    num_classes = _check_labels(dataset) if args.conditional else 0
    if args.conditional and args.num_samples < num_classes:
        raise ValueError(
            f"--num-samples {args.num_samples} is fewer than the {num_classes} classes; give at"
            f" least {num_classes} so that every class has a sample."
        )
    latent_dim = _positive_or_default(args, "latent_dim", defaults.latent_dim)
    hidden = _positive_or_default(args, "hidden", list(defaults.hidden))
    default_pack = 1 if args.loss in ("wgan", "wgan-gp") else defaults.pack
    pack = _positive_or_default(args, "pack", default_pack)
    if args.arch == "conv" or args.critic == "projection":
        pack = 1 if args.arch == "conv" else _projection_pack(args)
    lr_decay = args.lr_decay if args.lr_decay is not None else defaults.lr_decay
    ema = args.ema if args.ema is not None else defaults.ema
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"--ema must be in [0, 1), got {ema}.")
    set_seed(args.seed)
    gen, critic = _networks(args, dataset, defaults, latent_dim, num_classes, pack)
    # the critic's real batches: (x,) or, conditional, (x, y) (model(n, y=y), critic(x, y))
    train = (dataset.train_x.to(device),)
    if args.conditional:
        train = (*train, dataset.train_y.long().to(device))
    gen.to(device)
    critic.to(device)
    step = AdversarialStep(
        gen,
        critic,
        args.loss,
        critic_steps=args.critic_steps,
        lr=args.lr if args.lr is not None else _default_lr(args, defaults),
        critic_lr=args.critic_lr,
        betas=_default_betas(args, defaults),
        lr_decay=lr_decay,
        total_steps=args.steps,
        ema=ema or None,
    )
    step.setup(*(t[:2] for t in train))  # finds the generator's parameters (no RNG draws)
    model_config = {
        "latent_dim": latent_dim,
        "data_dim": dataset.dim,
        **(
            {
                "arch": "conv",
                "base_channels": args.base_channels,
                "image_shape": list(dataset.shape),
            }
            if args.arch == "conv"
            else {"hidden": list(hidden)}
        ),
        "output": defaults.output,
        "pack": pack,
        "critic_steps": step.critic_steps,
        "generator_optim": type(step.generator_optim).__name__,
        "generator_lr": step.generator_optim.defaults["lr"],
        "critic_lr": step.critic_optim.defaults["lr"],
        "betas": list(step.betas) if step.betas is not None else None,
        "lr_decay": lr_decay,
        "ema": ema,
    }
    if args.conditional:
        model_config.update(num_classes=num_classes, critic=args.critic)
    config = {"command": "gan", **vars(args), "out": str(out), "model": model_config}
    config["format_version"] = FORMAT_VERSION  # of config.json + model.pt, read by load_run
    for name in ("run", "debug", "overwrite", "force_resume"):
        config.pop(name, None)  # how to run, not what: a resume may change them
    if not args.conditional:  # unconditional runs keep the config.json they always had
        config.pop("conditional")
        config.pop("critic")
    if args.arch == "mlp":  # and so do MLP runs
        for name in ("arch", "base_channels", "spectral_norm"):
            config.pop(name)
    trainer = Trainer(
        step,
        batch_size=args.batch_size,
        steps=args.steps,
        seed=args.seed,
        progress=not args.no_progress,
        config=config,
        **trainer_options(args, out, device),
    )
    return _Run(ctx, device, out, dataset, step, trainer, train, num_classes, pack, config)


def _train_and_report(args: argparse.Namespace, r: _Run, run_dir: RunDir) -> int:
    ctx, device, out, dataset, step = r.ctx, r.device, r.out, r.dataset, r.step
    num_classes, pack, image = r.num_classes, r.pack, r.dataset.is_image
    if r.ctx.is_main:
        print(
            f"pyrogen gan: {dataset.name} ({len(dataset.train_x)} train, {dataset.dim} features),"
            + (f" conditional on {num_classes} classes," if args.conditional else "")
            + f" loss={args.loss}, k={step.critic_steps}, pack={pack}"
            + (f", spectral norm {'on' if args.spectral_norm else 'off'}" if image else "")
            + f", lr={step.lr:g}, critic lr={step.critic_lr:g}"
            + (f", betas={tuple(step.betas)}" if step.betas is not None else "")
            + f", {args.steps} steps on {device} -> {out}/"
        )
    start = time.perf_counter()
    try:
        history = r.trainer.fit(*r.train)
    except TrainingInterrupted as stop:
        print(f"pyrogen gan: {stop}", file=sys.stderr)
        return 130
    train_seconds = time.perf_counter() - start
    if not ctx.is_main:  # rank 0 evaluates and writes the results
        return 0
    run_dir.ensure()
    save_state(out / "model.pt", {**step.state_dict(), "config": r.config["model"]})
    write_json(out / "history.json", {k: history.column(k) for k in history.records[0]})

    set_seed(args.seed)
    step.sampler.eval()  # BatchNorm with its running statistics, as pyrogen.load_run samples
    labels = None
    if args.conditional:  # sample i has label i mod K
        labels = torch.arange(args.num_samples) % num_classes
        samples = step.sampler.sample(args.num_samples, y=labels.to(device)).cpu()
        np.save(out / "sample_labels.npy", labels.numpy())
    else:
        samples = step.sampler.sample(args.num_samples).cpu()
    np.save(out / "samples.npy", samples.numpy().astype(np.float32))
    metrics = {
        **sample_metrics(dataset, samples, args.seed, labels, num_classes),
        "steps": len(history),
        "train_seconds": train_seconds,
        "final_generator_loss": history.losses[-1],
        "final_critic_loss": history.column("critic_loss")[-1],
    }
    if history.column("w1"):
        metrics["final_w1_estimate"] = float(np.mean(history.column("w1")[-100:]))
    write_json(out / "metrics.json", metrics)

    title = f"{args.loss} on {dataset.name}, {len(history)} steps"
    if image and args.conditional:  # row c: the first samples of class c
        ncol = min(10, args.num_samples // num_classes)
        rows = torch.arange(ncol)[None, :] * num_classes + torch.arange(num_classes)[:, None]
        title = f"conditional {title} (row c: class c)"
        path = out / "samples.png"
        plot.image_grid(
            samples[rows.flatten()], dataset.shape, path, ncol, title, range(num_classes)
        )
    elif image:
        plot.image_grid(samples[:100], dataset.shape, out / "samples.png", 10, title)
    elif dataset.dim == 2:
        plot.plot_samples_2d(
            samples[:2500],
            getattr(dataset, "centers", None),
            getattr(dataset, "sigma", None),
            title,
            path=out / "samples.png",
        )
    else:
        plot.plot_density_1d(
            dataset.test_x[:, 0], samples[:, 0], title=title, path=out / "samples.png"
        )
    plot.plot_losses(history, title, out / "loss.png")
    shown = {
        k: v
        for k, v in metrics.items()
        if k not in ("counts", "class_accuracy_per_class", "class_histogram")
    }
    print(
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    )
    labels_file = " sample_labels.npy," if args.conditional else ""
    print(
        f"wrote model.pt, samples.npy,{labels_file} config.json, metrics.json, history.json,"
        f" samples.png and loss.png to {out}/"
    )
    return 0
