"""Restoring a model's weights for prediction, from either layout the
package writes: :mod:`infer_callbacks.checkpoints.layout`'s (what
``ModelSaver`` writes, matched by variable names) or a Keras weights file
(matched by Keras's own traversal). Both report every missing, extra and
mis-shaped variable (:class:`~infer_callbacks.checkpoints.mismatch.CheckpointMismatchError`).
"""

from __future__ import annotations

import os
from typing import Any

from infer_callbacks.checkpoints import layout as checkpoint

from infer_callbacks.checkpoints import tf_restore
from infer_callbacks.checkpoints.keras_weights import is_keras_weights_path, restore_keras_weights

__all__ = ["restore_weights"]


def restore_weights(model: Any, path: str | os.PathLike, *, ignore_mismatch: bool = False) -> None:
    """Restore ``model``'s weights from ``path``, checking that they match.

    Args:
        model: a :class:`~infer_callbacks.ModelDesc` or a ``keras.Model``,
            with its variables created.
        path: a checkpoint prefix (``train_log/ckpt-120``), a ``ModelSaver``
            directory (its latest checkpoint), a Keras ``.weights.h5`` file,
            or the weights of a ``.keras`` model file.
        ignore_mismatch: restore what matches and warn about the rest instead
            of raising :class:`CheckpointMismatchError`.

    Example: ``restore_weights(Model(), "train_log")`` after building its layers.
    """
    if is_keras_weights_path(path):
        restore_keras_weights(model, os.fspath(path), ignore_mismatch=ignore_mismatch)
    else:
        tf_restore.restore(model, path, ignore_mismatch=ignore_mismatch)
