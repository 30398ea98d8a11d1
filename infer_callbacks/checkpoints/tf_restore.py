"""Restoring a checkpoint of this project's TensorFlow layout
(``layout.py``): the model's variables matched by name, shape and dtype (a
mismatch lists what is missing, extra and mis-shaped), and the optimizer's
state for resuming."""

from __future__ import annotations

import os
import warnings
from typing import Any

import tensorflow as tf

from infer_callbacks.checkpoints.layout import (VALUE_SUFFIX, CheckpointInfo, named_weights, read_scalar,
                                                resolve)
from infer_callbacks.checkpoints.mismatch import check_match

__all__ = ["restore"]


def restore(model: Any, path: str | os.PathLike, *, optimizer: Any = None,
            ignore_mismatch: bool = False) -> CheckpointInfo:
    """Restore ``model``'s variables (and ``optimizer``'s state, if given)
    from a checkpoint of this layout.

    Args:
        model: a ModelDesc, its DescModel or a keras.Model, variables created.
        path: a checkpoint prefix, one of its files, or a directory (latest).
        optimizer: a built optimizer to restore too (for resuming training).
        ignore_mismatch: restore the matching variables and warn about the
            rest instead of raising :class:`CheckpointMismatchError`.

    Returns:
        The :class:`CheckpointInfo` (epoch and global step) of what was restored.

    Raises:
        FileNotFoundError: no such checkpoint (or it was deleted meanwhile).
        CheckpointMismatchError: the variables differ (listed).
    """
    prefix = resolve(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except tf.errors.NotFoundError as e:  # deleted (max_to_keep) since it was listed
        raise FileNotFoundError(f"Checkpoint {prefix!r} is gone: {e.message}") from None
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    have = {k[len("weights/"):-len(VALUE_SUFFIX)]: (shapes[k], dtypes[k]) for k in shapes
            if k.startswith("weights/") and k.endswith(VALUE_SUFFIX)}
    if not have:
        raise ValueError(
            f"Checkpoint {prefix!r} was not written in infer_callbacks' layout (no 'weights/...' "
            f"entries; it has {sorted(shapes)[:8]}). Write checkpoints with ModelSaver, "
            "MinSaver/MaxSaver or infer_callbacks.checkpoints.layout.save; for a Keras model, "
            "model.save_weights('x.weights.h5') also works with PredictConfig.")
    named = named_weights(model)
    want = {n: (tuple(v.shape), v.dtype) for n, v in named.items()}
    labels = {n: str(getattr(v, "path", None) or v.name) for n, v in named.items()}
    bad = check_match(f"Checkpoint {prefix!r}", want, have, ignore_mismatch=ignore_mismatch,
                      labels=labels)
    for name, v in named.items():
        if name not in bad:
            v.assign(reader.get_tensor(f"weights/{name}{VALUE_SUFFIX}"))
    if optimizer is not None:
        _restore_optimizer(reader, prefix, optimizer)
    return CheckpointInfo(prefix, read_scalar(reader, "epoch"), read_scalar(reader, "global_step"))


def _restore_optimizer(reader, prefix: str, optimizer: Any) -> None:
    variables = list(optimizer.variables)
    keys = [f"optimizer/{i}{VALUE_SUFFIX}" for i in range(len(variables))]
    if not reader.has_tensor(keys[0] if keys else "optimizer/0" + VALUE_SUFFIX):
        warnings.warn(f"Checkpoint {prefix!r} holds no optimizer state (e.g. one written by "
                      "MinSaver/MaxSaver from a snapshot); the optimizer starts afresh.", stacklevel=3)
        return
    shapes = reader.get_variable_to_shape_map()
    stored = sum(1 for k in shapes if k.startswith("optimizer/") and k.endswith(VALUE_SUFFIX))
    bad = [i for i, (k, v) in enumerate(zip(keys, variables))
           if k not in shapes or tuple(shapes[k]) != tuple(v.shape)]
    if stored != len(variables) or bad:
        raise ValueError(
            f"Checkpoint {prefix!r} holds the state of another optimizer: {stored} variables, "
            f"this one has {len(variables)} ({type(optimizer).__name__}); positions not matching: "
            f"{bad[:10]}. Resume with the same optimizer, or restore the weights only.")
    for k, v in zip(keys, variables):
        v.assign(reader.get_tensor(k))
