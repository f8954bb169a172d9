"""Class coverage and improved precision/recall: exact values on hand-made examples, a pure-numpy
brute force, and real-vs-real (near ideal) against collapsed generators (bad) on digits."""

import math

import numpy as np
import pytest
import torch

from pyrogen.data import load_dataset
from pyrogen.evaluate import class_coverage, classifier_precision_recall, precision_recall
from pyrogen.evaluate.fid import train_feature_classifier

# --- precision and recall: exact values --------------------------------------------------------


def _brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. (2019) with explicit loops over all pairs."""

    def radii(x):
        return np.array([np.sort([np.linalg.norm(a - b) for b in x])[k] for a in x])

    def inside(queries, points, r):
        return np.mean(
            [any(np.linalg.norm(q - p) <= rp for p, rp in zip(points, r)) for q in queries]
        )

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_on_a_line_by_hand():
    # real radii (k=1): 0→2, 2→2, 4→2, 20→16; fake 40 is 20 > 16 from 20: outside, 6 is on the
    # boundary of 4's ball (inside). Fake radii: 1→5, 6→4, 10→4, 40→30: every real is inside.
    real, fake = [0.0, 2.0, 4.0, 20.0], [1.0, 10.0, 40.0, 6.0]
    assert precision_recall(real, fake, k=1) == {"precision": 0.75, "recall": 1.0}
    assert precision_recall(fake, real, k=1) == {"precision": 1.0, "recall": 0.75}
    # k=2: real radii 0→4, 2→2, 4→4, 20→18: 40 still outside
    assert precision_recall(real, fake, k=2)["precision"] == 0.75


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_equals_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    # integer points on a small grid: ties and duplicates, distances exact in float64
    real = rng.integers(0, 6, size=(40, 2)).astype(float)
    fake = rng.integers(2, 9, size=(30, 2)).astype(float)
    expected = _brute_force(real, fake, k)
    for batch_size in (7, 1024):  # chunking changes nothing
        got = precision_recall(real, fake, k=k, batch_size=batch_size)
        assert (got["precision"], got["recall"]) == pytest.approx(expected, abs=0)
    # continuous points with different spreads: precision and recall differ
    real, fake = rng.normal(size=(50, 3)), 1.5 * rng.normal(size=(40, 3)) + 0.5
    got = precision_recall(torch.tensor(real), torch.tensor(fake), k=k, batch_size=16)
    assert (got["precision"], got["recall"]) == pytest.approx(_brute_force(real, fake, k), abs=0)


def test_precision_recall_refusals():
    with pytest.raises(ValueError, match="k must satisfy"):
        precision_recall(np.zeros((3, 2)), np.zeros((5, 2)), k=3)
    with pytest.raises(ValueError, match="width"):
        precision_recall(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        precision_recall(np.zeros((0, 2)), np.zeros((5, 2)))


# --- class coverage: exact values --------------------------------------------------------------


def _first_feature_classifier(x: torch.Tensor) -> torch.Tensor:
    """'Classifier' predicting class x[:, 0] among 3 (logits = one-hot)."""
    return torch.nn.functional.one_hot(x[:, 0].long(), 3).float()


def test_class_coverage_by_hand():
    samples = torch.tensor([[0.0], [0.0], [1.0], [2.0]])
    out = class_coverage(samples, _first_feature_classifier, frequencies=[1, 1, 1], band=(0.2, 0.3))
    assert out["histogram"] == [0.5, 0.25, 0.25]
    assert out["counts"] == [2, 1, 1]
    kl = 0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75)
    assert out["kl"] == pytest.approx(kl, rel=1e-12)
    assert out["in_band"] == pytest.approx(2 / 3)
    assert out["covered"] == 3
    # reference from labels, a missing class: KL finite, covered counts it
    labels = torch.tensor([0, 0, 1, 1, 1, 1, 2, 2])  # p = (1/4, 1/2, 1/4)
    out = class_coverage(
        torch.tensor([[0.0], [0.0], [0.0], [1.0]]), _first_feature_classifier, real_labels=labels
    )
    assert out["frequencies"] == [0.25, 0.5, 0.25]
    assert out["kl"] == pytest.approx(0.75 * math.log(3) + 0.25 * math.log(0.5), rel=1e-12)
    assert out["covered"] == 2
    assert out["in_band"] == 0.0


def test_class_coverage_refusals():
    x = torch.zeros(4, 1)
    with pytest.raises(ValueError, match="either real_labels"):
        class_coverage(x, _first_feature_classifier)
    with pytest.raises(ValueError, match="either real_labels"):
        class_coverage(x, _first_feature_classifier, real_labels=[0], frequencies=[1, 1, 1])
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        class_coverage(x, _first_feature_classifier, real_labels=[0, 3])
    with pytest.raises(ValueError, match="3 non-negative"):
        class_coverage(x, _first_feature_classifier, frequencies=[1, 1])
    with pytest.raises(ValueError, match="band"):
        class_coverage(x, _first_feature_classifier, frequencies=[1, 1, 1], band=(0.3, 0.2))


# --- real vs real, collapsed generators on digits ----------------------------------------------


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    clf = train_feature_classifier(data, epochs=8)
    perm = torch.randperm(len(data.test_x), generator=torch.Generator().manual_seed(0))
    a, b = perm[:180], perm[180:]
    return data, clf, (data.test_x[a], data.test_y[a]), data.test_x[b]


def test_metrics_on_real_data_are_near_ideal(digits):
    data, clf, (real, labels), other_half = digits
    assert clf.accuracy > 0.9
    cov = class_coverage(other_half, clf, real_labels=labels)
    assert cov["kl"] < 0.1
    assert cov["covered"] == 10
    assert cov["in_band"] == 1.0
    pr = classifier_precision_recall(other_half, real, clf)
    assert pr["precision"] > 0.8
    assert pr["recall"] > 0.8


def test_metrics_on_collapsed_generators_are_bad(digits):
    data, clf, (real, labels), _ = digits
    zeros = data.test_x[data.test_y == 0]
    one_class = zeros.repeat(6, 1)[:180]  # every sample a real "0"
    cov = class_coverage(one_class, clf, real_labels=labels)
    assert cov["kl"] > 2.0  # ≈ log(1/p_0) = log 12
    assert cov["covered"] <= 2
    assert cov["in_band"] <= 0.2
    pr = classifier_precision_recall(one_class, real, clf)
    assert pr["precision"] > 0.8  # good images …
    assert pr["recall"] < 0.2  # … of one class only
    single = data.train_x[:1].repeat(180, 1)  # one image, repeated
    assert classifier_precision_recall(single, real, clf)["recall"] < 0.05
    assert class_coverage(single, clf, real_labels=labels)["covered"] == 1


@pytest.mark.slow
def test_precision_recall_10000_by_10000_in_chunks():
    """10 000 × 10 000 in 64-D, chunked. Two samples of one Gaussian are symmetric (precision ≈
    recall; in 64-D the k=3 balls cover only ~57 %, measured 0.577 / 0.570), a collapsed sample
    has recall ≈ 0; in 2-D both are near 1."""
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(10_000, 64, generator=gen), torch.randn(10_000, 64, generator=gen)
    pr = precision_recall(real, fake, k=3, batch_size=1000)
    assert abs(pr["precision"] - pr["recall"]) < 0.03
    assert 0.4 < pr["precision"] < 0.8
    collapsed = real[:1] + 0.01 * torch.randn(10_000, 64, generator=gen)
    assert precision_recall(real, collapsed, k=3, batch_size=1000)["recall"] < 0.01
    pr = precision_recall(real[:, :2], fake[:, :2], k=3, batch_size=1000)
    assert pr["precision"] > 0.95 and pr["recall"] > 0.95
