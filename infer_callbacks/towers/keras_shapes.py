"""Keras's rules for shapes, masks and sample weights, on ``keras.ops``: the
static rank, the mask a tensor carries, the last-axis alignment of labels and
predictions, a per-example weight spread over the example's elements, and
per-example sums and means. Used by the default Keras tower
(:mod:`infer_callbacks.towers.keras_loss`, :mod:`infer_callbacks.towers.keras_tower`);
runs on every Keras backend.

Example:

>>> import keras
>>> import numpy as np
>>> values = keras.ops.ones((2, 3))
>>> [tuple(t.shape) for t in align(keras.ops.ones((2, 1)), keras.ops.ones((2,)))]
[(2, 1), (2, 1)]
>>> np.asarray(row_sums(broadcast_weight(keras.ops.convert_to_tensor([1.0, 2.0]), values))).tolist()
[3.0, 6.0]
"""

from __future__ import annotations

from typing import Any

from keras import ops

__all__ = ["rank", "keras_mask", "align", "broadcast_weight", "row_sums", "row_means"]


def rank(t: Any) -> int | None:
    """The static rank of ``t`` (``None`` if unknown, as a TF tensor of unknown shape)."""
    try:
        return len(t.shape)
    except (TypeError, ValueError):
        return None


try:  # Keras 3.15 has no public getter: JAX arrays keep their mask in a table by id
    from keras.src.backend import get_keras_mask as _get_keras_mask
except ImportError:  # pragma: no cover - another Keras layout
    def _get_keras_mask(t):
        return getattr(t, "_keras_mask", None)


def keras_mask(t: Any) -> Any:
    """The Keras mask of ``t`` (``Embedding(mask_zero=True)`` ...), if any, on any backend."""
    return _get_keras_mask(t)


def align(a: Any, b: Any) -> tuple[Any, Any]:
    """Keras's rule for ranks that differ by one: drop or add a last axis of 1."""
    ra, rb = rank(a), rank(b)
    if ra is None or rb is None:
        return a, b
    if ra == rb + 1 and a.shape[-1] == 1:
        return (a, ops.expand_dims(b, -1)) if rb == 1 else (ops.squeeze(a, -1), b)
    if rb == ra + 1 and b.shape[-1] == 1:
        return (ops.expand_dims(a, -1), b) if ra == 1 else (a, ops.squeeze(b, -1))
    return a, b


def broadcast_weight(weight: Any, values: Any) -> Any:
    """Per-element weights of ``values``; a per-example weight spreads over
    the example's elements (Keras 3.15 raises for ``[B]`` weights on ``[B, T]``
    losses, or multiplies along the wrong axis when ``B == T``)."""
    if weight is None:
        return ops.ones_like(values)
    values, weight = align(values, ops.cast(weight, values.dtype))
    while rank(weight) < rank(values):
        weight = ops.expand_dims(weight, -1)
    return ops.broadcast_to(weight, ops.shape(values))


def row_sums(values: Any) -> Any:
    """Sum every axis but the first: ``[B, ...] -> [B]``."""
    r = rank(values)
    return ops.sum(values, axis=tuple(range(1, r))) if r > 1 else values


def row_means(values: Any, batch_size: Any = None) -> Any:
    """Mean over every axis but the first: ``[B, ...] -> [B]``; ``[]`` -> ``[B]``."""
    r = rank(values)
    if r == 0:
        return ops.full((batch_size,), ops.cast(values, "float32"))
    if r == 1:
        return values
    return ops.mean(values, axis=tuple(range(1, r)))
