"""What a Fréchet classifier distance (FCD) means: the score of *real* images after small, known
changes, next to the test-halves floor that the image-GAN target is stated in.

``pyrogen gan`` reports the FCD of its samples in the features of a classifier trained on the same
data (:mod:`pyrogen.evaluate.fid`) and the FCD between the two halves of the test set (the
"floor": what two independent real samples score). This script scores real held-out training
images (as many as ``pyrogen gan`` draws samples) against the test set as they are, and after one
perturbation each: pixel noise, a 3×3 binomial blur, 2× down- and upsampling, a one-pixel shift,
so that a GAN's FCD can be read as "about as far from the data as real images shifted by a
pixel". Optional ``--samples`` files (``samples.npy`` of ``pyrogen gan`` runs) are scored the
same way.

Run: ``python benchmarks/fcd_scale.py [--data digits fashion-mnist] [--samples RUN/samples.npy
...]``; the classifier is the one ``pyrogen gan --seed SEED`` trains (``--seed``, default 0).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pyrogen.data import load_dataset
from pyrogen.evaluate.fid import frechet_classifier_distance, train_feature_classifier

Images = torch.Tensor  # (n, 1, H, W) in [0, 1]


def _noise(sigma: float) -> Callable[[Images], Images]:
    def add(x: Images) -> Images:
        g = torch.Generator().manual_seed(0)
        return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)

    return add


def _blur(x: Images) -> Images:
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = (k[:, None] * k[None]) / 16
    return F.conv2d(x, kernel[None, None], padding=1)


def _down_up(x: Images) -> Images:
    return F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear")


def _shift(x: Images) -> Images:
    """One pixel to the right, the vacated column black (the images' background)."""
    return F.pad(x, (1, 0))[..., :-1]


#: name → perturbation of a batch of real images.
PERTURBATIONS: dict[str, Callable[[Images], Images]] = {
    "as they are": lambda x: x,
    "noise σ = 0.02": _noise(0.02),
    "noise σ = 0.05": _noise(0.05),
    "noise σ = 0.1": _noise(0.1),
    "3×3 binomial blur": _blur,
    "2× down + bilinear up": _down_up,
    "shifted 1 pixel": _shift,
}


def scale_table(data: str, seed: int, samples: list[Path]) -> list[str]:
    dataset = load_dataset(data)
    clf = train_feature_classifier(dataset, seed=seed)
    test = dataset.test_x.float()
    half = len(test) // 2
    floor = frechet_classifier_distance(test[:half], test[half:], clf)
    n = min(10_000, len(dataset.train_x))
    real = dataset.train_x[-n:].float()  # the end of the split: not among the classifier's 20 000
    images = real.reshape(len(real), 1, *dataset.shape[-2:])
    rows = [f"| {data} | test halves (floor) | {floor:.3g} | 1 |"]
    for name, perturb in PERTURBATIONS.items():
        fcd = frechet_classifier_distance(perturb(images).reshape(len(real), -1), test, clf)
        rows.append(f"| {data} | {n} train images, {name} | {fcd:.3g} | {fcd / floor:.3g} |")
    for path in samples:
        x = torch.from_numpy(np.load(path)).float().reshape(-1, real.shape[1])
        fcd = frechet_classifier_distance(x, test, clf)
        rows.append(f"| {data} | {path} | {fcd:.3g} | {fcd / floor:.3g} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--samples", nargs="*", type=Path, default=[], help="samples.npy files (of the last --data)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| data | images scored against the test set | FCD | × floor |")
    print("|---|---|---|---|")
    for i, data in enumerate(args.data):
        last = i == len(args.data) - 1
        print("\n".join(scale_table(data, args.seed, args.samples if last else [])), flush=True)


if __name__ == "__main__":
    main()
