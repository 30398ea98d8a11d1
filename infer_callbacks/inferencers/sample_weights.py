"""Keras's broadcasting of ``sample_weight`` against a value, for the
counters that take weights (:mod:`infer_callbacks.inferencers.stats`,
:mod:`infer_callbacks.inferencers.binary_stats`).

Example:

>>> weights_like(np.array([1.0, 2.0]), np.zeros((2, 3)), "feed").tolist()
[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["weights_like"]


def weights_like(weight: Any, value: np.ndarray, who: str) -> np.ndarray:
    """``weight`` broadcast to ``value``'s shape: a scalar, or one weight per
    row (leading dimension), as Keras broadcasts ``sample_weight``."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim and value.ndim and w.shape[0] == value.shape[0] and w.ndim <= value.ndim:
        w = w.reshape(w.shape + (1,) * (value.ndim - w.ndim))
    try:
        return np.broadcast_to(w, value.shape)
    except ValueError:
        raise ValueError(
            f"{who}: the weight of shape {w.shape} does not fit the value of shape "
            f"{value.shape}; pass a scalar or one weight per row.") from None
