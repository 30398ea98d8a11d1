"""``TrainConfig``: what to train, on what, for how long. (``TF_CONFIG`` is
read and checked in :mod:`infer_callbacks.distribute.cluster`.)"""

from __future__ import annotations

import os
from typing import Any, Sequence

import keras

from infer_callbacks._util import require_tensorflow
from infer_callbacks.distribute.cluster import cluster_from_tf_config  # its old home, kept importable
from infer_callbacks.towers.model_desc import ModelDesc

__all__ = ["TrainConfig", "cluster_from_tf_config"]


class TrainConfig:
    """What to train, on what, for how long (tensorpack's ``TrainConfig``).

    Args:
        model: a :class:`ModelDesc`, a compiled ``keras.Model``, or a
            zero-argument function returning either (called under the
            trainer's strategy scope: the way to build a Keras model for
            :class:`SyncMultiGPUTrainer` / :class:`DistributedTrainer`).
        data: the training batches: a ``tf.data.Dataset``, a tensorpack-style
            DataFlow or any re-iterable of batches. For a ``ModelDesc`` each
            batch is a tuple (or a dict) matching ``inputs()``; for a Keras
            model ``x``, ``(x, y)`` or ``(x, y, sample_weight)``.
        dataflow: tensorpack's name for ``data`` (give one of them).
        callbacks: Keras callbacks (``InferenceRunner``, ``Monitors``,
            ``EarlyStopping``, ``ModelSaver``, ...).
        max_epoch: the last epoch to run (1-based, inclusive).
        steps_per_epoch: training steps per epoch. ``None``: one pass over
            ``data`` per epoch. Otherwise ``data`` is repeated and read
            continuously across epochs (as tensorpack does).
        starting_epoch: the first epoch to run (1-based). ``None``: 1, or
            the epoch after the one restored by ``session_init``.
        session_init: a checkpoint (a ``ModelSaver`` directory for its
            latest checkpoint, or a checkpoint prefix) to restore the model,
            the optimizer and the epoch counter from before training.
        verbose: 0 silent, 1 a Keras progress bar (as ``fit``).
    """

    def __init__(self, model: Any = None, data: Any = None, *, dataflow: Any = None,
                 callbacks: Sequence[keras.callbacks.Callback] | None = None, max_epoch: int = 99999,
                 steps_per_epoch: int | None = None, starting_epoch: int | None = None,
                 session_init: str | os.PathLike | None = None, verbose: int = 1):
        require_tensorflow("TrainConfig",
                           instead="Train with model.fit(callbacks=[...]) instead, which runs the runner on this backend.")
        if model is None:
            raise ValueError("TrainConfig needs `model`: a ModelDesc, a compiled keras.Model, or "
                             "a zero-argument function returning one.")
        if not isinstance(model, (ModelDesc, keras.Model)) and not callable(model):
            raise TypeError("`model` must be a ModelDesc, a compiled keras.Model or a zero-argument "
                            f"function returning one. Received: {model!r}")
        if data is not None and dataflow is not None:
            raise ValueError("Pass the training data as `data` or as `dataflow`, not both.")
        data = data if data is not None else dataflow
        if data is None:
            raise ValueError("TrainConfig needs the training batches: pass `data=` (a tf.data.Dataset, "
                             "a DataFlow or a re-iterable of batches).")
        for name, value, low in (("max_epoch", max_epoch, 1), ("steps_per_epoch", steps_per_epoch, 1),
                                 ("starting_epoch", starting_epoch, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}")
        if starting_epoch is not None and starting_epoch > max_epoch:
            raise ValueError(f"`starting_epoch` ({starting_epoch}) is after `max_epoch` ({max_epoch}).")
        callbacks = list(callbacks or [])
        for cb in callbacks:
            if not isinstance(cb, keras.callbacks.Callback):
                raise TypeError(f"Every callback must be a keras.callbacks.Callback. Received: {cb!r}")
        self.model = model
        self.data = data
        self.callbacks = callbacks
        self.max_epoch = max_epoch
        self.steps_per_epoch = steps_per_epoch
        self.starting_epoch = starting_epoch
        self.session_init = session_init
        self.verbose = verbose
