"""Warnings that point at the user's line: the first frame outside this
package and the frameworks that call it (Keras, TensorFlow, JAX), so that a
warning raised inside ``fit`` names the line of the script that called
``fit``, not a line of Keras's source.

Python 3.12's ``warnings.warn(skip_file_prefixes=...)`` does this by
itself; on 3.11 the stack level is counted from the code objects' file
names (nothing else of a frame is read).
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_user", "internal_prefixes"]

_FRAMEWORKS = ("keras", "keras_tuner", "tensorflow", "jax", "tf_keras", "absl")


def internal_prefixes() -> tuple[str, ...]:
    """Directories whose frames are not the user's."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # infer_callbacks/
    prefixes = [here + os.sep]
    for name in _FRAMEWORKS:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            prefixes.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(prefixes)


def warn_user(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the user's line."""
    prefixes = internal_prefixes()
    if sys.version_info >= (3, 12):
        warnings.warn(message, category, skip_file_prefixes=prefixes)
        return
    level, frame = 2, sys._getframe(1)  # 1 is this function
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(prefixes):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + (0 if frame is not None else -1))
