r"""Stan's relative-tolerance rule for stopping ELBO maximisation (Kucukelbir et al. 2017)."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["ELBOConvergence"]


class ELBOConvergence:
    r"""Stan's relative-tolerance rule for stopping ELBO maximisation.

    Every ``eval_elbo`` steps the −ELBO is estimated by the mean of the losses of the last
    ``eval_elbo`` steps, :math:`\bar L_k`, and the relative change *with respect to the current
    value*

    .. math::

        \delta_k = \left| \frac{\bar L_{k-1} - \bar L_k}{\bar L_k} \right|,
        \qquad \bar L_0 = 0 \;(\text{so } \delta_1 = 1),

    is pushed into a circular buffer of the last :math:`\max(0.1\, \text{num\_steps} /
    \text{eval\_elbo}, 2)` changes. The fit has converged when the mean *or* the median of the
    buffer is below ``tol_rel_obj`` (the mean catches smooth convergence, the median is robust to
    a noisy estimate). As in Stan's ``advi::stochastic_gradient_ascent``, the median of an
    even-sized buffer is its upper middle element, and the first check records :math:`\delta_1 = 1`
    (Stan starts from an ELBO of 0), so at least two genuine changes are needed to stop.

    :param tol_rel_obj: relative tolerance (Stan's default 0.01).
    :param eval_elbo: steps per check (Stan's default 100).
    :param num_steps: the step budget, which sets the buffer length as in Stan.

    :ivar rel_changes: :math:`\delta_k` of every check so far.
    :ivar mean: mean of the buffer at the last check (``inf`` before the first).
    :ivar median: Stan's median of the buffer at the last check (``inf`` before the first).

    .. note::
        Stan estimates the ELBO at each check with 100 fresh draws; averaging the losses the
        optimiser already computed costs nothing and has comparable noise.

    Example::

        >>> rule = ELBOConvergence(0.01, eval_elbo=2, num_steps=100)
        >>> [rule.update(x) for x in [10.0, 10.0, 5.0, 5.0, 4.99, 4.99, 4.98, 4.98, 4.98, 4.98]]
        [False, False, False, False, False, False, False, False, False, True]
        >>> [round(d, 4) for d in rule.rel_changes]
        [1.0, 1.0, 0.002, 0.002, 0.0]
    """

    def __init__(self, tol_rel_obj: float = 0.01, eval_elbo: int = 100, num_steps: int = 10000):
        if not tol_rel_obj > 0:
            raise ValueError(f"Expected tol_rel_obj > 0, got {tol_rel_obj}.")
        if not isinstance(eval_elbo, int) or eval_elbo < 1:
            raise ValueError(f"Expected eval_elbo to be a positive int, got {eval_elbo!r}.")
        self.tol_rel_obj = tol_rel_obj
        self.eval_elbo = eval_elbo
        self.buffer: deque[float] = deque(maxlen=max(int(0.1 * num_steps / eval_elbo), 2))
        self.rel_changes: list[float] = []
        self.mean = math.inf
        self.median = math.inf
        self._window: list[float] = []
        self._previous = 0.0

    def update(self, loss: float) -> bool:
        """Record one step's loss; return ``True`` once the rule is satisfied."""
        self._window.append(float(loss))
        if len(self._window) < self.eval_elbo:
            return False
        current = sum(self._window) / len(self._window)
        self._window = []
        previous, self._previous = self._previous, current
        rel = abs((previous - current) / current) if current != 0 else math.inf
        self.rel_changes.append(rel)
        self.buffer.append(rel)
        self.mean = sum(self.buffer) / len(self.buffer)
        self.median = sorted(self.buffer)[len(self.buffer) // 2]  # Stan: nth_element(n / 2)
        return self.mean < self.tol_rel_obj or self.median < self.tol_rel_obj
