"""Sample-quality curve of one ``pyrogen gan`` image run: the metrics ``pyrogen gan`` writes to
metrics.json, at every checkpoint of the run, for the raw generator and (if the run kept one)
its moving average (``--ema``).

Train once with checkpoints kept, then score them::

    pyrogen gan --data fashion-mnist --ema 0.999 --steps 18000 --checkpoint-every 3000 \\
        --keep-checkpoints 100 --out runs/fashion
    python benchmarks/image_gan_curve.py runs/fashion --json runs/fashion/curve.json

Each checkpoint is scored exactly as ``pyrogen gan`` / ``pyrogen evaluate`` score the final
model: the generator in eval mode (BatchNorm running statistics), ``set_seed(seed)``, then
``--num-samples`` samples through :func:`pyrogen.cli.gan.sample_metrics`. The feature classifier
is deterministic given the seed, so it is trained once and reused for every checkpoint.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch

import pyrogen.evaluate.fid as fid
from pyrogen.cli.gan import sample_metrics
from pyrogen.cli.runs import _gan_model
from pyrogen.data import load_dataset
from pyrogen.train import set_seed
from pyrogen.train.checkpoint import list_checkpoints, load_checkpoint

KEYS = (
    "classes_in_band",
    "class_kl",
    "frechet_classifier_distance",
    "frechet_classifier_distance_test_halves",
    "precision",
    "recall",
)


def score(run: Path, dataset, config: dict, path: Path, num_samples: int) -> list[dict]:
    """Metrics of the raw and the averaged generator of one checkpoint."""
    state = load_checkpoint(path)
    step_state, rows = state["step_state"], []
    for name in ("generator", "generator_ema"):
        if name not in step_state:
            continue
        model = _gan_model(config)
        model.load_state_dict(step_state[name])
        model.eval()
        set_seed(config["seed"])
        with torch.no_grad():
            samples = model.sample(num_samples)
        metrics = sample_metrics(dataset, samples, config["seed"])
        row = {"step": int(state["step"]), "ema": name == "generator_ema"}
        row.update({k: metrics.get(k) for k in KEYS})
        row["class_histogram"] = metrics.get("class_histogram")
        rows.append(row)
        print(
            f"step {row['step']:6d} ema={row['ema']!s:5} in_band={row['classes_in_band']}"
            f" kl={row['class_kl']:.3f} fcd={row['frechet_classifier_distance']:.2f}"
            f" (floor {row['frechet_classifier_distance_test_halves']:.2f})"
            f" P={row.get('precision') or 0:.3f} R={row.get('recall') or 0:.3f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a pyrogen gan run directory with checkpoints/")
    parser.add_argument(
        "--json", type=Path, default=None, help="write the rows here (skips the steps it holds)"
    )
    parser.add_argument("--num-samples", type=int, default=None, help="default: the run's")
    parser.add_argument(
        "--until", type=int, default=0, help="keep polling a training run until this step is scored"
    )
    args = parser.parse_args()
    config = json.loads((args.run / "config.json").read_text())
    dataset = load_dataset(config["data"])
    fid.train_feature_classifier = functools.cache(fid.train_feature_classifier)
    n = args.num_samples or config.get("num_samples", 10_000)
    rows = json.loads(args.json.read_text()) if args.json and args.json.is_file() else []
    done = {row["step"] for row in rows}
    while True:
        for path in list_checkpoints(args.run / "checkpoints"):
            if int(path.stem.split("-")[1]) in done:  # step-00003000.pt
                continue
            rows += score(args.run, dataset, config, path, n)
            done.add(rows[-1]["step"])
            if args.json is not None:
                args.json.write_text(json.dumps(rows, indent=1))
        if max(done, default=0) >= args.until:
            break
        time.sleep(60)


if __name__ == "__main__":
    main()
