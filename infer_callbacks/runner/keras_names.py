"""Keras's own names for the runner's results: ``validation_X`` -> ``val_X``.

Keras's callbacks read meaning into the ``val_`` prefix: ``EarlyStopping``
and ``ModelCheckpoint`` with ``mode="auto"`` know that ``val_loss`` (and
``val_<compiled metric>``) is minimized or maximized, and
``keras.callbacks.TensorBoard`` files ``val_*`` keys under its
``validation`` run. ``InferenceRunner(..., keras_names=True)`` reports its
results under those names (in ``logs``, :attr:`last_results` and the
monitors alike); keys without the ``validation_`` prefix are kept.
"""

from __future__ import annotations

__all__ = ["PREFIX", "KERAS_PREFIX", "keras_name", "rename"]

PREFIX, KERAS_PREFIX = "validation_", "val_"


def keras_name(key: str) -> str:
    """``validation_X`` as Keras names it (``val_X``); any other key as is."""
    return KERAS_PREFIX + key[len(PREFIX):] if key.startswith(PREFIX) else key


def rename(results: dict, who: object = None) -> dict:
    """``results`` under Keras's names, refusing two keys that become one."""
    out: dict = {}
    origin: dict = {}
    for key, value in results.items():
        new = keras_name(key)
        if new in out:
            raise ValueError(
                f"{who!r} with keras_names=True reports both {origin[new]!r} and {key!r}, which are "
                f"both {new!r} under Keras's names. Give one inferencer another prefix or summary name, "
                "or pass keras_names=False.")
        out[new], origin[new] = value, key
    return out
