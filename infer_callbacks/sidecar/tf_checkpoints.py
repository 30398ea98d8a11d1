"""The TensorFlow checkpoints a ``ModelSaver`` directory lists, as the
sidecar reads them: complete ones only (named in the ``checkpoint`` state
file), in order, restored into the sidecar's model."""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf

from infer_callbacks.checkpoints import layout, tf_restore
from infer_callbacks.sidecar.listed import Listed

__all__ = ["Listed", "listed", "restore", "training_finished"]

_NUMBERED = re.compile(r"-(\d+)$")


def listed(directory: str) -> list[Listed]:
    """The checkpoints the ``checkpoint`` state file names (complete ones:
    TensorFlow writes that file, atomically, after their files), ascending,
    each marked ``gone`` when ``max_to_keep`` deleted its files since."""
    state = tf.train.get_checkpoint_state(directory)
    out = []
    for prefix in [] if state is None else state.all_model_checkpoint_paths:
        name = os.path.basename(prefix)  # prefix: already joined with `directory`
        match = _NUMBERED.search(name)
        if match is None:
            continue  # not a CheckpointManager name: not ModelSaver's
        gone = not tf.io.gfile.exists(prefix + ".index")
        out.append(Listed(name, prefix, int(match.group(1)), gone))
    return sorted(out, key=lambda c: c.number)


def restore(model: keras.Model, ckpt: Listed) -> tuple[int | None, int | None]:
    """Restore ``ckpt``'s weights into ``model``; its (epoch, global_step).
    Raises ``FileNotFoundError`` when its files are gone."""
    try:
        info = tf_restore.restore(model, ckpt.path)
    except tf.errors.NotFoundError as e:  # deleted while being read
        raise FileNotFoundError(str(e)) from e
    return info.epoch, info.global_step


def training_finished(directory: str) -> bool:
    """Whether ModelSaver's "training finished" marker is in ``directory``."""
    return layout.read_finished_marker(directory) is not None
