"""The JAX engine's input: batches as numpy *blocks* (several batches of
one shape stacked ``[m, ...]``), read from Keras-style arrays as views or
from an input's ``tf.data`` pipeline several at a time.

Reading a ``tf.data`` iterator costs tens of microseconds per element, as
much as a small model's whole batch; so the pipeline hands over *groups* of
batches: each batch travels with its shape, the group is padded to its
largest member (``padded_batch``: a partial last batch, or sequences padded
per batch, make a group of mixed shapes) and cut back on the host, so every
batch reaches the step exactly as the input made it. Grouping, padding and
prefetching run in ``tf.data``'s threads. A group of one shape (the common
case) is handed on as one block, with no per-batch work on the host.

Keras-style arrays need no pipeline: a block is a view of the arrays
(``ArrayBatches``), so the step's buffers are filled by one copy, or none.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import tensorflow as tf

__all__ = ["Blocks", "grouped", "group_size", "structure", "block_signature"]


def structure(element_spec: Any):
    """``pack(flat) -> batch``: a batch's leaves (``tf.nest`` order) back
    in the input's structure (for the step; packing once per call is cheap)."""
    count = len(tf.nest.flatten(element_spec))
    return lambda flat: tf.nest.pack_sequence_as(element_spec, list(flat)) if count else flat


def group_size(batch_bytes: float, *, target_bytes: int = 1 << 20, most: int = 64) -> int:
    """Batches per group: about ``target_bytes`` a group, a power of two in
    ``[1, most]``. Grouping saves ``tf.data``'s per-element cost on small
    batches; a large batch is read alone (``padded_batch`` would copy it
    once more for nothing).

    Example:

    >>> group_size(4096), group_size(300 << 10), group_size(3 << 20)
    (64, 2, 1)
    """
    size = 1
    while size * 2 <= most and size * 2 * batch_bytes <= target_bytes:
        size *= 2
    return size


def grouped(dataset: tf.data.Dataset, group: int) -> tf.data.Dataset:
    """``dataset`` in groups of ``group`` batches, each leaf with its shapes
    (build it once and keep it: building traces a function)."""
    def with_shapes(*element):
        flat = tf.nest.flatten(element)
        return tuple(flat), tuple(tf.shape(t, out_type=tf.int64) for t in flat)

    return dataset.map(with_shapes).padded_batch(group).prefetch(2)


def block_signature(leaves: tuple) -> tuple:
    """What must be equal for two blocks' batches to share a call: each
    leaf's per-batch shape and dtype."""
    return tuple((a.shape[1:], a.dtype.str) for a in leaves)


def _tf_blocks(dataset: tf.data.Dataset, group: int, groups: tf.data.Dataset | None) -> Iterator[tuple]:
    """``(leaves stacked [m, ...], m)`` blocks of ``dataset``, in order."""
    if group <= 1:
        for element in dataset.as_numpy_iterator():
            yield tuple(leaf[None] for leaf in tf.nest.flatten(element)), 1
        return
    for leaves, shapes in (groups or grouped(dataset, group)).as_numpy_iterator():
        m = len(shapes[0]) if shapes else 0
        if all(bool((s == np.asarray(leaf.shape[1:])).all()) for leaf, s in zip(leaves, shapes)):
            yield tuple(leaves), m  # every batch of the group has the group's shape
            continue
        for j in range(m):
            yield tuple(leaf[j][tuple(slice(0, int(d)) for d in s[j])][None]
                        for leaf, s in zip(leaves, shapes)), 1


def _array_blocks(arrays, size: int = 1 << 16) -> Iterator[tuple]:
    start = 0
    while True:
        leaves, m = arrays.block(start, size)
        if not m:
            return
        start += m
        yield leaves, m


class Blocks:
    """One pass over an input in blocks; :meth:`take` hands over up to
    ``count`` batches of one shape at a time.

    Args:
        input: the runner's ``InputSource`` (its ``arrays`` if any, else its ``dataset``).
        group: batches per read from ``tf.data``.
        groups: the kept :func:`grouped` pipeline, if any.
        share: ``share(blocks) -> blocks``, a filter of the blocks read
            (the JAX engine's share of a process among several), or ``None``.
    """

    def __init__(self, input: Any, group: int = 1, groups: tf.data.Dataset | None = None, share=None):
        arrays = getattr(input, "arrays", None)
        self._source = (_array_blocks(arrays) if arrays is not None
                        else _tf_blocks(input.dataset, group, groups))
        if share is not None:
            self._source = share(self._source)
        self._held: tuple | None = None  # a block (or its rest) read ahead
        self.ended = False

    def _next(self) -> tuple | None:
        if self._held is not None:
            block, self._held = self._held, None
            return block
        try:
            return next(self._source)
        except StopIteration:
            self.ended = True
            return None

    def peek(self) -> tuple | None:
        """The :func:`block_signature` of the next batch (``None`` at the end)."""
        block = self._next()
        if block is None:
            return None
        self._held = block
        return block_signature(block[0])

    def take(self, count: int) -> tuple[tuple, int]:
        """``(leaves stacked [m, ...], m)`` with ``1 <= m <= count`` batches
        of one shape, in order; ``m == 0`` at the end."""
        parts, sig, m = [], None, 0
        while m < count:
            block = self._next()
            if block is None:
                break
            leaves, k = block
            s = block_signature(leaves)
            if sig is not None and s != sig:
                self._held = block
                break
            sig = s
            if m + k > count:  # keep the rest for the next call
                cut = count - m
                self._held = (tuple(a[cut:] for a in leaves), k - cut)
                leaves, k = tuple(a[:cut] for a in leaves), cut
            parts.append(leaves)
            m += k
        if not parts:
            return (), 0
        if len(parts) == 1:
            return parts[0], m
        return tuple(np.concatenate(p) for p in zip(*parts)), m

    @property
    def exhausted(self) -> bool:
        """Whether nothing is left (known only after a :meth:`take` found the end)."""
        return self.ended and self._held is None
