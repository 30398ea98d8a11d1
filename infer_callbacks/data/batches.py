"""One batch of a Python input (a DataFlow, an iterable, a function's
result) as the runner sees it: nested tuples/dicts of numpy arrays, its
``tf.TensorSpec`` layout, and the check that every batch matches the first.
Pure functions: ``source.py`` owns the input and its runs."""

from __future__ import annotations

import collections.abc
from typing import Any

import numpy as np
import tensorflow as tf

from infer_callbacks.data.torch_loader import is_torch_tensor, torch_to_numpy

__all__ = ["describe", "is_one_shot", "to_structure", "spec_of", "check_like_first"]


def describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def is_one_shot(obj: Any) -> bool:
    if isinstance(obj, collections.abc.Iterator):
        return True
    try:
        return iter(obj) is obj
    except TypeError:
        return False


def to_structure(batch: Any) -> Any:
    """A batch as nested tuples/dicts of numpy arrays (lists become tuples)."""
    if isinstance(batch, dict):
        return {k: to_structure(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return tuple(to_structure(v) for v in batch)
    if isinstance(batch, tf.Tensor):
        return batch.numpy()
    if is_torch_tensor(batch):
        return torch_to_numpy(batch)
    return np.asarray(batch)


def spec_of(array: np.ndarray) -> tf.TensorSpec:
    if array.dtype == object:
        raise ValueError(
            "A batch element could not be converted to a numeric array "
            f"(got an object array of shape {array.shape}). Each batch must be "
            "an array, a tuple/list of arrays or a dict of arrays with one "
            "batch dimension."
        )
    dtype = tf.as_dtype(array.dtype) if array.dtype.kind != "U" else tf.string
    if array.ndim == 0:
        return tf.TensorSpec((), dtype)
    return tf.TensorSpec((None,) + array.shape[1:], dtype)


def check_like_first(structure: Any, signature: Any, index: int, description: str) -> None:
    """Refuse a batch whose structure, dtype or shape differs from the
    first batch's, naming the batch and both layouts."""
    def layout(x):
        return tf.nest.map_structure(lambda a: f"{a.dtype}{list(a.shape)}", x)

    def expected():
        return tf.nest.map_structure(lambda sp: f"{sp.dtype.name}{sp.shape.as_list()}", signature)

    try:
        tf.nest.assert_same_structure(structure, signature, check_types=False)
        ok = all(
            sp.shape.is_compatible_with(a.shape)
            and (sp.dtype == tf.string or tf.as_dtype(a.dtype) == sp.dtype)
            for a, sp in zip(tf.nest.flatten(structure), tf.nest.flatten(signature)))
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValueError(
            f"Validation batch {index} of {description} does not match the "
            f"first batch: got {layout(structure)}, expected {expected()} (None = any "
            "batch size). Every batch must have the same structure, dtypes and "
            "non-batch dimensions.")
