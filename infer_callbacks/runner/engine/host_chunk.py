"""The host side of one JAX step call: each batch's outputs in dataset
order (:meth:`JaxChunk.batches`), or per name the whole call at once
(:meth:`JaxChunk.block`). The JAX counterpart of ``chunk.Chunk``: every
batch of a call has the same shapes, so outputs arrive stacked ``[n, ...]``."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from infer_callbacks.towers.spec import NUM_SAMPLES_KEY

__all__ = ["JaxChunk"]


class JaxChunk:
    """``n`` batches' outputs.

    Args:
        values: per name, the stacked per-batch outputs ``[n, ...]``
            (``[n]`` for a scalar per batch).
        num_samples: each batch's sample count ``[n]`` (``-1``: unknown).
        ranks: each name's rank per batch.
    """

    def __init__(self, values: dict[str, np.ndarray], num_samples: np.ndarray, ranks: dict[str, int]):
        self.values, self.counts, self.ranks = values, num_samples, ranks

    def __len__(self) -> int:
        return len(self.counts)

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """Per-batch dicts, in dataset order (scalars per batch as 0-d arrays)."""
        for j in range(len(self.counts)):
            out = {n: v[j] for n, v in self.values.items()}
            out[NUM_SAMPLES_KEY] = self.counts[j]
            yield out

    def block(self, name: str) -> np.ndarray | None:
        """Every batch's ``name`` concatenated along the batch axis (``None``
        for a scalar per batch)."""
        if self.ranks[name] == 0:
            return None
        v = self.values[name]
        return v.reshape((-1,) + v.shape[2:])

    def num_samples(self) -> int:
        """The samples of all batches."""
        return int(np.sum(self.counts[self.counts >= 0]))
