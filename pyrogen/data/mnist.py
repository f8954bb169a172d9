"""MNIST-format data sets (MNIST, Fashion-MNIST, KMNIST, ...) from a directory of idx files."""

from __future__ import annotations

import os
from pathlib import Path

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

    def images(key: str) -> torch.Tensor:
        flat = torch.as_tensor(arrays[key].reshape(len(arrays[key]), -1), dtype=torch.float32)
        return flat / 255.0

    def labels(key: str) -> torch.Tensor:
        return torch.as_tensor(arrays[key].astype("int64"))

    return Dataset(
        name or directory.name,
        images("train_x"),
        labels("train_y"),
        images("test_x"),
        labels("test_y"),
        shape=shape,
    )
