"""Towers: the inference function and its output names.

A *tower* is one copy of the model's forward pass. Here it is a Python
function ``tower_func(*batch) -> dict[str, Tensor]`` run with
``training=False`` under a :class:`TowerContext`, traced into a
``tf.function`` and replicated on devices by a ``tf.distribute`` strategy
(one replica per device). The default tower of a Keras model lives in
:mod:`infer_callbacks.towers.keras_tower`.

Names resolve, in this order, to a key of the tower's dict, an input of the
batch, or a named op of the tower; ``name`` and ``name:0`` are the same name,
as in tensorpack. For an output ``n`` a tower may also return the exact sums
``exact_keys(n)``; the epoch value of ``n`` is then
``sum_k(sum_i num[i, k] / sum_i den[i, k])`` over the whole validation set.

Example:

>>> exact_keys("loss")
('loss#num', 'loss#den')
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import tensorflow as tf

from infer_callbacks.towers.names import (find_named_op, get_path, input_paths, key_in, named_ops,
                                          no_labels_hint)

__all__ = [
    "TowerContext",
    "get_current_tower_context",
    "TowerSpec",
    "UnknownFetchError",
    "exact_keys",
    "check_fetch_name",
    "SAMPLE_WEIGHT_KEY",
    "NUM_SAMPLES_KEY",
    "call_tower",
]

SAMPLE_WEIGHT_KEY = "#sample_weight"
"""Output key of the batch's per-example sample weights ``[B]``."""
NUM_SAMPLES_KEY = "__num_samples__"
"""Output key of the batch's sample count ``[1]``, added by :meth:`TowerSpec.replica_fn`."""


def exact_keys(name: str) -> tuple[str, str]:
    """The keys of the numerator and denominator sums of output ``name``.

    Example:

    >>> exact_keys("wrong-top1")
    ('wrong-top1#num', 'wrong-top1#den')
    """
    return name + "#num", name + "#den"


def check_fetch_name(name: Any) -> str:
    """Return ``name`` if it is a fetch name (a string), else raise ``TypeError``.

    In TF2 there is no graph to fetch a tensor from: an inferencer names what
    it wants (``'prob'``, ``'prob:0'``) and the tower provides it.

    Example:

    >>> check_fetch_name("prob:0")
    'prob:0'
    """
    if isinstance(name, str):
        return name
    try:
        hint = f" (here {name.name.split(':')[0]!r})" if isinstance(getattr(name, "name", None), str) else ""
    except AttributeError:
        hint = ""
    raise TypeError(
        "A fetch must be a name string: an output key of the tower, an input name, or the name of "
        f"an op in the tower (e.g. 'prob' for tf.identity(prob, name='prob')){hint}. Tensors and "
        "ops cannot be fetched directly in TF2: return the tensor's name from `_get_fetches`. "
        f"Received: {name!r} of type {type(name).__name__}")


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


def call_tower(tower_func: Callable, batch: Any) -> Any:
    """``tower_func`` on one batch: a dict by keyword, a tuple by position,
    anything else as the one argument (both engines call towers this way)."""
    if isinstance(batch, dict):
        return tower_func(**batch)
    if isinstance(batch, tuple):
        return tower_func(*batch)
    return tower_func(batch)


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
        self.input_paths = input_paths(element_spec, tower_func, keras_default, input_names)
        self.keras_default = keras_default

    def _call(self, batch: Any) -> tuple[dict, list[tf.Operation]]:
        graph = tf.compat.v1.get_default_graph()
        start = len(graph.get_operations()) if not tf.executing_eagerly() else 0
        with TowerContext("infer", is_training=False):
            out = call_tower(self.tower_func, batch)
        new_ops = graph.get_operations()[start:] if not tf.executing_eagerly() else []
        if out is None:
            out = {}
        elif not isinstance(out, dict):
            flat = tf.nest.flatten(out)
            out = {"output": flat[0]} if len(flat) == 1 else {f"output_{i}": t for i, t in enumerate(flat)}
        return out, new_ops

    def resolve(self, batch: Any, names: Sequence[str], outputs: dict, new_ops: Sequence) -> dict:
        """``{name: tensor}`` for each requested name; ``name`` and ``name:0`` alike."""
        found = {}
        for name in names:
            tensor = self._lookup(batch, check_fetch_name(name), outputs, new_ops)
            if tensor is None:
                raise UnknownFetchError(name, self._unknown_message(name, outputs, new_ops))
            found[name] = tensor
        return found

    def _lookup(self, batch: Any, name: str, outputs: dict, new_ops: Sequence) -> Any:
        key = key_in(name, outputs)
        if key is not None:
            return tf.convert_to_tensor(outputs[key])
        key = key_in(name, self.input_paths)
        if key is not None:
            return get_path(batch, self.input_paths[key])
        op = find_named_op(new_ops, name)
        return op.outputs[0] if op is not None and op.outputs else None

    def _unknown_message(self, name: str, outputs: dict, new_ops: Sequence) -> str:
        message = (
            f"Unknown fetch name {name!r}: the tower has no output, input or "
            f"named tensor called that. Available names: {self.available_names(outputs, new_ops)}."
        )
        if self.keras_default:
            message += no_labels_hint(name, self.element_spec)
        return message

    def available_names(self, outputs: dict, new_ops: Sequence) -> list[str]:
        """Dict keys, input names, and the tower's top-level ops that were
        given a name (``tf.identity(t, name=...)``, ``tf.reduce_mean(...,
        name=...)``): those whose name is neither their op type nor one of
        the names TensorFlow's Python API picks by itself."""
        named = named_ops(new_ops)
        shown = {k for k in outputs if not (k.endswith(("#num", "#den")) or k == SAMPLE_WEIGHT_KEY)}
        return sorted(shown | set(self.input_paths) | set(named))

    def replica_fn(self, names: Sequence[str], ranks: dict | None = None) -> Callable[[Any], dict]:
        """``fn(batch) -> {name: tensor}`` for the requested names.

        Also returned: ``exact_keys(name)`` for each requested name whose
        output came with its exact sums, ``"#sample_weight"`` when the tower
        returned it, and the batch's sample count under
        ``"__num_samples__"``. Rank-0 values are reshaped to ``[1]`` so that
        replicas and steps can be concatenated; ``ranks`` (if given) receives
        each returned key's rank.
        """
        names = list(dict.fromkeys(check_fetch_name(name) for name in names))

        def fn(batch):
            outputs, ops = self._call(batch)
            found = self.resolve(batch, names, outputs, ops)
            for name in names:
                key = key_in(name, outputs)
                if key is not None and all(k in outputs for k in exact_keys(key)):
                    found.update(zip(exact_keys(name), (outputs[k] for k in exact_keys(key))))
            if SAMPLE_WEIGHT_KEY in outputs:
                found[SAMPLE_WEIGHT_KEY] = outputs[SAMPLE_WEIGHT_KEY]
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
            result[NUM_SAMPLES_KEY] = _num_samples(batch)
            return result

        return fn


def _num_samples(batch: Any) -> tf.Tensor:
    """The batch's sample count as ``[1]`` (``[-1]``: unknown)."""
    for leaf in tf.nest.flatten(batch):
        if leaf.shape.rank is not None and leaf.shape.rank >= 1:
            return tf.shape(leaf, out_type=tf.int64)[:1]
    return tf.constant([-1], tf.int64)
