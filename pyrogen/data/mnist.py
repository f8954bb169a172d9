"""MNIST-format data sets (MNIST, Fashion-MNIST, KMNIST, ...) from a directory of idx files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pyrogen.data.dataset import Dataset
from pyrogen.data.idx import read_idx

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)

#: The four standard files: key -> stem (MNIST and Fashion-MNIST use the same names).
_STEMS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")  # some mirrors write train-images.idx3-ubyte
    return [name + ext for name in (stem, dotted) for ext in (".gz", "")]


def _find(directory: Path, stem: str) -> Path:
    for name in _candidates(stem):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"{directory}: missing {stem}(.gz). An MNIST-format directory must hold these four files"
        f" (gzipped or not): {', '.join(n + '[.gz]' for n in _STEMS.values())}."
    )


def _scaled(array: np.ndarray, path: Path) -> torch.Tensor:
    """Flattened float32 images in [0, 1]: integer pixels 0..255 divided by 255, float pixels
    already in [0, 1] kept as they are."""
    flat = torch.as_tensor(array.reshape(len(array), -1), dtype=torch.float32)
    if not torch.isfinite(flat).all():
        raise ValueError(f"{path}: the images hold NaN or Inf values.")
    low, high = float(flat.min()), float(flat.max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return flat
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"{path}: pixel values range over [{low:g}, {high:g}]; expected integers 0..255 or"
            " floats in [0, 1]."
        )
    return flat / 255.0


def _labels(array: np.ndarray, path: Path) -> torch.Tensor:
    """One integer class label per example."""
    if array.ndim != 1:
        raise ValueError(
            f"{path}: labels have shape {array.shape}; expected one label per example, shape (N,)."
        )
    if not np.issubdtype(array.dtype, np.integer) or (len(array) and array.min() < 0):
        raise ValueError(f"{path}: labels must be non-negative integers (class indices).")
    return torch.as_tensor(array.astype("int64"))


def load_idx_directory(directory: str | os.PathLike, name: str | None = None) -> Dataset:
    """Load the four standard idx files of ``directory`` as a :class:`Dataset`, pixels scaled
    from 0..255 to [0, 1]."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory of MNIST-format idx files.")
    arrays = {key: read_idx(_find(directory, stem)) for key, stem in _STEMS.items()}
    for split in ("train", "test"):
        images = arrays[f"{split}_x"]
        if images.ndim != 3:
            raise ValueError(
                f"{directory}: {split} images have shape {images.shape}; expected (N, rows, cols)."
            )
    shape = tuple(arrays["train_x"].shape[1:])
    if tuple(arrays["test_x"].shape[1:]) != shape:
        raise ValueError(
            f"{directory}: train images are {shape} but test images are"
            f" {tuple(arrays['test_x'].shape[1:])}."
        )

    for key in _STEMS:
        if len(arrays[key]) == 0:
            raise ValueError(f"{directory}: {_STEMS[key]} holds no examples.")

    def images(key: str) -> torch.Tensor:
        return _scaled(arrays[key], directory / _STEMS[key])

    def labels(key: str) -> torch.Tensor:
        return _labels(arrays[key], directory / _STEMS[key])

    return Dataset(
        name or directory.name,
        images("train_x"),
        labels("train_y"),
        images("test_x"),
        labels("test_y"),
        shape=shape,
    )
