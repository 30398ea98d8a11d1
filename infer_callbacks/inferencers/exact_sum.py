"""The column sums of an exact ``(num, den)`` pair (``towers/spec.py``'s
``#num`` / ``#den`` outputs): what ``ScalarStats`` keeps so that a mean
over any batching equals the whole set's value, and what merges across
processes."""

from __future__ import annotations

import numpy as np

__all__ = ["ExactSum"]


def _columns(array, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"The exact pair of {name!r} must have shape [B] or [B, K]; "
                         f"received shape {array.shape}.")
    return array[:, None] if array.ndim == 1 else array


class ExactSum:
    """Column sums of an exact ``(num, den)`` pair: value ``sum_k N_k / D_k``."""

    def __init__(self):
        self.num = self.den = None

    @classmethod
    def of(cls, num: np.ndarray, den: np.ndarray) -> "ExactSum":
        """Column sums already taken (e.g. merged across processes)."""
        out = cls()
        out.num, out.den = np.asarray(num, np.float64), np.asarray(den, np.float64)
        return out

    def feed(self, pair, name: str) -> None:
        num, den = _columns(pair[0], name), _columns(pair[1], name)
        if num.shape != den.shape:
            raise ValueError(f"The exact pair of {name!r} has num shape {num.shape} but den shape "
                             f"{den.shape}; they must match.")
        if self.num is None:
            self.num, self.den = np.zeros(num.shape[1]), np.zeros(num.shape[1])
        if num.shape[1] != len(self.num):
            raise ValueError(f"The exact pair of {name!r} changed from {len(self.num)} to "
                             f"{num.shape[1]} columns between batches.")
        self.num += num.sum(axis=0)
        self.den += den.sum(axis=0)

    @property
    def value(self) -> float:
        safe = np.where(self.den != 0, self.den, 1.0)
        return float(np.sum(np.where(self.den != 0, self.num / safe, 0.0)))
