import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from pyrogen.data.toy import (
    LECTURE_P,
    LECTURE_Q,
    LECTURE_W1,
    sample_uniform_mixture,
    uniform_mixture_quantiles,
)
from pyrogen.evaluate import sliced_wasserstein, wasserstein_1d


def test_lecture_example_is_exactly_three():
    p = uniform_mixture_quantiles(LECTURE_P, 4000)
    q = uniform_mixture_quantiles(LECTURE_Q, 4000)
    assert wasserstein_1d(p, q) == pytest.approx(LECTURE_W1, abs=1e-9)


def test_lecture_example_from_samples_of_unequal_size():
    g = torch.Generator().manual_seed(0)
    p = sample_uniform_mixture(LECTURE_P, 40_000, g)
    q = sample_uniform_mixture(LECTURE_Q, 30_000, g)
    assert wasserstein_1d(p, q) == pytest.approx(3.0, abs=0.03)


@pytest.mark.parametrize("n,m", [(5, 5), (7, 3), (100, 37)])
def test_matches_scipy_for_unequal_sizes(n, m):
    rng = np.random.default_rng(n * m)
    x, y = rng.normal(size=n), rng.exponential(size=m) + 0.3
    assert wasserstein_1d(x, y) == pytest.approx(wasserstein_distance(x, y), rel=1e-10)


def test_translation():
    x = torch.randn(1000)
    assert wasserstein_1d(x, x + 2.5) == pytest.approx(2.5, abs=1e-6)
    assert wasserstein_1d(x, x) == 0.0


def test_sliced_identical_samples_is_zero():
    x = torch.randn(500, 3)
    assert sliced_wasserstein(x, x.clone(), num_projections=64) == pytest.approx(0.0, abs=1e-12)


def test_sliced_translation_and_unequal_sizes():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 2, generator=g)
    y = torch.randn(3000, 2, generator=g) + torch.tensor([3.0, 0.0])
    # E|ω·(3, 0)| over uniform directions in 2-D is 3 * 2/π
    sw = sliced_wasserstein(x, y, num_projections=2000)
    assert sw == pytest.approx(3 * 2 / np.pi, rel=0.05)
    assert sw < 3.0  # SW1 <= W1


def test_bad_inputs():
    with pytest.raises(ValueError, match="sliced_wasserstein"):
        wasserstein_1d(torch.randn(10, 2), torch.randn(10, 2))
    with pytest.raises(ValueError, match="same d"):
        sliced_wasserstein(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="empty"):
        wasserstein_1d([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        wasserstein_1d([float("nan")], [1.0])
    with pytest.raises(ValueError, match="num_projections"):
        sliced_wasserstein(torch.randn(4, 2), torch.randn(4, 2), num_projections=0)
