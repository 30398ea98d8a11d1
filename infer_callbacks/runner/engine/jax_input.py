"""The JAX engine's input: an input's ``tf.data`` pipeline read as numpy
batches, several at a time.

Reading a ``tf.data`` iterator costs tens of microseconds per element, as
much as a small model's whole batch; so the pipeline hands over *groups* of
batches: each batch travels with its shape, the group is padded to its
largest member (``padded_batch``: a partial last batch, or sequences padded
per batch, make a group of mixed shapes) and cut back on the host, so every
batch reaches the step exactly as the input made it. Grouping, padding and
prefetching run in ``tf.data``'s threads.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import tensorflow as tf

__all__ = ["numpy_batches", "grouped", "group_size", "structure"]


def structure(element_spec: Any):
    """``pack(flat) -> batch``: a batch's leaves (``tf.nest`` order) back
    in the input's structure (for the step; packing once per call is cheap)."""
    count = len(tf.nest.flatten(element_spec))
    return lambda flat: tf.nest.pack_sequence_as(element_spec, list(flat)) if count else flat


def group_size(batch_bytes: float, *, target_bytes: int = 8 << 20, most: int = 64) -> int:
    """Batches per group: about ``target_bytes`` a group, a power of two in ``[1, most]``.

    Example:

    >>> group_size(4096), group_size(3 << 20)
    (64, 2)
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


def numpy_batches(dataset: tf.data.Dataset, group: int, groups: tf.data.Dataset | None = None
                  ) -> Iterator[tuple]:
    """The batches of ``dataset``, in order, each as the tuple of its numpy
    leaves (``tf.nest`` order; :func:`structure` packs them), read from
    ``groups`` (:func:`grouped`), ``group`` at a time."""
    if group <= 1:
        for element in dataset.as_numpy_iterator():
            yield tuple(tf.nest.flatten(element))
        return
    for leaves, shapes in (groups or grouped(dataset, group)).as_numpy_iterator():
        # A group of one shape (the common case) needs no cutting.
        whole = [bool((s == np.asarray(leaf.shape[1:])).all()) for leaf, s in zip(leaves, shapes)]
        for j in range(len(shapes[0]) if shapes else 0):
            yield tuple(leaf[j] if ok else leaf[j][tuple(slice(0, int(d)) for d in s[j])]
                        for leaf, s, ok in zip(leaves, shapes, whole))
