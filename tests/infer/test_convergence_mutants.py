"""Stan's relative-tolerance rule: exact buffer sizes, windows, medians and boundaries (gaps
found by benchmarks/mutate.py)."""

import math

import numpy as np
import pytest

from pyrogen.infer.advi import ELBOConvergence


@pytest.mark.parametrize(
    "num_steps, eval_elbo, size", [(10000, 100, 10), (3000, 100, 3), (100, 100, 2), (5, 1, 2)]
)
def test_buffer_length_is_stans(num_steps, eval_elbo, size):
    """cb_size = max(0.1 num_steps / eval_elbo, 2), truncated."""
    assert ELBOConvergence(0.01, eval_elbo, num_steps).buffer.maxlen == size


def test_window_mean_and_change_relative_to_the_current_value():
    rule = ELBOConvergence(1e-9, eval_elbo=3, num_steps=1000)
    assert math.isinf(rule.mean) and math.isinf(rule.median)
    assert [rule.update(v) for v in (1.0, 2.0, 6.0)] == [False, False, False]  # window mean 3
    assert rule.rel_changes == [1.0]  # |0 - 3| / 3
    for v in (4.0, 4.0, 4.0):  # window mean 4: |3 - 4| / 4, not / 3
        rule.update(v)
    assert rule.rel_changes == [1.0, 0.25]
    assert rule.mean == pytest.approx(0.625) and rule.median == 1.0  # upper middle of [0.25, 1]
    for v in (-2.0, -2.0, -2.0):  # a negative -ELBO: the change is still positive
        rule.update(v)
    assert rule.rel_changes[-1] == pytest.approx(3.0)
    zero = ELBOConvergence(0.01, eval_elbo=1, num_steps=100)
    assert zero.update(0.0) is False and zero.rel_changes == [math.inf]


def _rule_with_changes(changes, tol, maxlen=4):
    """A rule fed a loss of 1 (change 1 against Stan's initial 0), then losses with the given
    relative changes."""
    rule = ELBOConvergence(tol, eval_elbo=1, num_steps=10 * maxlen)
    assert rule.buffer.maxlen == maxlen
    current = 1.0
    flags = [rule.update(current)]
    for rel in changes:
        previous = current
        current = previous / (1 - rel)  # |previous - current| / current = rel (current > prev)
        flags.append(rule.update(current))
    return rule, flags


def test_median_of_an_even_buffer_is_the_upper_middle_element():
    # buffer [1 (first check), 0.5, 0.02, 0.004]: sorted middle pair (0.02, 0.5)
    rule, flags = _rule_with_changes([0.5, 0.02, 0.004], tol=0.03)
    assert rule.rel_changes == pytest.approx([1.0, 0.5, 0.02, 0.004])
    assert rule.median == pytest.approx(0.5)  # the lower middle, 0.02, would be below tol
    assert not any(flags)
    # odd buffer [1, 0.5, 0.02]: the median is 0.5, the middle element
    odd, _ = _rule_with_changes([0.5, 0.02], tol=0.03)
    assert odd.median == pytest.approx(0.5)


def test_mean_or_median_strictly_below_tolerance():
    rule, flags = _rule_with_changes([0.02, 0.01, 0.01, 0.01], tol=1.0)
    assert flags[-1]  # the buffer keeps the last 4 changes: [0.02, 0.01, 0.01, 0.01]
    assert list(rule.buffer) == pytest.approx([0.02, 0.01, 0.01, 0.01])
    assert rule.mean == pytest.approx(0.0125) and rule.median == pytest.approx(0.01)
    # the median is exactly the tolerance, the mean above it: not converged
    median = rule.median
    at, flags = _rule_with_changes([0.02, 0.01, 0.01, 0.01], tol=median)
    assert not flags[-1] and at.median == median
    above, flags = _rule_with_changes([0.02, 0.01, 0.01, 0.01], tol=np.nextafter(median, 1))
    assert flags[-1]
    # only the mean is below tolerance: converged too
    mean_only, flags = _rule_with_changes([0.001, 0.001, 0.5, 0.5], tol=0.3)
    assert mean_only.mean < 0.3 < mean_only.median and flags[-1]
    exact, flags = _rule_with_changes([0.001, 0.001, 0.5, 0.5], tol=mean_only.mean)
    assert not flags[-1]


def test_validation_boundaries():
    ELBOConvergence(1e-12, eval_elbo=1)
    for bad in (0.0, -0.01):
        with pytest.raises(ValueError, match="tol_rel_obj > 0"):
            ELBOConvergence(bad)
    for bad in (0, 2.0, -1):
        with pytest.raises(ValueError, match="positive int"):
            ELBOConvergence(0.01, eval_elbo=bad)


def test_defaults_are_stans():
    """tol_rel_obj = 0.01, eval_elbo = 100 and a budget of 10 000 steps (buffer of 10)."""
    rule = ELBOConvergence()
    assert (rule.tol_rel_obj, rule.eval_elbo, rule.buffer.maxlen) == (0.01, 100, 10)
