"""Reading a savers' directory or checkpoint whichever format it was written
in: TensorFlow's (:mod:`~infer_callbacks.checkpoints.layout`) or Keras's
(:mod:`~infer_callbacks.checkpoints.keras_format`), told apart by the files.

Example:

```python
from infer_callbacks.checkpoints import any_format

any_format.list_checkpoints("no_such_dir")  # [] (a directory without checkpoints)
```
"""

from __future__ import annotations

import os
from typing import Any

from infer_callbacks.checkpoints import keras_format, layout
from infer_callbacks.checkpoints.layout import CheckpointInfo

__all__ = ["list_checkpoints", "restore"]


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
    return layout.restore(model, path, optimizer=optimizer)
