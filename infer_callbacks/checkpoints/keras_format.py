"""The savers' Keras-format checkpoints: what ``ModelSaver``, ``MinSaver`` and
``MaxSaver`` write where ``tf.train.Checkpoint`` cannot track the model
(Keras's JAX and PyTorch backends), or when asked with ``checkpoint_format="keras"``.

A checkpoint is one ``.weights.h5`` file written by Keras's own
``model.save_weights``: every model variable and, for a compiled model whose
optimizer is built, the optimizer's variables (its ``iterations`` included).
The file's root attributes record ``epoch`` (1-based) and ``global_step``.
Each file is written under a hidden temporary name in the same directory and
renamed into place (``os.replace``), so a visible file is always complete.

| file | written | rule for readers |
| --- | --- | --- |
| ``ckpt-<global_step>.weights.h5`` | at each ``ModelSaver`` save, atomically | complete as soon as it exists; ``model.load_weights`` reads it |
| ``checkpoints.json`` (``{"format": "keras", "checkpoints": [{"name", "epoch", "global_step", "time"}, ...]}``, oldest first) | after the file, atomically | the ``ModelSaver`` checkpoints kept (``max_to_keep``); :func:`list_checkpoints` |
| ``<filename>-<epoch>.weights.h5`` + ``<filename>.json`` | by ``MinSaver`` / ``MaxSaver`` | the JSON's ``checkpoint`` is the file's name |

Example:

```python
import keras, numpy as np, tempfile
from infer_callbacks.checkpoints import keras_format

model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
model.compile(optimizer="adam", loss="mse")
model.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=1, verbose=0)
directory = tempfile.mkdtemp()
keras_format.save_managed(model, directory, epoch=1, global_step=1, max_to_keep=2)
info = keras_format.restore(model, directory)  # the latest one
assert (info.epoch, info.global_step) == (1, 1)
```
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from typing import Any, Sequence

import keras

from infer_callbacks._util import atomic_write_json
from infer_callbacks.checkpoints.keras_weights import restore_keras_weights
from infer_callbacks.checkpoints.layout import CheckpointInfo

__all__ = ["FORMATS", "STATE_FILE", "SUFFIX", "resolve_format", "is_keras_checkpoint", "write",
           "save_managed", "list_checkpoints", "read_info", "resolve", "restore"]

FORMATS = ("auto", "tensorflow", "keras")
STATE_FILE = "checkpoints.json"
SUFFIX = ".weights.h5"
_ATTR = "infer_callbacks"


def resolve_format(checkpoint_format: Any, who: str) -> str:
    """``"tensorflow"`` or ``"keras"``; ``"auto"`` is ``"tensorflow"`` on
    Keras's TensorFlow backend (``tf.train.Checkpoint`` tracks the model),
    ``"keras"`` on any other."""
    if checkpoint_format not in FORMATS:
        raise ValueError(f"{who}: `checkpoint_format` must be one of {list(FORMATS)}. "
                         f"Received: checkpoint_format={checkpoint_format!r}")
    if checkpoint_format == "auto":
        return "tensorflow" if keras.backend.backend() == "tensorflow" else "keras"
    if checkpoint_format == "tensorflow" and keras.backend.backend() != "tensorflow":
        raise ValueError(f"{who}: checkpoint_format='tensorflow' needs Keras's TensorFlow backend; this "
                         f"process uses KERAS_BACKEND={keras.backend.backend()!r}. Pass "
                         "checkpoint_format='keras' (or 'auto').")
    return checkpoint_format


def is_keras_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Keras-format checkpoint file or a directory of them."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, STATE_FILE))
    return path.endswith(SUFFIX)


def write(model: keras.Model, path: str, *, weights: Sequence[Any] | None = None,
          with_optimizer: bool = True, epoch: int, global_step: int) -> str:
    """Write one checkpoint file at ``path`` atomically. With ``weights``
    (aligned with ``model.weights``) those values are written instead of the
    model's, which keeps its own; ``with_optimizer=False`` leaves the
    optimizer's state out (a snapshot's optimizer state is not held)."""
    import h5py

    if not path.endswith(SUFFIX):
        raise ValueError(f"A Keras-format checkpoint's name ends with {SUFFIX!r}. Received: {path!r}")
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=SUFFIX, dir=directory)  # hidden: no reader lists it
    os.close(fd)
    try:
        if weights is None:
            model.save_weights(tmp, overwrite=True)
        else:
            _save_with(model, tmp, list(weights))
        with h5py.File(tmp, "r+") as f:
            if not with_optimizer and "optimizer" in f:
                del f["optimizer"]
            f.attrs[_ATTR] = json.dumps({"epoch": int(epoch), "global_step": int(global_step)})
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _save_with(model: keras.Model, path: str, weights: list) -> None:
    variables = list(model.weights)
    if len(weights) != len(variables):
        raise ValueError(f"`weights` must have one entry per model weight ({len(variables)}). "
                         f"Received {len(weights)} entries.")
    current = [keras.ops.convert_to_numpy(v.value) for v in variables]
    try:
        for v, w in zip(variables, weights):
            v.assign(keras.ops.convert_to_numpy(w))
        model.save_weights(path, overwrite=True)
    finally:
        for v, w in zip(variables, current):
            v.assign(w)


def _read_state(directory: str) -> dict:
    path = os.path.join(directory, STATE_FILE)
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} exists but cannot be read ({e}); it was left untouched. Move it "
                         "away or use another checkpoint directory.") from e
    if not isinstance(state, dict) or not isinstance(state.get("checkpoints"), list):
        raise ValueError(f"{path} is not a ModelSaver state file (no 'checkpoints' list); it was left "
                         "untouched. Move it away or use another checkpoint directory.")
    return state


def save_managed(model: keras.Model, directory: str, *, epoch: int, global_step: int, max_to_keep: int,
                 keep_checkpoint_every_n_hours: float | None = None,
                 weights: Sequence[Any] | None = None) -> str:
    """``ModelSaver``'s save: write ``ckpt-<global_step>.weights.h5``, list it
    in ``checkpoints.json``, then delete what ``max_to_keep`` drops (as
    ``tf.train.CheckpointManager``: a dropped checkpoint taken at least
    ``keep_checkpoint_every_n_hours`` after the last one kept so stays on
    disk, unlisted). Returns the file's path."""
    name = f"ckpt-{int(global_step)}{SUFFIX}"
    path = write(model, os.path.join(directory, name), weights=weights, epoch=epoch,
                 global_step=global_step)
    state = _read_state(directory)
    now = time.time()
    entries = [e for e in state.get("checkpoints", []) if e.get("name") != name]
    entries.append({"name": name, "epoch": int(epoch), "global_step": int(global_step), "time": now})
    cut = max(0, len(entries) - max_to_keep)
    dropped, entries = entries[:cut], entries[cut:]
    kept_at = state.get("last_kept_time", (dropped or entries)[0]["time"])
    deleted = []
    for entry in dropped:
        hours = keep_checkpoint_every_n_hours
        if hours and entry["time"] - kept_at >= hours * 3600:
            kept_at = entry["time"]  # kept for good, unlisted
        else:
            deleted.append(entry["name"])
    atomic_write_json(os.path.join(directory, STATE_FILE),
                      {"format": "keras", "checkpoints": entries, "last_kept_time": kept_at})
    for old in deleted:  # after the state file stopped listing them
        try:
            os.unlink(os.path.join(directory, old))
        except FileNotFoundError:
            pass
    return path


def read_info(path: str | os.PathLike) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of one checkpoint file (or a directory's latest)."""
    import h5py

    path = resolve(path)
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs.get(_ATTR, "{}"))
    except FileNotFoundError:
        raise FileNotFoundError(f"Checkpoint {path!r} is gone (deleted by max_to_keep?).") from None
    return CheckpointInfo(path, meta.get("epoch"), meta.get("global_step"))


def list_checkpoints(directory: str | os.PathLike) -> list[CheckpointInfo]:
    """The ``ModelSaver`` checkpoints ``checkpoints.json`` lists, oldest
    first (one deleted since the state file was read is left out)."""
    directory = os.fspath(directory)
    out = []
    for entry in _read_state(directory).get("checkpoints", []):
        path = os.path.join(directory, entry["name"])
        if os.path.exists(path):
            out.append(CheckpointInfo(path, entry.get("epoch"), entry.get("global_step")))
    return out


def resolve(path: str | os.PathLike) -> str:
    """The checkpoint file for ``path``: a file, or a directory (its latest)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        listed = list_checkpoints(path)
        if not listed:
            raise FileNotFoundError(f"No Keras-format checkpoint in directory {path!r} (no {STATE_FILE!r} "
                                    "listing one). Pass a file such as 'train_log/ckpt-120.weights.h5'.")
        return listed[-1].path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path!r} does not exist. Pass a file such as "
                                "'train_log/ckpt-120.weights.h5' or a ModelSaver directory.")
    return path


def restore(model: keras.Model, path: str | os.PathLike, *, optimizer: Any = None) -> CheckpointInfo:
    """Restore ``model`` (and the state of ``optimizer``, built, if given and
    the file holds one) from a checkpoint file or a directory's latest.

    Raises:
        FileNotFoundError: no such checkpoint.
        CheckpointMismatchError: the model's variables differ (listed).
        ValueError: the file holds the state of another optimizer.
    """
    import h5py

    info = read_info(path)
    with h5py.File(info.path, "r") as f:
        stored = f["optimizer/vars"] if "optimizer/vars" in f else None
        shapes = None if stored is None else [tuple(stored[k].shape) for k in sorted(stored, key=int)]
    if optimizer is not None and shapes is not None:
        mine = [tuple(v.shape) for v in optimizer.variables]
        if mine != shapes:
            bad = [i for i, (a, b) in enumerate(zip(mine, shapes)) if a != b]
            raise ValueError(
                f"Checkpoint {info.path!r} holds the state of another optimizer: {len(shapes)} variables, "
                f"this one has {len(mine)} ({type(optimizer).__name__}); positions not matching: "
                f"{bad[:10]}. Resume with the same optimizer, or restore the weights only.")
    if optimizer is not None and shapes is None:
        warnings.warn(f"Checkpoint {info.path!r} holds no optimizer state (e.g. one written by "
                      "MinSaver/MaxSaver from a snapshot); the optimizer starts afresh.", stacklevel=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        restore_keras_weights(model, info.path)
    return info
