"""The k best checkpoints of a ``MinSaver`` / ``MaxSaver``: which to keep,
in what order, and the state file that records them. Pure Python, no Keras
and no file I/O: the saver writes the checkpoints and the file.

The state file (``<filename>.json``) keeps the fields of a single-best saver
for the best checkpoint and lists every kept one, best first::

    {"monitor": "validation_loss", "mode": "min",
     "best": 0.31, "epoch": 7, "global_step": 91, "checkpoint": "min-validation_loss-7",
     "keep_best": 3,
     "kept": [{"value": 0.31, "epoch": 7, "global_step": 91, "checkpoint": "min-validation_loss-7"},
              {"value": 0.33, "epoch": 5, "global_step": 65, "checkpoint": "min-validation_loss-5"},
              {"value": 0.35, "epoch": 6, "global_step": 78, "checkpoint": "min-validation_loss-6"}]}

Rules: a value enters when fewer than ``k`` are kept or when it is strictly
better than the worst kept one; among equal values the earlier stays ahead
(and a tie with the worst kept value does not enter); one checkpoint per
name (a second save in the same epoch replaces that epoch's entry, and only
when it is strictly better). A state file written before ``kept`` existed
reads as a list of its one best.

Example:

```python
from infer_callbacks.checkpoints.best_list import BestList

best = BestList("min", keep=2)
for epoch, value in enumerate([3.0, 1.0, 2.0, 1.0], start=1):
    if best.accepts(value, f"ckpt-{epoch}"):
        dropped = best.add(value, epoch, 10 * epoch, f"ckpt-{epoch}")
assert [e["checkpoint"] for e in best.kept] == ["ckpt-2", "ckpt-3"]  # the second 1.0 ties: not kept
```
"""

from __future__ import annotations

import math
import numbers

__all__ = ["BestList", "check_keep_best"]

_ENTRY = ("value", "epoch", "global_step", "checkpoint")


def check_keep_best(keep_best) -> int:
    """``keep_best`` if it is a positive integer, else a ``ValueError``."""
    if isinstance(keep_best, bool) or not isinstance(keep_best, numbers.Integral) or keep_best < 1:
        raise ValueError("`keep_best` must be a positive integer (how many of the best checkpoints to "
                         f"keep; 1 keeps only the best). Received: keep_best={keep_best!r}")
    return int(keep_best)


class BestList:
    """The kept checkpoints, best first.

    Args:
        mode: ``"min"`` (smaller is better) or ``"max"``.
        keep: how many to keep.
    """

    def __init__(self, mode: str, keep: int = 1):
        if mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max'. Received: mode={mode!r}")
        self.mode = mode
        self.keep = check_keep_best(keep)
        self.kept: list[dict] = []

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    @property
    def best(self) -> dict | None:
        """The best entry (``value``, ``epoch``, ``global_step``, ``checkpoint``), or ``None``."""
        return self.kept[0] if self.kept else None

    def accepts(self, value: float, checkpoint: str) -> bool:
        """Whether ``value``, saved as ``checkpoint``, would be kept."""
        if not math.isfinite(value):
            return False
        same = next((e for e in self.kept if e["checkpoint"] == checkpoint), None)
        if same is not None:
            return self._better(value, same["value"])
        return len(self.kept) < self.keep or self._better(value, self.kept[-1]["value"])

    def add(self, value: float, epoch: int, global_step: int, checkpoint: str) -> list[str]:
        """Insert an accepted entry; returns the checkpoints no longer kept
        (never ``checkpoint`` itself)."""
        old = [e for e in self.kept if e["checkpoint"] != checkpoint]
        entry = {"value": float(value), "epoch": int(epoch), "global_step": int(global_step),
                 "checkpoint": checkpoint}
        # After every entry at least as good: ties keep the earlier ahead.
        at = next((i for i, e in enumerate(old) if self._better(value, e["value"])), len(old))
        self.kept = old[:at] + [entry] + old[at:]
        dropped, self.kept = self.kept[self.keep:], self.kept[:self.keep]
        return [e["checkpoint"] for e in dropped]

    def state(self, monitor: str) -> dict:
        """The state file's content (the best's fields, then ``kept``)."""
        best = self.best
        return {"monitor": monitor, "mode": self.mode, "best": best["value"], "epoch": best["epoch"],
                "global_step": best["global_step"], "checkpoint": best["checkpoint"],
                "keep_best": self.keep, "kept": [dict(e) for e in self.kept]}

    def load(self, state: dict) -> list[str]:
        """Continue the list a state file records (a resumed run). Returns
        the checkpoints beyond ``keep`` (a smaller ``keep_best`` than the
        recorded run's), which the caller removes."""
        kept = state.get("kept")
        if not isinstance(kept, list):  # written by a single-best saver
            kept = [{"value": state["best"], "epoch": state["epoch"],
                     "global_step": state.get("global_step", 0), "checkpoint": state["checkpoint"]}]
        entries = []
        for e in kept:
            if not isinstance(e, dict) or not set(_ENTRY) <= set(e) or not isinstance(e["checkpoint"], str):
                raise ValueError(f"a kept entry must have the fields {list(_ENTRY)}. Received: {e!r}")
            entries.append({"value": float(e["value"]), "epoch": int(e["epoch"]),
                            "global_step": int(e["global_step"]), "checkpoint": e["checkpoint"]})
        self.kept, dropped = entries[:self.keep], entries[self.keep:]
        return [e["checkpoint"] for e in dropped]

    @staticmethod
    def checkpoints_of(state: dict) -> list[str]:
        """Every checkpoint a state file names (for moving a run aside)."""
        names = [state["checkpoint"]] if isinstance(state.get("checkpoint"), str) else []
        for e in state.get("kept") or ():
            if isinstance(e, dict) and isinstance(e.get("checkpoint"), str) and e["checkpoint"] not in names:
                names.append(e["checkpoint"])
        return names
