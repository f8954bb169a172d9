import math

import pytest
import torch

from pyrogen.data import load_dataset
from pyrogen.data.toy import (
    GRID25_CENTERS,
    RING8_CENTERS,
    ToyDataset,
    sample_gaussian_mixture,
    toy_modes,
)
from pyrogen.evaluate import mode_coverage


def test_ring8_has_eight_distinct_modes_at_2pi_i_over_8():
    centers, sigma = toy_modes("ring8")
    assert sigma == 0.01
    assert centers.shape == (8, 2)
    assert torch.cdist(centers, centers).add(torch.eye(8) * 10).min() > 0.7  # all distinct
    angles = torch.atan2(centers[:, 1], centers[:, 0]) % (2 * math.pi)
    expected = torch.arange(8) * 2 * math.pi / 8
    assert torch.allclose(angles.sort().values, expected, atol=1e-6)
    assert torch.allclose(centers.norm(dim=1), torch.ones(8), atol=1e-6)


def test_grid25_centers():
    centers, sigma = toy_modes("grid25")
    assert sigma == 0.05
    assert centers.shape == (25, 2)
    assert set(centers[:, 0].tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert len({tuple(c) for c in centers.tolist()}) == 25


@pytest.mark.parametrize("name,num_modes", [("ring8", 8), ("grid25", 25), ("mix1d", 3)])
def test_load_toy_dataset_exposes_modes(name, num_modes):
    data = load_dataset(name)
    assert isinstance(data, ToyDataset)
    assert data.shape == (data.centers.shape[1],)
    assert data.train_x.shape[1] == data.centers.shape[1]
    assert data.centers.shape[0] == num_modes
    stats = mode_coverage(data.test_x, data.centers, data.sigma)
    assert stats["modes"] == num_modes
    assert stats["high_quality"] > 0.98
    assert stats["reverse_kl"] < 0.01
    # fixed draw: loading twice gives the same data
    assert torch.equal(load_dataset(name).train_x, data.train_x)


def test_lecture_pair_supports():
    p, q = load_dataset("lecture-p").train_x, load_dataset("lecture-q").train_x
    inside = ((p >= 1) & (p <= 2)) | ((p >= 3) & (p <= 4)) | ((p >= 9) & (p <= 10))
    assert inside.all()
    assert ((q >= 5) & (q <= 7)).all()
    assert abs(float((p >= 9).float().mean()) - 0.5) < 0.02


def test_module_constants_are_not_mutated_by_toy_modes():
    centers, _ = toy_modes("grid25")
    centers += 100
    assert torch.equal(toy_modes("grid25")[0], GRID25_CENTERS)
    assert RING8_CENTERS.shape == (8, 2)


def test_unknown_toy_name():
    with pytest.raises(ValueError, match="ring8"):
        toy_modes("ring9")


def test_sample_gaussian_mixture_negative_sigma():
    with pytest.raises(ValueError, match="sigma"):
        sample_gaussian_mixture(RING8_CENTERS, -1.0, 10)
