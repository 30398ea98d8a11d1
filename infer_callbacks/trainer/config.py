"""``TrainConfig``: what to train, on what, for how long; and the checks of
``TF_CONFIG`` that ``DistributedTrainer`` relies on."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import keras

from infer_callbacks._util import require_tensorflow
from infer_callbacks.towers.model_desc import ModelDesc

__all__ = ["TrainConfig"]


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


def cluster_from_tf_config() -> tuple[dict, str, int]:
    """Parse and check ``TF_CONFIG``; ``(cluster, task_type, task_index)``."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "DistributedTrainer found no cluster: pass a strategy "
            "(DistributedTrainer(strategy)), train a Keras model built under one, or set "
            "TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={raw!r}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError("TF_CONFIG must have a non-empty 'cluster' dict, e.g. {\"worker\": "
                         f"[\"host1:12345\", \"host2:12345\"]}}. Received: TF_CONFIG={raw!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError("TF_CONFIG must have a 'task' dict with 'type' and 'index', e.g. "
                         f"{{\"type\": \"worker\", \"index\": 0}}. Received: TF_CONFIG={raw!r}")
    task_type, index = task["type"], task["index"]
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f"TF_CONFIG cluster job {job!r} must be a list of 'host:port' strings. "
                             f"Received: {addresses!r}")
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
                         f"{sorted(cluster)}.")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index {index!r} is out of range for job {task_type!r} with "
                         f"{len(cluster[task_type])} tasks.")
    return cluster, task_type, index
