"""``pyrogen evaluate RUN``: the run's test metrics again, from its saved model (no retraining).

VAEs (and CVAE, VAE-GAN): test ELBO and importance-sampled log-likelihood per example, drawn as
the training command drew them (same seed, same K: the same numbers as the run's
``metrics.json``); adversarial auto-encoders: test reconstruction error and sliced W1 of the codes
to the prior; GANs: the data's sample-quality metrics of ``--num-samples`` new examples.
"""

from __future__ import annotations

import argparse

import torch

from pyrogen.cli import autoencoders
from pyrogen.cli.common import seed
from pyrogen.cli.runs import Run, load_run
from pyrogen.data import load_dataset
from pyrogen.evaluate import elbo_and_log_likelihood
from pyrogen.models import AdversarialAutoencoder, Generator
from pyrogen.train import set_seed
from pyrogen.train.files import write_json

HELP = "Evaluate a finished run on test data (default: the run's own) without retraining."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN", help="the run directory (the --out of pyrogen vae / pyrogen gan)"
    )
    parser.add_argument("--data", default=None, help="test data (default: the run's --data)")
    parser.add_argument(
        "--num-is-samples", type=int, default=None, help="K for log p(x) (default: the run's)"
    )
    parser.add_argument(
        "--num-samples", type=int, default=None, help="GAN samples to score (default: the run's)"
    )
    parser.add_argument("--seed", type=seed, default=None, help="default: the run's seed")
    parser.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _vae_metrics(loaded: Run, dataset, args: argparse.Namespace, seed_: int) -> dict:
    config = loaded.config
    if isinstance(loaded.model, AdversarialAutoencoder):
        set_seed(seed_)
        return autoencoders.aae_metrics(loaded.model, dataset.test_x, seed_)
    labels = (dataset.test_y.long(),) if config.get("conditional") else ()
    k = args.num_is_samples or config.get("num_is_samples", 5000)
    set_seed(seed_)
    elbo, ll = elbo_and_log_likelihood(loaded.model, dataset.test_x, *labels, num_samples=k)
    return {"test_elbo": elbo, "test_log_likelihood": ll, "num_is_samples": k}


def _gan_metrics(loaded: Run, dataset, args: argparse.Namespace, seed_: int) -> dict:
    from pyrogen.cli.gan import sample_metrics

    n = args.num_samples or loaded.config.get("num_samples", 10_000)
    set_seed(seed_)
    labels = torch.arange(n) % loaded.num_classes if loaded.num_classes else None
    samples = loaded.model.sample(n, labels)
    return sample_metrics(dataset, samples, seed_, labels, loaded.num_classes)


def run(args: argparse.Namespace) -> int:
    loaded = load_run(args.run_dir)
    config = loaded.config
    seed_ = config.get("seed", 0) if args.seed is None else args.seed
    data = args.data or config.get("data")
    dataset = load_dataset(data, binarize=config.get("binarize", "none"))
    if dataset.dim != config["model"]["data_dim"]:
        raise ValueError(
            f"--data {data} has {dataset.dim} features per example; the run's model takes"
            f" {config['model']['data_dim']}."
        )
    if isinstance(loaded.model, Generator):
        metrics = _gan_metrics(loaded, dataset, args, seed_)
    else:
        metrics = _vae_metrics(loaded, dataset, args, seed_)
    if args.json is not None:
        write_json(args.json, metrics)
    shown = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    print(
        ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    )
    return 0
