"""After training: ``PredictConfig``, ``OfflinePredictor`` and checkpoint restore.

A :class:`PredictConfig` says which model, which weights, which inputs are
fed and which outputs are fetched. An :class:`OfflinePredictor` turns it into
one traced ``tf.function`` (batch dimension ``None``: any batch size, no
retrace) that takes numpy and returns numpy. :class:`~infer_callbacks.ModelExporter`
exports the same function as a SavedModel, a frozen GraphDef or a TFLite model.

Output names resolve by the runner's rules (see :class:`~infer_callbacks.tower.TowerSpec`):
a key of the dict the tower returns, an input name, or a tensor named in the
tower with ``tf.identity(t, name=...)``.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from ._util import check_named_specs, find_keras_layers
from .tower import TowerSpec, UnknownFetchError, keras_tower_func
from .trainer import ModelDesc

__all__ = [
    "PredictConfig",
    "OfflinePredictor",
    "get_predictor",
    "CheckpointMismatchError",
    "restore_weights",
    "trackable_model",
]

_Trackable = tf.__internal__.tracking.Trackable
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VARIABLE_VALUE = "VARIABLE_VALUE"
_SKIPPED_CHILDREN = ("optimizer",)  # training state, never an inference weight
_MAX_LISTED = 20


# --------------------------------------------------------------------------
# What a checkpoint is matched against.


class _ModelDescTrackable(tf.__internal__.tracking.AutoTrackable):
    """Tracks a ModelDesc's attributes (``net``, ``encoder``...) by name."""


def _holds_trackable(value: Any) -> bool:
    if isinstance(value, _Trackable):
        return True
    if isinstance(value, (list, tuple, dict)):
        return any(isinstance(v, _Trackable) for v in tf.nest.flatten(value))
    return False


def trackable_model(model: Any) -> Any:
    """The object whose trackable structure checkpoints of ``model`` follow.

    A Keras model (or any ``Trackable``) is its own structure. A
    :class:`~infer_callbacks.ModelDesc` is tracked through its attributes, as
    if it were a ``tf.Module``: ``self.net = keras.Sequential(...)`` is saved
    under ``net``. So ``tf.train.Checkpoint(model=trackable_model(desc))``
    writes checkpoints that :class:`PredictConfig` restores.

    Example:

    ```python
    ckpt = tf.train.Checkpoint(model=trackable_model(desc), optimizer=opt)
    tf.train.CheckpointManager(ckpt, "train_log/checkpoints", max_to_keep=3).save()
    ```
    """
    if isinstance(model, _Trackable):
        return model
    if isinstance(model, ModelDesc):
        holder = _ModelDescTrackable()
        for name, value in vars(model).items():
            if _holds_trackable(value):
                setattr(holder, name, value)
        return holder
    raise TypeError(
        "Expected a ModelDesc, a keras.Model or a tf.Module to match checkpoints "
        f"against. Received: {model!r}")


def _candidate_objects(model: Any) -> list[Any]:
    """Structures a checkpoint of ``model`` may follow. For a ModelDesc: its
    attributes by name; its Keras layers as a list ``desc_layers`` (the
    trainer's Keras face of a ModelDesc); its single tracked attribute
    (``Checkpoint(model=desc.net)``)."""
    root = trackable_model(model)
    candidates = [root]
    if isinstance(root, _ModelDescTrackable):
        layers: list = []
        find_keras_layers(list(vars(model).values()), set(), layers)
        if layers:
            as_list = _ModelDescTrackable()
            as_list.desc_layers = layers
            candidates.append(as_list)
        children = tf.train.TrackableView.children(root)
        if len(children) == 1:
            candidates.append(next(iter(children.values())))
    return candidates


# --------------------------------------------------------------------------
# Object-based TF2 checkpoints, matched by trackable structure.


def _is_variable(obj: Any) -> bool:
    return isinstance(obj, (tf.Variable, keras.Variable))


def _children(obj: Any) -> dict[str, Any]:
    if _is_variable(obj) or not isinstance(obj, _Trackable):
        return {}
    return {name: child for name, child in tf.train.TrackableView.children(obj).items()
            if name not in _SKIPPED_CHILDREN and not isinstance(child, keras.optimizers.Optimizer)}


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _model_variables(root: Any) -> dict[int, tuple[str, Any]]:
    """id(variable) -> (first path from ``root``, variable), breadth first."""
    found: dict[int, tuple[str, Any]] = {}
    seen: set[int] = set()
    queue = [(root, "")]
    while queue:
        obj, path = queue.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if _is_variable(obj):
            found.setdefault(id(obj), (path, obj))
            continue
        queue.extend((child, _join(path, name)) for name, child in _children(obj).items())
    return found


def _shape_of(variable: Any) -> tuple:
    return tuple(int(d) if d is not None else None for d in variable.shape)


def _dtype_of(variable: Any) -> tf.DType:
    return tf.as_dtype(variable.dtype)


class _Report:
    """How one checkpoint subtree matches one model object."""

    def __init__(self, where: str):
        self.where = where
        self.matched: list[tuple[str, Any, Any]] = []      # (path, variable, source)
        self.missing: list[tuple[str, Any]] = []            # (path, variable)
        self.mismatched: list[tuple[str, Any, tuple, Any]] = []  # (path, variable, shape, dtype)
        self.unused: list[tuple[str, tuple]] = []            # (path in the file, shape)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unused)

    def score(self) -> tuple:
        return (len(self.matched), -(len(self.missing) + len(self.mismatched) + len(self.unused)))

    def describe(self, source: str) -> str:
        total = len(self.matched) + len(self.missing) + len(self.mismatched)
        lines = [f"{source} does not match the model: {len(self.matched)} of {total} variables "
                 f"match{self.where}."]

        def section(title, items, fmt):
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines.extend("    " + fmt(item) for item in items[:_MAX_LISTED])
                if len(items) > _MAX_LISTED:
                    lines.append(f"    ... and {len(items) - _MAX_LISTED} more")

        section("variables missing from the checkpoint", self.missing,
                lambda m: f"{m[0]}  shape={_shape_of(m[1])}")
        section("shape/dtype mismatches", self.mismatched,
                lambda m: (f"{m[0]}  model: shape={_shape_of(m[1])} {_dtype_of(m[1]).name}, "
                           f"checkpoint: shape={m[2]} {tf.as_dtype(m[3]).name}"))
        section("unused checkpoint entries", self.unused, lambda u: f"{u[0]}  shape={u[1]}")
        return "\n".join(lines)


class CheckpointMismatchError(ValueError):
    """The checkpoint and the model do not hold the same variables.

    Attributes ``missing``, ``mismatched`` and ``unused`` list the paths.
    """

    def __init__(self, message: str, report: _Report):
        super().__init__(message)
        self.missing = [m[0] for m in report.missing]
        self.mismatched = [m[0] for m in report.mismatched]
        self.unused = [u[0] for u in report.unused]


def _read_object_graph(reader, path: str):
    if not reader.has_tensor(_OBJECT_GRAPH_KEY):
        raise ValueError(
            f"Checkpoint {path!r} is not an object-based TF2 checkpoint (no object graph; "
            "written by a TF1 tf.compat.v1.train.Saver?). Save it with tf.train.Checkpoint.")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    return graph


def _match(graph, shapes: dict, dtypes: dict, node_id: int, root: Any, where: str) -> _Report:
    report = _Report(where)
    wanted = _model_variables(root)
    done: set[int] = set()        # model variables matched or mismatched
    used_nodes: set[int] = set()  # checkpoint nodes consumed
    seen: set[tuple[int, int]] = set()
    queue = [(root, node_id, "")]
    while queue:
        obj, nid, path = queue.pop(0)
        if (id(obj), nid) in seen:
            continue
        seen.add((id(obj), nid))
        node = graph.nodes[nid]
        if _is_variable(obj):
            key = next((a.checkpoint_key for a in node.attributes if a.name == _VARIABLE_VALUE), None)
            if key is None or id(obj) in done:
                continue
            done.add(id(obj))
            used_nodes.add(nid)
            shape, dtype = tuple(shapes[key]), dtypes[key]
            if shape != _shape_of(obj) or tf.as_dtype(dtype) != _dtype_of(obj):
                report.mismatched.append((wanted.get(id(obj), (path,))[0], obj, shape, dtype))
            else:
                report.matched.append((path, obj, key))
            continue
        in_file = {c.local_name: c.node_id for c in node.children}
        for name, child in _children(obj).items():
            if name in in_file:
                queue.append((child, in_file[name], _join(path, name)))
    report.missing = [pv for vid, pv in wanted.items() if vid not in done]
    # Every variable of the checkpoint subtree that nothing consumed (first path only).
    paths: dict[int, str] = {}
    queue2 = [(node_id, "")]
    while queue2:
        nid, path = queue2.pop(0)
        if nid in paths:
            continue
        paths[nid] = path
        queue2.extend((c.node_id, _join(path, c.local_name)) for c in graph.nodes[nid].children
                      if c.local_name not in _SKIPPED_CHILDREN)
    for nid, path in paths.items():
        key = next((a.checkpoint_key for a in graph.nodes[nid].attributes
                    if a.name == _VARIABLE_VALUE), None)
        if key is not None and nid not in used_nodes:
            report.unused.append((path, tuple(shapes[key])))
    return report


def _restore_tf_checkpoint(model: Any, path: str, ignore_mismatch: bool) -> _Report:
    reader = tf.train.load_checkpoint(path)
    graph = _read_object_graph(reader, path)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    # Where the model sits: the root, or a node one or two levels below it
    # (Checkpoint(model=m), Checkpoint(trainer=t) with t.model = m...).
    levels = [[(0, "")]]
    for _ in range(2):
        levels.append([(c.node_id, _join(where, c.local_name)) for nid, where in levels[-1]
                       for c in graph.nodes[nid].children if c.local_name not in _SKIPPED_CHILDREN])
    best = None
    for level in levels:
        for obj in _candidate_objects(model):
            for nid, where in level:
                report = _match(graph, shapes, dtypes, nid, obj,
                                f" under checkpoint object {where!r}" if where else "")
                if best is None or report.score() > best.score():
                    best = report
        if best is not None and best.ok and best.matched:
            break
    if not best.matched:
        best = _match_through_optimizer(graph, shapes, dtypes, model) or best
    _check(best, f"Checkpoint {path!r}", ignore_mismatch)
    for _, variable, key in best.matched:
        variable.assign(reader.get_tensor(key))
    return best


def _trainable_in_keras_order(model: Any) -> list[Any]:
    """The trainable variables in the order a Keras optimizer built on the
    model (or on a Keras model holding a ModelDesc's layers) lists them."""
    if isinstance(model, keras.Model):
        return list(model.trainable_variables)
    layers: list = []
    find_keras_layers(list(vars(model).values()), set(), layers)
    found, seen = [], set()
    for layer in layers:
        for v in layer.trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def _match_through_optimizer(graph, shapes: dict, dtypes: dict, model: Any) -> _Report | None:
    """Fallback for a checkpoint whose model object holds no variables but
    whose Keras optimizer does (``optimizer/_trainable_variables/<i>``): match
    the model's trainable variables by position, all shapes agreeing."""
    lists = []
    for top in graph.nodes[0].children:
        nodes = [top] + [c for c in graph.nodes[top.node_id].children]
        for node in nodes:
            if node.local_name != "optimizer":
                continue
            for c in graph.nodes[node.node_id].children:
                if c.local_name == "_trainable_variables":
                    lists.append(graph.nodes[c.node_id])
    wanted = _trainable_in_keras_order(model)
    everything = _model_variables(trackable_model(model))
    for listing in lists:
        items = sorted(listing.children, key=lambda c: int(c.local_name) if c.local_name.isdigit() else -1)
        keys = [next((a.checkpoint_key for a in graph.nodes[c.node_id].attributes
                      if a.name == _VARIABLE_VALUE), None) for c in items]
        if not wanted or len(keys) != len(wanted) or None in keys:
            continue
        if any(tuple(shapes[k]) != _shape_of(v) or tf.as_dtype(dtypes[k]) != _dtype_of(v)
               for k, v in zip(keys, wanted)):
            continue
        report = _Report(", by position in the checkpoint's optimizer variable list")
        paths = {vid: pv[0] for vid, pv in everything.items()}
        report.matched = [(paths.get(id(v), v.name), v, k) for k, v in zip(keys, wanted)]
        matched = {id(v) for v in wanted}
        report.missing = [pv for vid, pv in everything.items() if vid not in matched]
        return report
    return None


def _check(report: _Report, source: str, ignore_mismatch: bool) -> None:
    if report.ok:
        return
    message = report.describe(source)
    if ignore_mismatch:
        warnings.warn(message + "\nRestored the matching variables only (ignore_mismatch=True).",
                      stacklevel=3)
        return
    raise CheckpointMismatchError(
        message + "\nPass ignore_mismatch=True to restore the matching variables and "
        "only warn about the rest.", report)


# --------------------------------------------------------------------------
# Keras weights files (.weights.h5), compared with what the model would write.


def _h5_arrays(path: str) -> dict[str, tuple[tuple, np.dtype]]:
    import h5py

    arrays: dict[str, tuple[tuple, np.dtype]] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/", 1)[0] not in _SKIPPED_CHILDREN:
                arrays[name] = (tuple(obj.shape), obj.dtype)
        f.visititems(visit)
    return arrays


def _restore_keras_weights(model: Any, path: str, ignore_mismatch: bool) -> _Report:
    import h5py

    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{path!r} is a Keras weights file; it needs a keras.Model. For a ModelDesc, "
            f"restore a TF checkpoint (tf.train.Checkpoint). Received model={model!r}")
    with tempfile.TemporaryDirectory() as tmp:
        if path.endswith(".keras"):  # a zip archive holding model.weights.h5
            import zipfile

            with zipfile.ZipFile(path) as archive:
                if "model.weights.h5" not in archive.namelist():
                    raise ValueError(f"Keras file {path!r} holds no model.weights.h5 "
                                     f"(it has {archive.namelist()}).")
                path = archive.extract("model.weights.h5", os.path.join(tmp, "archive"))
        reference = os.path.join(tmp, "model.weights.h5")
        model.save_weights(reference)  # what this model writes, by Keras's own traversal
        want, have = _h5_arrays(reference), _h5_arrays(path)
        report = _Report(" (Keras weights file)")
        for name, (shape, dtype) in want.items():
            if name not in have:
                report.missing.append((name, np.empty(shape, dtype)))
            elif have[name] != (shape, dtype):
                report.mismatched.append((name, np.empty(shape, dtype), have[name][0], have[name][1]))
            else:
                report.matched.append((name, None, name))
        report.unused = [(name, shape) for name, (shape, _) in have.items() if name not in want]
        _check(report, f"Keras weights file {path!r}", ignore_mismatch)
        if report.ok:
            model.load_weights(path)
        else:
            with h5py.File(path, "r") as src, h5py.File(reference, "r+") as dst:
                for name, _, _ in report.matched:
                    dst[name][...] = src[name][...]
            model.load_weights(reference)
    return report


_CKPT_SUFFIX = re.compile(r"\.(index|data-\d+-of-\d+)$")


def _resolve_weights_path(path: str) -> tuple[str, str]:
    """``('keras' | 'tf', path)`` for a weights file, checkpoint prefix or
    checkpoint directory (its latest checkpoint)."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Keras model file {path!r} does not exist.")
        return "keras", path
    if path.endswith(".h5"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Keras weights file {path!r} does not exist.")
        return "keras", path
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(
                f"No checkpoint in directory {path!r} (no 'checkpoint' file naming one). "
                "Pass a checkpoint prefix such as 'train_log/checkpoints/ckpt-12'.")
        return "tf", latest
    prefix = _CKPT_SUFFIX.sub("", path)
    if not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(
            f"Checkpoint {path!r} does not exist (no {prefix + '.index'!r}). Pass a "
            "checkpoint prefix, a checkpoint directory or a Keras .weights.h5 file.")
    return "tf", prefix


def restore_weights(model: Any, path: str, *, ignore_mismatch: bool = False) -> None:
    """Restore ``model``'s weights from ``path``, checking that they match.

    Args:
        model: a :class:`~infer_callbacks.ModelDesc`, a ``keras.Model`` or a
            ``tf.Module``, with its variables created.
        path: a TF2 checkpoint prefix (``ckpt-12``), a checkpoint directory
            (its latest checkpoint), a Keras ``.weights.h5`` file, or the
            weights of a ``.keras`` model file.
        ignore_mismatch: restore what matches and warn about the rest instead
            of raising :class:`CheckpointMismatchError`.

    Variables are matched by the model's trackable structure (attribute
    paths), wherever the model sits in the checkpoint (``Checkpoint(model=m)``,
    ``Checkpoint(m)``, next to an optimizer and step counter...). Optimizer
    state is never counted as unused.
    """
    kind, path = _resolve_weights_path(path)
    if kind == "keras":
        _restore_keras_weights(model, path, ignore_mismatch)
    else:
        _restore_tf_checkpoint(model, path, ignore_mismatch)


# --------------------------------------------------------------------------
# PredictConfig.


def _relax_batch(spec: tf.TensorSpec) -> tf.TensorSpec:
    shape = spec.shape
    if shape.rank:
        shape = tf.TensorShape([None]).concatenate(shape[1:])
    return tf.TensorSpec(shape, spec.dtype, spec.name)


def _check_signature(specs: Any, what: str) -> list[tf.TensorSpec]:
    return [_relax_batch(s) for s in check_named_specs(specs, what)]


def _keras_signature(model: keras.Model) -> list[tf.TensorSpec]:
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise ValueError(
            f"Cannot tell the inputs of {type(model).__name__} {model.name!r} (a subclassed or "
            "unbuilt model). Pass input_signature=[tf.TensorSpec((None, ...), tf.float32, 'input')].")
    if len(inputs) == 1:
        names = ["input"]  # the runner's name for a Keras model's input
    else:
        names = [t.name for t in inputs]
    return [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, n) for t, n in zip(inputs, names)]


def _keras_tower(model: keras.Model, num_x: int) -> Callable:
    tower = keras_tower_func(model)

    def keras_tower(*inputs):
        x = inputs[0] if num_x == 1 else list(inputs[:num_x])
        return tower(x, *inputs[num_x:])

    return keras_tower


def _model_desc_tower(desc: ModelDesc) -> Callable:
    def model_desc_tower(*inputs):
        out = desc.build_graph(*inputs)
        if out is None or isinstance(out, dict):
            return out
        return {"cost": out}

    return model_desc_tower


class PredictConfig:
    """What to predict with: the model, its weights, the inputs and outputs.

    Args:
        model: a :class:`~infer_callbacks.ModelDesc` (its ``build_graph`` runs
            under ``TowerContext(is_training=False)``; a returned cost is named
            ``cost``) or a ``keras.Model`` (the runner's default tower: the
            output is ``output``; the single input is ``input``).
        session_init: the weights: a TF2 checkpoint prefix
            (``train_log/checkpoints/ckpt-12``), a checkpoint directory (its
            latest checkpoint), a Keras ``.weights.h5`` file or the weights of a
            ``.keras`` file. ``None`` keeps the model's current weights.
        input_names: the inputs the predictor is fed, in call order; by default
            every input of the signature. Outputs may not depend on the others.
        output_names: what it returns, in order; resolved like the runner's
            fetches (returned dict keys, input names, ``tf.identity`` names). By
            default the Keras model's outputs, or every key of the dict the
            tower returns.
        tower_func: a different inference function ``tower_func(*inputs)``
            (e.g. decoding images inside the graph); the model still provides
            the variables that ``session_init`` restores.
        input_signature: named ``tf.TensorSpec`` for the tower's inputs; by
            default ``ModelDesc.inputs()`` or the Keras model's inputs. The
            batch dimension is always relaxed to ``None``.
        ignore_mismatch: restore the matching variables and warn about
            missing, unused or mis-shaped ones instead of raising
            :class:`CheckpointMismatchError`.

    Example:

    ```python
    config = PredictConfig(model=Model(), session_init="train_log/checkpoints",
                           input_names=["image"], output_names=["logits", "prob"])
    logits, prob = OfflinePredictor(config)(images)
    ```
    """

    def __init__(self, model: ModelDesc | keras.Model | None = None,
                 session_init: str | os.PathLike | None = None,
                 input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None,
                 tower_func: Callable[..., Any] | None = None,
                 input_signature: Sequence[tf.TensorSpec] | None = None, *,
                 ignore_mismatch: bool = False):
        if model is not None and not isinstance(model, (ModelDesc, keras.Model)):
            raise TypeError(f"`model` must be a ModelDesc or a keras.Model. Received: model={model!r}")
        if tower_func is not None and not callable(tower_func):
            raise TypeError(f"`tower_func` must be callable. Received: tower_func={tower_func!r}")
        if model is None and tower_func is None:
            raise ValueError("PredictConfig needs `model` (a ModelDesc or keras.Model), or "
                             "`tower_func` with `input_signature`.")
        if session_init is not None:
            session_init = os.fspath(session_init)
            if model is None:
                raise ValueError(
                    f"session_init={session_init!r} needs `model=` to match the checkpoint's "
                    "variables against.")
            # Fail now on a path that does not exist; the latest checkpoint of a
            # directory is chosen again when the predictor is built.
            kind, _ = _resolve_weights_path(session_init)
            if kind == "keras" and not isinstance(model, keras.Model):
                raise TypeError(
                    f"{session_init!r} is a Keras weights file; it needs a keras.Model. For a "
                    "ModelDesc, restore a TF checkpoint (tf.train.Checkpoint).")
        self.model = model
        self.session_init = session_init
        self.ignore_mismatch = bool(ignore_mismatch)

        if input_signature is not None:
            self.input_signature = _check_signature(input_signature, "input_signature")
        elif isinstance(model, ModelDesc):
            self.input_signature = _check_signature(model.get_input_signature(),
                                                    f"{type(model).__name__}.inputs()")
        elif isinstance(model, keras.Model):
            self.input_signature = _keras_signature(model)
        else:
            raise ValueError("`tower_func` without a model needs `input_signature=[tf.TensorSpec"
                             "((None, ...), tf.float32, 'name'), ...]`.")
        all_inputs = [s.name for s in self.input_signature]

        self.keras_default = tower_func is None and isinstance(model, keras.Model)
        if tower_func is not None:
            self.tower_func = tower_func
        elif isinstance(model, ModelDesc):
            self.tower_func = _model_desc_tower(model)
        else:
            num_x = len(all_inputs)
            if input_signature is not None:
                try:
                    num_x = len(_keras_signature(model))
                except ValueError:  # subclassed: one x
                    num_x = 1
            if len(all_inputs) > num_x + 2:
                raise ValueError(
                    f"A Keras model's tower takes (x, y, sample_weight): at most {num_x + 2} inputs. "
                    f"Received input_signature names {all_inputs}.")
            self.tower_func = _keras_tower(model, num_x)

        if input_names is None:
            input_names = all_inputs
        if isinstance(input_names, str):
            input_names = [input_names]
        input_names = list(input_names)
        for name in input_names:
            if name not in all_inputs:
                raise ValueError(f"Unknown input name {name!r} in input_names. Valid input names: "
                                 f"{all_inputs}.")
        if len(set(input_names)) != len(input_names):
            raise ValueError(f"input_names has duplicates: {input_names}")
        self.input_names = input_names

        if isinstance(output_names, str):
            output_names = [output_names]
        if output_names is not None:
            output_names = list(output_names)
            if not output_names:
                raise ValueError("output_names is empty: name at least one output.")
            if len(set(output_names)) != len(output_names):
                raise ValueError(f"output_names has duplicates: {output_names}")
        elif self.keras_default:
            names = list(getattr(model, "output_names", None) or [])
            output_names = ["output"] if len(names) <= 1 else names
        self.output_names = output_names  # None: every key the tower returns

    def __repr__(self) -> str:
        return (f"PredictConfig(model={type(self.model).__name__}, session_init={self.session_init!r}, "
                f"input_names={self.input_names}, output_names={self.output_names})")


# --------------------------------------------------------------------------
# OfflinePredictor.


def _depends_on(tensor: tf.Tensor, targets: dict) -> list[str]:
    """Names in ``targets`` (op -> name) that ``tensor`` is computed from."""
    found, seen, stack = [], set(), [tensor.op]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op in targets:
            found.append(targets[op])
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return found


class OfflinePredictor:
    """Numpy in, numpy out: one traced ``tf.function`` over a :class:`PredictConfig`.

    The function is traced once, with the batch dimension ``None``, so any
    batch size runs without retracing (:attr:`tracing_count` stays 1). The
    weights are restored once, when the predictor is built.

    Args:
        config: a :class:`PredictConfig`.

    Example:

    ```python
    predictor = OfflinePredictor(PredictConfig(model=model, session_init="ckpt-12"))
    (probs,) = predictor(x_batch)          # a list, in output_names order
    (probs,) = predictor(input=x_batch)    # or by input name
    ```
    """

    def __init__(self, config: PredictConfig):
        if not isinstance(config, PredictConfig):
            raise TypeError(f"OfflinePredictor needs a PredictConfig. Received: {config!r}")
        self.config = config
        specs = config.input_signature
        self._fed_specs = [next(s for s in specs if s.name == n) for n in config.input_names]
        self._tower = TowerSpec(config.tower_func, tuple(specs), input_names=[s.name for s in specs])
        self.output_names: list[str] = list(config.output_names or [])
        self.input_names: list[str] = list(config.input_names)
        created: list = []

        def record(next_creator, **kwargs):
            variable = next_creator(**kwargs)
            created.append(variable)
            return variable

        # autograph=False, as the runner traces towers: errors surface as raised.
        self._function = tf.function(self._serve, input_signature=self._fed_specs, autograph=False)
        with tf.variable_creator_scope(record):
            self._concrete = self._function.get_concrete_function()  # checks names
        if created:
            # The trace built the model's variables; tf.function would trace once
            # more on the first call (to check no more are created). Start afresh.
            self._function = tf.function(self._serve, input_signature=self._fed_specs, autograph=False)
            self._concrete = self._function.get_concrete_function()
        if config.session_init is not None:
            restore_weights(config.model, config.session_init, ignore_mismatch=config.ignore_mismatch)

    def _serve(self, *fed: tf.Tensor) -> dict[str, tf.Tensor]:
        fed_by_name = dict(zip(self.config.input_names, fed))
        batch = None
        for t in fed:
            if t.shape.rank:
                batch = tf.shape(t)[0]
                break
        placeholders: dict[tf.Operation, str] = {}
        inputs = []
        for spec in self.config.input_signature:
            if spec.name in fed_by_name:
                inputs.append(fed_by_name[spec.name])
                continue
            # Not fed: a stand-in of the right structure; no output may use it (checked below).
            dims = [batch if i == 0 and batch is not None else (d if d is not None else 1)
                    for i, d in enumerate(spec.shape.as_list())] if spec.shape.rank is not None else []
            stand_in = tf.zeros(tf.stack(dims) if dims else [], spec.dtype, name=f"unfed_{spec.name}")
            placeholders[stand_in.op] = spec.name
            inputs.append(stand_in)
        outputs, ops = self._tower._call(tuple(inputs))
        if self.config.output_names is None:
            if not outputs:
                raise ValueError(
                    "PredictConfig(output_names=...) is required: the tower returns no dict. "
                    f"Available names: {self._tower.available_names(outputs, ops)}.")
            self.output_names = list(outputs)
        try:
            found = self._tower.resolve(tuple(inputs), self.output_names, outputs, ops)
        except UnknownFetchError as e:
            raise UnknownFetchError(
                e.name, f"Unknown output name {e.name!r} in output_names. Valid names: "
                f"{self._tower.available_names(outputs, ops)}.") from None
        result = {}
        for name in self.output_names:
            value = tf.convert_to_tensor(found[name])
            unfed = _depends_on(value, placeholders)
            if unfed:
                raise ValueError(
                    f"Output {name!r} depends on input(s) {sorted(set(unfed))}, which are not in "
                    f"input_names={self.config.input_names}. Add them to input_names.")
            result[name] = value
        return result

    # -- public -------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> list[np.ndarray]:
        """Run one batch. Inputs positionally (``input_names`` order) or by
        name; returns numpy arrays in ``output_names`` order."""
        if len(args) > len(self.input_names):
            raise TypeError(f"The predictor takes {len(self.input_names)} inputs "
                            f"{self.input_names}; received {len(args)} positional arguments.")
        values = dict(zip(self.input_names, args))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise ValueError(f"Unknown input name {name!r}. Valid input names: {self.input_names}.")
            if name in values:
                raise TypeError(f"Input {name!r} given both positionally and by name.")
            values[name] = value
        missing = [n for n in self.input_names if n not in values]
        if missing:
            raise TypeError(f"Missing input(s) {missing}; the predictor takes {self.input_names}.")
        tensors = [self._to_tensor(values[spec.name], spec) for spec in self._fed_specs]
        out = self._function(*tensors)
        return [out[name].numpy() for name in self.output_names]

    @staticmethod
    def _to_tensor(value: Any, spec: tf.TensorSpec) -> tf.Tensor:
        if spec.dtype == tf.string:
            tensor = tf.convert_to_tensor(value, tf.string)
        else:
            array = np.asarray(value)
            target = np.dtype(spec.dtype.as_numpy_dtype)
            if array.dtype != target:
                if not np.can_cast(array.dtype, target, casting="same_kind"):
                    raise TypeError(
                        f"Input {spec.name!r} expects {target}, received {array.dtype}: casting "
                        "would silently change values (e.g. floats in [0, 1] to uint8 zeros). "
                        f"Convert it yourself, e.g. x.astype({str(target)!r}).")
                array = array.astype(target)
            tensor = tf.convert_to_tensor(array)
        if not spec.shape.is_compatible_with(tensor.shape):
            raise ValueError(f"Input {spec.name!r} must have shape {spec.shape} (None: any size). "
                             f"Received shape {tuple(tensor.shape)}.")
        return tensor

    @property
    def tracing_count(self) -> int:
        """How many times the prediction function was traced (stays 1)."""
        return self._function.experimental_get_tracing_count()

    @property
    def concrete_function(self):
        """The traced function: named inputs in, ``{output_name: tensor}`` out."""
        return self._concrete

    @property
    def function(self) -> tf.types.experimental.GenericFunction:
        """The ``tf.function`` (with its input signature) behind the predictor."""
        return self._function

    def __repr__(self) -> str:
        return f"OfflinePredictor(inputs={self.input_names}, outputs={self.output_names})"


def get_predictor(model: ModelDesc | keras.Model, input_names: Sequence[str] | None = None,
                  output_names: Sequence[str] | None = None, **kwargs: Any) -> OfflinePredictor:
    """A predictor on ``model``'s current weights (tensorpack's
    ``trainer.get_predictor``): ``OfflinePredictor(PredictConfig(model, None,
    input_names, output_names, **kwargs))``. The weights are shared, not
    copied, so it sees later training steps.

    Example:

    ```python
    predict = get_predictor(desc, ["x"], ["prob"])
    (prob,) = predict(x_batch)
    ```
    """
    return OfflinePredictor(PredictConfig(model, None, input_names, output_names, **kwargs))
