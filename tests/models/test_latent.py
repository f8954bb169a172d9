import pytest
import torch

from pyrogen.models.latent import interpolate, random_walk


def test_interpolation_is_a_straight_line_between_the_endpoints():
    z0, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, -1.0]])
    path = interpolate(z0, z1, steps=5)
    assert path.shape == (5, 1, 2)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    torch.testing.assert_close(path[2], (z0 + z1) / 2)
    steps = path[1:] - path[:-1]
    torch.testing.assert_close(steps, steps[:1].expand_as(steps))  # equal spacing


def test_random_walk_keeps_the_standard_normal_prior():
    g = torch.Generator().manual_seed(0)
    start = torch.randn(4000, 3, generator=g)
    walk = random_walk(start, steps=30, step_size=0.5, generator=g)
    assert walk.shape == (30, 4000, 3)
    torch.testing.assert_close(walk[0], start)
    last = walk[-1]
    assert last.mean().abs() < 0.05 and (last.var() - 1).abs() < 0.05
    # Successive frames are correlated (a walk, not fresh draws): corr = sqrt(1 - beta).
    corr = torch.corrcoef(torch.stack([walk[10].flatten(), walk[11].flatten()]))[0, 1]
    assert corr == pytest.approx((1 - 0.25) ** 0.5, abs=0.03)


def test_bad_arguments():
    with pytest.raises(ValueError, match="steps >= 2"):
        interpolate(torch.zeros(2), torch.ones(2), steps=1)
    with pytest.raises(ValueError, match="same shape"):
        interpolate(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match="step_size"):
        random_walk(torch.zeros(2), step_size=1.5)
