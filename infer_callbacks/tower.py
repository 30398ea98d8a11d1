"""Towers: the inference function, its output names, and its devices.

A *tower* is one copy of the model's forward pass. Here it is a Python
function ``tower_func(*batch) -> dict[str, Tensor]`` run with
``training=False`` under a :class:`TowerContext`, traced into a
``tf.function`` and replicated on devices by a ``tf.distribute`` strategy
(one replica per device).
"""

from __future__ import annotations

import inspect
import re
import threading
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

__all__ = [
    "TowerContext",
    "get_current_tower_context",
    "TowerSpec",
    "keras_tower_func",
    "resolve_strategy",
    "UnknownFetchError",
]

_local = threading.local()


class TowerContext:
    """Tells code inside a tower whether it runs for training or inference.

    Example:

    >>> with TowerContext("infer", is_training=False):
    ...     get_current_tower_context().is_training
    False
    """

    def __init__(self, name: str = "", is_training: bool = False):
        self.name = name
        self.is_training = bool(is_training)

    def __enter__(self) -> "TowerContext":
        stack = getattr(_local, "stack", None)
        if stack is None:
            stack = _local.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _local.stack.pop()

    def __repr__(self) -> str:
        return f"TowerContext(name={self.name!r}, is_training={self.is_training})"


def get_current_tower_context() -> TowerContext | None:
    """The innermost active :class:`TowerContext`, or ``None`` outside any."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


# --------------------------------------------------------------------------
# The default tower of a compiled Keras model.


def _unpack_keras_batch(batch: tuple) -> tuple[Any, Any, Any]:
    if len(batch) == 1:
        return batch[0], None, None
    if len(batch) == 2:
        return batch[0], batch[1], None
    if len(batch) == 3:
        return batch
    raise ValueError(
        "A Keras validation batch must be `x`, `(x, y)` or "
        f"`(x, y, sample_weight)`. Received a tuple of {len(batch)} elements; "
        "pass `tower_func` to handle other layouts."
    )


def _per_example(values: tf.Tensor) -> tf.Tensor:
    """Reduce every axis but the first by its mean."""
    values = tf.convert_to_tensor(values)
    if values.shape.rank is not None and values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


def _loss_function(loss: Any) -> Callable[[Any, Any], tf.Tensor]:
    """An unreduced (per-example) version of one compiled loss."""
    if isinstance(loss, keras.losses.Loss):
        def unreduced(y_true, y_pred, _loss=loss):
            y_pred = tf.cast(y_pred, _loss.dtype or "float32")
            y_true = tf.convert_to_tensor(y_true)
            return _loss.call(y_true, y_pred)

        return unreduced
    fn = keras.losses.get(loss)
    if isinstance(fn, keras.losses.Loss):
        return _loss_function(fn)
    return fn


def _compiled_losses(model: keras.Model) -> list[tuple[int | str | None, Callable, float]]:
    """(output key, unreduced loss, weight) for each compiled loss."""
    loss = getattr(model, "loss", None)
    if loss is None:
        return []
    weights = getattr(getattr(model, "_compile_loss", None), "_user_loss_weights", None)
    if isinstance(loss, dict):
        weights = weights or {}
        return [(k, _loss_function(v), float(weights.get(k, 1.0)) if isinstance(weights, dict) else 1.0)
                for k, v in loss.items() if v is not None]
    if isinstance(loss, (list, tuple)):
        weights = weights or [1.0] * len(loss)
        return [(i, _loss_function(v), float(weights[i])) for i, v in enumerate(loss) if v is not None]
    return [(None, _loss_function(loss), 1.0)]


def _pick(structure: Any, key: int | str | None, names: Sequence[str]) -> Any:
    if key is None:
        return structure
    if isinstance(structure, dict):
        return structure[key if isinstance(key, str) else names[key]]
    if isinstance(structure, (list, tuple)):
        return structure[key if isinstance(key, int) else list(names).index(key)]
    return structure


def _wrong_topk(y_pred: tf.Tensor, y_true: tf.Tensor, k: int) -> tf.Tensor:
    """1.0 where the true class is not among the k largest scores."""
    num_classes = y_pred.shape[-1]
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == y_pred.shape.rank and y_true.shape[-1] == num_classes and num_classes > 1:
        labels = tf.argmax(y_true, axis=-1, output_type=tf.int32)  # one-hot
    else:
        labels = tf.cast(tf.reshape(y_true, tf.shape(y_pred)[:-1]), tf.int32)
    scores = tf.reshape(tf.cast(y_pred, tf.float32), [-1, num_classes])
    flat_labels = tf.reshape(labels, [-1])
    if k == 1:
        wrong = tf.not_equal(tf.argmax(scores, axis=-1, output_type=tf.int32), flat_labels)
    else:
        wrong = tf.logical_not(tf.math.in_top_k(flat_labels, scores, k))
    return _per_example(tf.reshape(tf.cast(wrong, tf.float32), tf.shape(labels)))


def _binary_threshold(model: keras.Model) -> float | None:
    """The decision threshold of a binary classifier compiled with binary
    cross-entropy (0 on logits, 0.5 on probabilities), else ``None``."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        return 0.5 if loss in ("binary_crossentropy", "bce") else None
    if isinstance(loss, (keras.losses.BinaryCrossentropy, keras.losses.BinaryFocalCrossentropy)):
        return 0.0 if loss.get_config().get("from_logits") else 0.5
    if getattr(loss, "__name__", None) == "binary_crossentropy":
        return 0.5
    return None


def _check_batched(model: keras.Model, x: Any) -> None:
    """Refuse a validation set of single examples (a dataset without
    ``.batch()``): its ``x`` has one dimension less than the model's input."""
    try:
        expected = [t.shape.rank if hasattr(t.shape, "rank") else len(t.shape) for t in model.inputs]
    except (AttributeError, ValueError, TypeError):
        return
    got = [t.shape.rank for t in tf.nest.flatten(x)]
    if len(expected) == len(got) and all(
            e is not None and g is not None and g == e - 1 for e, g in zip(expected, got)):
        raise ValueError(
            f"The validation input's `x` has shape {[t.shape for t in tf.nest.flatten(x)]}, one "
            f"dimension less than the model's input {[tuple(t.shape) for t in model.inputs]}: it "
            "looks unbatched. Batch it, e.g. `dataset.batch(64)`.")


def keras_tower_func(model: keras.Model) -> Callable[..., dict]:
    """The default tower of a Keras model: batches ``x``, ``(x, y)`` or
    ``(x, y, sample_weight)``.

    It exposes each model output under its output name (and ``output`` for a
    single-output model), ``loss`` (the compiled loss per example, weighted
    sum over outputs, no sample weights or regularizers), and for a
    classifier ``wrong-top1`` (plus ``wrong-top5`` with at least 5 classes).
    A binary classifier (one output unit, compiled with binary cross-entropy)
    gets ``wrong-top1`` and ``pred`` (0/1, thresholded at 0 for logits, 0.5
    for probabilities).
    """

    def tower(*batch):
        x, y, _ = _unpack_keras_batch(batch)
        _check_batched(model, x)
        y_pred = model(x, training=False)
        out: dict[str, tf.Tensor] = {}
        output_names = list(getattr(model, "output_names", None) or [])
        flat_pred = tf.nest.flatten(y_pred)
        if isinstance(y_pred, dict):
            out.update(y_pred)
        else:
            for i, t in enumerate(flat_pred):
                if i < len(output_names):
                    out[output_names[i]] = t
        if len(flat_pred) == 1:
            out["output"] = flat_pred[0]
        if y is None:
            return out
        losses = _compiled_losses(model)
        if losses:
            total = None
            for key, fn, weight in losses:
                term = _per_example(fn(_pick(y, key, output_names), _pick(y_pred, key, output_names)))
                term = tf.cast(term, tf.float32) * weight
                total = term if total is None else total + term
            out["loss"] = total
        if len(flat_pred) == 1 and not isinstance(y, (dict, list, tuple)):
            pred = flat_pred[0]
            classes = pred.shape[-1] if pred.shape.rank else None
            if classes is not None and classes >= 2 and pred.dtype.is_floating:
                out["wrong-top1"] = _wrong_topk(pred, y, 1)
                if classes >= 5:
                    out["wrong-top5"] = _wrong_topk(pred, y, 5)
            elif classes == 1 and pred.dtype.is_floating:
                threshold = _binary_threshold(model)
                if threshold is not None:
                    predicted = tf.cast(pred > threshold, tf.float32)
                    truth = tf.cast(tf.reshape(y, tf.shape(pred)) > 0.5, tf.float32)
                    out["pred"] = tf.cast(tf.reshape(predicted, [-1]), tf.int32)
                    out["wrong-top1"] = _per_example(tf.cast(tf.not_equal(predicted, truth), tf.float32))
        return out

    return tower


# --------------------------------------------------------------------------
# Input names and fetch resolution.

_AUTO_NAME = re.compile(r"^(?:.*/)?(?:Identity|identity)(?:_\d+)?$")
# Default op names of TensorFlow's Python API that differ from the op type.
_AUTO_OP_NAMES = frozenset({
    "strided_slice", "truediv", "floordiv", "mul", "add", "sub", "mod", "pow", "neg", "range",
    "zeros", "ones", "zeros_like", "ones_like", "concat", "stack", "Reshape", "transpose", "Squeeze",
    "ExpandDims", "one_hot", "Max", "Min", "Mean", "Sum", "Prod", "ArgMax", "ArgMin", "Cast",
    "SelectV2", "clip_by_value", "Greater", "Less", "Equal", "NotEqual", "GatherV2", "Tile",
    "in_top_k", "Softmax", "LogSoftmax", "Relu", "Sigmoid", "Tanh", "MatMul", "BiasAdd",
    "split", "unstack", "Pad", "Shape", "Size", "Rank", "Fill", "LogicalNot", "LogicalAnd",
    "LogicalOr", "Square", "Sqrt", "Exp", "Log", "Abs", "AddV2", "RealDiv", "Maximum", "Minimum",
})


def _parameter_names(fn: Callable) -> list[str] | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    names = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            return None
    return names


def _input_names(element_spec: Any, tower_func: Callable | None, keras_default: bool,
                 given: Sequence[str] | None) -> dict[str, tuple]:
    """name -> path into the batch structure, for every nameable input."""
    paths: dict[str, tuple] = {}
    if isinstance(element_spec, dict):
        for k, v in element_spec.items():
            if isinstance(v, tf.TensorSpec):
                paths[str(k)] = (k,)
        return paths
    elements = element_spec if isinstance(element_spec, tuple) else (element_spec,)
    if given is not None:
        names = list(given)
    elif keras_default:
        names = ["input", "label", "sample_weight"][: len(elements)]
    else:
        names = _parameter_names(tower_func) or []
    for i, spec in enumerate(elements):
        path = (i,) if isinstance(element_spec, tuple) else ()
        if isinstance(spec, dict):
            for k, v in spec.items():
                if isinstance(v, tf.TensorSpec):
                    paths.setdefault(str(k), path + (k,))
        elif i < len(names) and isinstance(spec, tf.TensorSpec):
            paths[names[i]] = path
    return paths


def _get_path(batch: Any, path: tuple) -> Any:
    for key in path:
        batch = batch[key]
    return batch


def _find_named_op(ops: Sequence[tf.Operation], name: str) -> tf.Operation | None:
    name = name[:-2] if name.endswith(":0") else name
    for op in ops:
        if op.name == name or op.name.endswith("/" + name):
            return op
    uniquified = re.compile(r"^(?:.*/)?" + re.escape(name) + r"_\d+$")
    for op in ops:
        if uniquified.match(op.name):
            return op
    return None


class UnknownFetchError(ValueError):
    """A fetch name that the tower does not provide."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


class TowerSpec:
    """Builds the replica function that maps a batch to the requested fetches.

    Args:
        tower_func: ``tower_func(*batch)`` (or ``tower_func(**batch)`` for dict
            batches) returning a dict of tensors, a tensor, or ``None``.
        element_spec: the per-replica ``element_spec`` of the input dataset.
        keras_default: whether ``tower_func`` is the default Keras tower.
        input_names: names of the positional batch elements, overriding the
            tower function's parameter names.
    """

    def __init__(self, tower_func: Callable, element_spec: Any, *, keras_default: bool = False,
                 input_names: Sequence[str] | None = None):
        self.tower_func = tower_func
        self.element_spec = element_spec
        self.input_paths = _input_names(element_spec, tower_func, keras_default, input_names)

    def _call(self, batch: Any) -> tuple[dict, list[tf.Operation]]:
        graph = tf.compat.v1.get_default_graph()
        start = len(graph.get_operations()) if not tf.executing_eagerly() else 0
        with TowerContext("infer", is_training=False):
            if isinstance(batch, dict):
                out = self.tower_func(**batch)
            elif isinstance(batch, tuple):
                out = self.tower_func(*batch)
            else:
                out = self.tower_func(batch)
        new_ops = graph.get_operations()[start:] if not tf.executing_eagerly() else []
        if out is None:
            out = {}
        elif not isinstance(out, dict):
            flat = tf.nest.flatten(out)
            out = {"output": flat[0]} if len(flat) == 1 else {f"output_{i}": t for i, t in enumerate(flat)}
        return out, new_ops

    def resolve(self, batch: Any, names: Sequence[str], outputs: dict, new_ops: Sequence) -> dict:
        found = {}
        for name in names:
            if name in outputs:
                found[name] = tf.convert_to_tensor(outputs[name])
            elif name in self.input_paths:
                found[name] = _get_path(batch, self.input_paths[name])
            else:
                op = _find_named_op(new_ops, name)
                if op is None or not op.outputs:
                    raise UnknownFetchError(name, self._unknown_message(name, outputs, new_ops))
                found[name] = op.outputs[0]
        return found

    def _unknown_message(self, name: str, outputs: dict, new_ops: Sequence) -> str:
        return (
            f"Unknown fetch name {name!r}: the tower has no output, input or "
            f"named tensor called that. Available names: {self.available_names(outputs, new_ops)}."
        )

    def available_names(self, outputs: dict, new_ops: Sequence) -> list[str]:
        """Dict keys, input names, and the tower's top-level ops that were
        given a name (``tf.identity(t, name=...)``, ``tf.reduce_mean(...,
        name=...)``): those whose name is neither their op type nor one of
        the names TensorFlow's Python API picks by itself."""
        named = []
        for op in new_ops:
            if "/" in op.name or op.type in ("Placeholder", "Const", "NoOp") or not op.outputs:
                continue
            base = re.sub(r"_\d+$", "", op.name)
            if base == op.type or base in _AUTO_OP_NAMES or _AUTO_NAME.match(op.name):
                continue
            named.append(op.name)
        return sorted(set(outputs) | set(self.input_paths) | set(named))

    def replica_fn(self, names: Sequence[str], ranks: dict | None = None) -> Callable[[Any], dict]:
        """``fn(batch) -> {name: tensor}`` for the requested names, plus the
        batch's sample count under ``"__num_samples__"``. Rank-0 values are
        reshaped to ``[1]`` so that replicas and steps can be concatenated."""
        names = list(dict.fromkeys(names))

        def fn(batch):
            outputs, ops = self._call(batch)
            found = self.resolve(batch, names, outputs, ops)
            result = {}
            for name, value in found.items():
                value = tf.convert_to_tensor(value)
                if value.shape.rank is None:
                    raise ValueError(
                        f"Fetched tensor {name!r} has an unknown rank; give it a static "
                        "rank in the tower (e.g. tf.reshape or tf.ensure_shape).")
                if ranks is not None:
                    ranks[name] = value.shape.rank
                result[name] = tf.reshape(value, [1]) if value.shape.rank == 0 else value
            result["__num_samples__"] = tf.reshape(_num_samples(batch), [1])
            return result

        return fn


def _num_samples(batch: Any) -> tf.Tensor:
    for leaf in tf.nest.flatten(batch):
        if leaf.shape.rank is not None and leaf.shape.rank >= 1:
            return tf.shape(leaf, out_type=tf.int64)[0]
    return tf.constant(-1, tf.int64)


# --------------------------------------------------------------------------
# Devices.


def _available_devices() -> list[str]:
    return [d.name for d in tf.config.list_logical_devices()]


def _canonical_device(device: str) -> str:
    """Map ``'/gpu:0'``, ``'GPU:0'``, ``'/device:CPU:1'``... to the full name
    of an existing logical device, or raise ``ValueError`` listing them."""
    if not isinstance(device, str):
        raise TypeError(f"A device must be a string such as '/cpu:0'. Received: {device!r}")
    try:
        spec = tf.DeviceSpec.from_string(device if device.startswith("/") else "/" + device)
    except ValueError:
        spec = None
    available = _available_devices()
    if spec is not None and spec.device_type is not None:
        for name in available:
            have = tf.DeviceSpec.from_string(name)
            if (have.device_type.upper() == spec.device_type.upper()
                    and (spec.device_index is None or have.device_index == spec.device_index)):
                return name
    raise ValueError(
        f"Device {device!r} does not exist on this machine. Available devices: {available}."
    )


def resolve_strategy(model: keras.Model | None, device: str | None) -> tf.distribute.Strategy | None:
    """The strategy to run towers under: ``device`` if given (one device),
    else the model's own strategy when it was built under one, else ``None``
    (run in place, on TensorFlow's default placement)."""
    if device is not None:
        return tf.distribute.OneDeviceStrategy(_canonical_device(device))
    strategy = getattr(model, "_distribute_strategy", None) if model is not None else None
    return strategy
