"""The tensorpack-style trainer host: ``ModelDesc``, ``TrainConfig``,
``launch_train_with_config`` and the three trainers.

One loop drives everything (:meth:`Trainer.train_with_config`)::

    callbacks.on_train_begin()
    for epoch in range(starting_epoch - 1, max_epoch):
        callbacks.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):          # or one pass over `data`
            callbacks.on_train_batch_begin(step)
            logs = train_step(next(iterator))        # a tf.function under the strategy
            callbacks.on_train_batch_end(step, logs)
        callbacks.on_epoch_end(epoch, epoch_logs)    # InferenceRunner adds its results here
    callbacks.on_train_end(epoch_logs)

The callbacks are Keras callbacks driven through ``keras.callbacks.CallbackList``
in the same order and with the same ``logs`` as ``Model.fit``, so
``InferenceRunner``, ``Monitors``, ``EarlyStopping``, ``ModelCheckpoint`` and
``CSVLogger`` work unchanged. The trainers differ only in their
``tf.distribute`` strategy: :class:`SimpleTrainer` (the default strategy, one
device), :class:`SyncMultiGPUTrainer` (``MirroredStrategy``) and
:class:`DistributedTrainer` (``MultiWorkerMirroredStrategy``), which exists
because Keras 3's ``fit`` does not run under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from ._util import check_named_specs, find_keras_layers
from .tower import TowerContext

__all__ = [
    "ModelDesc",
    "TrainConfig",
    "Trainer",
    "SimpleTrainer",
    "SyncMultiGPUTrainer",
    "DistributedTrainer",
    "launch_train_with_config",
]


class ModelDesc:
    """A model described the tensorpack way.

    Override ``inputs()`` (a list of named ``tf.TensorSpec``, batch dimension
    ``None``), ``build_graph(*inputs)`` (called under a
    :class:`~infer_callbacks.TowerContext`; returns the scalar cost to
    minimize, and may name tensors with ``tf.identity(t, name=...)``), and
    ``optimizer()``. Keep layers as attributes created in ``__init__`` (e.g. a
    ``keras.Sequential``), so that every tower shares the same variables;
    let them build on their first call (no ``keras.Input``), so that the
    trainer creates their variables under its strategy.

    Example:

    ```python
    class Model(ModelDesc):
        def __init__(self):
            self.net = keras.Sequential([keras.layers.Dense(10)])
        def inputs(self):
            return [tf.TensorSpec((None, 64), tf.float32, "x"),
                    tf.TensorSpec((None,), tf.int32, "label")]
        def build_graph(self, x, label):
            logits = self.net(x, training=get_current_tower_context().is_training)
            return tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(label, logits), name="cost")
        def optimizer(self):
            return keras.optimizers.SGD(0.1)
    ```
    """

    def inputs(self) -> list[tf.TensorSpec]:
        raise NotImplementedError(f"{type(self).__name__} must override inputs().")

    def build_graph(self, *inputs: tf.Tensor) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must override build_graph(*inputs).")

    def optimizer(self):
        raise NotImplementedError(f"{type(self).__name__} must override optimizer().")

    def get_input_signature(self) -> list[tf.TensorSpec]:
        """``inputs()``, checked: named ``tf.TensorSpec`` with unique names."""
        return check_named_specs(list(self.inputs()), f"{type(self).__name__}.inputs()")

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.get_input_signature()]


# --------------------------------------------------------------------------
# A ModelDesc as a Keras model, so that Keras callbacks see `self.model`.


class _DescModel(keras.Model):
    """The Keras face of a :class:`ModelDesc`: it holds the ModelDesc's layers
    (so ``weights``, ``get_weights``, ``save_weights`` and checkpoints cover
    them), its optimizer and ``stop_training``. Calling it runs
    ``build_graph`` and returns the cost."""

    def __init__(self, desc: ModelDesc):
        super().__init__(name=type(desc).__name__)
        self.desc_layers = find_keras_layers(list(vars(desc).values()))
        # Keras wraps `desc_layers` in a list type that TF checkpoints do not
        # follow, so checkpoints would only reach the trainable variables
        # (through the optimizer) and lose e.g. BatchNorm moving statistics.
        # A plain trackable holding the ModelDesc's trackable attributes puts
        # every variable under `model/desc_variables/<attribute>/...`.
        holder = tf.__internal__.tracking.AutoTrackable()
        for name, value in vars(desc).items():
            if any(isinstance(v, tf.__internal__.tracking.Trackable) for v in tf.nest.flatten(value)):
                setattr(holder, name, value)
        self.desc_variables = holder
        object.__setattr__(self, "_desc", desc)

    def call(self, *inputs, training=False):
        return self.cost(list(inputs), training=training)

    def cost(self, inputs, training: bool):
        """``build_graph(*inputs)`` under a TowerContext (without Keras's
        ``__call__`` machinery)."""
        with TowerContext("train" if training else "infer", is_training=bool(training)):
            return self._desc.build_graph(*inputs)


# --------------------------------------------------------------------------
# Configuration.


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


# --------------------------------------------------------------------------
# TF_CONFIG.


def _cluster_from_tf_config() -> tuple[dict, str, int]:
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


def _is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._num_workers > 1


def _is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes files (stats, events, checkpoints)."""
    if strategy is None:
        return True
    return bool(getattr(strategy.extended, "should_checkpoint", True))


# --------------------------------------------------------------------------
# The loop.


def _input_dataset(data: Any) -> tf.data.Dataset:
    if isinstance(data, tf.data.Dataset):
        return data
    from .input import InputSource

    return InputSource(data, prefetch=None).dataset


def _runners(callbacks: Sequence[keras.callbacks.Callback]) -> list:
    from .runner import InferenceRunner

    found = []
    for cb in callbacks:
        inner = getattr(cb, "runner", None)
        for c in (cb, inner):
            if isinstance(c, InferenceRunner):
                found.append(c)
    return found


class Trainer:
    """The one training loop; subclasses only choose the strategy.

    Use it through :func:`launch_train_with_config`. After (or during)
    training, :attr:`model` is the Keras model that the callbacks see (for a
    :class:`ModelDesc`, a ``keras.Model`` holding its layers and optimizer)
    and :attr:`strategy` the ``tf.distribute`` strategy.
    """

    def __init__(self):
        self.strategy: tf.distribute.Strategy | None = None
        self.model: keras.Model | None = None
        self.desc: ModelDesc | None = None
        self.config: TrainConfig | None = None

    # -- strategy -----------------------------------------------------------

    def _make_strategy(self, model: Any) -> tf.distribute.Strategy:
        raise NotImplementedError

    @staticmethod
    def _model_strategy(model: Any):
        if isinstance(model, keras.Model):
            return getattr(model, "_distribute_strategy", None)
        return None

    # -- building -----------------------------------------------------------

    def _build(self, config: TrainConfig, dataset: tf.data.Dataset):
        """Create the model under the strategy. Returns ``(model, step,
        reset, epoch_logs)``: the Keras model the callbacks see, the step
        (batch -> logs, traced inside the loop's tf.function), the metric
        reset run at each epoch's start, and ``last logs -> epoch logs``."""
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
                self.desc = model
                return self._build_desc(model, dataset.element_spec, first)
            return self._build_keras(model, first)

    def _check_scope(self, variables) -> None:
        if type(self.strategy).__name__ == "_DefaultDistributionStrategy":
            return
        outside = [v.path if hasattr(v, "path") else v.name for v in variables
                   if not self.strategy.extended.variable_created_in_scope(getattr(v, "value", v))]
        if outside:
            raise ValueError(
                f"Variables {outside[:5]} were created outside the scope of the trainer's "
                f"{type(self.strategy).__name__}. Let layers build on their first call (no "
                "keras.Input in ModelDesc.__init__), or pass TrainConfig(model=<a zero-argument "
                "function>) so that the trainer creates the model under its strategy.")

    def _build_keras(self, model: keras.Model, first):
        if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
            raise ValueError(
                f"The Keras model {model.name!r} is not compiled with an optimizer. Call "
                "model.compile(optimizer=..., loss=...) before TrainConfig(model=model).")
        own = self._model_strategy(model)
        if own is not None and own is not self.strategy:
            raise ValueError(
                f"The Keras model {model.name!r} was built under {type(own).__name__}, not under "
                f"the trainer's {type(self.strategy).__name__}. Pass TrainConfig(model=<a "
                "zero-argument function building and compiling it>) so that the trainer builds "
                "it under its strategy.")
        if hasattr(model, "_symbolic_build"):
            model._symbolic_build(data_batch=first)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self._check_scope(model.weights)
        strategy = self.strategy

        def replica_step(batch):
            return model.train_step(batch)

        def step(batch):
            out = strategy.run(replica_step, args=(batch,))
            return _reduce_mean(strategy, out)

        def reset():
            model.reset_metrics()

        def epoch_logs(logs):
            if hasattr(model, "_get_metrics_result_or_logs"):
                return dict(model._get_metrics_result_or_logs(logs))
            return dict(logs)

        return model, step, reset, epoch_logs

    def _build_desc(self, desc: ModelDesc, element_spec, first):
        specs = desc.get_input_signature()
        names = [s.name for s in specs]
        _check_element_spec(desc, specs, element_spec)
        model = _DescModel(desc)
        inputs = _desc_inputs(names, first)
        with tf.GradientTape() as tape:
            cost = model.cost(inputs, training=False)
        _check_cost(desc, cost)
        accessed = tape.watched_variables()
        known = {_var_name(v) for v in model.trainable_variables}
        stray = [v.name for v in accessed if _var_name(v) not in known]
        if stray:
            raise ValueError(
                f"{type(desc).__name__}.build_graph uses trainable variables {stray[:5]} that "
                "are not in Keras layers held as attributes of the ModelDesc. Create them as "
                "(parts of) Keras layers assigned in __init__.")
        if not model.trainable_variables:
            raise ValueError(f"{type(desc).__name__} has no trainable variables: keep its Keras "
                             "layers as attributes (e.g. self.net = keras.Sequential([...])).")
        model.built = True
        try:
            optimizer = desc.optimizer()
        except NotImplementedError:
            raise ValueError(f"{type(desc).__name__} has no optimizer: override optimizer() to "
                             "return a Keras optimizer, e.g. keras.optimizers.SGD(0.1).") from None
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise ValueError(f"{type(desc).__name__}.optimizer() must return a keras.optimizers."
                             f"Optimizer. It returned {optimizer!r}.")
        model.optimizer = optimizer
        optimizer.build(model.trainable_variables)
        self._check_scope(list(model.weights) + list(optimizer.variables))
        strategy = self.strategy
        variables = model.trainable_variables
        total = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")
        count = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_count")

        def replica_step(batch):
            inputs = _desc_inputs(names, batch)
            n = tf.cast(tf.shape(inputs[0])[0], tf.float32)
            ctx = tf.distribute.get_replica_context()
            global_n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n)

            def compute():
                with tf.GradientTape() as tape:
                    c = model.cost(inputs, training=True)
                    scaled = c * (n / global_n)
                grads = tape.gradient(scaled, variables)
                grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                         for g, v in zip(grads, variables)]
                return tf.cast(c, tf.float32), grads

            def skip():  # an empty replica slice of a partial batch
                return tf.constant(0.0), [tf.zeros_like(v) for v in variables]

            try:
                c, grads = tf.cond(n > 0, compute, skip)
            except RuntimeError as e:
                if "merge_call" not in str(e):
                    raise
                raise ValueError(
                    f"{type(desc).__name__}.build_graph synchronizes across replicas (e.g. "
                    "BatchNormalization(synchronized=True) or a cross-replica all-reduce), which "
                    "this trainer does not support on several devices: it skips the forward "
                    "pass of an empty replica slice inside a tf.cond. Use unsynchronized layers, "
                    "or SimpleTrainer.") from e
            optimizer.apply_gradients(zip(grads, variables))
            return c * n, n

        def step(batch):
            weighted, n = strategy.run(replica_step, args=(batch,))
            weighted = strategy.reduce(tf.distribute.ReduceOp.SUM, weighted, axis=None)
            n = strategy.reduce(tf.distribute.ReduceOp.SUM, n, axis=None)
            total.assign_add(tf.cast(weighted, tf.float64))
            count.assign_add(tf.cast(n, tf.float64))
            return {"loss": tf.cast(total / tf.maximum(count, 1.0), tf.float32)}

        def reset():
            total.assign(0.0)
            count.assign(0.0)

        def epoch_logs(logs):
            return {"loss": float(total.numpy() / max(count.numpy(), 1.0))}

        return model, step, reset, epoch_logs

    def _attach_towers(self, callbacks) -> None:
        """InferenceRunners without a tower_func run ``build_graph`` (under
        ``TowerContext(is_training=False)``) with the ModelDesc's input names."""
        if self.desc is None:
            return
        desc = self.desc

        def tower(*inputs):
            return desc.build_graph(*inputs)

        for runner in _runners(callbacks):
            if runner.tower_func is None:
                runner.tower_func = tower
                if runner.input_names is None:
                    runner.input_names = desc.input_names

    def _restore(self, config: TrainConfig) -> int | None:
        if config.session_init is None:
            return None
        from .savers import restore_checkpoint

        return restore_checkpoint(self.model, config.session_init)

    # -- the loop -----------------------------------------------------------

    def train_with_config(self, config: TrainConfig) -> keras.callbacks.History:
        """Build the model under the strategy and run the loop; returns the
        ``History`` (as ``fit`` does)."""
        self.config = config
        self.desc = None
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
        self._attach_towers(config.callbacks)
        if not _is_chief(self.strategy):
            _quiet_non_chief(config.callbacks)

        strategy = self.strategy
        if config.steps_per_epoch is not None:
            dataset = dataset.repeat()
            steps = config.steps_per_epoch
        else:
            steps = card if card >= 0 else None
        dist = strategy.experimental_distribute_dataset(dataset)

        @tf.function
        def train_on_iterator(iterator):
            return step_fn(next(iterator))

        @tf.function(reduce_retracing=True)
        def train_on_batch(batch):
            return step_fn(batch)

        verbose = config.verbose
        callbacks = keras.callbacks.CallbackList(
            config.callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose,
            epochs=config.max_epoch, steps=steps, model=model)
        model.stop_training = False
        callbacks.on_train_begin()
        training_logs = None
        logs: dict = {}
        iterator = iter(dist) if config.steps_per_epoch is not None else None
        for epoch in range(starting_epoch - 1, config.max_epoch):
            reset()
            callbacks.on_epoch_begin(epoch)
            if config.steps_per_epoch is None:
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
                    if _is_multi_worker(strategy):
                        e.add_note(f"(training step {step} of epoch {epoch + 1}: another worker is "
                                   "unreachable or too slow; check its log. Every worker must run "
                                   "the same program.)")
                    raise
                callbacks.on_train_batch_end(step, logs)
                step += 1
                if model.stop_training:
                    break
            epoch_logs = epoch_logs_fn(logs)
            callbacks.on_epoch_end(epoch, epoch_logs)
            training_logs = epoch_logs
            if model.stop_training:
                break
        optimizer = getattr(model, "optimizer", None)
        if isinstance(optimizer, keras.optimizers.Optimizer) and config.max_epoch > 0:
            optimizer.finalize_variable_values(model.trainable_weights)
        callbacks.on_train_end(logs=training_logs)
        return model.history

    # -- predictors -----------------------------------------------------------

    def get_predictor(self, input_names: Sequence[str] | None = None,
                      output_names: Sequence[str] | None = None, **kwargs: Any) -> Callable:
        """A callable on numpy arrays (one per input name, batch first)
        returning the named outputs, in inference mode (``is_training=False``)
        with the current weights: for use inside a callback during training
        (tensorpack's GAN/DQN examples). Names are the ModelDesc's
        ``inputs()`` names and tensors named in ``build_graph`` (or a Keras
        model's tower names). See :func:`infer_callbacks.predict.get_predictor`.

        Example: ``(logits,) = trainer.get_predictor(["x"], ["logits"])(x_batch)``.
        """
        if self.model is None:
            raise ValueError("The trainer has no model yet: call get_predictor() during or after "
                             "launch_train_with_config(config, trainer).")
        from .predict import get_predictor

        return get_predictor(self.desc if self.desc is not None else self.model, input_names,
                             output_names, **kwargs)


def _reduce_mean(strategy, values):
    def reduce(v):
        if isinstance(v, tf.distribute.DistributedValues):
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
        return v

    return tf.nest.map_structure(reduce, values)


def _quiet_non_chief(callbacks) -> None:
    """Only the chief writes files: on other workers, Monitors keep their
    stdout printers and drop their file writers."""
    from .monitors import Monitors, ScalarPrinter

    for cb in callbacks:
        if isinstance(cb, Monitors):
            cb.writers = [w for w in cb.writers if isinstance(w, ScalarPrinter)]


def _var_name(v) -> str:
    name = getattr(v, "path", None) or getattr(getattr(v, "value", None), "name", None) or v.name
    return name.split(":")[0]


def _desc_inputs(names: Sequence[str], batch) -> list:
    if isinstance(batch, dict):
        return [batch[n] for n in names]
    if isinstance(batch, (tuple, list)):
        return list(batch)
    return [batch]


def _check_element_spec(desc: ModelDesc, specs, element_spec) -> None:
    names = [s.name for s in specs]
    if isinstance(element_spec, dict):
        missing = [n for n in names if n not in element_spec]
        if missing:
            raise ValueError(f"The training batches (dicts with keys {sorted(element_spec)}) lack "
                             f"the inputs {missing} of {type(desc).__name__}.inputs() {names}.")
        given = [element_spec[n] for n in names]
    else:
        given = list(element_spec) if isinstance(element_spec, tuple) else [element_spec]
        if len(given) != len(specs):
            raise ValueError(
                f"The training batches have {len(given)} elements but {type(desc).__name__}.inputs() "
                f"declares {len(specs)}: {names}. Each batch must be a tuple with one element per "
                f"input, in that order (or a dict by name). Received element_spec: {element_spec}")
    for want, have in zip(specs, given):
        if not isinstance(have, tf.TensorSpec):
            raise ValueError(f"Input {want.name!r}: the batch element is {have!r}, not a tensor.")
        if have.dtype != want.dtype or not want.shape.is_compatible_with(have.shape):
            raise ValueError(
                f"Input {want.name!r} of {type(desc).__name__}.inputs() is {want.dtype.name} "
                f"{want.shape}, but the training batches give {have.dtype.name} {have.shape}.")


def _check_cost(desc: ModelDesc, cost) -> None:
    if not isinstance(cost, (tf.Tensor, tf.Variable)) and not hasattr(cost, "shape"):
        raise ValueError(f"{type(desc).__name__}.build_graph must return the cost, a scalar tensor. "
                         f"It returned {cost!r}.")
    shape = tf.TensorShape(cost.shape)
    if shape.rank != 0:
        raise ValueError(f"{type(desc).__name__}.build_graph must return a scalar cost; it returned "
                         f"a tensor of shape {shape}. Reduce it, e.g. tf.reduce_mean(per_example, "
                         "name='cost').")
    if not tf.as_dtype(cost.dtype).is_floating:
        raise ValueError(f"{type(desc).__name__}.build_graph returned a {tf.as_dtype(cost.dtype).name} "
                         "cost; it must be floating point.")


# --------------------------------------------------------------------------
# The three trainers.


class SimpleTrainer(Trainer):
    """Train on one device (TensorFlow's default placement).

    Example: ``launch_train_with_config(config, SimpleTrainer())``.
    """

    def _make_strategy(self, model):
        own = self._model_strategy(model)
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
        from .runner import _gpu_devices

        self.devices = _gpu_devices(gpus)
        self._strategy = None

    def _make_strategy(self, model):
        own = self._model_strategy(model)
        if own is not None:
            from .tower import _canonical_device

            theirs = []
            for name in getattr(own.extended, "worker_devices", []):
                try:
                    theirs.append(_canonical_device(name))
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
        if strategy is None and os.environ.get("TF_CONFIG"):
            self._strategy = self._multi_worker()

    def _multi_worker(self) -> tf.distribute.Strategy:
        _cluster_from_tf_config()
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
        own = self._model_strategy(model)
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
