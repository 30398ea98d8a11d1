"""The engine of the Keras backend in use: the runner's only way to one.

Each engine's package is imported when its backend is the one in use, so
a TensorFlow user need not have JAX or PyTorch installed.
"""

from __future__ import annotations

import importlib

import keras

from infer_callbacks.runner.engine.base import Engine

__all__ = ["ENGINES", "current_engine", "require_engine"]

# Keras backend -> (module, class) of its engine.
ENGINES = {
    "tensorflow": ("infer_callbacks.runner.engine.tensorflow", "TensorFlowEngine"),
    "jax": ("infer_callbacks.runner.engine.jax", "JaxEngine"),
    "torch": ("infer_callbacks.runner.engine.torch", "TorchEngine"),
}

_made: dict[str, Engine] = {}


def require_engine() -> str:
    """The backend in use, refused with the fix when it has no engine here."""
    backend = keras.backend.backend()
    if backend not in ENGINES:
        raise RuntimeError(
            f"infer_callbacks has validation engines for Keras's {', '.join(sorted(ENGINES))} backends; "
            f"this process uses KERAS_BACKEND={backend!r}. Set KERAS_BACKEND to one of "
            f"{sorted(ENGINES)} before importing keras.")
    return backend


def current_engine() -> Engine:
    """The engine of ``keras.backend.backend()`` (one instance per backend)."""
    backend = require_engine()
    if backend not in _made:
        module, name = ENGINES[backend]
        _made[backend] = getattr(importlib.import_module(module), name)()
    return _made[backend]
