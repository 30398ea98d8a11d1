"""Mergeable state of the built-in inferencers (DESIGN, Style 16): what a
process sends instead of its batches when validation spans processes.

The built-ins whose state is sums (the classes themselves, not
subclasses, as for ``accepts_blocks``) export it as float64/int64 arrays
(:func:`state_of`); :func:`load_merged` puts the element-wise sum of every
process's state (added in process order, so every process gets the same
bits) back into the inferencer before ``_after_inference``. The bytes are
O(state), not O(examples).

| inferencer | state |
| --- | --- |
| ``ScalarStats`` | per name: its ``StatCounter`` (count, sum, weight, min, max) and the exact pair's column sums |
| ``ClassificationError`` | ``err_stat``: wrong count and total |
| ``BinaryClassificationStats`` | ``stat``'s six counts |
| ``ConfusionMatrix`` | the matrix |

Every other inferencer (``KerasMetric``, ``GatherOutputs``, subclasses,
your own) is not mergeable: it sees every batch of the whole set instead.

Example:

>>> from infer_callbacks.inferencers.scalar import ScalarStats
>>> a, b = ScalarStats("loss"), ScalarStats("loss")
>>> for inf, v in ((a, [1.0, 2.0]), (b, [6.0])):
...     inf.before_inference(); inf.on_fetches([np.array(v)], len(v))
>>> load_merged(a, [state_of(a), state_of(b)]); a.after_inference()
{'validation_loss': 3.0}
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from infer_callbacks.inferencers.confusion import ConfusionMatrix
from infer_callbacks.inferencers.scalar import BinaryClassificationStats, ClassificationError, ScalarStats
from infer_callbacks.inferencers.stats import BinaryStatistics, RatioCounter

__all__ = ["is_mergeable", "state_of", "load_merged"]

_BINARY = ("nr_pos", "nr_neg", "nr_pred_pos", "nr_pred_neg", "corr_pos", "corr_neg")


def is_mergeable(inf: Any) -> bool:
    """Whether ``inf``'s state merges by sums (a built-in, not a subclass)."""
    return type(inf) in (ScalarStats, ClassificationError, BinaryClassificationStats, ConfusionMatrix)


def state_of(inf: Any) -> dict[str, np.ndarray]:
    """``inf``'s state after its batches, as named arrays."""
    if type(inf) is ScalarStats:
        return inf.state()
    if type(inf) is ClassificationError:
        return {"err": np.array([inf.err_stat.count, inf.err_stat.total], np.float64)}
    if type(inf) is BinaryClassificationStats:
        return {"stat": np.array([getattr(inf.stat, k) for k in _BINARY], np.float64)}
    if type(inf) is ConfusionMatrix:
        return {"matrix": inf.matrix}
    raise TypeError(f"{inf!r} has no mergeable state; it must see every batch instead.")


def _summed(states: Sequence[dict], key: str) -> np.ndarray | None:
    found = [s[key] for s in states if key in s]
    if not found:
        return None
    total = np.array(found[0], copy=True)
    for s in found[1:]:
        if s.shape != total.shape:
            raise ValueError(f"The processes' states of {key!r} have shapes {[f.shape for f in found]}; "
                             "every process must fetch outputs of the same shapes.")
        total = total + s
    return total


def load_merged(inf: Any, states: Sequence[dict]) -> None:
    """Replace ``inf``'s state by the sum of ``states`` (every process's, in order)."""
    if type(inf) is ScalarStats:
        inf.load_states(states, lambda key: _summed(states, key))
    elif type(inf) is ClassificationError:
        count, total = _summed(states, "err")
        inf.err_stat = RatioCounter()
        inf.err_stat.feed(count, total)
    elif type(inf) is BinaryClassificationStats:
        inf.stat = BinaryStatistics()
        for k, v in zip(_BINARY, _summed(states, "stat")):
            setattr(inf.stat, k, float(v))
    elif type(inf) is ConfusionMatrix:
        inf.load_matrix(_summed(states, "matrix"))
    else:
        raise TypeError(f"{inf!r} has no mergeable state; it must see every batch instead.")
