"""Restoring a Keras weights file (``.weights.h5``, or the weights inside a
``.keras`` file) with the same clear mismatch errors as checkpoints.

Keras's own traversal decides the layout: the model writes a reference file
with ``save_weights`` and the two files are compared entry by entry; then
Keras's ``load_weights`` reads them.
"""

from __future__ import annotations

import os
import tempfile
import zipfile

import keras

from infer_callbacks.checkpoints.mismatch import check_match

__all__ = ["restore_keras_weights", "is_keras_weights_path"]

_SKIPPED = ("optimizer",)


def is_keras_weights_path(path: str) -> bool:
    """Whether ``path`` names a Keras weights (``.h5``) or model (``.keras``) file."""
    return os.fspath(path).endswith((".h5", ".keras"))


def _h5_arrays(path: str) -> dict[str, tuple]:
    import h5py

    arrays: dict[str, tuple] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/", 1)[0] not in _SKIPPED:
                arrays[name] = (tuple(obj.shape), obj.dtype)
        f.visititems(visit)
    return arrays


def restore_keras_weights(model: keras.Model, path: str, *, ignore_mismatch: bool = False) -> None:
    """Restore ``model`` from a ``.weights.h5`` or ``.keras`` file, checking
    every entry first (:class:`~infer_callbacks.checkpoints.layout.CheckpointMismatchError`)."""
    import h5py

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Keras weights file {path!r} does not exist.")
    if not isinstance(model, keras.Model):
        raise TypeError(f"{path!r} is a Keras weights file; it needs a keras.Model. For a "
                        f"ModelDesc, restore a ModelSaver checkpoint. Received: model={model!r}")
    with tempfile.TemporaryDirectory() as tmp:
        if path.endswith(".keras"):  # a zip archive holding model.weights.h5
            with zipfile.ZipFile(path) as archive:
                if "model.weights.h5" not in archive.namelist():
                    raise ValueError(f"Keras file {path!r} holds no model.weights.h5 "
                                     f"(it has {archive.namelist()}).")
                path = archive.extract("model.weights.h5", os.path.join(tmp, "archive"))
        reference = os.path.join(tmp, "model.weights.h5")
        model.save_weights(reference)  # what this model writes, by Keras's own traversal
        want, have = _h5_arrays(reference), _h5_arrays(path)
        skip = check_match(f"Keras weights file {path!r}", want, have, ignore_mismatch=ignore_mismatch)
        if not skip and set(want) == set(have):
            model.load_weights(path)
            return
        with h5py.File(path, "r") as src, h5py.File(reference, "r+") as dst:
            for name in want:
                if name in have and name not in skip:
                    dst[name][...] = src[name][...]
        model.load_weights(reference)
