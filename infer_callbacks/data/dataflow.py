"""tensorpack's input-source wrappers, ``QueueInput(df)`` and
``FeedInput(df)``: accepted so ported code runs unchanged; the runner
prefetches every input on a background pipeline anyway."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

__all__ = ["QueueInput", "FeedInput"]


class DataFlowInput:
    """A tensorpack input-source wrapper around a DataFlow; here only a label:
    the runner always prefetches its input on a background pipeline."""

    def __init__(self, ds: Any, *args: Any, **kwargs: Any):
        if isinstance(ds, DataFlowInput):
            ds = ds.dataflow
        if isinstance(ds, (tf.Tensor, np.ndarray, str, bytes)) or not (
                hasattr(ds, "__iter__") or isinstance(ds, tf.data.Dataset)):
            raise TypeError(f"{type(self).__name__} wraps a DataFlow (an iterable of batches) or a "
                            f"tf.data.Dataset. Received: {ds!r}")
        self.dataflow = ds
        self.ds = ds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dataflow!r})"


class QueueInput(DataFlowInput):
    """tensorpack's ``QueueInput(df)``: accepted so ported code runs
    unchanged; the DataFlow is fed through a prefetched ``tf.data`` pipeline
    (the queue's job), and the extra arguments (``queue=``) are ignored.

    Example:

    >>> runner_input = QueueInput([(np.zeros((2, 3), "float32"),)])
    """


class FeedInput(DataFlowInput):
    """tensorpack's ``FeedInput(df)``: accepted so ported code runs
    unchanged; batches are prefetched like any other DataFlow (the
    ``infinite=`` argument is ignored: a validation run ends with the
    DataFlow)."""
