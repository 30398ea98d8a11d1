"""Reading, writing and removing a savers' checkpoint whichever format it is
in: TensorFlow's (:mod:`~infer_callbacks.checkpoints.layout`) or Keras's
(:mod:`~infer_callbacks.checkpoints.keras_format`), told apart by the files.

Example:

```python
from infer_callbacks.checkpoints import any_format

any_format.list_checkpoints("no_such_dir")  # [] (a directory without checkpoints)
```
"""

from __future__ import annotations

import glob
import os
from typing import Any, Sequence

from infer_callbacks.checkpoints import keras_format, layout, tf_restore
from infer_callbacks.checkpoints.layout import CheckpointInfo

__all__ = ["list_checkpoints", "restore", "write", "remove"]


def list_checkpoints(directory: str | os.PathLike) -> list[CheckpointInfo]:
    """The ``ModelSaver`` checkpoints of ``directory``, oldest first."""
    if keras_format.is_keras_checkpoint(directory):
        return keras_format.list_checkpoints(directory)
    return layout.list_checkpoints(directory)


def restore(model: Any, path: str | os.PathLike, *, optimizer: Any = None) -> CheckpointInfo:
    """Restore ``model`` (and ``optimizer``'s state, if given) from a
    checkpoint, or a directory's latest, of either format."""
    if keras_format.is_keras_checkpoint(path):
        return keras_format.restore(model, path, optimizer=optimizer)
    return tf_restore.restore(model, path, optimizer=optimizer)


def write(model: Any, path: str, checkpoint_format: str, *, weights: Sequence[Any] | None = None,
          epoch: int, global_step: int) -> None:
    """One checkpoint of ``model`` (or of ``weights``, aligned with
    ``model.weights``: a snapshot, saved without the optimizer's state) at
    ``path`` in ``checkpoint_format`` (``"keras"`` or ``"tensorflow"``)."""
    if checkpoint_format == "keras":
        keras_format.write(model, path, weights=weights, with_optimizer=weights is None,
                           epoch=epoch, global_step=global_step)
        return
    optimizer = None if weights is not None else getattr(model, "optimizer", None)
    layout.make_checkpoint(model, weights=weights, optimizer=optimizer, epoch=epoch,
                           global_step=global_step).write(path)


def remove(path: str) -> None:
    """Delete the checkpoint at ``path`` (a Keras file, or TensorFlow's ``path.*`` files)."""
    for found in glob.glob(glob.escape(path) + ".*") + ([path] if os.path.isfile(path) else []):
        os.unlink(found)
