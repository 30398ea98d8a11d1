"""The training step of each model kind, built under the trainer's strategy.

Each builder returns ``(model, step, reset, epoch_logs)``: the Keras model
the callbacks see, ``step(batch) -> logs`` (traced by the trainer's loop
inside a ``tf.function``), the metric reset run at each epoch's start, and
``last logs -> epoch logs``. ``loop.py`` owns the loop; this module owns
what one step computes.
"""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from infer_callbacks.distribute.devices import model_strategy
from infer_callbacks.towers.model_desc import DescModel, ModelDesc

__all__ = ["keras_step", "desc_step", "check_scope", "desc_inputs"]


def check_scope(strategy, variables) -> None:
    """Refuse variables created outside ``strategy``'s scope."""
    if type(strategy).__name__ == "_DefaultDistributionStrategy":
        return
    outside = [v.path if hasattr(v, "path") else v.name for v in variables
               if not strategy.extended.variable_created_in_scope(getattr(v, "value", v))]
    if outside:
        raise ValueError(
            f"Variables {outside[:5]} were created outside the scope of the trainer's "
            f"{type(strategy).__name__}. Let layers build on their first call (no "
            "keras.Input in ModelDesc.__init__), or pass TrainConfig(model=<a zero-argument "
            "function>) so that the trainer creates the model under its strategy.")


def keras_step(strategy, model: keras.Model, first):
    """``(model, step, reset, epoch_logs)`` for a compiled Keras model."""
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError(
            f"The Keras model {model.name!r} is not compiled with an optimizer. Call "
            "model.compile(optimizer=..., loss=...) before TrainConfig(model=model).")
    own = model_strategy(model)
    if own is not None and own is not strategy:
        raise ValueError(
            f"The Keras model {model.name!r} was built under {type(own).__name__}, not under "
            f"the trainer's {type(strategy).__name__}. Pass TrainConfig(model=<a "
            "zero-argument function building and compiling it>) so that the trainer builds "
            "it under its strategy.")
    if hasattr(model, "_symbolic_build"):
        model._symbolic_build(data_batch=first)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    check_scope(strategy, model.weights)

    def replica_step(batch):
        return model.train_step(batch)

    def step(batch):
        out = strategy.run(replica_step, args=(batch,))
        return _reduce_mean(strategy, out)

    def reset():
        model.reset_metrics()

    def epoch_logs(logs):
        # The model's metrics as the epoch's logs when they are what the step
        # returned (the last step's values may lag under asynchronous steps),
        # as fit does; else the step's own logs.
        results = model.get_metrics_result()
        if results and set(logs) == set(results):
            return dict(results)
        return dict(logs)

    return model, step, reset, epoch_logs


def desc_step(strategy, desc: ModelDesc, element_spec, first):
    """``(model, step, reset, epoch_logs)`` for a ModelDesc: its DescModel and optimizer."""
    specs = desc.get_input_signature()
    names = [s.name for s in specs]
    _check_element_spec(desc, specs, element_spec)
    model = DescModel(desc)
    inputs = desc_inputs(names, first)
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
    check_scope(strategy, list(model.weights) + list(optimizer.variables))
    variables = model.trainable_variables
    total = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")
    count = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_count")

    def replica_step(batch):
        inputs = desc_inputs(names, batch)
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


def _reduce_mean(strategy, values):
    def reduce(v):
        if isinstance(v, tf.distribute.DistributedValues):
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
        return v

    return tf.nest.map_structure(reduce, values)


def _var_name(v) -> str:
    name = getattr(v, "path", None) or getattr(getattr(v, "value", None), "name", None) or v.name
    return name.split(":")[0]


def desc_inputs(names: Sequence[str], batch) -> list:
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
