"""Data sets as tensors: the embedded default (scikit-learn's digits), MNIST-format idx files.

``load_dataset(name_or_path)`` returns a :class:`Dataset` holding train/test tensors with one
flattened example per row, values in [0, 1], and integer labels.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pyrogen.data.dataset import BINARIZE_CHOICES, Dataset, binarize_dynamic
from pyrogen.data.digits import load_digits
from pyrogen.data.mnist import FASHION_MNIST_DIRS, load_idx_directory

__all__ = [
    "BINARIZE_CHOICES",
    "DATASETS",
    "Dataset",
    "binarize_dynamic",
    "load_dataset",
    "register_dataset",
]

#: Named data sets: name -> loader returning a :class:`Dataset` (binarize="none").
DATASETS: dict[str, Callable[[], Dataset]] = {}


def register_dataset(name: str, loader: Callable[[], Dataset]) -> None:
    """Make ``load_dataset(name)`` call ``loader()``."""
    DATASETS[name] = loader


def _load_fashion_mnist() -> Dataset:
    for directory in FASHION_MNIST_DIRS:
        if Path(directory).is_dir():
            return load_idx_directory(directory, name="fashion-mnist")
    raise FileNotFoundError(
        "Fashion-MNIST was not found in " + ", ".join(map(str, FASHION_MNIST_DIRS)) + ". Install"
        " it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or pass the directory"
        " holding the four idx files as --data PATH."
    )


register_dataset("digits", load_digits)
register_dataset("fashion-mnist", _load_fashion_mnist)
# 2-D/1-D toy mixtures with known modes (pyrogen.data.toy): ring8, grid25, mix1d, lecture-p/q.
from pyrogen.data import toy as _toy  # noqa: E402

for _name in _toy.TOY_DATASETS:
    register_dataset(_name, lambda _n=_name: _toy.load_toy(_n))


def load_dataset(name_or_path: str | os.PathLike, binarize: str = "none") -> Dataset:
    """Load a data set by name (``digits``, ``fashion-mnist``, ...) or from a directory of
    MNIST-format idx files (``train-images-idx3-ubyte[.gz]`` and the three others).

    :param name_or_path: a key of :data:`DATASETS` or a directory path.
    :param binarize: ``"none"`` keeps grey levels in [0, 1]; ``"dynamic"`` resamples binary
        pixels x ~ Bernoulli(intensity) each time a training batch is drawn (Salakhutdinov &
        Murray, 2008) and binarizes the test set once with a fixed seed.
    """
    if binarize not in BINARIZE_CHOICES:
        raise ValueError(f"binarize must be one of {BINARIZE_CHOICES}, got {binarize!r}.")
    key = str(name_or_path)
    if not key.strip():
        raise ValueError(
            f"No data set given (an empty name); give one of {', '.join(sorted(DATASETS))} or a"
            " directory of MNIST-format idx files."
        )
    if key in DATASETS:
        dataset = DATASETS[key]()
    elif Path(key).exists():
        dataset = load_idx_directory(key)
    else:
        raise FileNotFoundError(
            f"Unknown data set {key!r}: it is neither a known name ({', '.join(sorted(DATASETS))})"
            " nor an existing directory of MNIST-format idx files."
        )
    return dataset.with_binarization(binarize)
