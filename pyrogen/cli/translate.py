"""``pyrogen translate``: image-to-image translation, paired (pix2pix: super-resolution,
inpainting) or unpaired (CycleGAN between the images and their 90°-rotated versions).

``--task superres``: ``--factor``× block-averaged images, upsampled back (``--upsample``,
bicubic by default) → the images; ``--task inpaint``: the images with their bottom half zeroed →
the images. Both train pix2pix (Isola et al. 2017: conditional GAN on d(output, input) plus
``--l1-weight`` × L1) and, unless ``--no-l1-baseline``, the L1-only model with the same budget
(``--adv-weight 0``); metrics.json reports the test PSNR of the model, of the L1-only model and of
the input itself (the bicubic baseline for super-resolution).

``--task cycle``: CycleGAN (Zhu et al. 2017) between domain A, the images of one half of the
training set, and domain B, the other half transformed (``--domains``: ``bold`` strokes, the
default; ``invert``ed intensities; ``rotate``d 90°); metrics.json reports how often a classifier
trained on the target domain gives a translated test image its source's label (both directions,
next to the classifiers' accuracy on real images, the ceiling, and the untranslated images'
score, the floor) and the PSNR of G(a) against the true transform of a. ``--translator resnet``
(default) is a generic local conv net (residual blocks); ``dihedral``, a learned mixture of the
square's 8 symmetries, is the one that solves ``--domains rotate`` (generic translators find
another bijection there); ``conv`` is the U-Net encoder-decoder. Without ``--data`` the cycle
task uses ``digits``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from pyrogen import plot
from pyrogen.cli.common import add_common_arguments, check_conv_images, resolve_device
from pyrogen.data import load_dataset
from pyrogen.data.dataset import Dataset
from pyrogen.data.translation import (
    DOMAIN_PAIRS,
    INVERSE_TRANSFORMS,
    UPSAMPLING,
    downsample,
    inpaint_pairs,
    superres_pairs,
    unpaired_domains,
    upsample,
)
from pyrogen.evaluate.fid import train_feature_classifier
from pyrogen.evaluate.translation import label_preservation, psnr
from pyrogen.infer.adversarial import LOSSES
from pyrogen.models.translation import TRANSLATORS, CycleGAN, PairCritic, Translator
from pyrogen.nn.conv import ConvCritic
from pyrogen.train import Trainer, TrainingInterrupted, pix2pix_step, set_seed
from pyrogen.train.files import save_state, write_json
from pyrogen.train.steps.cycle import CycleGANStep

HELP = (
    "Image-to-image translation: pix2pix super-resolution or inpainting, or CycleGAN between"
    " images and their bold / inverted / rotated versions; writes the model, a figure and PSNR /"
    " label metrics."
)
TASKS = ("superres", "inpaint", "cycle")

#: Defaults that depend on --task: flag -> (its value for --task cycle, for the paired tasks).
TASK_DEFAULTS = {
    "data": ("digits", "fashion-mnist"),
    "steps": (1000, 1500),
    "base_channels": (16, 32),
}


def _default_help(name: str) -> str:
    """``(default: A for --task cycle, B otherwise)`` of :data:`TASK_DEFAULTS`."""
    cycle, paired = TASK_DEFAULTS[name]
    return f"(default: {cycle} for --task cycle, {paired} otherwise)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_data=None)
    data = next(action for action in parser._actions if action.dest == "data")
    data.help += " " + _default_help("data")
    parser.add_argument("--task", choices=TASKS, default="superres")
    parser.add_argument(
        "--steps", type=int, default=None, help="generator updates " + _default_help("steps")
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam lr of generators, critics")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="nsgan")
    parser.add_argument("--l1-weight", type=float, default=100.0, help="pix2pix λ_L1")
    parser.add_argument(
        "--adv-weight", type=float, default=1.0, help="weight of the adversarial term (0: L1 only)"
    )
    parser.add_argument(
        "--no-l1-baseline",
        action="store_true",
        help="do not train the L1-only model (adv-weight 0) to compare with",
    )
    parser.add_argument("--cycle-weight", type=float, default=10.0, help="CycleGAN λ")
    parser.add_argument(
        "--domains",
        choices=tuple(DOMAIN_PAIRS),
        default="bold",
        help="CycleGAN's domain B: the other half's images with bolder strokes (3×3 cross"
        " dilation), inverted (1 - x) or rotated 90° (use --translator dihedral)",
    )
    parser.add_argument(
        "--translator",
        choices=TRANSLATORS,
        default="resnet",
        help="CycleGAN's generators: local residual conv nets (resnet: appearance changes),"
        " mixtures of the square's 8 symmetries (dihedral: solves --domains rotate, where generic"
        " nets find another bijection) or U-Net encoder-decoders with a global bottleneck (conv)",
    )
    parser.add_argument("--factor", type=int, default=4, help="super-resolution factor")
    parser.add_argument("--upsample", choices=UPSAMPLING, default="bicubic")
    parser.add_argument("--noise-dim", type=int, default=8, help="dimension of pix2pix's z")
    parser.add_argument(
        "--base-channels",
        type=int,
        default=None,
        help="channels of the first layers (--task cycle: of the translators; its critics get 4×) "
        + _default_help("base_channels"),
    )
    parser.add_argument(
        "--num-train", type=int, default=0, help="use the first N training images (0: all)"
    )
    parser.add_argument("--num-test", type=int, default=1000, help="test images evaluated")
    parser.add_argument("--num-z", type=int, default=3, help="outputs per input in the figure")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check(args: argparse.Namespace, dataset: Dataset) -> None:
    for name in ("steps", "batch_size", "num_test", "num_z", "base_channels"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.num_train < 0 or args.noise_dim < 0:
        raise ValueError("--num-train and --noise-dim must be >= 0.")
    check_conv_images(dataset, f"--task {args.task}", mlp=None)
    h, w = dataset.shape
    if args.task == "superres" and (args.factor < 2 or h % args.factor or w % args.factor):
        raise ValueError(
            f"--factor {args.factor} must be >= 2 and divide the image size {h}×{w}"
            f" (e.g. --factor {4 if h % 4 == 0 else 2})."
        )
    if args.l1_weight < 0 or args.adv_weight < 0:
        raise ValueError("--l1-weight and --adv-weight must be >= 0.")
    if args.task == "cycle" and dataset.train_y is None:
        raise ValueError(
            f"--task cycle measures label preservation with a classifier and needs class labels;"
            f" data set {dataset.name!r} has none."
        )


def _pairs(args, dataset: Dataset, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if args.task == "superres":
        return superres_pairs(x, dataset.shape, args.factor, args.upsample)
    return inpaint_pairs(x, dataset.shape)


def _train_pix2pix(args, dataset, x_in, x_target, adv_weight, device, label):
    set_seed(args.seed)
    translator = Translator(
        dataset.shape,
        noise_dim=args.noise_dim,
        base_channels=args.base_channels,
        residual=args.task == "superres",
    ).to(device)
    critic = PairCritic(dataset.shape, base_channels=args.base_channels).to(device)
    step = pix2pix_step(translator, critic, args.l1_weight, adv_weight, args.loss, lr=args.lr)
    print(f"pyrogen translate: training {label} ({args.steps} steps)")
    start = time.perf_counter()
    history = Trainer(
        step, batch_size=args.batch_size, steps=args.steps, seed=args.seed,
        progress=not args.no_progress,
    ).fit(x_in.to(device), x_target.to(device))  # fmt: skip
    return translator, step, history, time.perf_counter() - start


def _run_paired(args, dataset: Dataset, out, device) -> dict:
    train_x = dataset.train_x[: args.num_train or None]
    x_in, x_target = _pairs(args, dataset, train_x)
    test_in, test_target = _pairs(args, dataset, dataset.test_x[: args.num_test])
    translator, step, history, seconds = _train_pix2pix(
        args, dataset, x_in, x_target, args.adv_weight, device, "pix2pix"
    )
    set_seed(args.seed)
    outputs = [translator.translate(test_in.to(device)).cpu() for _ in range(args.num_z)]
    metrics = {
        "task": args.task,
        "psnr_model": psnr(outputs[0], test_target),
        "psnr_input": psnr(test_in, test_target),
        "output_std_over_z": float(torch.stack(outputs).std(0).mean()),
        "train_seconds": seconds,
        "steps": len(history),
        "final_generator_loss": history.losses[-1],
        "final_critic_loss": history.column("critic_loss")[-1],
        "num_test": len(test_in),
    }
    if args.task == "superres":
        metrics["psnr_bicubic" if args.upsample == "bicubic" else "psnr_upsampled"] = metrics[
            "psnr_input"
        ]
        low = downsample(test_target, dataset.shape, args.factor)
        small = (dataset.shape[0] // args.factor, dataset.shape[1] // args.factor)
        metrics["psnr_nearest"] = psnr(upsample(low, small, args.factor, "nearest"), test_target)
    rows = [test_in[:10]]
    labels = ["input"]
    if not args.no_l1_baseline and args.adv_weight != 0:
        l1_model, *_, l1_seconds = _train_pix2pix(
            args, dataset, x_in, x_target, 0.0, device, "the L1-only model"
        )
        set_seed(args.seed)
        l1_out = l1_model.translate(test_in.to(device)).cpu()
        metrics.update(psnr_l1_only=psnr(l1_out, test_target), l1_only_train_seconds=l1_seconds)
        rows.append(l1_out[:10])
        labels.append("L1 only")
    rows += [o[:10] for o in outputs] + [test_target[:10]]
    labels += [f"z{i + 1}" for i in range(args.num_z)] + ["truth"]
    save_state(out / "model.pt", {**step.state_dict(), "config": _model_config(args, dataset)})
    title = f"pix2pix {args.task} on {dataset.name}, {len(history)} steps"
    plot.image_grid(torch.cat(rows), dataset.shape, out / "translations.png", 10, title, labels)
    return metrics


def _domain_classifier(name, x, y, test_x, test_y, seed):
    # 60 epochs on small data (the 900 digits of a domain; 20 left bold digits at 0.87)
    epochs = 60 if len(x) < 5000 else 20
    return train_feature_classifier(
        Dataset(name, x, y, test_x, test_y, (0, 0)), seed=seed, epochs=epochs
    )


def _cycle_model(args, shape, device) -> CycleGAN:
    if args.translator == "dihedral":
        return CycleGAN(shape, translator="dihedral").to(device)
    if args.translator == "resnet":
        return CycleGAN(shape, base_channels=args.base_channels).to(device)
    kwargs = {"base_channels": args.base_channels, "skip": False, "global_bottleneck": True}
    return CycleGAN(shape, translator="conv", **kwargs).to(device)


def _run_cycle(args, dataset: Dataset, out, device) -> dict:
    shape, pair = dataset.shape, args.domains
    n = args.num_train or len(dataset.train_x)
    dom = unpaired_domains(dataset.train_x[:n], shape, pair, dataset.train_y[:n], args.seed)
    m = 2 * args.num_test
    test = unpaired_domains(dataset.test_x[:m], shape, pair, dataset.test_y[:m], args.seed)
    set_seed(args.seed)
    model = _cycle_model(args, shape, device)
    critic_a = ConvCritic(shape, 4 * args.base_channels).to(device)
    critic_b = ConvCritic(shape, 4 * args.base_channels).to(device)
    step = CycleGANStep(model, critic_a, critic_b, args.loss, args.cycle_weight, args.lr)
    print(f"pyrogen translate: training CycleGAN ({args.steps} steps)")
    start = time.perf_counter()
    history = Trainer(
        step, batch_size=args.batch_size, steps=args.steps, seed=args.seed,
        progress=not args.no_progress,
    ).fit(dom["a"].to(device), dom["b"].to(device))  # fmt: skip
    seconds = time.perf_counter() - start
    fake_b = model.a_to_b(test["a"].to(device)).cpu()
    fake_a = model.b_to_a(test["b"].to(device)).cpu()
    # classifiers of each domain's real images: A's on the originals, B's on the transformed
    clf_a = _domain_classifier(
        "A", dom["a"], dom["a_labels"], test["a"], test["a_labels"], args.seed
    )
    clf_b = _domain_classifier(
        "B", dom["b"], dom["b_labels"], test["b"], test["b_labels"], args.seed
    )
    a_to_b = label_preservation(clf_b, fake_b, test["a_labels"])
    b_to_a = label_preservation(clf_a, fake_a, test["b_labels"])
    transform = DOMAIN_PAIRS[pair]
    true_b = transform(test["a"], shape)
    cycle = history.column("cycle_loss")
    k = max(1, len(cycle) // 10)
    metrics = {
        "task": "cycle",
        "domains": pair,
        "translator": args.translator,
        "label_preservation_a_to_b": a_to_b,
        "label_preservation_b_to_a": b_to_a,
        "label_preservation": (a_to_b + b_to_a) / 2,
        "classifier_accuracy_a": clf_a.accuracy,
        "classifier_accuracy_b": clf_b.accuracy,
        # the floor: untranslated images given to the other domain's classifier
        "label_preservation_identity_a_to_b": label_preservation(
            clf_b, test["a"], test["a_labels"]
        ),
        "label_preservation_identity_b_to_a": label_preservation(
            clf_a, test["b"], test["b_labels"]
        ),
        "psnr_a_to_b": psnr(fake_b, true_b),
        "psnr_identity_a_to_b": psnr(test["a"], true_b),
        "cycle_loss_first_10pct": sum(cycle[:k]) / k,
        "cycle_loss_last_10pct": sum(cycle[-k:]) / k,
        "train_seconds": seconds,
        "steps": len(history),
        "num_test": len(test["a"]),
    }
    if pair in INVERSE_TRANSFORMS:  # the B images' true sources are known for invertible pairs
        metrics["psnr_b_to_a"] = psnr(fake_a, INVERSE_TRANSFORMS[pair](test["b"], shape))
    if args.translator == "dihedral":
        names = [f"rot{90 * k}{'_transposed' if t else ''}" for k, t in model.g_ab.TRANSFORMS]
        for key, net in (("g_ab_weights", model.g_ab), ("g_ba_weights", model.g_ba)):
            metrics[key] = dict(zip(names, net.weights().tolist(), strict=True))
    save_state(out / "model.pt", {**step.state_dict(), "config": _model_config(args, dataset)})
    rows = [
        test["a"][:10], fake_b[:10], true_b[:10], model.b_to_a(fake_b[:10].to(device)).cpu(),
        test["b"][:10], fake_a[:10], model.a_to_b(fake_a[:10].to(device)).cpu(),
    ]  # fmt: skip
    labels = ["A", "G(A)", f"{pair}(A)", "F(G(A))", "B", "F(B)", "G(F(B))"]
    title = f"CycleGAN on {dataset.name}, B = {pair}, {args.translator}, {len(history)} steps"
    plot.image_grid(torch.cat(rows), shape, out / "translations.png", 10, title, labels)
    return metrics


def _model_config(args: argparse.Namespace, dataset: Dataset) -> dict:
    return {
        "task": args.task,
        "image_shape": list(dataset.shape),
        "base_channels": args.base_channels,
        "noise_dim": 0 if args.task == "cycle" else args.noise_dim,
        "loss": args.loss,
        **(
            {"translator": args.translator, "domains": args.domains} if args.task == "cycle" else {}
        ),
    }


def _task_defaults(args: argparse.Namespace) -> None:
    """The defaults that depend on --task (see the --help of --data, --steps, --base-channels)."""
    for name, (cycle, paired) in TASK_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, cycle if args.task == "cycle" else paired)


def run(args: argparse.Namespace) -> int:
    _task_defaults(args)
    device = resolve_device(args.device)
    out = Path(args.out or f"runs/translate-{args.task}")
    dataset = load_dataset(args.data)
    _check(args, dataset)
    out.mkdir(parents=True, exist_ok=True)
    config = {"command": "translate", **vars(args), "out": str(out)}
    config.pop("run", None)
    config["model"] = _model_config(args, dataset)
    write_json(out / "config.json", config)
    print(
        f"pyrogen translate: --task {args.task} on {dataset.name}"
        f" ({len(dataset.train_x)} train images {dataset.shape[0]}×{dataset.shape[1]}),"
        f" {args.steps} steps on {device} -> {out}/"
    )
    try:
        if args.task == "cycle":
            metrics = _run_cycle(args, dataset, out, device)
        else:
            metrics = _run_paired(args, dataset, out, device)
    except TrainingInterrupted as stop:
        print(f"pyrogen translate: {stop}", file=sys.stderr)
        return 130
    write_json(out / "metrics.json", metrics)
    print(
        ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
        )
    )
    print(f"wrote model.pt, config.json, metrics.json and translations.png to {out}/")
    return 0
