"""The loop of the tensorpack-style trainer host (``Trainer``); the three
trainers and ``launch_train_with_config`` are in ``trainers.py``.

One loop drives everything (:meth:`Trainer.train_with_config`)::

    callbacks.on_train_begin()
    for epoch in range(starting_epoch - 1, max_epoch):
        callbacks.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):          # or one pass over `data`
            callbacks.on_train_batch_begin(step)
            logs = train_step(next(iterator))        # a tf.function under the strategy
            callbacks.on_train_batch_end(step, logs)
        callbacks.on_epoch_end(epoch, epoch_logs)    # validation producers first
    callbacks.on_train_end(epoch_logs)

Who owns what:

| piece | owner |
| --- | --- |
| ``TrainConfig`` (what, on what, how long) | ``config.py`` |
| one training step per model kind | ``train_step.py`` |
| ``ModelDesc`` and its Keras face ``DescModel`` | ``towers/model_desc.py`` |
| the loop, the ``CallbackList`` and its order, the strategy | this module |
| restoring ``session_init`` | ``checkpoints/layout.py`` |

The trainer builds its own ``keras.callbacks.CallbackList`` from the given
callbacks, ordered explicitly: validation producers (callbacks with a
``pop_reports`` method, or wrappers whose ``.callback`` / ``.runner`` has
one) first, in their given order, then the others, so that every callback's
``on_epoch_end`` sees the validation results. It never changes the callbacks
themselves: a runner binds to the model of each run on its own (for a
``ModelDesc``, through :meth:`DescModel.inference_tower`). The trainers
differ only in their ``tf.distribute`` strategy: :class:`SimpleTrainer`,
:class:`SyncMultiGPUTrainer` (``MirroredStrategy``) and
:class:`DistributedTrainer` (``MultiWorkerMirroredStrategy``, which Keras 3's
``fit`` does not support: keras-team/keras#20585).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from infer_callbacks.checkpoints import layout as checkpoint

from infer_callbacks.checkpoints import tf_restore
from infer_callbacks.distribute.devices import spans_workers
from infer_callbacks.fit.keras_glue import ordered_callbacks
from infer_callbacks.data.source import InputSource
from infer_callbacks.towers.model_desc import DescModel, ModelDesc
from infer_callbacks.predict.predictor import get_predictor
from infer_callbacks.trainer.config import TrainConfig
from infer_callbacks.trainer.train_step import desc_step, keras_step

__all__ = ["Trainer"]


def _input_dataset(data: Any) -> tf.data.Dataset:
    if isinstance(data, tf.data.Dataset):
        return data
    return InputSource(data, prefetch=None).dataset


class Trainer:
    """The one training loop; subclasses only choose the strategy.

    Use it through :func:`launch_train_with_config`. After (or during)
    training, :attr:`model` is the Keras model that the callbacks see (for a
    :class:`ModelDesc`, its :class:`~infer_callbacks.towers.model_desc.DescModel`)
    and :attr:`strategy` the ``tf.distribute`` strategy.
    """

    def __init__(self):
        self.strategy: tf.distribute.Strategy | None = None
        self.model: keras.Model | None = None
        self.config: TrainConfig | None = None

    @property
    def desc(self) -> ModelDesc | None:
        """The :class:`ModelDesc` being trained, or ``None`` for a Keras model."""
        return self.model.desc if isinstance(self.model, DescModel) else None

    def _make_strategy(self, model: Any) -> tf.distribute.Strategy:
        raise NotImplementedError

    def _build(self, config: TrainConfig, dataset: tf.data.Dataset):
        model = config.model
        with self.strategy.scope():
            if not isinstance(model, (ModelDesc, keras.Model)):
                model = model()
                if not isinstance(model, (ModelDesc, keras.Model)):
                    raise TypeError("The `model` function must return a ModelDesc or a compiled "
                                    f"keras.Model. It returned {model!r}.")
            first = next(iter(dataset.take(1)), None)
            if first is None:
                raise ValueError("The training data yielded no batch. Pass a non-empty dataset.")
            if isinstance(model, ModelDesc):
                return desc_step(self.strategy, model, dataset.element_spec, first)
            return keras_step(self.strategy, model, first)

    def _restore(self, config: TrainConfig) -> int | None:
        if config.session_init is None:
            return None
        info = tf_restore.restore(self.model, config.session_init, optimizer=self.model.optimizer)
        return info.epoch

    def train_with_config(self, config: TrainConfig) -> keras.callbacks.History:
        """Build the model under the strategy and run the loop; returns the
        ``History`` (as ``fit`` does)."""
        self.config = config
        self.strategy = self._make_strategy(config.model)
        dataset = _input_dataset(config.data)
        card = int(dataset.cardinality())
        if config.steps_per_epoch is None and card == tf.data.INFINITE_CARDINALITY:
            raise ValueError("The training data is infinite (e.g. after .repeat()): pass "
                             "TrainConfig(steps_per_epoch=...) to say how long an epoch is.")
        model, step_fn, reset, epoch_logs_fn = self._build(config, dataset)
        self.model = model
        restored = self._restore(config)
        starting_epoch = config.starting_epoch
        if starting_epoch is None:
            starting_epoch = 1 if restored is None else restored + 1
        if config.steps_per_epoch is not None:
            dataset = dataset.repeat()
            steps = config.steps_per_epoch
        else:
            steps = card if card >= 0 else None
        return self._loop(config, model, dataset, steps, starting_epoch, step_fn, reset, epoch_logs_fn)

    def _loop(self, config, model, dataset, steps, starting_epoch, step_fn, reset, epoch_logs_fn):
        strategy = self.strategy
        dist = strategy.experimental_distribute_dataset(dataset)

        @tf.function
        def train_on_iterator(iterator):
            return step_fn(next(iterator))

        @tf.function(reduce_retracing=True)
        def train_on_batch(batch):
            return step_fn(batch)

        callbacks = keras.callbacks.CallbackList(
            ordered_callbacks(config.callbacks), add_history=True, add_progbar=config.verbose != 0,
            verbose=config.verbose, epochs=config.max_epoch, steps=steps, model=model)
        model.stop_training = False
        callbacks.on_train_begin()
        training_logs = None
        logs: dict = {}
        repeated = config.steps_per_epoch is not None
        iterator = iter(dist) if repeated else None
        for epoch in range(starting_epoch - 1, config.max_epoch):
            reset()
            callbacks.on_epoch_begin(epoch)
            if not repeated:
                iterator = iter(dist)
            step = 0
            while steps is None or step < steps:
                try:
                    if steps is None:
                        optional = iterator.get_next_as_optional()
                        if not bool(optional.has_value()):
                            break
                        callbacks.on_train_batch_begin(step)
                        logs = train_on_batch(optional.get_value())
                    else:
                        callbacks.on_train_batch_begin(step)
                        logs = train_on_iterator(iterator)
                except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
                    if spans_workers(strategy):
                        e.add_note(f"(training step {step} of epoch {epoch + 1}: another worker is "
                                   "unreachable or too slow; check its log. Every worker must run "
                                   "the same program.)")
                    raise
                callbacks.on_train_batch_end(step, logs)
                step += 1
                if model.stop_training:
                    break
            training_logs = epoch_logs_fn(logs)
            callbacks.on_epoch_end(epoch, training_logs)
            if model.stop_training:
                break
        optimizer = getattr(model, "optimizer", None)
        if isinstance(optimizer, keras.optimizers.Optimizer):
            optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs=training_logs)
        return model.history

    def get_predictor(self, input_names: Sequence[str] | None = None,
                      output_names: Sequence[str] | None = None, device: int | str | None = None,
                      **kwargs: Any) -> Callable:
        """A predictor on the current weights, in inference mode (tensorpack's
        ``trainer.get_predictor``, for use inside a callback during training);
        ``device`` is an int GPU id (a missing one falls back to TensorFlow's
        placement with a warning) or a device string; see
        :func:`infer_callbacks.predict.predictor.get_predictor`.

        Example: ``(logits,) = trainer.get_predictor(["x"], ["logits"], device=0)(x_batch)``.
        """
        if self.model is None:
            raise ValueError("The trainer has no model yet: call get_predictor() during or after "
                             "launch_train_with_config(config, trainer).")
        return get_predictor(self.desc if self.desc is not None else self.model, input_names,
                             output_names, device=device, **kwargs)
