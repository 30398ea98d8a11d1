"""What one inferencer's fetches carry to it, for every engine: the
values, each value's exact pair (``name#num`` / ``name#den``, when the tower
gave one) and the batch's sample weights (``#sample_weight``)."""

from __future__ import annotations

from typing import Callable, Sequence

from infer_callbacks.towers.spec import SAMPLE_WEIGHT_KEY, exact_keys

__all__ = ["FetchTable"]


class FetchTable:
    """The exact pairs and sample weights among an engine's outputs.

    Args:
        names: the fetch names the engine runs.
        outputs: every key the engine's step returns.
    """

    def __init__(self, names: Sequence[str], outputs: Sequence[str]):
        have = set(outputs)
        self.exact = {n: exact_keys(n) for n in names if all(k in have for k in exact_keys(n))}
        self.has_weight = SAMPLE_WEIGHT_KEY in have

    def wanted(self, names: Sequence[str]) -> list[str]:
        """``names``, their exact pairs and the sample weights: what travels."""
        return (list(names) + [k for n in names if n in self.exact for k in self.exact[n]]
                + ([SAMPLE_WEIGHT_KEY] if self.has_weight else []))

    def __call__(self, batch: dict, names: Sequence[str], load: Callable | None = None):
        """``(results, exact, sample_weight)`` for one inferencer's fetches
        from ``batch``; with ``load(name)``, values missing from ``batch``
        are loaded into it first (a chunk's blocks, shared by inferencers)."""
        if load is not None:
            for n in self.wanted(names):
                if n not in batch:
                    batch[n] = load(n)
        results = [batch[n] for n in names]
        exact = [(batch[self.exact[n][0]], batch[self.exact[n][1]]) if n in self.exact else None
                 for n in names]
        return results, exact, batch.get(SAMPLE_WEIGHT_KEY) if self.has_weight else None
