"""Issue 14 finding 6: float idx images, label shapes, empty splits, an empty data set name."""

import numpy as np
import pytest
import torch

from pyrogen.data import load_dataset
from pyrogen.data.idx import write_idx
from pyrogen.data.mnist import load_idx_directory


def _write(directory, train_x, train_y=None, test_x=None, test_y=None):
    directory.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": train_x,
        "train-labels-idx1-ubyte": rng.integers(0, 10, len(train_x), dtype=np.uint8)
        if train_y is None
        else train_y,
        "t10k-images-idx3-ubyte": train_x[:3] if test_x is None else test_x,
        "t10k-labels-idx1-ubyte": np.zeros(3, dtype=np.uint8) if test_y is None else test_y,
    }
    for stem, array in arrays.items():
        write_idx(directory / stem, array)


def test_float_images_in_unit_range_are_not_divided_again(tmp_path):
    """Before: float idx images in [0, 1] were divided by 255 (max 0.0039)."""
    images = np.random.default_rng(1).random((5, 4, 4)).astype(np.float32)
    _write(tmp_path / "d", images)
    data = load_idx_directory(tmp_path / "d")
    torch.testing.assert_close(data.train_x, torch.as_tensor(images.reshape(5, 16)))


def test_float_images_in_0_255_are_scaled_and_others_refused(tmp_path):
    images = np.full((5, 2, 2), 200.0, dtype=np.float32)
    _write(tmp_path / "a", images)
    assert float(load_idx_directory(tmp_path / "a").train_x.max()) == pytest.approx(200 / 255)
    _write(tmp_path / "b", images * 2)
    with pytest.raises(ValueError, match=r"range over \[400, 400\]"):
        load_idx_directory(tmp_path / "b")


def test_two_column_labels_are_refused(tmp_path):
    """Before: (N, 2) label files were accepted."""
    images = np.zeros((5, 2, 2), dtype=np.uint8)
    _write(tmp_path / "d", images, train_y=np.zeros((5, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"labels have shape \(5, 2\); expected one label"):
        load_idx_directory(tmp_path / "d")


def test_an_empty_split_is_refused(tmp_path):
    images = np.zeros((5, 2, 2), dtype=np.uint8)
    empty = np.zeros((0, 2, 2), dtype=np.uint8)
    _write(tmp_path / "d", images, test_x=empty, test_y=np.zeros(0, dtype=np.uint8))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte holds no examples"):
        load_idx_directory(tmp_path / "d")


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_data_set_name_is_refused(name, tmp_path, monkeypatch):
    """Before: load_dataset("") read the current directory as an idx directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="No data set given"):
        load_dataset(name)
