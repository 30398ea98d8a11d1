"""The host side of one step call's results: per-batch dicts in dataset
order, or per name a whole call's block (``step.py`` makes the call)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from infer_callbacks.runner.engine.tensorflow.step import NUM_SAMPLES

__all__ = ["Chunk"]


class Chunk:
    """One step call's results on the host: per-batch dicts in dataset
    order (:meth:`batches`), or per name everything at once (:meth:`block`).

    Args:
        valid, values, sizes, shapes: what the step returned (numpy).
        specs: the outputs' specs; ranks: their ranks as the tower gave them
            (0: a scalar, travelling as ``[1]``).
        per_round: entries per round (replicas); merge: ``split`` mode,
            where a round's valid slices are one batch again.
    """

    def __init__(self, valid, values, sizes, shapes, specs, ranks, per_round: int, merge: bool):
        self.valid, self.values, self.shapes = valid, values, shapes
        self.ranks, self.per_round, self.merge = ranks, per_round, merge
        self.names = list(values)
        self.inner = {n: tuple(specs[n].shape.as_list()[1:]) for n in self.names}
        self.sizes = {n: sizes[:, j] for j, n in enumerate(self.names)}
        self.offsets = {n: np.concatenate([[0], np.cumsum(self.sizes[n])]) for n in self.names}

    def _entry(self, j: int) -> dict:
        out = {}
        for n in self.names:
            a, b = self.offsets[n][j], self.offsets[n][j + 1]
            if n in self.shapes:
                v = self.values[n][a:b].reshape(self.shapes[n][j])
            else:
                v = self.values[n][a:b].reshape((-1,) + self.inner[n])
            out[n] = v.reshape(()) if self.ranks[n] == 0 else v
        return out

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Per-batch dicts, in dataset order (rank-0 outputs as scalars;
        with ``merge``, a round's slices concatenated, sample counts added)."""
        if not self.merge:
            for j in np.flatnonzero(self.valid):
                yield self._entry(int(j))
            return
        r = self.per_round
        for k in range(len(self.valid) // r):
            parts = [self._entry(k * r + i) for i in range(r) if self.valid[k * r + i]]
            if len(parts) == 1:
                yield parts[0]
            elif parts:
                yield {n: (np.sum([p[n] for p in parts]) if self.ranks[n] == 0
                           else np.concatenate([p[n] for p in parts], 0)) for n in self.names}

    def block(self, name: str) -> np.ndarray | None:
        """Every valid batch's ``name`` concatenated along the batch axis
        (``None`` for scalars per batch and outputs of varying shape)."""
        if self.ranks[name] == 0 or name in self.shapes:
            return None
        values, inner = self.values[name], self.inner[name]
        if self.valid.all():
            return values.reshape((-1,) + inner)
        offsets = self.offsets[name]
        return np.concatenate([values[offsets[j]:offsets[j + 1]] for j in np.flatnonzero(self.valid)]
                              ).reshape((-1,) + inner)

    def num_samples(self) -> int:
        """The samples of all valid batches."""
        counts = self.values[NUM_SAMPLES]
        return int(np.sum(counts[self.valid])) if len(counts) == len(self.valid) else int(np.sum(counts))
