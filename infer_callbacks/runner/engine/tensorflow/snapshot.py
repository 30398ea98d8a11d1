"""The weights an asynchronous run validates: a device-side snapshot.

The snapshot is taken by one ``tf.function`` of ``assign`` ops (no host
round-trip) while training is paused at an epoch boundary. The validation
reads only the snapshot (:func:`scoped`), so training may update the model's
variables meanwhile. A new snapshot is taken only after the previous run
finished: at most one extra copy of the weights exists.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

__all__ = ["Snapshot", "scoped"]


class Snapshot:
    """A private copy of ``model.weights`` (trainable and not) on the same devices.

    Attributes:
        epoch_num, global_step: what the copy holds (``None`` before :meth:`take`).
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy | None):
        self.sources = list(model.weights)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            self.copies = [tf.Variable(lambda v=v: tf.zeros(v.shape, v.dtype), trainable=False,
                                       name="snapshot") for v in self.sources]
        pairs = list(zip(self.copies, self.sources))

        @tf.function(autograph=False)
        def copy():
            for mine, theirs in pairs:
                mine.assign(theirs.value)

        self._copy = copy
        self.epoch_num: int | None = None
        self.global_step: int | None = None

    def take(self, epoch_num: int, global_step: int) -> None:
        """Copy the model's current weights into the snapshot."""
        self._copy()
        self.epoch_num, self.global_step = int(epoch_num), int(global_step)

    def mapping(self) -> list[tuple[Any, tf.Variable]]:
        """``(model variable, snapshot variable)`` pairs for a ``StatelessScope``."""
        return list(zip(self.sources, self.copies))

    def numpy(self) -> list[np.ndarray]:
        """The snapshot's values, in ``model.weights`` order."""
        return [c.numpy() for c in self.copies]

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(c.shape)) * c.dtype.size for c in self.copies)


def scoped(fn: Callable, snapshot: Snapshot) -> Callable:
    """``fn`` reading the snapshot instead of the model's variables (for any
    Keras code it calls, the default tower and custom towers alike)."""
    def run(*args):
        with keras.StatelessScope(state_mapping=snapshot.mapping()):
            return fn(*args)
    return run
