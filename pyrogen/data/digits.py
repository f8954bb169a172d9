"""The embedded default: scikit-learn's 8x8 handwritten digits (1797 images, shipped with it)."""

from __future__ import annotations

import torch

from pyrogen.data.dataset import Dataset

#: Examples held out for testing (a fixed, label-stratified ~20 % split).
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def load_digits() -> Dataset:
    """UCI/scikit-learn digits scaled to [0, 1] (grey levels 0..16 divided by 16), split into a
    fixed stratified train (1437) / test (360) partition."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        torch.arange(len(x)).numpy(), test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return Dataset("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], shape=(8, 8))
