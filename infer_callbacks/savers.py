"""Checkpoints during training: ``ModelSaver`` (the latest N) and
``MinSaver`` / ``MaxSaver`` (the best by a logged statistic).

A checkpoint holds the model, its optimizer and the epoch counter
(``tf.train.Checkpoint``), so training resumes where it stopped:
``TrainConfig(session_init=checkpoint_dir)`` with the trainer, or
``model.fit(initial_epoch=ModelSaver.restore(model, checkpoint_dir))``.
Under ``MultiWorkerMirroredStrategy`` every worker takes part in each save
(reading distributed variables may need the other workers) but only the
chief writes to the checkpoint directory; the others write to a temporary
directory that is removed at once.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import tempfile
import warnings
from typing import Any

import keras
import tensorflow as tf

from ._util import atomic_write_json

__all__ = ["ModelSaver", "MinSaver", "MaxSaver", "restore_checkpoint"]


def _strategy(model) -> tf.distribute.Strategy | None:
    return getattr(model, "_distribute_strategy", None) if model is not None else None


def _is_chief(model) -> bool:
    strategy = _strategy(model)
    return True if strategy is None else bool(getattr(strategy.extended, "should_checkpoint", True))


def _checkpoint(model: keras.Model, epoch: tf.Variable | None = None) -> tf.train.Checkpoint:
    parts: dict[str, Any] = {"model": model}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if epoch is not None:
        parts["epoch"] = epoch
    return tf.train.Checkpoint(**parts)


def _prepare_dir(path: Any, who: str) -> str:
    if path is None or (isinstance(path, str) and not path):
        raise ValueError(f"{who} needs a checkpoint directory. Received: checkpoint_dir={path!r}.")
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise OSError(f"{who} cannot create the checkpoint directory {path!r}: {e.strerror}.") from e
    return path


def restore_checkpoint(model: keras.Model, path: str | os.PathLike) -> int | None:
    """Restore ``model`` (weights and optimizer) from ``path``: a directory
    of :class:`ModelSaver` (its latest checkpoint) or a checkpoint prefix.
    Returns the epoch (1-based) the checkpoint was taken after, or ``None``
    when it does not record one."""
    path = os.fspath(path)
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if prefix is None or not tf.io.gfile.exists(prefix + ".index"):
        raise ValueError(f"No checkpoint at {path!r} (expected a ModelSaver directory or a "
                         "checkpoint prefix such as 'train_log/ckpt-3').")
    # The model's own variables must all come from the checkpoint: a
    # checkpoint of another model would otherwise restore nothing, silently.
    check = tf.train.Checkpoint(model=model).read(prefix)
    check.expect_partial()  # optimizer and epoch entries are restored below
    try:
        check.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(
            f"Checkpoint {prefix!r} does not match the model: {e}. Was it written by "
            "ModelSaver for this model? (For a checkpoint of another layout use "
            "PredictConfig / predict.restore_weights, which report every mismatch.)") from None
    epoch = tf.Variable(-1, dtype=tf.int64, trainable=False)
    status = _checkpoint(model, epoch).restore(prefix)
    status.expect_partial()
    value = int(epoch.numpy())
    return value if value >= 0 else None


class ModelSaver(keras.callbacks.Callback):
    """Saves the model, its optimizer and the epoch every ``every_k_epochs``
    epochs, keeping the latest ``max_to_keep`` (``tf.train.CheckpointManager``).

    Resume with ``TrainConfig(session_init=checkpoint_dir)`` (model,
    optimizer and epoch restored; training continues at the next epoch) or,
    under ``fit``, ``model.fit(..., initial_epoch=ModelSaver.restore(model,
    checkpoint_dir))``.

    Args:
        checkpoint_dir: where the checkpoints go (``ckpt-<epoch>``).
        max_to_keep: how many recent checkpoints to keep.
        every_k_epochs: save after every k-th epoch.
        keep_checkpoint_every_n_hours: also keep one checkpoint every n hours.

    Example:

    ```python
    TrainConfig(model=Model(), data=train_ds, max_epoch=10,
                callbacks=[ModelSaver("train_log/ckpt", max_to_keep=3)])
    ```
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, max_to_keep: int = 5, *,
                 every_k_epochs: int = 1, keep_checkpoint_every_n_hours: float | None = None):
        super().__init__()
        if isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise ValueError("`max_to_keep` must be a positive integer. "
                             f"Received: max_to_keep={max_to_keep!r}")
        if isinstance(every_k_epochs, bool) or not isinstance(every_k_epochs, int) or every_k_epochs < 1:
            raise ValueError("`every_k_epochs` must be a positive integer. "
                             f"Received: every_k_epochs={every_k_epochs!r}")
        self.checkpoint_dir = _prepare_dir(checkpoint_dir, "ModelSaver")
        self.max_to_keep = max_to_keep
        self.every_k_epochs = every_k_epochs
        self.keep_checkpoint_every_n_hours = keep_checkpoint_every_n_hours
        self.saved: list[str] = []
        self._manager = None
        self._last_saved_epoch = None

    @staticmethod
    def restore(model: keras.Model, checkpoint_dir: str | os.PathLike) -> int:
        """Restore the latest checkpoint into a built, compiled ``model``;
        returns the number of epochs done (pass it as ``fit(initial_epoch=)``)."""
        epoch = restore_checkpoint(model, checkpoint_dir)
        return epoch or 0

    def on_train_begin(self, logs=None) -> None:
        self._last_saved_epoch = None  # a second fit() with the same saver saves again
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._chief = _is_chief(self.model)
        directory = self.checkpoint_dir if self._chief else tempfile.mkdtemp(prefix="modelsaver-")
        self._manager = tf.train.CheckpointManager(
            _checkpoint(self.model, self._epoch), directory, max_to_keep=self.max_to_keep,
            keep_checkpoint_every_n_hours=self.keep_checkpoint_every_n_hours, checkpoint_name="ckpt")

    def on_epoch_end(self, epoch, logs=None) -> None:
        if (epoch + 1) % self.every_k_epochs == 0:
            self._save(epoch)

    def on_train_end(self, logs=None) -> None:
        if self._manager is not None and not self._chief:
            shutil.rmtree(self._manager.directory, ignore_errors=True)
        self._manager = None

    def _save(self, epoch: int) -> None:
        if self._manager is None or self._last_saved_epoch == epoch:
            return
        self._epoch.assign(epoch + 1)
        path = self._manager.save(checkpoint_number=epoch + 1)
        self._last_saved_epoch = epoch
        if self._chief:
            self.saved.append(path)


class _BestSaver(keras.callbacks.Callback):
    """Keeps the checkpoint of the epoch with the best ``monitor`` value."""

    mode = "min"

    def __init__(self, monitor: str, *, checkpoint_dir: str | os.PathLike | None = None,
                 filename: str | None = None):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must be the name of a logged value such as "
                             f"'validation_error'. Received: monitor={monitor!r}")
        self.monitor = monitor
        self.checkpoint_dir = None if checkpoint_dir is None else os.fspath(checkpoint_dir)
        self.filename = filename or f"{self.mode}-{monitor}"
        if os.sep in self.filename or self.filename.startswith("."):
            raise ValueError(f"`filename` must be a plain file name. Received: {self.filename!r}")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._pending: tuple[int, dict] | None = None

    # -- where --------------------------------------------------------------

    @property
    def state_path(self) -> str:
        """The JSON file recording the best value, its epoch and checkpoint."""
        return os.path.join(self.checkpoint_dir, self.filename + ".json")

    @property
    def checkpoint_path(self) -> str | None:
        """The prefix of the best checkpoint (for ``session_init`` or
        ``tf.train.Checkpoint(model=model).restore``), or ``None``."""
        state = self._read_state()
        return None if state is None else os.path.join(self.checkpoint_dir, state["checkpoint"])

    def _find_checkpoint_dir(self) -> str:
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir
        from .runner import _enclosing_callback_list

        callback_list = _enclosing_callback_list(self)
        for cb in getattr(callback_list, "callbacks", []):
            if isinstance(cb, ModelSaver):
                return cb.checkpoint_dir
        raise ValueError(f"{type(self).__name__}({self.monitor!r}) needs a directory: pass "
                         "checkpoint_dir=... or add a ModelSaver to the same callbacks.")

    # -- state --------------------------------------------------------------

    def _read_state(self) -> dict | None:
        if self.checkpoint_dir is None or not os.path.exists(self.state_path):
            return None
        try:
            with open(self.state_path) as f:
                state = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{self.state_path} exists but cannot be read ({e}); it was left "
                             "untouched. Move it away or use another checkpoint_dir.") from e
        if not isinstance(state, dict) or not {"best", "epoch", "checkpoint"} <= set(state):
            raise ValueError(f"{self.state_path} is not a {type(self).__name__} state file; it was "
                             "left untouched. Move it away or use another checkpoint_dir.")
        return state

    def _write_state(self, state: dict) -> None:
        atomic_write_json(self.state_path, state)

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    # -- Keras hooks --------------------------------------------------------

    def on_train_begin(self, logs=None) -> None:
        self.checkpoint_dir = _prepare_dir(self._find_checkpoint_dir(), type(self).__name__)
        self._chief = _is_chief(self.model)
        self._pending = None
        state = self._read_state()
        if state is not None:  # resume: the best so far survives a restart
            if (state.get("monitor", self.monitor), state.get("mode", self.mode)) != (self.monitor, self.mode):
                raise ValueError(f"{self.state_path} records the {state.get('mode')} of "
                                 f"{state.get('monitor')!r}, not the {self.mode} of {self.monitor!r}. "
                                 "Pass another filename= or checkpoint_dir=.")
            self.best, self.best_epoch = float(state["best"]), int(state["epoch"])

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._resolve()
        if logs is None:
            return
        if self.monitor in logs:
            self._decide(epoch, logs)
        else:
            # The runner producing `monitor` may come later in the callback
            # list: decide once every callback has seen this epoch's logs
            # (the same dict), before any more training.
            self._pending = (epoch, logs)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._resolve()

    def on_train_end(self, logs=None) -> None:
        self._resolve()

    def _resolve(self) -> None:
        if self._pending is None:
            return
        epoch, logs = self._pending
        self._pending = None
        if self.monitor in logs:
            self._decide(epoch, logs)
        else:
            warnings.warn(f"{type(self).__name__}: {self.monitor!r} is not in the logs of epoch "
                          f"{epoch + 1} (available: {sorted(logs)}); nothing saved.",
                          RuntimeWarning, stacklevel=2)

    def _decide(self, epoch: int, logs: dict) -> None:
        value = logs[self.monitor]
        value = float(value.numpy() if hasattr(value, "numpy") else value)
        if not math.isfinite(value) or not self._better(value):
            return
        self._save(epoch, value)

    def _save(self, epoch: int, value: float) -> None:
        epoch_var = tf.Variable(epoch + 1, dtype=tf.int64, trainable=False)
        checkpoint = _checkpoint(self.model, epoch_var)
        if not self._chief:  # take part, write nothing that lasts
            tmp = tempfile.mkdtemp(prefix="bestsaver-")
            try:
                checkpoint.write(os.path.join(tmp, "ckpt"))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self.best, self.best_epoch = value, epoch + 1
            return
        old = self._read_state()
        name = f"{self.filename}-{epoch + 1}"
        checkpoint.write(os.path.join(self.checkpoint_dir, name))
        self._write_state({"monitor": self.monitor, "mode": self.mode, "best": value,
                           "epoch": epoch + 1, "checkpoint": name})
        self.best, self.best_epoch = value, epoch + 1
        if old is not None and old["checkpoint"] != name:
            for path in glob.glob(os.path.join(self.checkpoint_dir, glob.escape(old["checkpoint"]) + ".*")):
                os.unlink(path)


class MinSaver(_BestSaver):
    """Keeps the checkpoint of the epoch with the smallest ``monitor``.

    It reads ``monitor`` from the epoch's ``logs`` whichever its position
    relative to the runner that produces it (tensorpack's order bugs), and
    remembers the best value across restarts in
    ``<checkpoint_dir>/min-<monitor>.json`` (replaced atomically), next to the
    checkpoint ``min-<monitor>-<epoch>``. Works under ``fit`` too.

    Args:
        monitor: a key of the epoch's logs, e.g. ``'validation_error'``.
        checkpoint_dir: where to write; default: the directory of a
            :class:`ModelSaver` among the same callbacks.
        filename: the checkpoint's base name (default ``min-<monitor>``).

    Example:

    ```python
    callbacks=[MinSaver("validation_error", checkpoint_dir="train_log"),
               InferenceRunner(val_ds, ClassificationError())]
    ```
    """

    mode = "min"


class MaxSaver(_BestSaver):
    """Keeps the checkpoint of the epoch with the largest ``monitor``
    (``max-<monitor>``); otherwise as :class:`MinSaver`."""

    mode = "max"
