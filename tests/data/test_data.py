import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrogen.data import load_dataset
from pyrogen.data.dataset import Dataset, binarize_dynamic
from pyrogen.data.idx import read_idx, write_idx
from pyrogen.data.mnist import FASHION_MNIST_DIRS, load_idx_directory

IDX_TYPE_CODES = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", list(IDX_TYPE_CODES))
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 4) * 7 % 251).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)
    raw = gzip.open(path).read() if suffix == ".gz" else path.read_bytes()
    assert raw[:4] == bytes([0, 0, IDX_TYPE_CODES[dtype], 3])


def test_idx_matches_the_published_header(tmp_path):
    """Bytes as in LeCun's spec: 00 00 08 01, then the big-endian count."""
    path = tmp_path / "labels"
    write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def _write_mnist_dir(directory: Path, n_train=5, n_test=3, gz=True, **overrides):
    directory.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays.update(overrides)
    for stem, array in arrays.items():
        write_idx(directory / (stem + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_load_idx_directory(tmp_path, gz):
    arrays = _write_mnist_dir(tmp_path / "mnist", gz=gz)
    data = load_dataset(tmp_path / "mnist")
    assert data.shape == (4, 5) and data.dim == 20
    expected = torch.as_tensor(arrays["train-images-idx3-ubyte"].reshape(5, 20) / 255.0)
    torch.testing.assert_close(data.train_x, expected.float())
    assert data.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a known name"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        load_idx_directory(tmp_path / "empty")


def test_corrupt_header(tmp_path):
    _write_mnist_dir(tmp_path / "d", gz=False)
    (tmp_path / "d" / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03garbage")
    with pytest.raises(ValueError, match="corrupt IDX header"):
        load_dataset(tmp_path / "d")


def test_truncated_file(tmp_path):
    _write_mnist_dir(tmp_path / "d", gz=False)
    path = tmp_path / "d" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ValueError, match="truncated"):
        load_dataset(tmp_path / "d")


def test_not_gzip_despite_suffix(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(tmp_path / "x.gz")


def test_images_and_labels_of_different_lengths(tmp_path):
    _write_mnist_dir(tmp_path / "d", **{"train-labels-idx1-ubyte": np.zeros(4, dtype=np.uint8)})
    with pytest.raises(ValueError, match="5 examples but 4 labels"):
        load_dataset(tmp_path / "d")


def test_digits_default():
    data = load_dataset("digits")
    assert data.train_x.shape == (1437, 64) and data.test_x.shape == (360, 64)
    assert data.shape == (8, 8)
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0
    # Fixed split: same every call, stratified so every digit is in the test set.
    again = load_dataset("digits")
    assert torch.equal(data.test_x, again.test_x)
    assert sorted(data.test_y.unique().tolist()) == list(range(10))


def test_dynamic_binarization_resamples_with_the_right_mean():
    data = load_dataset("digits", binarize="dynamic")
    assert set(data.test_x.unique().tolist()) <= {0.0, 1.0}
    g = torch.Generator().manual_seed(1)
    x = data.train_x[:50]
    draws = torch.stack([data.train_transform(x, g) for _ in range(400)])
    assert not torch.equal(draws[0], draws[1])
    # Each pixel is Bernoulli(intensity): mean within 5 standard errors.
    se = (x * (1 - x) / 400).sqrt().clamp_min(1e-3)
    assert ((draws.mean(0) - x).abs() <= 5 * se).all()


def test_unknown_binarize():
    with pytest.raises(ValueError, match="binarize must be one of"):
        load_dataset("digits", binarize="static")


def test_dataset_rejects_label_mismatch():
    with pytest.raises(ValueError, match="same length"):
        Dataset("x", torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), None, (2,))


def test_binarize_dynamic_is_binary():
    x = torch.rand(10, 7)
    assert set(binarize_dynamic(x).unique().tolist()) <= {0.0, 1.0}


@pytest.mark.skipif(
    not any(d.is_dir() for d in FASHION_MNIST_DIRS), reason="Debian's dataset-fashion-mnist absent"
)
def test_fashion_mnist_found_by_name():
    data = load_dataset("fashion-mnist")
    assert data.train_x.shape == (60000, 784) and data.test_x.shape == (10000, 784)
    assert data.shape == (28, 28)
