"""Metrics against exact values and references (gaps found by benchmarks/mutate.py).

Wasserstein: hand-computed 1-D cases, a per-direction SciPy reference for the sliced distance,
and :math:`SW_1 = W_1` in one dimension (directions are :math:`\\pm 1`). Mode coverage: exact
histograms and the :math:`3\\sigma` boundary. Fréchet distance: closed forms for commuting
covariances, SciPy's ``sqrtm`` for non-commuting ones, and hand-computed feature statistics.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.stats import wasserstein_distance

from pyrogen.evaluate import (
    frechet_classifier_distance,
    frechet_distance,
    mode_coverage,
    sliced_wasserstein,
    wasserstein_1d,
)
from pyrogen.evaluate.fid import FEATURE_DIM, FeatureClassifier, train_feature_classifier

# ------------------------------------------------------------------------------ Wasserstein


def test_wasserstein_1d_hand_computed():
    # equal sizes: mean |x_(i) - y_(i)| of the sorted samples = (1 + 2) / 2
    assert wasserstein_1d([3.0, 0.0], [1.0, 1.0]) == pytest.approx(1.5, abs=1e-12)
    # unequal sizes: {0, 1} against {0.5}: half the mass moves 0.5
    assert wasserstein_1d([0.0, 1.0], [0.5]) == pytest.approx(0.5, abs=1e-12)
    # {0, 0, 3} against {1, 2}: |F_x - F_y| = 2/3 on [0, 1), 1/6 on [1, 2), 1/3 on [2, 3)
    assert wasserstein_1d([0.0, 3.0, 0.0], [2.0, 1.0]) == pytest.approx(
        2 / 3 + 1 / 6 + 1 / 3, abs=1e-12
    )
    assert wasserstein_1d([0.0, 3.0, 0.0], [2.0, 1.0]) == wasserstein_1d([2.0, 1.0], [0.0, 3.0, 0])
    # (n, 1) columns are 1-D samples
    col = torch.tensor([[0.0], [1.0]])
    assert wasserstein_1d(col, torch.tensor([[0.5]])) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        wasserstein_1d(torch.zeros(2, 1, 1), [0.0])
    with pytest.raises(ValueError, match="y contains NaN"):
        wasserstein_1d([0.0], [math.inf])


@pytest.mark.parametrize("n, m, num", [(6, 6, 7), (9, 4, 7), (9, 4, 4), (9, 4, 9)])
def test_sliced_wasserstein_matches_per_direction_scipy_reference(n, m, num):
    """(num equal to n or m: the equal-size shortcut must compare sample sizes, not P.)"""
    rng = np.random.default_rng(n + m)
    x, y = rng.normal(size=(n, 3)), rng.exponential(size=(m, 3)) * np.array([1.0, 2.0, 0.5])
    w = torch.randn(num, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    w = (w / w.norm(dim=1, keepdim=True)).numpy()
    expected = np.mean([wasserstein_distance(x @ d, y @ d) for d in w])
    assert sliced_wasserstein(x, y, num_projections=num, seed=5) == pytest.approx(expected, 1e-10)
    # seed=None draws from torch's global generator
    torch.manual_seed(5)
    assert sliced_wasserstein(x, y, num_projections=num, seed=None) == pytest.approx(expected)
    # one direction is enough (torch draws small and large normal tensors differently)
    w0 = torch.randn(1, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    w0 = (w0 / w0.norm()).numpy()[0]
    one = wasserstein_distance(x @ w0, y @ w0)
    assert sliced_wasserstein(x, y, num_projections=1, seed=5) == pytest.approx(one, rel=1e-10)


def test_sliced_wasserstein_in_one_dimension_is_exact_w1():
    """In 1-D every unit direction is ±1 and W1 is invariant to reflection: SW1 = W1."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=11), rng.normal(size=5) * 3 + 1
    exact = wasserstein_1d(x, y)
    assert sliced_wasserstein(x, y, num_projections=5) == pytest.approx(exact, rel=1e-12)
    assert sliced_wasserstein(x[:, None], y[:, None], num_projections=3) == pytest.approx(
        exact, rel=1e-12
    )
    # scaling the samples scales the distance
    assert sliced_wasserstein(2 * x, 2 * y) == pytest.approx(2 * exact, rel=1e-12)


def test_sliced_wasserstein_defaults_and_tensors_with_gradients():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, generator=g, requires_grad=True)
    y = torch.randn(20, 2, generator=g) + 1
    value = sliced_wasserstein(x, y)
    assert value == sliced_wasserstein(x.detach(), y, num_projections=256, seed=0)  # defaults
    assert value != sliced_wasserstein(x.detach(), y, num_projections=255, seed=0)
    assert value != sliced_wasserstein(x.detach(), y, num_projections=256, seed=1)
    assert wasserstein_1d(x[:, 0], y[:, 0]) == wasserstein_1d(x[:, 0].tolist(), y[:, 0].numpy())


# ---------------------------------------------------------------------------- mode coverage

CENTERS = torch.tensor([[0.0], [10.0], [20.0], [30.0]])


def test_mode_coverage_exact_histogram():
    x = torch.tensor([0.1, -0.2, 0.0, 10.5, 25.0, float("nan")])  # 25 is 5 sigma from 20 and 30
    out = mode_coverage(x, CENTERS, sigma=1.0)
    assert out["counts"] == [3, 1, 0, 0]
    assert out["modes"] == 2 and out["num_modes"] == 4
    assert out["high_quality"] == pytest.approx(4 / 6)  # non-finite samples count as misses
    q = np.array([0.75, 0.25])
    assert out["reverse_kl"] == pytest.approx(float((q * np.log(4 * q)).sum()), rel=1e-12)
    uniform = mode_coverage(CENTERS.flatten(), CENTERS, sigma=1.0)
    assert uniform["counts"] == [1, 1, 1, 1] and uniform["reverse_kl"] == pytest.approx(0.0)


def test_mode_coverage_threshold_boundary_and_custom_threshold():
    at = mode_coverage(torch.tensor([[3.0]]), CENTERS, sigma=1.0)  # exactly 3 sigma: counted
    assert at["counts"] == [1, 0, 0, 0] and at["high_quality"] == 1.0
    out = mode_coverage(torch.tensor([[1.5], [2.5], [11.0]]), CENTERS, sigma=1.0, threshold=2.0)
    assert out["counts"] == [1, 1, 0, 0] and out["modes"] == 2  # 1.5 <= 2 < 2.5; 11 is 1 from 10
    assert out["high_quality"] == pytest.approx(2 / 3)
    half = mode_coverage(torch.tensor([[0.4], [0.6]]), CENTERS, sigma=1.0, threshold=0.5)
    assert half["counts"] == [1, 0, 0, 0]
    with pytest.raises(ValueError, match="threshold > 0"):
        mode_coverage(torch.zeros(2, 1), CENTERS, 1.0, threshold=0.0)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        mode_coverage(torch.zeros(2, 1, 1), CENTERS, 1.0)


# ------------------------------------------------------------------------ Fréchet distance


def test_frechet_distance_closed_forms():
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)
    # commuting (diagonal) covariances: sum_i (sqrt a_i - sqrt b_i)^2
    a, b = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 4.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    assert frechet_distance(mu2, np.diag(b), mu1, np.diag(a)) == pytest.approx(expected)


def test_frechet_distance_matches_scipy_sqrtm_for_non_commuting_covariances():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 3))
    cov1, cov2 = m1 @ m1.T, m2 @ m2.T  # cov2 is singular (rank 3)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    cross = scipy.linalg.sqrtm(cov1 @ cov2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * cross)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(mu1, cov1, mu1, cov1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="Mismatched"):
        frechet_distance(mu1, cov1, mu2[:3], cov2[:3, :3])


def _labelled(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 5, generator=g) * 0.3
    x[torch.arange(n), y] += 3.0  # class c lights up feature c: linearly separable
    return x, y


def test_train_feature_classifier_learns_and_is_seeded():
    x, y = _labelled()
    data = SimpleNamespace(name="toy", train_x=x, train_y=y, test_x=x[:30], test_y=y[:30])
    clf = train_feature_classifier(data, epochs=30, batch_size=32, lr=1e-2)
    assert clf.head.out_features == 3 and clf.body[0].in_features == 5
    assert clf.features(x).shape == (len(x), FEATURE_DIM)
    assert clf.accuracy == 1.0
    again = train_feature_classifier(data, epochs=30, batch_size=32, lr=1e-2)
    other = train_feature_classifier(data, epochs=30, batch_size=32, lr=1e-2, seed=1)
    w = clf.head.weight
    assert torch.equal(w, again.head.weight) and not torch.equal(w, other.head.weight)
    # max_train: only the first examples are used
    short = train_feature_classifier(data, epochs=1, max_train=12)
    assert short.accuracy <= 1.0
    unlabelled = SimpleNamespace(name="toy", train_x=x, train_y=None, test_x=x, test_y=None)
    with pytest.raises(ValueError, match="no labels"):
        train_feature_classifier(unlabelled)
    no_test_labels = SimpleNamespace(name="toy", train_x=x, train_y=y, test_x=x, test_y=None)
    assert math.isnan(train_feature_classifier(no_test_labels, epochs=1).accuracy)


def test_frechet_classifier_distance_uses_feature_mean_and_covariance():
    torch.manual_seed(0)
    clf = FeatureClassifier(5, 3)  # an untrained network is a fine feature map
    x, _ = _labelled(200)
    samples = x[:80] * 1.5 + 0.5
    real = x[80:]
    with torch.no_grad():
        fx, fr = (clf.features(t).double().numpy() for t in (samples, real))
    expected = frechet_distance(
        fx.mean(0), np.cov(fx, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False)
    )
    assert expected > 0.1
    assert frechet_classifier_distance(samples, real, clf) == pytest.approx(expected, rel=1e-9)
    assert frechet_classifier_distance(samples.numpy(), real, clf) == pytest.approx(expected)
    assert frechet_classifier_distance(real, real, clf) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 samples"):
        frechet_classifier_distance(samples[:1], real, clf)
    with pytest.raises(ValueError, match="samples have 4 features per example.*trained on 5"):
        frechet_classifier_distance(samples[:, :4], real, clf)
    with pytest.raises(ValueError, match="real have 6"):
        frechet_classifier_distance(samples, torch.zeros(3, 6), clf)


def test_feature_classifier_training_matches_a_plain_pytorch_loop():
    """Seeded minibatch Adam on the cross-entropy over the first max_train examples, every
    example once per epoch."""
    x, y = _labelled(90)
    data = SimpleNamespace(name="toy", train_x=x, train_y=y, test_x=x, test_y=y)
    clf = train_feature_classifier(data, epochs=2, batch_size=16, lr=5e-3, seed=3, max_train=70)
    torch.manual_seed(3)
    ref = FeatureClassifier(5, 3)
    optim = torch.optim.Adam(ref.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(3)
    for _ in range(2):
        order = torch.randperm(70, generator=g)
        for idx in order.split(16):
            optim.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
            optim.step()
    for a, b in zip(clf.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert clf.accuracy == float((ref(x).argmax(1) == y).float().mean())


def test_frechet_classifier_distance_edge_inputs():
    torch.manual_seed(0)
    clf = FeatureClassifier(5, 3)
    x, _ = _labelled(40)
    samples = (x[:20] + 1).requires_grad_()  # e.g. straight from a generator
    real = x[20:].clone().requires_grad_()
    expected = frechet_classifier_distance(samples.detach(), real.detach(), clf)
    assert frechet_classifier_distance(samples, real, clf) == expected
    assert math.isfinite(frechet_classifier_distance(x[:2], x[2:4], clf))  # two samples suffice
    mu, cov = np.zeros(4), np.eye(4)
    with pytest.raises(ValueError, match="Mismatched"):
        frechet_distance(mu, cov, mu, np.eye(3))
    with pytest.raises(ValueError, match="Mismatched"):
        frechet_distance(mu, cov, np.zeros(3), cov)
