"""The tensorpack-style trainer host: ``launch_train_with_config`` and the
three trainers, which differ only in their ``tf.distribute`` strategy.

| piece | module |
| --- | --- |
| ``ModelDesc`` and its Keras face ``DescModel`` | ``towers/model_desc.py`` |
| ``TrainConfig`` (what, on what, how long) | ``config.py`` |
| one training step per model kind | ``train_step.py`` |
| the loop, the ordered ``CallbackList`` (``Trainer``) | ``loop.py`` |
| the strategy of each trainer | this module |
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from infer_callbacks.distribute.cluster import cluster_from_tf_config, has_tf_config
from infer_callbacks.distribute.devices import canonical_device, gpu_devices, model_strategy
from infer_callbacks.towers.model_desc import ModelDesc
from infer_callbacks.trainer.config import TrainConfig
from infer_callbacks.trainer.loop import Trainer

__all__ = [
    "ModelDesc",
    "TrainConfig",
    "Trainer",
    "SimpleTrainer",
    "SyncMultiGPUTrainer",
    "DistributedTrainer",
    "launch_train_with_config",
]


class SimpleTrainer(Trainer):
    """Train on one device (TensorFlow's default placement).

    Example: ``launch_train_with_config(config, SimpleTrainer())``.
    """

    def _make_strategy(self, model):
        own = model_strategy(model)
        if own is not None:
            raise ValueError(
                f"The Keras model was built under {type(own).__name__}; SimpleTrainer trains on "
                "one device. Use SyncMultiGPUTrainer / DistributedTrainer(strategy), or build the "
                "model outside any strategy scope.")
        return tf.distribute.get_strategy()


class SyncMultiGPUTrainer(Trainer):
    """Synchronous data-parallel training on several devices of this machine
    (a ``tf.distribute.MirroredStrategy``): each batch is split across the
    devices and the gradients are summed.

    Args:
        gpus: an int (the first N GPUs), a list of GPU ids, or a list of
            device strings such as ``['/cpu:0', '/cpu:1']``.
    """

    def __init__(self, gpus: Any):
        super().__init__()
        self.devices = gpu_devices(gpus)
        self._strategy = None

    def _make_strategy(self, model):
        own = model_strategy(model)
        if own is not None:
            theirs = []
            for name in getattr(own.extended, "worker_devices", []):
                try:
                    theirs.append(canonical_device(name))
                except ValueError:
                    theirs.append(name)
            if isinstance(own, tf.distribute.MirroredStrategy) and sorted(theirs) == sorted(self.devices):
                return own
            raise ValueError(
                f"The Keras model was built under {type(own).__name__} on "
                f"{list(getattr(own.extended, 'worker_devices', []))}, not a MirroredStrategy on "
                f"{self.devices}. Pass TrainConfig(model=<a zero-argument function>) instead.")
        if self._strategy is None:
            self._strategy = tf.distribute.MirroredStrategy(self.devices)
        return self._strategy


class DistributedTrainer(Trainer):
    """Synchronous training across workers (machines or processes).

    The strategy is ``strategy`` if given, else the Keras model's own, else a
    ``tf.distribute.MultiWorkerMirroredStrategy`` built from ``TF_CONFIG``
    (created here, so construct the trainer early in the program). Every
    worker runs the same program; validation numbers are gathered across
    workers, so all workers report the same values; only the chief (worker 0)
    writes stats, event files and checkpoints.

    Args:
        strategy: a ``tf.distribute.Strategy``.
        collective_timeout: seconds after which a collective (an all-reduce
            waiting for a dead worker) fails instead of hanging. ``None``: no
            limit.
    """

    def __init__(self, strategy: tf.distribute.Strategy | None = None, *,
                 collective_timeout: float | None = 300.0):
        super().__init__()
        if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
            raise TypeError(f"`strategy` must be a tf.distribute.Strategy. Received: {strategy!r}")
        self._given = strategy
        self.collective_timeout = collective_timeout
        self._strategy = None
        if strategy is None and has_tf_config():
            self._strategy = self._multi_worker()

    def _multi_worker(self) -> tf.distribute.Strategy:
        cluster_from_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=self.collective_timeout)
        try:
            return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except RuntimeError as e:
            if "program startup" not in str(e):
                raise
            raise RuntimeError(
                "DistributedTrainer() must be created at the start of the program, before "
                "TensorFlow runs anything (datasets, models): its MultiWorkerMirroredStrategy "
                "configures this worker's collective ops, which TensorFlow allows only at "
                "startup. Create it first: `trainer = DistributedTrainer()`, then build the "
                "data and the TrainConfig.") from e

    def _make_strategy(self, model):
        if self._given is not None:
            return self._given
        own = model_strategy(model)
        if own is not None:
            return own
        if self._strategy is None:
            self._strategy = self._multi_worker()  # raises with the how-to without TF_CONFIG
        return self._strategy


def launch_train_with_config(config: TrainConfig, trainer: Trainer) -> keras.callbacks.History:
    """Train ``config`` with ``trainer``; returns the ``keras.callbacks.History``.

    Example:

    ```python
    config = TrainConfig(model=Model(), data=train_ds, max_epoch=5, callbacks=[
        InferenceRunner(val_ds, [ScalarStats("cost"), ClassificationError("wrong-top1")])])
    history = launch_train_with_config(config, SimpleTrainer())
    history.history["validation_cost"]
    ```
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig. Received: {config!r}")
    if not isinstance(trainer, Trainer):
        raise TypeError("`trainer` must be SimpleTrainer(), SyncMultiGPUTrainer(gpus) or "
                        f"DistributedTrainer(). Received: {trainer!r}")
    return trainer.train_with_config(config)
