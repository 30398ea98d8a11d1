"""Keras-style array data: ``(x, y)`` or ``(x, y, sample_weight)``, batched
as ``fit(validation_data=...)`` and ``evaluate(x, y, batch_size=...)`` do.

A *tuple* of two or three arrays (``numpy`` arrays or tensors; ``x`` or ``y``
may be a dict of arrays for a model with named inputs or outputs) is one
data set, whose arrays share their first dimension; it is cut into batches
of ``batch_size`` (default 32, as in Keras), the last one partial. A *list*
of tuples stays a re-iterable of batches (``[(x, y)]`` is one batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["DEFAULT_BATCH_SIZE", "ArrayBatches", "is_array_data", "array_dataset", "check_batch_size"]

DEFAULT_BATCH_SIZE = 32  # Keras's default batch_size for fit / evaluate


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, tf.Tensor)) and len(value.shape) > 0


def _is_part(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value) and all(_is_array(v) for v in value.values())
    return _is_array(value)


def is_array_data(source: Any) -> bool:
    """Whether ``source`` is Keras-style ``(x, y[, sample_weight])`` data."""
    return isinstance(source, tuple) and len(source) in (2, 3) and all(_is_part(p) for p in source)


def check_batch_size(batch_size: Any, source: Any) -> None:
    """Refuse a ``batch_size`` that is not a positive int, or that comes with
    an input that is batched already."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    if not is_array_data(source):
        raise TypeError(
            "`batch_size` batches Keras-style array data, a tuple (x, y) or (x, y, sample_weight) of "
            f"arrays; this input is a {type(source).__module__}.{type(source).__qualname__}, which "
            "yields its own batches. Drop batch_size=, or pass the arrays as a tuple.")


def array_dataset(source: tuple, batch_size: int | None) -> tf.data.Dataset:
    """``source`` (see :func:`is_array_data`) as a dataset of batches of
    ``batch_size`` (default :data:`DEFAULT_BATCH_SIZE`), in order."""
    names = ("x", "y", "sample_weight")
    lengths = {}
    for name, part in zip(names, source):
        for key, array in (part.items() if isinstance(part, dict) else [(None, part)]):
            label = name if key is None else f"{name}[{key!r}]"
            lengths[label] = int(array.shape[0])
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(
            f"Keras-style validation data (x, y[, sample_weight]) needs the same number of samples in "
            f"every array; {shown}. To pass batches instead, pass a list of (x, y) tuples.")
    if not next(iter(lengths.values())):
        raise ValueError("The validation arrays hold no sample (first dimension 0). Pass a non-empty "
                         "validation set.")
    size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
    return tf.data.Dataset.from_tensor_slices(tuple(source)).batch(size)


class ArrayBatches:
    """Keras-style arrays as consecutive batches, read as *views*: the
    batches ``[start, start + m)`` of a leaf are ``leaf[start*b:(start+m)*b]``
    reshaped ``[m, b, ...]``, no copy (for an engine that stacks batches,
    such as the JAX one). The leaves are in ``tf.nest`` order, the order of
    :func:`array_dataset`'s ``element_spec``.

    Args:
        source: the ``(x, y[, sample_weight])`` tuple (see :func:`is_array_data`).
        batch_size: the batch size (default :data:`DEFAULT_BATCH_SIZE`).
        limit: read at most this many batches (``limit_batches``).

    Attributes:
        leaves: the arrays as numpy, ``tf.nest`` order.
        batch_size: rows per batch (the last batch may have fewer).
        batches: the number of batches a pass reads.
    """

    def __init__(self, source: tuple, batch_size: int | None, limit: int | None = None):
        self.leaves = [np.asarray(a) for a in tf.nest.flatten(tuple(source))]
        self.batch_size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        self.rows = int(self.leaves[0].shape[0])
        total = -(-self.rows // self.batch_size)
        self.batches = total if limit is None else min(total, int(limit))

    def block(self, start: int, count: int) -> tuple[tuple[np.ndarray, ...], int]:
        """Up to ``count`` batches from batch ``start``, all of one shape:
        ``(leaves stacked [m, rows, ...], m)``; a partial last batch comes
        alone (``m == 1``). ``m == 0`` past the end."""
        b = self.batch_size
        stop_row = min(self.rows, self.batches * b)
        first = start * b
        if first >= stop_row:
            return (), 0
        whole = (stop_row - first) // b
        if whole == 0:  # the partial last batch
            return tuple(leaf[first:stop_row][None] for leaf in self.leaves), 1
        m = min(count, whole)
        return tuple(leaf[first:first + m * b].reshape((m, b) + leaf.shape[1:]) for leaf in self.leaves), m
