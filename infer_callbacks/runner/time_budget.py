"""``TimeBudget``: run validation so that it takes about a share ``f`` of
the wall time, from measured run times. Pure Python, no Keras and no clock
of its own: :class:`~infer_callbacks.PeriodicTrigger` feeds it clock
readings (``PeriodicTrigger(runner, time_budget=f)``); the tests feed a fake
clock.

The rule, after each training call: a run is due when, counting one more
run of the latest run's cost ``c``, validation would have taken at most the
share ``f`` of the time since training began::

    (validated + c) / (now - began + c) <= f

The first run has no cost to go by: it is due at the first check (there is
always at least one run, and it measures the cost). The time a run takes in
the foreground is what counts (an asynchronous run's snapshot, not its
background pass). A periodic schedule given with it (``every_k_epochs=``,
``every_k_steps=``) is a floor: runs happen at least that often, and they
count against the budget too. At the end of training, one last run measures
the final weights when the budget allows it: when the share with it exceeds
``f`` by at most half a run's cost over the whole time,
``(validated + c) / (now - began + c) <= f + c / 2 / (now - began + c)``.

Example:

```python
from infer_callbacks.runner.time_budget import TimeBudget

budget = TimeBudget(0.2)
budget.start(now=0.0)
assert budget.due(now=1.0)          # the first run: it measures the cost
budget.ran(began=1.0, ended=2.0)    # it took 1 s
assert not budget.due(now=4.0)      # (1 + 1) / (4 + 1) = 0.4 > 0.2
assert budget.due(now=9.0)          # (1 + 1) / (9 + 1) = 0.2
```
"""

from __future__ import annotations

import math
import numbers

__all__ = ["TimeBudget", "check_time_budget"]


def check_time_budget(share) -> float:
    """``share`` if it is a number in (0, 1), else a ``ValueError``."""
    if isinstance(share, bool) or not isinstance(share, numbers.Real) or not math.isfinite(share) \
            or not 0 < share < 1:
        raise ValueError("`time_budget` must be the share of the wall time validation may take, a number "
                         f"in (0, 1) such as 0.1. Received: time_budget={share!r}")
    return float(share)


class TimeBudget:
    """When a run is due to keep validation at ``share`` of the wall time.

    Args:
        share: the share of the wall time, in (0, 1).
    """

    def __init__(self, share: float):
        self.share = check_time_budget(share)
        self.start(now=0.0)

    def start(self, *, now: float) -> None:
        """Training begins at ``now``; forgets any earlier run."""
        self._began = now
        self.validated = 0.0  # seconds spent in runs
        self.runs = 0
        self.last_cost: float | None = None

    def due(self, *, now: float) -> bool:
        """Whether a run is due at ``now`` (the first always is)."""
        if self.last_cost is None:
            return True
        return self._share_with(self.last_cost, now) <= self.share

    def allows(self, *, now: float) -> bool:
        """Whether a last run at the end of training fits the budget at
        ``now`` (within half a run's cost; never without a first run to
        measure the cost: that one is :meth:`due`)."""
        if self.last_cost is None:
            return False
        c = self.last_cost
        return self.validated + 0.5 * c <= self.share * (now - self._began + c)

    def ran(self, *, began: float, ended: float) -> None:
        """A run took the foreground from ``began`` to ``ended``."""
        cost = max(0.0, ended - began)
        self.validated += cost
        self.runs += 1
        self.last_cost = cost

    def realised(self, *, now: float) -> float:
        """The share of the time since training began that runs took."""
        elapsed = now - self._began
        return self.validated / elapsed if elapsed > 0 else 0.0

    def _share_with(self, cost: float, now: float) -> float:
        elapsed = now - self._began + cost
        return (self.validated + cost) / elapsed if elapsed > 0 else 1.0
