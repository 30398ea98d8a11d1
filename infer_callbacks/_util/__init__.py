"""Small helpers shared by several modules (not public API); the one
package any other may import. Files and JSON, what counts as a number, the
global step here; ``copying`` (how callbacks deep-copy) and ``chief``
(tensorpack's ``chief_only``) beside it. It imports nothing of the package."""

from __future__ import annotations

import json
import numbers
import os
import stat
import tempfile
from typing import Any, Iterable

import numpy as np


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: write a temporary file in
    the same directory, fsync it, give it the old file's permissions (or a
    new file's under the umask: ``mkstemp`` makes 0600, which a TensorBoard
    or serving process running as another user could not read), rename it
    over ``path``. A crash at any point leaves either the old file or the new
    one, never a partial one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj: Any) -> None:
    """:func:`atomic_write_bytes` of ``obj`` as indented JSON."""
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def new_run_reason(step: int | None, kept_steps: Iterable[Any], where: str = "") -> str | None:
    """The one rule telling a new run from a resume (``JSONWriter``'s
    ``stats.json``, the savers' checkpoint directory): why a run whose model
    is at global step ``step`` is a **new run** rather than a resume of what
    an earlier run recorded, or ``None`` when it resumes.

    ``kept_steps`` are the global steps recorded before where the run starts
    (the rows of earlier epochs; every checkpoint of a directory). A run
    resumes when its step is past 0 (it restored a checkpoint, or its model
    was trained on) and none of those steps is past it. Nothing recorded, or
    an unknown step (``None``: no optimizer), is never a new run."""
    recorded = [s for s in kept_steps if isinstance(s, (int, float)) and not isinstance(s, bool)]
    if step is None or not recorded:
        return None
    if step == 0:
        return "this run starts at global step 0: nothing was restored"
    if max(recorded) > step:
        return f"its steps do not lead to step {step}{where}: step {max(recorded)} is recorded"
    return None


def reserve_numbered(directory: str, stem: str, ext: str = "", *, is_dir: bool = False) -> str:
    """Create and return the first free ``directory/<stem>-<N><ext>`` (N from
    1): an empty file, or with ``is_dir`` an empty directory. Creation is
    exclusive (``O_EXCL`` / ``mkdir``), so a name another file, an older
    backup or a concurrent process holds is never reused."""
    index = 1
    while True:
        path = os.path.join(directory, f"{stem}-{index}{ext}")
        try:
            if is_dir:
                os.mkdir(path)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return path
        except FileExistsError:
            index += 1


def umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    """The permissions ``path`` has, or a new file's under the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~umask()


def check_named_specs(specs: Any, what: str) -> list:
    """``specs`` as a list of named ``tf.TensorSpec`` with unique names, or a
    ``TypeError``/``ValueError`` that says what ``what`` must be."""
    import tensorflow as tf

    if isinstance(specs, tf.TensorSpec):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise TypeError(f"{what} must be a list of named tf.TensorSpec. Received: {specs!r}")
    names = []
    for spec in specs:
        if not isinstance(spec, tf.TensorSpec) or not spec.name:
            raise ValueError(
                f"{what} must be a list of named tf.TensorSpec, e.g. "
                f"tf.TensorSpec((None, 8, 8, 1), tf.float32, 'image'). Received: {spec!r}")
        names.append(spec.name)
    if len(set(names)) != len(names):
        raise ValueError(f"{what} has duplicate names: {names}")
    return list(specs)


def find_keras_layers(value: Any, seen: set | None = None, out: list | None = None) -> list:
    """Keras layers held in ``value`` (lists, tuples and dicts searched), in
    order, each once."""
    import keras

    seen = set() if seen is None else seen
    out = [] if out is None else out
    if id(value) in seen:
        return out
    seen.add(id(value))
    if isinstance(value, keras.layers.Layer):
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            find_keras_layers(v, seen, out)
    elif isinstance(value, dict):
        for v in value.values():
            find_keras_layers(v, seen, out)
    return out


def prepare_dir(path: Any, who: str, what: str = "directory") -> str:
    """``path`` as a string, created if missing and writable; a
    ``ValueError`` when it is empty, an ``OSError`` naming ``who`` and the
    path when it cannot be made or written to."""
    if path is None or (isinstance(path, str) and not path):
        raise ValueError(f"{who} needs a {what} to write to. Received: {path!r}. "
                         f"Pass a path such as {who}('train_log').")
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OSError(f"{who} cannot create the {what} {path!r}: {e.strerror}.") from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{who} cannot write to the {what} {path!r} (permission denied).")
    return path


def describe_arrays(names: Any, arrays: Any) -> str:
    """``"'a' shape (3,) int64, 'b' shape (4, 2) float32"``: fetched values
    in error messages (KerasMetric, GatherOutputs)."""
    import numpy as np

    parts = []
    for name, value in zip(names, arrays):
        value = np.asarray(value)
        parts.append(f"{name!r} shape {value.shape} {value.dtype}")
    return ", ".join(parts)


def global_step(model: Any, default: int | None = 0) -> int | None:
    """The model's global step (its optimizer's ``iterations``), or
    ``default`` when it has none (no optimizer, not compiled)."""
    iterations = getattr(getattr(model, "optimizer", None), "iterations", None)
    if iterations is None:
        return default
    try:
        return int(np.asarray(iterations.numpy() if hasattr(iterations, "numpy") else iterations))
    except (TypeError, ValueError):
        return default


def require_tensorflow(feature: str, *, instead: str = "") -> None:
    """Refuse ``feature`` at construction unless Keras runs on TensorFlow,
    naming the feature, the backend in use and what to do instead."""
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{feature} needs Keras's TensorFlow backend; this process uses KERAS_BACKEND={backend!r}. "
            + (instead + " " if instead else "")
            + "Set KERAS_BACKEND=tensorflow before importing keras to use it.")


def numeric_array(value: Any) -> np.ndarray | None:
    """``value`` (a Python or numpy number, an array, or a tensor with
    ``.numpy()``) as a numpy array of real numbers (bool, int or float), or
    ``None`` when it is not numbers (strings, objects, complex, unreadable).

    Example:

    >>> numeric_array(np.float32(2.5)).dtype, numeric_array("a")
    (dtype('float32'), None)
    """
    if isinstance(value, complex):
        return None
    try:
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    except Exception:  # noqa: BLE001 - a value we cannot read is not a number
        return None
    if array.dtype.kind == "O" and isinstance(value, numbers.Real):  # an int beyond int64
        array = np.asarray(float(value))
    return array if array.dtype.kind in "biuf" else None


def as_scalar(value: Any) -> float | None:
    """``value`` as one float if it is one real number (see
    :func:`numeric_array`), else ``None``.

    Example:

    >>> as_scalar(np.array(3)), as_scalar(True), as_scalar([1, 2]), as_scalar(None)
    (3.0, 1.0, None, None)
    """
    array = numeric_array(value)
    return float(array) if array is not None and array.shape == () else None
