"""The one checkpoint layout of this project, and reading it back.

A checkpoint is a TF2 object-based checkpoint (``tf.train.Checkpoint``) with
four children, all named by this module and nothing else:

| child | what | name of each variable |
| --- | --- | --- |
| ``weights`` | every variable of the model, trainable or not (BatchNorm statistics too) | ``<attribute>/<i>-<name>`` (see :func:`named_weights`) |
| ``optimizer`` | the optimizer's own state (iterations, slots), for resuming | ``<i>``, its position in ``optimizer.variables`` |
| ``epoch`` | int64: the 1-based epoch the checkpoint was taken in | |
| ``global_step`` | int64: ``optimizer.iterations`` when it was taken | |

Checkpoints are matched by that structure: the model's names against the
checkpoint's, each with its shape and dtype. A mismatch raises
:class:`CheckpointMismatchError`, which lists what is missing, extra and
mis-shaped.

Completeness rule (for readers such as ``SidecarEvaluator``): **a
checkpoint is complete once it is listed in the directory's ``checkpoint``
state file**. ``ModelSaver`` writes through ``tf.train.CheckpointManager``,
which writes the data and index files first and the state file last (itself
atomically), so :func:`list_checkpoints` never returns a partial one.
Checkpoints are named ``ckpt-<global_step>``.

Example:

```python
save(model, "train_log/ckpt-120", epoch=3, global_step=120)
for info in list_checkpoints("train_log"):     # a ModelSaver directory
    print(info.path, info.epoch, info.global_step)
tf_restore.restore(model, "train_log")         # the latest one (tf_restore.py)
```
"""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, NamedTuple, Sequence

import keras
import numpy as np
import tensorflow as tf

from infer_callbacks._util import find_keras_layers
from infer_callbacks.checkpoints.mismatch import CheckpointMismatchError
from infer_callbacks.towers.model_desc import DescModel, ModelDesc

__all__ = ["CheckpointInfo", "CheckpointMismatchError", "named_weights", "make_checkpoint", "save",
           "read_info", "read_scalar", "list_checkpoints", "read_finished_marker", "resolve",
           "FINISHED_MARKER", "VALUE_SUFFIX"]

FINISHED_MARKER = "training_finished"

VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_CKPT_FILE = re.compile(r"\.(index|data-\d+-of-\d+)$")


class CheckpointInfo(NamedTuple):
    """A checkpoint: its prefix, the 1-based epoch and the global step it was
    taken at (``None`` when it does not record them)."""

    path: str
    epoch: int | None
    global_step: int | None


# --------------------------------------------------------------------------
# The layout.


def _short(variable: Any) -> str:
    name = str(getattr(variable, "name", "") or "var").split(":")[0].split("/")[-1]
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name) or "var"


def _variables_of(value: Any) -> list:
    out, seen = [], set()
    for layer in find_keras_layers(value):
        for v in layer.weights:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    for v in tf.nest.flatten(value) if isinstance(value, (list, tuple, dict)) else [value]:
        if isinstance(v, (tf.Variable, keras.Variable)) and id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def named_weights(model: Any) -> dict[str, Any]:
    """Every variable of ``model`` under its stable name, in a stable order.

    For a :class:`ModelDesc` (or its ``DescModel``): ``<attribute>/<i>-<name>``,
    attributes sorted by name, ``i`` the position in the attribute's
    ``weights`` (``net/0-kernel``, ``net/1-bias``); a variable reachable from
    two attributes is named once. For a ``keras.Model``:
    ``model/<i>-<name>`` in ``model.weights`` order. Names never depend on
    Keras's auto-numbered layer names, so another process building the same
    model gets the same names.
    """
    if isinstance(model, DescModel):
        model = model.desc
    groups: list[tuple[str, list]] = []
    if isinstance(model, ModelDesc):
        for attr in sorted(vars(model)):
            groups.append((attr, _variables_of(vars(model)[attr])))
    elif isinstance(model, keras.Model):
        groups.append(("model", list(model.weights)))
    else:
        raise TypeError(f"Expected a ModelDesc or a keras.Model. Received: {model!r}")
    named, seen = {}, set()
    for group, variables in groups:
        for i, v in enumerate(variables):
            if id(v) not in seen:
                seen.add(id(v))
                named[f"{group}/{i}-{_short(v)}"] = v
    return named


def _tf_variable(v: Any) -> Any:
    return v.value if isinstance(v, keras.Variable) else v


def make_checkpoint(model: Any, *, weights: Sequence[Any] | None = None, optimizer: Any = None,
                    epoch: Any = None, global_step: Any = None) -> tf.train.Checkpoint:
    """A ``tf.train.Checkpoint`` of ``model`` in this layout.

    Args:
        model: a ModelDesc, its DescModel or a keras.Model.
        weights: what to save instead of the model's variables (e.g. a
            snapshot taken for asynchronous validation): variables or arrays
            aligned with ``model.weights`` (for a ModelDesc, its DescModel's).
        optimizer: a built Keras optimizer whose state to include.
        epoch, global_step: ints or int64 ``tf.Variable``.
    """
    named = named_weights(model)
    if weights is not None:
        order = list(model.weights)
        weights = list(weights)
        if len(weights) != len(order):
            raise ValueError(f"`weights` must have one entry per model weight ({len(order)}). "
                             f"Received {len(weights)} entries.")
        by_id = {id(v): w for v, w in zip(order, weights)}
        named = {k: by_id.get(id(v), v) for k, v in named.items()}
    root = tf.__internal__.tracking.AutoTrackable()
    groups: dict[str, Any] = {}
    for key, v in named.items():
        group, leaf = key.split("/", 1)
        if group not in groups:
            groups[group] = tf.__internal__.tracking.AutoTrackable()
            setattr(root, group, groups[group])
        if not isinstance(v, (tf.Variable, keras.Variable)):
            v = tf.Variable(np.asarray(v), trainable=False)
        setattr(groups[group], leaf, _tf_variable(v))
    parts: dict[str, Any] = {"weights": root}
    if optimizer is not None:
        state = tf.__internal__.tracking.AutoTrackable()
        for i, v in enumerate(optimizer.variables):
            setattr(state, str(i), _tf_variable(v))
        parts["optimizer"] = state
    for name, value in (("epoch", epoch), ("global_step", global_step)):
        if value is not None:
            parts[name] = value if isinstance(value, tf.Variable) else tf.Variable(int(value), dtype=tf.int64)
    return tf.train.Checkpoint(**parts)


def save(model: Any, prefix: str | os.PathLike, *, weights: Sequence[Any] | None = None,
         optimizer: Any = None, epoch: int | None = None, global_step: int | None = None) -> str:
    """Write one checkpoint of ``model`` at ``prefix`` (no state file; use
    :class:`~infer_callbacks.ModelSaver` for a managed directory). Returns the prefix."""
    checkpoint = make_checkpoint(model, weights=weights, optimizer=optimizer, epoch=epoch,
                                 global_step=global_step)
    return checkpoint.write(os.fspath(prefix))


# --------------------------------------------------------------------------
# Finding checkpoints.


def resolve(path: str | os.PathLike) -> str:
    """The checkpoint prefix for ``path``: a prefix, one of its files, or a
    directory (its latest complete checkpoint)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(
                f"No checkpoint in directory {path!r} (no 'checkpoint' state file naming one). "
                "Pass a checkpoint prefix such as 'train_log/ckpt-120'.")
        return latest
    prefix = _CKPT_FILE.sub("", path)
    if not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(
            f"Checkpoint {path!r} does not exist (no {prefix + '.index'!r}). Pass a checkpoint "
            "prefix such as 'train_log/ckpt-120' or a ModelSaver directory.")
    return prefix


def read_scalar(reader, name: str) -> int | None:
    key = name + VALUE_SUFFIX
    return int(reader.get_tensor(key)) if reader.has_tensor(key) else None


def read_info(path: str | os.PathLike) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of one checkpoint (prefix or directory)."""
    prefix = resolve(path)
    reader = tf.train.load_checkpoint(prefix)
    return CheckpointInfo(prefix, read_scalar(reader, "epoch"), read_scalar(reader, "global_step"))


def list_checkpoints(directory: str | os.PathLike) -> list[CheckpointInfo]:
    """The complete checkpoints of a ``ModelSaver`` directory, oldest first.

    Complete means listed in the ``checkpoint`` state file (written last). A
    listed checkpoint whose files are gone (deleted by ``max_to_keep`` after
    the state file was read) is left out.
    """
    directory = os.fspath(directory)
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return []
    out = []
    for prefix in state.all_model_checkpoint_paths:  # already joined onto `directory`
        try:
            out.append(read_info(prefix))
        except (FileNotFoundError, tf.errors.NotFoundError, tf.errors.DataLossError):
            continue
    return out


def read_finished_marker(directory: str | os.PathLike) -> dict | None:
    """The ``training_finished`` marker ``ModelSaver`` writes (atomically) in
    ``on_train_end`` and removes in ``on_train_begin``: ``{"epoch",
    "global_step", "checkpoint"}`` (the last checkpoint's name), or ``None``
    while training runs."""
    path = os.path.join(os.fspath(directory), FINISHED_MARKER)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
