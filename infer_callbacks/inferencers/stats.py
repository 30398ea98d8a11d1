"""tensorpack's statistics counters (``tensorpack.utils.stats``), numpy only.

Same class names, attributes and meanings as tensorpack, so inferencers that
import them port by changing the import. Differences, all on purpose:

- Sums are float64 and the state is O(1): :class:`StatCounter` keeps running
  sums, extrema and counts instead of the list of every value fed. Only
  :meth:`StatCounter.samples` needs that list; ask for it with
  ``StatCounter(keep_samples=True)``.
- Optional weights (``StatCounter.feed(v, weight)``,
  ``BinaryStatistics.feed(pred, label, sample_weight)``) give the weighted
  numbers Keras metrics report for a validation set with sample weights.
  Without them every number is tensorpack's.
- Reading an empty :class:`StatCounter` raises ``ValueError`` (tensorpack:
  ``AssertionError``); a ratio over nothing is 0, as in tensorpack.

``BinaryStatistics`` lives in :mod:`infer_callbacks.inferencers.binary_stats`
and is importable from here, as in tensorpack.

Example:

>>> acc = Accuracy()
>>> acc.feed(3, 4); acc.feed(1, 4)
>>> acc.accuracy, acc.count, acc.total
(0.5, 4.0, 8.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from infer_callbacks.inferencers.binary_stats import BinaryStatistics
from infer_callbacks.inferencers.sample_weights import weights_like

__all__ = ["StatCounter", "RatioCounter", "Accuracy", "BinaryStatistics", "OnlineMoments"]


class StatCounter:
    """Count, sum, mean and extrema of the values fed, in O(1) memory.

    ``feed(v)`` takes a number or an array; an array counts each element
    (``average`` is the mean over all elements of all feeds, as
    ``np.mean`` of tensorpack's list, which also accepts arrays of varying
    shape here). ``count`` is the number of ``feed`` calls, as in tensorpack.

    Args:
        keep_samples: also keep every fed value for :meth:`samples`
            (tensorpack always did; memory grows with the number of feeds).

    Example:

    >>> s = StatCounter()
    >>> s.feed(1.0); s.feed(np.array([2.0, 6.0]))
    >>> s.count, s.sum, s.average, s.max, s.min
    (2, 9.0, 3.0, 6.0, 1.0)
    """

    def __init__(self, *, keep_samples: bool = False):
        self.keep_samples = bool(keep_samples)
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._sum = 0.0
        self._weight = 0.0
        self._max = -np.inf
        self._min = np.inf
        self._values: list | None = [] if self.keep_samples else None

    def feed(self, v: Any, weight: Any = None) -> None:
        """Add a value (a number or an array).

        Args:
            v: the value; an array contributes each of its elements.
            weight: optional weight of ``v`` (a scalar, or one per row of
                ``v``); ``average`` is then ``sum(w * v) / sum(w)``. A per-batch
                mean fed with ``weight=batch_size`` gives the per-sample mean.
        """
        value = np.asarray(v)
        if value.dtype.kind not in "biuf":
            raise ValueError(f"StatCounter.feed needs numbers. Received: {v!r:.200}")
        self._count += 1
        if self._values is not None:
            self._values.append(v)
        if value.size == 0:
            return
        if weight is None:
            self._sum += float(np.sum(value, dtype=np.float64))
            self._weight += value.size
        else:
            w = weights_like(weight, value, "StatCounter.feed")
            self._sum += float(np.sum(w * value, dtype=np.float64))
            self._weight += float(np.sum(w))
        self._max = max(self._max, float(np.max(value)))
        self._min = min(self._min, float(np.min(value)))

    def _check(self, what: str) -> None:
        if not self._count:
            raise ValueError(f"StatCounter.{what} of an empty counter: feed() a value first.")

    def state(self) -> np.ndarray:
        """``[count, sum, weight, min, max]`` (float64): what merges across processes."""
        return np.array([self._count, self._sum, self._weight, self._min, self._max], np.float64)

    def load_states(self, states) -> None:
        """Become the merge of several counters' :meth:`state` (added in the
        order given, so every process gets the same bits)."""
        self.reset()
        for row in states:
            self._count += int(row[0])
            self._sum += float(row[1])
            self._weight += float(row[2])
            self._min, self._max = min(self._min, float(row[3])), max(self._max, float(row[4]))

    @property
    def count(self) -> int:
        """How many times :meth:`feed` was called."""
        return self._count

    @property
    def weight(self) -> float:
        """The number of elements fed (the sum of weights when weighted)."""
        return float(self._weight)

    @property
    def sum(self) -> float:
        """The (weighted) sum of every element fed."""
        self._check("sum")
        return float(self._sum)

    @property
    def average(self) -> float:
        """The (weighted) mean of every element fed; NaN when all weights are 0."""
        self._check("average")
        return float(self._sum / self._weight) if self._weight else float("nan")

    @property
    def max(self) -> float:
        self._check("max")
        return float(self._max)

    @property
    def min(self) -> float:
        self._check("min")
        return float(self._min)

    def samples(self) -> list:
        """Every value fed, in order (only with ``keep_samples=True``)."""
        if self._values is None:
            raise ValueError(
                "This StatCounter keeps no samples (O(1) memory). Create it as "
                "StatCounter(keep_samples=True) to call samples().")
        return self._values


class RatioCounter:
    """Counts events of interest among a total: ``ratio = count / total``.

    ``feed(count, total=1)``; ``count`` is the sum of the counts fed and
    ``total`` the sum of the totals (tensorpack's meaning; both float64, so
    weighted counts work). ``ratio`` is 0 when ``total`` is 0.

    Example:

    >>> wrong = RatioCounter()
    >>> wrong.feed(2, 10); wrong.feed(1, 5)
    >>> wrong.ratio
    0.2
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._cnt = 0.0
        self._tot = 0.0

    def feed(self, count: Any, total: Any = 1) -> None:
        self._cnt += float(count)
        self._tot += float(total)

    @property
    def ratio(self) -> float:
        return self._cnt / self._tot if self._tot else 0.0

    @property
    def count(self) -> float:
        """The sum of the counts fed (e.g. wrong predictions)."""
        return self._cnt

    @property
    def total(self) -> float:
        """The sum of the totals fed (e.g. samples)."""
        return self._tot


class Accuracy(RatioCounter):
    """A :class:`RatioCounter` counting correct predictions: ``accuracy`` is its ratio."""

    @property
    def accuracy(self) -> float:
        return self.ratio


class OnlineMoments:
    """Running mean and (sample) variance of equally shaped values (Welford).

    Example:

    >>> m = OnlineMoments()
    >>> for x in (1.0, 2.0, 3.0): m.feed(x)
    >>> m.mean, m.variance
    (2.0, 1.0)
    """

    def __init__(self):
        self._n = 0
        self._mean: Any = 0.0
        self._m2: Any = 0.0

    def feed(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64)
        self._n += 1
        delta = x - self._mean
        self._mean = self._mean + delta / self._n
        self._m2 = self._m2 + delta * (x - self._mean)

    def _out(self, value: Any) -> Any:
        return float(value) if np.ndim(value) == 0 else value

    @property
    def mean(self) -> Any:
        return self._out(self._mean)

    @property
    def variance(self) -> Any:
        """The sample variance (``ddof=1``); NaN with fewer than two values."""
        if self._n < 2:
            return self._out(np.full(np.shape(self._mean), np.nan))
        return self._out(self._m2 / (self._n - 1))

    @property
    def std(self) -> Any:
        return self._out(np.sqrt(self.variance))
