"""Fetch names of a tower: the batch's inputs by name, and the ops a user named.

A helper of :mod:`~infer_callbacks.towers.spec`: ``input_paths`` names the
batch's elements (``input``, ``label``, ``sample_weight`` for Keras batches,
``label/<output>`` for labels keyed by output name, else the tower function's
parameter names), ``named_ops`` picks the ops worth offering in an error.

Example:

>>> spec = (tf.TensorSpec([None, 3]), {"cls": tf.TensorSpec([None]), "reg": tf.TensorSpec([None, 1])})
>>> sorted(input_paths(spec, None, True, None))
['input', 'label/cls', 'label/reg']
"""

from __future__ import annotations

import inspect
import re
from typing import Any, Callable, Sequence

import tensorflow as tf

__all__ = ["input_paths", "key_in", "get_path", "find_named_op", "named_ops", "no_labels_hint"]

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


# Names of the default Keras tower that exist only for `(x, y)` batches.
_NEEDS_LABELS = re.compile(r"(?:^|_)loss(?::0)?$|wrong-top\d+(?::0)?$|(?:^|/)(?:pred|label)(?::0)?$|^label/")


def no_labels_hint(name: str, element_spec: Any) -> str:
    """What to add to the unknown-fetch error of the default Keras tower when
    ``name`` exists only for labelled batches and the batches have none."""
    if not _NEEDS_LABELS.search(name) or (isinstance(element_spec, tuple) and len(element_spec) >= 2):
        return ""
    return (" The validation set's batches carry no labels (each batch is `x` alone), so the "
            "default Keras tower has no `loss`, `wrong-top1` or labels: give it `(x, y)` "
            "batches, e.g. `tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(64)`.")


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


def input_paths(element_spec: Any, tower_func: Callable | None, keras_default: bool,
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
            # Keras labels and weights by output name: `label/<output>`, not the
            # bare key, which is the output's own name.
            prefix = f"{names[i]}/" if keras_default and 0 < i < len(names) else ""
            for k, v in spec.items():
                if isinstance(v, tf.TensorSpec):
                    paths.setdefault(prefix + str(k), path + (k,))
        elif i < len(names) and isinstance(spec, tf.TensorSpec):
            paths[names[i]] = path
    return paths


def key_in(name: str, mapping: Any) -> str | None:
    """The key of ``mapping`` that ``name`` means (``name`` or ``name:0``), if any."""
    base = name[:-2] if name.endswith(":0") else name
    return next((k for k in (name, base, base + ":0") if k in mapping), None)


def get_path(batch: Any, path: tuple) -> Any:
    """The element of ``batch`` at ``path``."""
    for key in path:
        batch = batch[key]
    return batch


def find_named_op(ops: Sequence[tf.Operation], name: str) -> tf.Operation | None:
    """The op of ``ops`` called ``name`` (in any name scope, or uniquified ``name_1``)."""
    name = name[:-2] if name.endswith(":0") else name
    for op in ops:
        if op.name == name or op.name.endswith("/" + name):
            return op
    uniquified = re.compile(r"^(?:.*/)?" + re.escape(name) + r"_\d+$")
    for op in ops:
        if uniquified.match(op.name):
            return op
    return None


def named_ops(new_ops: Sequence[tf.Operation]) -> list[str]:
    """The top-level ops of ``new_ops`` that were given a name
    (``tf.identity(t, name=...)``): those whose name is neither their op type
    (``div_no_nan`` for ``DivNoNan``) nor one TensorFlow's Python API picks."""
    named = []
    for op in new_ops:
        if "/" in op.name or op.type in ("Placeholder", "Const", "NoOp") or not op.outputs:
            continue
        base = re.sub(r"_\d+$", "", op.name)
        if (base.replace("_", "").lower() == op.type.lower() or base in _AUTO_OP_NAMES
                or _AUTO_NAME.match(op.name)):
            continue
        named.append(op.name)
    return named
