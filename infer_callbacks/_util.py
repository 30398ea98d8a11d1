"""Small helpers shared by several modules (not public API)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from typing import Any


def atomic_write_json(path: str, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON, atomically: write a temporary
    file in the same directory, fsync it, rename it over ``path``. A crash at
    any point leaves either the old file or the new one, never a partial."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600: keep the file readable
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _mode_for(path: str) -> int:
    """The permissions ``path`` has, or a new file's under the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


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
