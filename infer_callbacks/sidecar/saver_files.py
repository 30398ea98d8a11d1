"""``ModelSaver``'s Keras-format checkpoints as the sidecar reads them:
exactly the ``ckpt-<global_step>.weights.h5`` files ``checkpoints.json``
lists (:func:`infer_callbacks.checkpoints.keras_format.list_checkpoints`),
in the order of their global step, with the epoch and step recorded there.
``MinSaver`` / ``MaxSaver`` files in the same directory are not listed, so
never evaluated. Every listed file is complete: ``ModelSaver`` renames it
into place before it lists it."""

from __future__ import annotations

import os
import re

import keras

from infer_callbacks.checkpoints import keras_format
from infer_callbacks.sidecar.listed import Listed

__all__ = ["is_saver_dir", "listed", "restore"]

_NUMBERED = re.compile(r"-(\d+)" + re.escape(keras_format.SUFFIX) + "$")


def is_saver_dir(directory: str) -> bool:
    """Whether ``directory`` holds a ``ModelSaver``'s ``checkpoints.json``."""
    return os.path.isdir(directory) and keras_format.is_keras_checkpoint(directory)


def listed(directory: str) -> list[Listed]:
    """The checkpoints ``checkpoints.json`` lists, by global step (one that
    ``max_to_keep`` deleted since is left out: the file stops listing a
    checkpoint before it is deleted)."""
    out = []
    for info in keras_format.list_checkpoints(directory):
        name = os.path.basename(info.path)
        match = _NUMBERED.search(name)
        step = info.global_step if info.global_step is not None else (match and int(match.group(1)))
        if step is None:
            continue  # not a ModelSaver name
        out.append(Listed(name, info.path, int(step), False, info.epoch))
    return sorted(out, key=lambda c: c.number)


def restore(model: keras.Model, ckpt: Listed) -> tuple[int | None, int]:
    """Load ``ckpt``'s weights into ``model``; its (epoch, global_step) as
    listed. Raises ``FileNotFoundError`` when the file is gone."""
    info = keras_format.restore(model, ckpt.path)
    return (ckpt.epoch if ckpt.epoch is not None else info.epoch), ckpt.number
