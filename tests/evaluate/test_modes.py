import math

import pytest
import torch

from pyrogen.data.toy import RING8_CENTERS, RING8_SIGMA, sample_gaussian_mixture
from pyrogen.evaluate import mode_coverage


def test_all_modes_uniform():
    x = sample_gaussian_mixture(RING8_CENTERS, RING8_SIGMA, 8000, torch.Generator().manual_seed(0))
    out = mode_coverage(x, RING8_CENTERS, RING8_SIGMA)
    assert out["modes"] == 8
    assert 0.98 < out["high_quality"] <= 1.0
    assert out["reverse_kl"] < 0.01
    assert sum(out["counts"]) == round(out["high_quality"] * 8000)


def test_collapsed_to_one_mode_has_reverse_kl_log_k():
    x = RING8_CENTERS[3].expand(100, 2)
    out = mode_coverage(x, RING8_CENTERS, RING8_SIGMA)
    assert out["modes"] == 1
    assert out["high_quality"] == 1.0
    assert out["reverse_kl"] == pytest.approx(math.log(8))


def test_off_mode_samples_are_low_quality():
    x = torch.cat([RING8_CENTERS[:2], torch.zeros(2, 2)])  # 2 on modes, 2 at the centre
    out = mode_coverage(x, RING8_CENTERS, RING8_SIGMA)
    assert out["modes"] == 2
    assert out["high_quality"] == 0.5
    assert out["reverse_kl"] == pytest.approx(math.log(8) - math.log(2))
    none = mode_coverage(torch.zeros(5, 2), RING8_CENTERS, RING8_SIGMA)
    assert none["modes"] == 0 and none["high_quality"] == 0.0 and math.isinf(none["reverse_kl"])


def test_threshold_is_three_sigma():
    x = RING8_CENTERS[:1] + torch.tensor([[2.9 * RING8_SIGMA, 0.0], [3.1 * RING8_SIGMA, 0.0]])
    out = mode_coverage(x, RING8_CENTERS, RING8_SIGMA)
    assert out["high_quality"] == 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="sigma"):
        mode_coverage(torch.zeros(3, 2), RING8_CENTERS, 0.0)
    with pytest.raises(ValueError, match="dimension"):
        mode_coverage(torch.zeros(3, 3), RING8_CENTERS, 0.1)
    with pytest.raises(ValueError, match="empty"):
        mode_coverage(torch.zeros(0, 2), RING8_CENTERS, 0.1)
